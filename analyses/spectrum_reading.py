"""Does the paper's reading of the bands hold on a trained model? (docs/method.md §7)

The reading: the smallest-|Re| band carries the noisy part; larger bands add structure; low modes
give global layout, mid modes shape and pose, high modes texture and detail. Measured here on
held-out seeds, from the isolated and cumulative band reconstructions along the trajectory:

- per level: the spectrum (|Re| and Im quantiles, share of decaying modes, growth T -> eps);
- per band and time: the share of the latent energy, the correlation of the isolated band's
  decoding with the initial noise x_T and with the full decoding at that time, and the spectral
  centroid of the isolated decoding (mean radial frequency of its power, cycles per pixel);
- cumulative: the distance of low, low+mid, ... to the full decoding (relative RMSE).

A reading is a statement about the model's representation, meaningful as far as its latents follow
the generators: the model's recorded consistency (docs/method.md §5) is reported beside it.
analyses/results/spectrum_reading_v1.json is the same reading of the previous, inconsistent student.

    python analyses/spectrum_reading.py [--hkd CKPT] [--count 64] [--times 8] [--seed 2000000]

Writes analyses/results/spectrum_reading.json, figures/spectrum_reading.{png,pdf},
figures/spectrum_<name>.{png,pdf} and figures/modes_<name>_{isolated,cumulative}.{png,pdf} (--figures: another
folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from koopscope.diffusion.config import HELD_OUT_SEED
from koopscope.io.atomic import write_json

ROOT = Path(__file__).resolve().parent.parent


def corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation per sample of (S, ...) arrays."""
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1) + 1e-30)


def centroid(img: np.ndarray) -> np.ndarray:
    """Power-weighted mean radial frequency (cycles/pixel) per sample of (S, C, H, W) images."""
    f = np.fft.fftshift(np.fft.fft2(img - img.mean((-2, -1), keepdims=True)), axes=(-2, -1))
    power = (np.abs(f) ** 2).sum(1)
    h, w = img.shape[-2:]
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(h)), np.fft.fftshift(np.fft.fftfreq(w)), indexing="ij")
    radius = np.hypot(fy, fx)
    return (power * radius).sum((-2, -1)) / (power.sum((-2, -1)) + 1e-30)


def quantiles(v: np.ndarray) -> dict:
    q = np.quantile(v, [0.0, 0.1, 0.5, 0.9, 1.0])
    return dict(zip(("min", "q10", "median", "q90", "max"), map(float, q)))


def spectrum_numbers(ds) -> list[dict]:
    from koopscope.spectral import level_view

    rows = []
    for level in ds.level.values:
        lv = level_view(ds, int(level))
        lam = lv.eigenvalue.values.ravel()
        rows.append({"level": int(level), "shape": [int(lv["dim"]), int(lv.height), int(lv.width)],
                     "modes": lam.size, "abs_re": quantiles(np.abs(lam.real)), "abs_im": quantiles(np.abs(lam.imag)),
                     "decaying": float((lam.real > 0).mean()), "growth_T_to_eps": quantiles(lv.growth.values.ravel()),
                     "band_re_max": {str(b): float(lv.band_re_max.sel(band=b)) for b in lv.band.values}})
    return rows


def band_numbers(iso, cum, noise: np.ndarray) -> dict:
    """Per band and time: energy share, noise / full-decoding correlation, centroid; cumulative error."""
    full = cum.image.isel(band=-1).values                        # all bands = the plain decoding (T, S, C, H, W)
    energy = iso.energy.sum("level").values                      # (band, time, sample)
    share = energy / energy.sum(0, keepdims=True)
    out = {"sigma": [float(s) for s in iso.sigma.values], "bands": {}}
    for b, name in enumerate(iso.band.values):
        img = iso.image.isel(band=b).values
        out["bands"][str(name)] = {
            "energy_share": share[b].mean(-1).tolist(),
            "corr_noise": [float(corr(img[t], noise).mean()) for t in range(len(img))],
            "corr_full": [float(corr(img[t], full[t]).mean()) for t in range(len(img))],
            "centroid": [float(centroid(img[t]).mean()) for t in range(len(img))],
        }
    rel = {}
    for b in range(cum.sizes["band"]):
        img = cum.image.isel(band=b).values
        rel["+".join(map(str, cum.band.values[:b + 1]))] = [
            float(np.sqrt(((img[t] - full[t]) ** 2).mean() / (full[t] ** 2).mean())) for t in range(len(img))]
    out["cumulative_rel_rmse"] = rel
    out["full_centroid"] = [float(centroid(full[t]).mean()) for t in range(len(full))]
    out["full_corr_noise"] = [float(corr(full[t], noise).mean()) for t in range(len(full))]
    return out


