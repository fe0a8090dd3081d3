"""`koopscope edit` and `koopscope inpaint`: frequency-aware editing and inpainting on HKD's closed-form trajectory."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer

from ..diffusion.config import HELD_OUT_SEED
from .common import outputs, user_errors

REGION_HELP = ("top, bottom, left, right, upper-left, upper-right, lower-left, lower-right, full, "
               "box:y0,x0,y1,x1 (pixels) or a grayscale mask PNG of the image size.")


class Route(str, Enum):
    mid = "mid"
    T = "T"


class Blend(str, Enum):
    image = "image"
    latent = "latent"


def _hkd_config(ckpt: Path):
    """The checkpoint's HKD config, read without torch; any other kind of checkpoint is refused."""
    from ..hkd.config import KIND, HKDConfig
    from ..io.meta import read_meta, require_config, require_kind

    meta = read_meta(ckpt)
    require_kind(meta, ckpt, KIND)
    require_config(meta, ckpt)
    return HKDConfig.from_dict(meta["config"]["model"])


def _setup(ckpt: Path | None, region: str, rows: int, threads: int, out: Path, stem: str):
    """Checks shared by both commands, before torch: (checkpoint, config, region mask, output paths)."""
    from ..editing.options import region_mask
    from ..errors import KoopscopeError
    from ..models import default_checkpoint

    if rows < 1 or threads < 0:
        raise KoopscopeError("--rows must be positive and --threads non-negative")
    ckpt = ckpt or default_checkpoint()[0]
    cfg = _hkd_config(ckpt)
    mask = region_mask(region, (cfg.unet.resolution, cfg.unet.resolution))
    return ckpt, cfg, mask, outputs(out, stem, (".png", ".npz", ".json"))


def _load(ckpt: Path, threads: int):
    """The model, once every option is known to be valid (the shipped default is named on stderr)."""
    import torch

    from ..hkd.task import load_hkd
    from ..models import default_checkpoint

    path, note = default_checkpoint()
    if ckpt == path:
        print(f"using the {note}: {path}", file=sys.stderr)

    if threads:
        torch.set_num_threads(threads)
    return load_hkd(ckpt)


def _teacher(meta: dict, teacher: Path | None):
    from ..diffusion.teacher import load_teacher
    from ..spectral.consistency import resolve_teacher

    return load_teacher(resolve_teacher(meta, teacher))[0]


def _save(paths: dict, arrays: dict, numbers: dict, fig, json_: bool) -> None:
    import numpy as np

    from ..io.atomic import atomic_path, strict_json, write_json
    from ..io.figures import save_figure

    save_figure(fig, paths["png"], pdf=False)
    with atomic_path(paths["npz"]) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    write_json(paths["json"], numbers)
    if json_:
        print(strict_json(numbers, indent=2))
    for p in paths.values():
        print(f"wrote {p}", file=sys.stderr if json_ else sys.stdout)


