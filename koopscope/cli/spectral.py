"""`koopscope spectrum` and `koopscope modes`: the generators' spectrum and per-band reconstructions."""

from __future__ import annotations

import math
import sys
from enum import Enum
from pathlib import Path

import typer

from .common import check_output, outputs, user_errors

GRID_SAMPLES = 8   # samples `modes` draws in its PNG grid (all go to the .nc): ~18 MB of RAM to render each


class Method(str, Enum):
    rank = "rank"
    quantile = "quantile"


def _checkpoint(ckpt: Path | None) -> Path:
    """The given checkpoint, or the shipped default (its note goes to stderr)."""
    if ckpt is not None:
        return ckpt
    from ..models import default_checkpoint

    path, note = default_checkpoint()
    print(f"using the {note}: {path}", file=sys.stderr)
    return path


def _check_bands(bands: int) -> None:
    from ..errors import KoopscopeError

    if bands < 1:
        raise KoopscopeError(f"--bands must be at least 1, got {bands}")


def _tables(ds) -> list:
    from rich import box
    from rich.table import Table

    from ..spectral import summary

    a = ds.attrs

    def table(title, *cols):
        t = Table(*cols, title=title, box=box.SIMPLE_HEAD, title_justify="left")
        for c in t.columns:
            c.justify = "right"
        return t

    levels = table(f"{a['time_convention']}; sigma {a['sigma_max']:g} -> {a['sigma_min']:g} (dtau {a['dtau']:.3g})",
                   "level", "d x h x w", "modes", "|Re| range", "Im range", "growth T->eps", "decaying")
    bands = table(f"{a['bands']} bands by {a['band_method']}", "level", "band", "modes", "|Re| range", "cut below")
    modes = table("most persistent (smallest |Re|) and fastest modes; along T -> eps a mode halves (½) or "
                  "doubles (2×) in the tau shown; growth = |exp(lambda dtau)|",
                  "level", "mode", "lambda", "y, x, block", "½ / 2× time", "growth")
    for r in summary(ds):
        lvl = str(r["level"]) + ("" if r["active"] else " (off)")
        levels.add_row(lvl, f"{r['dim']}x{r['height']}x{r['width']}", str(r["modes"]), _range(r["decay_rate"]),
                       _range(r["frequency"]), _range(r["growth"]), f"{r['decaying']:.0%}")
        for (name, b), cut in zip(r["bands"].items(), [math.nan, *r["thresholds"]]):
            bands.add_row(lvl, name, str(b["modes"]), _range(b["decay_rate"]), "" if math.isnan(cut) else f"{cut:.3g}")
        for which, label in (("most_persistent", "persistent"), ("fastest", "fastest")):
            m = r[which]
            modes.add_row(lvl, label, f"{m['re']:.3g}{m['im']:+.3g}i", f"{m['y']}, {m['x']}, {m['block']}",
                          _lifetime(m), f"{m['growth']:.3g}")
    return [levels, bands, modes]


def _lifetime(m: dict) -> str:
    """Half-life of a decaying mode, doubling time of a growing one (tau units), along T -> eps."""
    if m["decay"] > 0:
        return f"½ in {m['half_life']:.3g}"
    return f"2× in {m['doubling_time']:.3g}" if m["decay"] < 0 else "constant"


def _range(pair) -> str:
    return f"{pair[0]:.3g}–{pair[1]:.3g}"


def _consistency_note(ckpt: Path) -> dict:
    """The checkpoint's recorded consistency summary (``koopscope consistency`` at ship time), or a pointer to it."""
    from ..io.meta import read_meta

    c = read_meta(ckpt).get("consistency")
    if not c:
        return {"line": "consistency: not recorded for this checkpoint; read this spectrum next to "
                        f"`koopscope consistency {ckpt}`", "consistent": None}
    return {**c, "line": f"consistency ({c['count']} held-out teacher trajectories): {c['verdict']}"}


