"""Plot helpers: free functions of the analysed Datasets, returning matplotlib Figures.

matplotlib is imported inside the functions, so importing koopscope.spectral stays light, and its
backend is left as it is (a notebook's inline figures show).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..diffusion.config import SIGMA_DATA
from ..io.figures import pyplot as _pyplot
from ..io.figures import tile
from .spectrum import level_view


def plot_spectrum(ds: xr.Dataset):
    """Per level: eigenvalues in the complex plane and a |Re| histogram, coloured by band."""
    plt = _pyplot()
    levels = ds.level.values
    fig, axes = plt.subplots(2, len(levels), figsize=(3.4 * len(levels), 6.4), squeeze=False)
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, ds.sizes["band"]))
    for col, level in enumerate(levels):
        lv = level_view(ds, int(level))
        band, rate = lv.band_index.values.ravel(), lv.decay_rate.values.ravel()
        lam = lv.eigenvalue.values.ravel()
        top, bottom = axes[0, col], axes[1, col]
        groups = [(name, colours[b], band == b) for b, name in enumerate(ds.band.values)]
        for name, c, sel in groups:
            top.scatter(lam.real[sel], lam.imag[sel], s=3, color=c, label=str(name), rasterized=True, linewidths=0)
        top.axvline(0, color="grey", lw=0.5)
        top.set(title=f"level {level}: {int(lv['dim'])}x{int(lv.height)}x{int(lv.width)}", xlabel="Re",
                ylabel="Im")
        bins = np.histogram_bin_edges(rate, bins=40)
        bottom.hist([rate[sel] for *_, sel in groups], bins=bins, stacked=True, color=[c for _, c, _ in groups])
        for t in lv.threshold.values[np.isfinite(lv.threshold.values)]:
            bottom.axvline(t, color="k", ls="--", lw=0.8)
        bottom.set(xlabel="|Re| (decay rate, 1/tau)", ylabel="modes")
    axes[0, 0].legend(title=f"bands ({ds.attrs['band_method']})", fontsize=7, markerscale=3)
    fig.suptitle(f"Koopman spectrum — {ds.attrs['time_convention']}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_band_grid(ds: xr.Dataset, samples: int | None = None):
    """Paper Figure 2 grid: bands as rows (one sub-row per sample), times as columns.

    Each state is shown as x sigma_data / sqrt(sigma^2 + sigma_data^2) in [-1, 1]: the image
    itself near eps, unit-scale noise near T.
    """
    plt = _pyplot()
    img = ds.image.isel(sample=slice(0, samples)).values  # (band, time, sample, C, H, W)
    nb, nt, ns, c, h, w = img.shape
    scale = SIGMA_DATA / np.sqrt(ds.sigma.values ** 2 + SIGMA_DATA ** 2)
    img = np.clip(img * scale[None, :, None, None, None, None], -1, 1)
    pad = 1  # rows (band, sample), columns time; white between the cells
    cells = img.transpose(0, 2, 1, 3, 4, 5).reshape(-1, c, h, w)
    mosaic = ((tile(cells, nt, pad, fill=1.0) + 1) / 2)[:, pad:-pad, pad:-pad].transpose(1, 2, 0)
    fig, ax = plt.subplots(figsize=(0.9 + 0.55 * nt * w / 16, 0.4 + 0.55 * nb * ns * h / 16))
    ax.imshow(mosaic[..., 0] if c == 1 else mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([t * (w + pad) + w / 2 for t in range(nt)], [f"{s:.3g}" for s in ds.sigma.values], fontsize=7)
    ax.set_yticks([(b * ns + ns / 2) * (h + pad) for b in range(nb)], [str(b) for b in ds.band.values])
    ax.set_xlabel("sigma")
    for b in range(1, nb):
        ax.axhline(b * ns * (h + pad) - pad / 2 - 0.5, color="red", lw=0.8)
    ax.set_title(f"{ds.attrs['mode']} bands (levels masked: {ds.attrs['masked_levels']})", fontsize=9)
    fig.tight_layout()
    return fig


def plot_consistency(ds: xr.Dataset):
    """Explained share from T per level against sigma, the pooled share for every (source, time) pair,
    decoded-state fidelity, and the band validity per level (a ``consistency.measure`` Dataset)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    sig = ds.time.values
    for lv in ds.level.values:
        axes[0].plot(sig[1:], ds.explained.sel(level=lv).isel(source=0).values[1:], marker=".", label=f"level {lv}")
    thr, at = ds.attrs["threshold"], ds.attrs["verdict_sigma"]
    axes[0].axhline(thr, color="k", ls="--", lw=0.8)
    axes[0].axvspan(at, sig[0], color="grey", alpha=0.15, lw=0)
    axes[0].set(xscale="log", xlabel="sigma", ylabel="explained share from T",
                title="latents follow the generators?",
                ylim=(max(-0.5, min(-0.1, np.nanmin(ds.explained.isel(source=0).values))), 1.02))
    axes[0].invert_xaxis()
    axes[0].legend(fontsize=7)
    im = axes[1].imshow(ds.explained_overall.values, vmin=0, vmax=1, cmap="viridis")
    ticks = np.arange(0, len(sig), max(1, len(sig) // 6))
    for set_ticks, set_labels in ((axes[1].set_xticks, axes[1].set_xticklabels),
                                  (axes[1].set_yticks, axes[1].set_yticklabels)):
        set_ticks(ticks)
        set_labels([f"{sig[t]:.2g}" for t in ticks], fontsize=7)
    axes[1].set(xlabel="to sigma", ylabel="from sigma", title="explained share, all levels")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    axes[2].plot(sig, ds.fidelity.values, marker=".")
    axes[2].set(xscale="log", xlabel="sigma", ylabel="RMSE (c_in x units)",
                title="decoded closed-form state vs teacher")
    axes[2].invert_xaxis()
    width = 0.8 / ds.sizes["band"]
    for b, name in enumerate(ds.band.values):
        axes[3].bar(ds.level.values + (b - (ds.sizes["band"] - 1) / 2) * width,
                    ds.band_validity.sel(band=name).values, width, label=str(name))
    axes[3].axhline(thr, color="k", ls="--", lw=0.8)
    axes[3].set(xlabel="level", ylabel="explained share of the band's modes", title="per-band validity from T")
    axes[3].legend(fontsize=7)
    fig.suptitle(f"Koopman consistency ({ds.attrs['count']} teacher trajectories): "
                 f"min explained share {ds.attrs['min_explained']:.3f} at sigma <= {at:g}", fontsize=10)
    fig.tight_layout()
    return fig