@user_errors
def edit(
    ckpt: Path = typer.Argument(None, help="HKD checkpoint (default: the model shipped in the package)."),
    seed: int = typer.Option(HELD_OUT_SEED, help="Seed of the sample to edit (row i: SEED + i)."),
    ref_seed: int = typer.Option(None, help="Reference: another seed's trajectory (row i: REF_SEED + i)."),
    ref_image: str = typer.Option(None, help="Reference: a real image, dataset:split:index (row i: index + i, "
                                             "e.g. fashion:test:17) or a PNG/JPEG file."),
    region: str = typer.Option("lower-left", help=f"Region edited: {REGION_HELP}"),
    band: str = typer.Option("high", help="Bands mixed: low, mid, high or a comma list; all = frequency-agnostic."),
    ratios: str = typer.Option("0.1,0.2,0.5,0.8,0.9", help="Mixing ratios r in [0, 1], comma separated."),
    time_: float = typer.Option(None, "--time", help="Edit time as a noise level, eps <= sigma <= T (default: the "
                                                     "midpoint in the model's time: sqrt(T eps) for tau = ln sigma)."),
    levels: str = typer.Option(None, help="Levels mixed, comma list (0 = finest; default: all)."),
    rows: int = typer.Option(4, help="Rows: consecutive seeds and references."),
    route: Route = typer.Option(Route.mid, help="Real reference: encode the inverted state at the edit time (mid) "
                                                "or the inverted noise at T, propagated (T)."),
    teacher: Path = typer.Option(None, help="Teacher for the inversion (default: the one recorded in the model)."),
    steps: int = typer.Option(18, help="Inversion grid points (the teacher's Heun, backwards)."),
    data_root: Path = typer.Option(None, help="Where the dataset of --ref-image lives."),
    out: Path = typer.Option(Path("edit"), help="Folder for edit.png (Figure 3 layout), edit.npz, edit.json, "
                                                "or one of those files (the rest beside it)."),
    json_: bool = typer.Option(False, "--json", help="Print the numbers as JSON instead of a table."),
    threads: int = typer.Option(0, help="CPU threads (0 = torch default)."),
):
    """Mix a reference's latents into a sample's at one time of the trajectory, in a region and spectral bands."""
    from ..editing.options import edit_time, parse_bands, parse_levels, parse_ratios
    from ..errors import KoopscopeError
    from ..spectral.bands import band_names

    if (ref_seed is None) == (ref_image is None):
        raise KoopscopeError("give exactly one reference: --ref-seed or --ref-image")
    if steps < 2:
        raise KoopscopeError("--steps must be at least 2")
    chosen, ratio_list = parse_bands(band, band_names(3)), parse_ratios(ratios)
    ckpt, cfg, mask, paths = _setup(ckpt, region, rows, threads, out, "edit")
    sigma = edit_time(cfg, time_)
    level_list = parse_levels(levels, len(cfg.unet.level_shapes()))

    import numpy as np
    import torch

    from ..editing.edit import level_weights, trajectory
    from ..editing.images import image_names, read_images
    from ..editing.locality import LOWPASS_SIGMA, score, table
    from ..editing.plots import figure3
    from ..editing.reference import image_reference

    if ref_image is not None:
        shape = (cfg.unet.img_channels, cfg.unet.resolution, cfg.unet.resolution)
        names, x0 = image_names(ref_image, rows), torch.from_numpy(read_images(ref_image, rows, shape, data_root))
    model, meta = _load(ckpt, threads)
    seeds = list(range(seed, seed + rows))
    region_t = torch.from_numpy(mask)
    gen = trajectory(model, seeds, sigma)
    report = None
    if ref_seed is not None:
        names = [f"seed {s}" for s in range(ref_seed, ref_seed + rows)]
        ref = trajectory(model, range(ref_seed, ref_seed + rows), sigma)
        z_ref, x_ref, shown = ref.z_t, ref.x, ref.x
    else:
        ref = image_reference(model, _teacher(meta, teacher), x0, sigma, steps)
        z_ref, x_ref, shown = ref.latents[route.value], ref.decoded[route.value], x0.float()
        report = {"route": route.value, **ref.report}
    weights = {"aware": level_weights(model, region_t, chosen, level_list),
               "agnostic": level_weights(model, region_t, None, level_list)}
    images, sums = score(model, gen, z_ref, x_ref, sigma, ratio_list, weights, region_t)
    tab = table(sums, ratio_list)
    band_label = band if chosen is None else ",".join(chosen)
    fig = figure3(gen.x.cpu(), images["aware"], images["agnostic"][-1], shown.cpu(), ratio_list, band_label,
                  [f"seed {s}\nref {n}" for s, n in zip(seeds, names)], mask)
    numbers = {"checkpoint": str(ckpt), "seeds": seeds, "references": names, "region": region, "bands": band_label,
               "levels": level_list, "sigma": sigma, "ratios": ratio_list, "lowpass_sigma_px": LOWPASS_SIGMA,
               "locality": tab, **({"reference_image": report} if report else {})}
    arrays = {"original": gen.x.cpu().numpy(), "aware": torch.stack(images["aware"]).numpy(),
              "agnostic": torch.stack(images["agnostic"]).numpy(), "reference": shown.cpu().numpy(),
              "ratios": np.asarray(ratio_list), "seeds": np.asarray(seeds), "region": mask}
    if not json_:
        _print_edit(tab, band_label, report, rows)
    _save(paths, arrays, numbers, fig, json_)


def _print_edit(tab: dict, band: str, report: dict | None, rows: int) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    t = Table("r", f"{band}: low", "high", "outside", "all: low", "high", "outside", "holds?",
              box=box.SIMPLE_HEAD, title_justify="left",
              title=f"RMS change ({rows} rows): low-/high-pass inside the region, all of it outside")
    keys = ("low_inside", "high_inside", "image_outside")
    for r, a, g, ok in zip(tab["ratios"], tab["aware"], tab["agnostic"], tab["claim_holds"]):
        t.add_row(f"{r:g}", *[f"{row[k]:.3f}" for row in (a, g) for k in keys], "yes" if ok else "no")
    console = Console()
    console.print(t)
    if report:
        import numpy as np

        console.print(f"inversion ({report['nfe']['inversion']} NFE): the teacher's sample from the inverted noise "
                      f"is within RMSE {np.mean(report['inversion_rmse']):.4f} of the image (max |error| "
                      f"{np.max(report['inversion_max_abs']):.3f})")
        console.print(f"routes T and mid: latents differ by {np.mean(report['route_latent_gap']):.3f} (relative), "
                      f"their samples by RMSE {np.mean(report['route_sample_rmse']):.3f}; reconstruction RMSE "
                      + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in report["reconstruction_rmse"].items())
                      + f" (using {report['route']})")