def plot(res: dict, stem: Path) -> None:
    from koopscope.io.figures import pyplot, save_figure

    plt = pyplot()
    b = res["bands"]
    s = b["sigma"]
    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
    for name, v in b["bands"].items():
        ax[0].plot(s, v["energy_share"], "o-", label=name)
        ax[1].plot(s, v["corr_noise"], "o-", label=name)
        ax[2].plot(s, v["centroid"], "o-", label=name)
    ax[1].plot(s, b["full_corr_noise"], "k--", label="all bands")
    ax[2].plot(s, b["full_centroid"], "k--", label="all bands")
    for name, v in b["cumulative_rel_rmse"].items():
        ax[3].plot(s, v, "o-", label=name)
    titles = ("share of latent energy", "corr(isolated decoding, x_T)",
              "spectral centroid of isolated decoding (cycles/px)", "cumulative: rel. RMSE to full decoding")
    for a, t in zip(ax, titles):
        a.set(xscale="log", xlabel="sigma", title=t)
        a.invert_xaxis()
        a.legend(fontsize=7)
    c = res.get("consistency")
    read = f"min explained share {c['min_explained']:.2f}" if c else "consistency not recorded"
    fig.suptitle(f"Band reading of {res['checkpoint_name']} ({res['count']} held-out seeds, "
                 f"{res['bands']['method']} bands; {read})", fontsize=10)
    fig.tight_layout()
    save_figure(fig, stem, dpi=130)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hkd", type=Path, default=None, help="HKD checkpoint (default: the shipped model)")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--times", type=int, default=8)
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="first seed (held out from training)")
    ap.add_argument("--method", default="rank", choices=("rank", "quantile"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "analyses/results/spectrum_reading.json")
    ap.add_argument("--figures", type=Path, default=ROOT / "figures", help="folder of the figures")
    ap.add_argument("--name", default=None, help="figure name suffix (default: from the checkpoint's path)")
    args = ap.parse_args()

    import torch

    from koopscope.diffusion.samplers import karras_sigmas, seeded_noise
    from koopscope.hkd.task import load_hkd
    from koopscope.io.figures import save_figure
    from koopscope.models import default_checkpoint
    from koopscope.spectral import band_reconstructions, spectrum
    from koopscope.spectral.plots import plot_band_grid, plot_spectrum
    from koopscope.spectral.spectrum import checkpoint_attrs

    torch.set_num_threads(args.threads)
    path = args.hkd or default_checkpoint()[0]
    name = args.name or (path.stem if path.parent.name == "models" else path.parent.name).removeprefix("hkd-")
    model, meta = load_hkd(path)
    consistency = meta.get("consistency")   # recorded when the model was shipped (`koopscope consistency`)
    cfg = model.cfg
    ds = spectrum(model, method=args.method, attrs=checkpoint_attrs(path))   # the loaded model: one read
    save_figure(plot_spectrum(ds), args.figures / f"spectrum_{name}.png")
    seeds = range(args.seed, args.seed + args.count)
    sigmas = karras_sigmas(args.times, cfg.sigma_min, cfg.sigma_max, final_zero=False).tolist()
    iso = band_reconstructions(model, seeds, sigmas, method=args.method)
    cum = band_reconstructions(model, seeds, sigmas, method=args.method, cumulative=True)
    for rec in (iso, cum):
        save_figure(plot_band_grid(rec, samples=3), args.figures / f"modes_{name}_{rec.attrs['mode']}.png")
    noise = seeded_noise(list(seeds), (cfg.unet.img_channels, cfg.unet.resolution, cfg.unet.resolution)).numpy()
    res = {"checkpoint": str(path), "checkpoint_name": name, "count": args.count, "seeds": [args.seed, seeds[-1]],
           "time_convention": ds.attrs["time_convention"], "dtau": ds.attrs["dtau"],
           "consistency": consistency and {k: consistency[k] for k in ("consistent", "min_explained", "verdict")},
           "levels": spectrum_numbers(ds),
           "bands": {"method": args.method, **band_numbers(iso, cum, noise)}}
    write_json(args.out, res)
    plot(res, args.figures / "spectrum_reading")
    for r in res["levels"]:
        print(f"level {r['level']} {r['shape']}: |Re| median {r['abs_re']['median']:.3g} "
              f"[{r['abs_re']['min']:.3g}, {r['abs_re']['max']:.3g}], |Im| median {r['abs_im']['median']:.3g}, "
              f"decaying {r['decaying']:.0%}, growth T->eps median {r['growth_T_to_eps']['median']:.3g}")
    b = res["bands"]
    for name_, v in b["bands"].items():
        print(f"{name_:>5}: energy share T {v['energy_share'][0]:.2f} -> eps {v['energy_share'][-1]:.2f}; "
              f"corr x_T at T {v['corr_noise'][0]:.2f}, at eps {v['corr_noise'][-1]:.2f}; corr full at eps "
              f"{v['corr_full'][-1]:.2f}; centroid at eps {v['centroid'][-1]:.3f}")
    for k, v in b["cumulative_rel_rmse"].items():
        print(f"cumulative {k}: rel. RMSE to full decoding at eps {v[-1]:.3f}")
    print(consistency["verdict"] if consistency else "consistency: not recorded; run `koopscope consistency`")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
