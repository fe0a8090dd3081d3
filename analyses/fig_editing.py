"""Frequency-aware editing on a trained HKD model: does only the high-frequency part move? (docs/method.md §8)

Edits seed S + i towards the reference seed R + i (the paper's Figure 3: a quadrant, the high band, ratios
10-90 %) and measures, over COUNT pairs, the change outside the region (latent and image) and inside it
the low- and high-pass energy of the change, frequency-aware against frequency-agnostic
(``koopscope.editing.locality``); then the same at ratio 0.9 for every band and for subsets of levels; that
the edit time does not matter for seed references; and real references (fashion:test:0 .. COUNT - 1)
through the teacher's inversion: the inversion error, how far the two routes disagree, and the same
locality numbers for both routes.

    python analyses/fig_editing.py [--hkd CKPT] [--count 64] [--region lower-left] [--band high] [--threads 1]

Writes analyses/results/editing.json, figures/editing.{png,pdf} (Figure 3 layout) and
figures/editing_locality.{png,pdf} (--figures: another folder).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from koopscope.diffusion.config import HELD_OUT_SEED
from koopscope.io.atomic import write_json
from koopscope.io.meta import sha256

ROOT = Path(__file__).resolve().parent.parent
REF_SEED = 3_000_000   # references: held out from training, apart from the edited seeds
RATIOS = [0.1, 0.2, 0.5, 0.8, 0.9, 1.0]
LEVEL_SETS = [[0], [0, 1], [0, 1, 2], [3, 4], [0, 1, 2, 3, 4]]


def mean(v) -> float:
    return float(np.mean(v))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hkd", type=Path, default=None, help="HKD checkpoint (default: the shipped model)")
    ap.add_argument("--count", type=int, default=64, help="edited seeds (and real references)")
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="first edited seed")
    ap.add_argument("--region", default="lower-left")
    ap.add_argument("--band", default="high")
    ap.add_argument("--rows", type=int, default=4, help="rows of the Figure 3 layout")
    ap.add_argument("--steps", type=int, default=18, help="inversion grid points")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "analyses/results/editing.json")
    ap.add_argument("--figures", type=Path, default=ROOT / "figures", help="folder of the figures")
    args = ap.parse_args()

    import torch

    from koopscope.diffusion.teacher import load_teacher
    from koopscope.editing import locality as L
    from koopscope.editing.edit import apply_edit, level_weights, mix, trajectory
    from koopscope.editing.images import read_images
    from koopscope.editing.options import edit_time, parse_bands, region_mask
    from koopscope.editing.plots import figure3, plot_locality
    from koopscope.editing.reference import image_reference
    from koopscope.hkd.task import load_hkd
    from koopscope.io.figures import save_figure
    from koopscope.models import default_checkpoint
    from koopscope.spectral.bands import band_names
    from koopscope.spectral.consistency import resolve_teacher

    torch.set_num_threads(args.threads)
    path = args.hkd or default_checkpoint()[0]
    model, meta = load_hkd(path)
    cfg = model.cfg
    size = cfg.unet.resolution
    sigma = edit_time(cfg)
    bands = parse_bands(args.band, band_names(3))
    mask = region_mask(args.region, (size, size))
    region = torch.from_numpy(mask)
    seeds = list(range(args.seed, args.seed + args.count))
    refs = list(range(REF_SEED, REF_SEED + args.count))
    res = {"checkpoint": str(path), "checkpoint_sha256": sha256(path),
           "consistency": meta.get("consistency", {}).get("verdict"), "count": args.count,
           "seeds": [seeds[0], seeds[-1]], "reference_seeds": [refs[0], refs[-1]], "region": args.region,
           "band": args.band, "sigma": sigma, "lowpass_sigma_px": L.LOWPASS_SIGMA, "ratios": RATIOS}

    start = time.perf_counter()
    main_table = L.measure(model, seeds, refs, region, bands, RATIOS, sigma)
    res["locality"] = main_table
    res["per_band_at_0.9"] = {}
    for b in [["low"], ["mid"], ["high"], ["mid", "high"]]:
        t = L.measure(model, seeds, refs, region, b, [0.9], sigma)
        res["per_band_at_0.9"][",".join(b)] = t["aware"][0]
    res["per_band_at_0.9"]["all"] = t["agnostic"][0]
    res["per_levels_at_0.9"] = {}
    for lv in LEVEL_SETS:
        t = L.measure(model, seeds, refs, region, bands, [0.9], sigma, levels=lv)
        res["per_levels_at_0.9"][",".join(map(str, lv))] = {"aware": t["aware"][0], "agnostic": t["agnostic"][0]}
    res["seconds_seed_measurements"] = time.perf_counter() - start

    # the edit time does not matter for seed references: the mix commutes with the per-pair propagator
    w = level_weights(model, region, bands)
    at = {}
    for s in (sigma, 10.0):
        gen, ref = trajectory(model, seeds, s), trajectory(model, refs, s)
        at[s] = apply_edit(model, gen, mix(gen.z_t, ref.z_t, 0.9, w), s)[1]
    res["time_invariance_max_abs"] = float((at[sigma] - at[10.0]).abs().max())

    # real references: fashion test images through the teacher's inversion, both routes
    teacher = load_teacher(resolve_teacher(meta))[0]
    x0 = torch.from_numpy(read_images("fashion:test:0", args.count, (cfg.unet.img_channels, size, size)))
    start = time.perf_counter()
    real = image_reference(model, teacher, x0, sigma, args.steps)
    rep = real.report
    res["real_reference"] = {
        "images": f"fashion:test:0..{args.count - 1}", "steps": args.steps, "nfe": rep["nfe"],
        "seconds": time.perf_counter() - start,
        "inversion_rmse": {"mean": mean(rep["inversion_rmse"]), "median": float(np.median(rep["inversion_rmse"])),
                           "max": float(np.max(rep["inversion_rmse"]))},
        "inversion_max_abs": float(np.max(rep["inversion_max_abs"])),
        "inverted_noise_scale": mean(rep["inverted_noise_scale"]),
        "route_latent_gap_per_level": np.mean(rep["route_latent_gap"], 0).tolist(),
        "route_sample_rmse": mean(rep["route_sample_rmse"]),
        "reconstruction_rmse": {k: mean(v) for k, v in rep["reconstruction_rmse"].items()},
        "locality": {}}
    gen = trajectory(model, seeds, sigma)
    weights = {"aware": w, "agnostic": level_weights(model, region)}
    for route, z in real.latents.items():
        sums = L.score(model, gen, z, real.decoded[route], sigma, RATIOS, weights, region)[1]
        res["real_reference"]["locality"][route] = L.table(sums, RATIOS)
    write_json(args.out, res)

    rows = slice(0, args.rows)
    g, r = trajectory(model, seeds[rows], sigma), trajectory(model, refs[rows], sigma)
    images = L.score(model, g, r.z_t, r.x, sigma, RATIOS[:5], weights, region)[0]
    fig = figure3(g.x, images["aware"], images["agnostic"][-1], r.x, RATIOS[:5], args.band,
                  [f"seed {a}\nref seed {b}" for a, b in zip(seeds[rows], refs[rows])], mask)
    save_figure(fig, args.figures / "editing.png")
    save_figure(plot_locality(main_table, args.band, f"{args.count} seed pairs, region {args.region}, edit at "
                              f"sigma {sigma:.3g}; low-pass: Gaussian of {L.LOWPASS_SIGMA} px"),
                args.figures / "editing_locality.png")
    report(res)


def report(res: dict) -> None:
    keys = ("low_inside", "high_inside", "image_outside", "latent_outside", "low_transfer", "high_transfer",
            "selectivity")
    print(f"{res['count']} seed pairs, region {res['region']}, edit at sigma {res['sigma']:.3g}; "
          f"band {res['band']} (aware) vs all (agnostic)")
    print("ratio  kind      " + " ".join(f"{k:>14s}" for k in keys) + "  reading holds")
    t = res["locality"]
    for i, r in enumerate(t["ratios"]):
        for kind in ("aware", "agnostic"):
            flag = ("yes" if t["claim_holds"][i] else "no") if kind == "aware" else ""
            print(f"{r:5.2f}  {kind:8s}  " + " ".join(f"{t[kind][i][k]:14.4f}" for k in keys) + f"  {flag}")
    print("at ratio 0.9, per band (low/high transfer, selectivity, outside):")
    for b, v in res["per_band_at_0.9"].items():
        print(f"  {b:9s} {v['low_transfer']:.3f} / {v['high_transfer']:.3f}, {v['selectivity']:.2f}, "
              f"{v['image_outside']:.3f}")
    print("at ratio 0.9, per set of levels (aware | agnostic: low/high transfer, outside / inside):")
    for lv, v in res["per_levels_at_0.9"].items():
        a, g = v["aware"], v["agnostic"]
        print(f"  {lv:9s} {a['low_transfer']:.3f} / {a['high_transfer']:.3f}, {a['image_outside']:.3f} / "
              f"{a['image_inside']:.3f} | {g['low_transfer']:.3f} / {g['high_transfer']:.3f}, "
              f"{g['image_outside']:.3f} / {g['image_inside']:.3f}")
    print(f"edit at sigma {res['sigma']:.3g} vs 10: max |difference| {res['time_invariance_max_abs']:.2e}")
    rr = res["real_reference"]
    inv = rr["inversion_rmse"]
    print(f"real references ({rr['images']}, {rr['seconds']:.1f} s): inversion RMSE mean {inv['mean']:.4f}, "
          f"median {inv['median']:.4f}, max {inv['max']:.4f} (max |error| {rr['inversion_max_abs']:.3f}); "
          f"inverted noise scale {rr['inverted_noise_scale']:.3f}; route latent gap per level "
          + ", ".join(f"{v:.3f}" for v in rr["route_latent_gap_per_level"])
          + f"; route sample RMSE {rr['route_sample_rmse']:.3f}; reconstruction RMSE "
          + ", ".join(f"{k} {v:.3f}" for k, v in rr["reconstruction_rmse"].items()))
    for route, t in rr["locality"].items():
        a, g = t["aware"][4], t["agnostic"][4]
        print(f"  route {route} at 0.9: aware low/high transfer {a['low_transfer']:.3f} / {a['high_transfer']:.3f}, "
              f"agnostic {g['low_transfer']:.3f} / {g['high_transfer']:.3f}; holds: {t['claim_holds'][4]}")


if __name__ == "__main__":
    main()