@user_errors
def spectrum(
    ckpt: Path = typer.Argument(None, help="HKD checkpoint (default: the model shipped in the package)."),
    out: Path = typer.Option(None, help="Write the spectrum Dataset to this .nc file."),
    plot: Path = typer.Option(None, help="Write a complex-plane / |Re| histogram figure (.png, a .pdf beside)."),
    json_: bool = typer.Option(False, "--json", help="Print the per-level summary as JSON instead of tables."),
    bands: int = typer.Option(3, help="Bands per level (low/mid/high for 3, else band0..)."),
    method: Method = typer.Option(Method.rank, help="rank: by rank within each location; quantile: by |Re| "
                                                    "quantiles across the level."),
):
    """Eigenvalues of every Koopman generator, sorted by |Re| and split into bands."""
    from ..errors import KoopscopeError
    from ..io.atomic import strict_json
    from ..spectral import save_spectrum, summary
    from ..spectral import spectrum as compute

    _check_bands(bands)
    for path, suffix in ((out, ".nc"), (plot, ".png")):
        if path is None:
            continue
        if path.suffix != suffix:
            raise KoopscopeError(f"'{path}' must end in {suffix}")
        check_output(path)
    ckpt = _checkpoint(ckpt)
    ds = compute(ckpt, bands=bands, method=method.value)
    note = _consistency_note(ckpt)
    wrote = []
    if out is not None:
        wrote.append(save_spectrum(ds, out))
    if plot is not None:
        from ..io.figures import save_figure
        from ..spectral.plots import plot_spectrum

        wrote += save_figure(plot_spectrum(ds), plot)
    if json_:
        attrs = {k: v.item() if hasattr(v, "item") else v for k, v in ds.attrs.items()}
        print(strict_json({"attrs": attrs, "levels": summary(ds), "consistency": note}, indent=2))
    else:
        from rich.console import Console

        console = Console()
        for table in _tables(ds):
            console.print(table)
        console.print(note["line"], style="bold green" if note.get("consistent") else "bold red")
    for path in wrote:
        print(f"wrote {path}", file=sys.stderr if json_ else sys.stdout)


@user_errors
def modes(
    band: str = typer.Option("all", help="low | mid | high | all (band0.. when --bands is not 3)."),
    ckpt: Path = typer.Option(None, help="HKD checkpoint (default: the model shipped in the package)."),
    level: int = typer.Option(None, help="Mask modes in this level only (others kept whole); default all levels."),
    columns: int = typer.Option(6, help="Karras grid times from T to eps, one column each."),
    count: int = typer.Option(4, help=f"Samples (seeds SEED .. SEED+COUNT-1), all in the .nc; the PNG grid shows "
                                      f"the first {GRID_SAMPLES}."),
    seed: int = typer.Option(0, help="First seed."),
    cumulative: bool = typer.Option(False, help="Accumulate bands from low up to each band instead of isolating."),
    out: Path = typer.Option(Path("modes"), help="Folder for the grid PNG and the .nc, or the .png / .nc file (the "
                                                 "other beside it, named after it)."),
    bands: int = typer.Option(3, help="Bands per level."),
    method: Method = typer.Option(Method.rank, help="Band method (see `koopscope spectrum`)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Decode the Koopman trajectory from one spectral band (or all bands) at several times."""
    from ..errors import KoopscopeError
    from ..spectral.bands import band_names

    _check_bands(bands)
    names = band_names(bands)
    if band != "all" and band not in names:
        raise KoopscopeError(f"unknown band '{band}'; choose one of: {', '.join(names)}, all")
    if columns < 1 or count < 1:
        raise KoopscopeError("--columns and --count must be positive")
    name = f"modes_{band}_{'cumulative' if cumulative else 'isolated'}" + ("" if level is None else f"_level{level}")
    paths = outputs(out, name, (".png", ".nc"))

    from ..diffusion.samplers import karras_sigmas  # torch: only once the options are known to be valid
    from ..hkd.task import load_hkd
    from ..io.figures import save_figure
    from ..progress import bars
    from ..spectral import band_reconstructions, save_spectrum
    from ..spectral.plots import plot_band_grid
    from ..spectral.spectrum import checkpoint_attrs

    ckpt = _checkpoint(ckpt)
    model, _ = load_hkd(ckpt)
    if level is not None and not 0 <= level < model.levels:
        raise KoopscopeError(f"level {level} does not exist; this model has levels 0..{model.levels - 1}")
    sigmas = karras_sigmas(columns, model.cfg.sigma_min, model.cfg.sigma_max, final_zero=False).tolist()
    with bars(progress) as bar:
        task = bar.add_task("band reconstructions", total=count)
        ds = band_reconstructions(model, range(seed, seed + count), sigmas, bands=bands, method=method.value,
                                  keep=None if band == "all" else [band], level=level, cumulative=cumulative,
                                  attrs=checkpoint_attrs(ckpt), progress=lambda n: bar.advance(task, n))
    png = save_figure(plot_band_grid(ds, samples=GRID_SAMPLES), paths["png"], pdf=False)[0]
    nc = save_spectrum(ds, paths["nc"])
    shown = "" if count <= GRID_SAMPLES else f"; the grid shows the first {GRID_SAMPLES}"
    print(f"{ds.attrs['mode']} band reconstructions ({', '.join(ds.band.values)}; {columns} times, {count} samples"
          f"{shown})")
    print(f"wrote {png}\nwrote {nc}")