@user_errors
def inpaint(
    ckpt: Path = typer.Argument(None, help="HKD checkpoint (default: the model shipped in the package)."),
    image: str = typer.Option(..., help="Real image: dataset:split:index (row i: index + i, e.g. fashion:test:17) "
                                        "or a PNG/JPEG file."),
    region: str = typer.Option("lower-left", help=f"Region to fill: {REGION_HELP}"),
    blends: int = typer.Option(8, help="HKD blend times K (Karras grid from T to eps, T left out)."),
    blend: Blend = typer.Option(Blend.image, help="image: re-encode the blended image; latent: replace the known "
                                                  "part's latents only (docs/method.md §8)."),
    seed: int = typer.Option(HELD_OUT_SEED, help="Noise seed of row i: SEED + i."),
    rows: int = typer.Option(4, help="Rows: consecutive images of a dataset (a file: the same image)."),
    compare: bool = typer.Option(True, help="Also let the teacher blend along its own Heun steps, timed."),
    teacher: Path = typer.Option(None, help="Teacher for the comparison (default: the one recorded in the model)."),
    steps: int = typer.Option(18, help="Teacher Heun grid points (NFE = 2 STEPS - 1)."),
    data_root: Path = typer.Option(None, help="Where the dataset of --image lives."),
    out: Path = typer.Option(Path("inpaint"), help="Folder for inpaint.png, inpaint.npz, inpaint.json, or one "
                                                   "of those files (the rest beside it)."),
    json_: bool = typer.Option(False, "--json", help="Print the numbers as JSON instead of lines."),
    threads: int = typer.Option(0, help="CPU threads (0 = torch default)."),
):
    """Fill a region of a real image from noise, blending its known part into HKD's closed-form trajectory."""
    from ..errors import KoopscopeError

    if blends < 1 or steps < 2:
        raise KoopscopeError("--blends must be positive and --steps at least 2")
    ckpt, cfg, mask, paths = _setup(ckpt, region, rows, threads, out, "inpaint")
    if mask.min() >= 1:
        raise KoopscopeError(f"region '{region}' covers the whole image: nothing is known to inpaint from")

    import time

    import numpy as np
    import torch

    from ..diffusion.samplers import seeded_noise
    from ..editing.images import image_names, read_images
    from ..editing.inpaint import fill_errors, hkd_inpaint, teacher_inpaint
    from ..editing.plots import image_table

    shape = (cfg.unet.img_channels, cfg.unet.resolution, cfg.unet.resolution)
    x0 = torch.from_numpy(read_images(image, rows, shape, data_root))
    model, meta = _load(ckpt, threads)
    region_t, noise = torch.from_numpy(mask), seeded_noise(range(seed, seed + rows), shape)
    runs = {}
    start = time.perf_counter()
    runs["hkd"] = (hkd_inpaint(model, x0, region_t, noise, blends, blend.value), time.perf_counter() - start,
                   {"blend_times": blends, "blend": blend.value, "network_passes": blends + 1})
    if compare:
        net = _teacher(meta, teacher)
        start = time.perf_counter()
        runs["teacher"] = (teacher_inpaint(net, x0, region_t, noise, steps), time.perf_counter() - start,
                           {"steps": steps, "nfe": 2 * steps - 1})
    numbers = {"checkpoint": str(ckpt), "images": image_names(image, rows), "region": region,
               "seeds": list(range(seed, seed + rows))}
    for name, (res, seconds, info) in runs.items():
        numbers[name] = {**info, **fill_errors(res, x0, region_t), "seconds": seconds}
    masked = np.where(mask[None, None] > 0, -0.5, x0.numpy())
    columns = [("original", x0), ("input", masked),
               *[(f"{k}\nRMSE {numbers[k]['masked_rmse']:.3f}", r[0].x.float().cpu()) for k, r in runs.items()]]
    fig = image_table(columns, numbers["images"], mask, outlined=(1,))
    arrays = {"original": x0.float().numpy(), "region": mask, "seeds": np.asarray(numbers["seeds"]),
              **{k: r[0].x.float().cpu().numpy() for k, r in runs.items()}}
    if not json_:
        for k in runs:
            v = numbers[k]
            print(f"{k:8s} masked-region RMSE {v['masked_rmse']:.4f}, known part before the final paste "
                  f"{v['known_rmse_raw']:.4f}, {v['seconds']:.2f} s for {rows} image(s)")
    _save(paths, arrays, numbers, fig, json_)

