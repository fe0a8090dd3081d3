"""`koopscope consistency`: do the encoder's latents of real teacher states follow the learned generators?"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..diffusion.config import HELD_OUT_SEED
from .common import outputs, user_errors
from .spectral import Method, _check_bands, _checkpoint


@user_errors
def consistency(
    ckpt: Path = typer.Argument(None, help="HKD checkpoint (default: the model shipped in the package)."),
    trajectories: Path = typer.Option(None, help="Measure on this store's first COUNT trajectories (the model's "
                                                 "own teacher) instead of integrating fresh ones."),
    teacher: Path = typer.Option(None, help="Teacher checkpoint (default: the one recorded in the model)."),
    count: int = typer.Option(64, help="Trajectories to measure on."),
    seed: int = typer.Option(HELD_OUT_SEED, help="First seed of fresh trajectories (held out from training)."),
    out: Path = typer.Option(None, help="Folder for consistency.nc/.png/.json, or one of those files (the rest "
                                        "beside it, named after it)."),
    plot: Path = typer.Option(None, help="Write the figure here instead (.png, a .pdf beside)."),
    json_: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of tables."),
    bands: int = typer.Option(3, help="Bands per level for the per-mode validity summary."),
    method: Method = typer.Option(Method.rank, help="Band method (see `koopscope spectrum`)."),
    batch: int = typer.Option(32, help="Trajectories encoded at once."),
    threads: int = typer.Option(0, help="CPU threads (0 = torch default)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Measure how closely the encoder's latents of teacher states follow the generators (every spectrum's caveat)."""
    from ..errors import KoopscopeError

    _check_bands(bands)
    if count < 1 or batch < 1 or threads < 0:
        raise KoopscopeError("--count and --batch must be positive and --threads non-negative")
    paths = {} if out is None else outputs(out, "consistency", (".nc", ".png", ".json"))
    if plot is not None:
        paths["png"] = outputs(plot, "consistency", (".png",))["png"]

    import torch

    from ..hkd.task import load_hkd
    from ..io.atomic import strict_json, write_json
    from ..io.figures import save_figure
    from ..progress import bars
    from ..spectral import consistency as C
    from ..spectral import save_spectrum
    from ..spectral.plots import plot_consistency
    from ..spectral.spectrum import checkpoint_attrs
    from ..trajectories import TrajectoryStore

    if threads:
        torch.set_num_threads(threads)
    ckpt = _checkpoint(ckpt)
    model, meta = load_hkd(ckpt)
    with bars(progress) as bar:
        if trajectories is not None:
            states, sigmas = C.store_trajectories(TrajectoryStore(trajectories), meta, count)
            source = {"trajectories": str(trajectories), "first_trajectories": count}
        else:
            t = C.resolve_teacher(meta, teacher)
            task = bar.add_task("teacher trajectories", total=count)
            states, sigmas = C.teacher_trajectories(t, range(seed, seed + count),
                                                    progress=lambda n: bar.advance(task, n))
            source = {"teacher": str(t), "seeds": f"{seed}..{seed + count - 1}"}
        task = bar.add_task("encode and propagate", total=count)
        ds = C.measure(model, states, sigmas, batch=batch, bands=bands, method=method.value,
                       attrs={**checkpoint_attrs(ckpt), **source}, progress=lambda n: bar.advance(task, n))
    summary = C.summary(ds)
    wrote = []
    if "png" in paths:
        wrote += save_figure(plot_consistency(ds), paths["png"])
    if "nc" in paths:
        wrote.append(save_spectrum(ds, paths["nc"]))
        write_json(paths["json"], {**summary, **{k: ds.attrs[k] for k in ("checkpoint", "checkpoint_sha256")},
                                   **source})
        wrote.append(paths["json"])
    if json_:
        print(strict_json(summary, indent=2))
    else:
        _print(ds, summary)
    for p in wrote:
        print(f"wrote {p}", file=sys.stderr if json_ else sys.stdout)


def _print(ds, summary: dict) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    sig = ds.time.values
    step = max(1, -(-(len(sig) - 1) // 6))
    cols = sorted({*range(len(sig) - 1, 0, -step)})
    t = Table("sigma", *[f"{sig[k]:.2g}" for k in cols], box=box.SIMPLE_HEAD, title_justify="left",
              title=f"explained share of the latent move from T = {sig[0]:g} to sigma ({ds.attrs['count']} "
                    "teacher trajectories; 1 = the generators explain it, 0 = A does nothing)")
    for lv in ds.level.values:
        row = ds.explained.sel(level=lv).isel(source=0).values
        t.add_row(str(lv), *[f"{row[k]:.3f}" for k in cols])
    t.add_row("all", *[f"{ds.explained_overall.isel(source=0).values[k]:.3f}" for k in cols])
    t.add_row("RMSE", *[f"{ds.fidelity.values[k]:.3f}" for k in cols])
    b = Table("level", *[str(n) for n in ds.band.values], box=box.SIMPLE_HEAD, title_justify="left",
              title="per-band validity: explained share of the band's modes from T")
    for lv in ds.level.values:
        b.add_row(str(lv), *[f"{v:.3f}" for v in ds.band_validity.sel(level=lv).values])
    console = Console()
    console.print(t)
    console.print(b)
    a = ds.attrs
    console.print(f"one-step MSE to the teacher's sample: {a['one_step_mse']:.4f} as trained, "
                  f"{a['one_step_mse_no_dynamics']:.4f} with A = 0 ({a['dynamics_ratio']:.1f}x)")
    console.print(summary["verdict"], style="bold green" if summary["consistent"] else "bold red")
