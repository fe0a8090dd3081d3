"""Where an edit moves the sample, and at which scale (docs/method.md §8).

For an edited sample x' of the sample x with reference x_ref and region mask m (1 inside), the change
Δ = x' - x is split by a Gaussian low-pass G of standard deviation ``LOWPASS_SIGMA`` pixels (zero
beyond the frame, where nothing changes): low = G * Δ, high = Δ - low. Pooled over samples:

- ``image_outside`` / ``image_inside``: RMS of Δ outside / inside the region (image units, [-1, 1]);
- ``low_inside`` / ``high_inside``: RMS of low / high inside; ``high_share``: high^2 / (low^2 + high^2) inside;
- ``low_transfer`` / ``high_transfer``: |low|_in / |G * (x_ref - x)|_in and the same for high: the share of
  the reference's low- (high-) frequency difference the edit moved in (1 for a full swap); ``selectivity``:
  high_transfer / low_transfer (above 1: the edit favours the reference's fine detail over its coarse shape);
  ``reference_low_inside`` / ``reference_high_inside``: RMS of that difference itself;
- ``latent_outside`` / ``latent_inside``: |Δz_eps| outside / inside the region resampled to each level,
  relative to |z_eps|, over all levels.

The paper's reading of a high-band edit, "only the high-frequency part moves, the low-frequency structure
stays", is called holding at a ratio when the frequency-aware edit's low-pass change inside is at most
half the frequency-agnostic edit's while its high-pass change is at least half of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..hkd.model import HKD
from .edit import Trajectory, apply_edit, level_weights, mix, trajectory

LOWPASS_SIGMA = 1.5   # pixels: the low-pass halves amplitude at 0.125 cycles/pixel (a period of 8 pixels)
SUMS = ("out_sq", "out_n", "in_sq", "in_n", "low_sq", "high_sq", "ref_low_sq", "ref_high_sq",
        "lat_out_sq", "lat_in_sq", "lat_sq")


def gaussian_matrix(n: int, sigma: float = LOWPASS_SIGMA) -> np.ndarray:
    """(n, n) matrix of a normalised Gaussian blur along one axis, truncated at 3 sigma, zero padded."""
    r = math.ceil(3 * sigma)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    offset = np.arange(n)[None, :] - np.arange(n)[:, None]
    return np.where(np.abs(offset) <= r, k[np.clip(offset + r, 0, 2 * r)], 0.0)


def split(delta: np.ndarray, sigma: float = LOWPASS_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) parts of images (..., H, W): low = G * delta, high = delta - low."""
    gy, gx = gaussian_matrix(delta.shape[-2], sigma), gaussian_matrix(delta.shape[-1], sigma)
    low = gy @ delta @ gx.T
    return low, delta - low


def change_sums(x: np.ndarray, x_edit: np.ndarray, x_ref: np.ndarray, region: np.ndarray,
                dz: list[np.ndarray], z: list[np.ndarray], level_regions: list[np.ndarray]) -> dict[str, float]:
    """Sums of squares over a batch (images (B, C, H, W), latents (B, d, h, w) at eps); add them, then ``pooled``."""
    inside, outside = region, 1 - region
    delta = x_edit - x
    low, high = split(delta)
    ref_low, ref_high = split(x_ref - x)
    n_img = delta.shape[0] * delta.shape[1]
    sums = {"out_sq": float((outside * delta**2).sum()), "out_n": float(outside.sum() * n_img),
            "in_sq": float((inside * delta**2).sum()), "in_n": float(inside.sum() * n_img),
            "low_sq": float((inside * low**2).sum()), "high_sq": float((inside * high**2).sum()),
            "ref_low_sq": float((inside * ref_low**2).sum()), "ref_high_sq": float((inside * ref_high**2).sum()),
            "lat_out_sq": 0.0, "lat_in_sq": 0.0, "lat_sq": 0.0}
    for d, zl, m in zip(dz, z, level_regions):
        sums["lat_out_sq"] += float(((1 - m) * d**2).sum())
        sums["lat_in_sq"] += float((m * d**2).sum())
        sums["lat_sq"] += float((zl**2).sum())
    return sums


def add(a: dict[str, float] | None, b: dict[str, float]) -> dict[str, float]:
    return dict(b) if a is None else {k: a[k] + b[k] for k in SUMS}


def pooled(s: dict[str, float]) -> dict[str, float]:
    """The module docstring's numbers from accumulated sums (NaN where a denominator is 0)."""
    def root(num, den):
        return math.sqrt(num / den) if den > 0 else math.nan

    return {"image_outside": root(s["out_sq"], s["out_n"]), "image_inside": root(s["in_sq"], s["in_n"]),
            "low_inside": root(s["low_sq"], s["in_n"]), "high_inside": root(s["high_sq"], s["in_n"]),
            "high_share": s["high_sq"] / (s["low_sq"] + s["high_sq"]) if s["low_sq"] + s["high_sq"] > 0 else math.nan,
            "low_transfer": root(s["low_sq"], s["ref_low_sq"]), "high_transfer": root(s["high_sq"], s["ref_high_sq"]),
            "selectivity": root(s["high_sq"] * s["ref_low_sq"], s["low_sq"] * s["ref_high_sq"]),
            "reference_low_inside": root(s["ref_low_sq"], s["in_n"]),
            "reference_high_inside": root(s["ref_high_sq"], s["in_n"]),
            "latent_outside": root(s["lat_out_sq"], s["lat_sq"]), "latent_inside": root(s["lat_in_sq"], s["lat_sq"])}


def claim_holds(aware: dict[str, float], agnostic: dict[str, float]) -> bool:
    """The paper's reading at one ratio (module docstring): low stays, high moves."""
    return aware["low_inside"] <= 0.5 * agnostic["low_inside"] and aware["high_inside"] >= 0.5 * agnostic["high_inside"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def score(model: HKD, gen: Trajectory, z_ref: list[torch.Tensor], x_ref: torch.Tensor, sigma: float,
          ratios: Sequence[float], weights: dict[str, list[torch.Tensor]], region: torch.Tensor):
    """Per edit kind (a key of ``weights``) the edited samples, one (B, C, H, W) per ratio, and ``change_sums``."""
    level_regions = [_np(w[:, :1]) for w in level_weights(model, region)]
    images, sums = {}, {}
    for kind, w in weights.items():
        images[kind], sums[kind] = [], []
        for r in ratios:
            z_eps, x = apply_edit(model, gen, mix(gen.z_t, z_ref, r, w), sigma)
            images[kind].append(x.cpu())
            dz = [_np(a - b) for a, b in zip(z_eps, gen.z_eps)]
            sums[kind].append(change_sums(_np(gen.x), _np(x), _np(x_ref), _np(region), dz,
                                          [_np(z) for z in gen.z_eps], level_regions))
    return images, sums


def table(sums: dict[str, list[dict]], ratios: Sequence[float]) -> dict:
    """Pooled numbers per edit kind ("aware", "agnostic") and ratio, and whether the reading holds at each."""
    out = {"ratios": list(ratios), **{kind: [pooled(s) for s in rows] for kind, rows in sums.items()}}
    if {"aware", "agnostic"} <= sums.keys():
        out["claim_holds"] = [claim_holds(a, b) for a, b in zip(out["aware"], out["agnostic"])]
    return out


@torch.no_grad()
def measure(model: HKD, seeds: Sequence[int], ref_seeds: Sequence[int], region: torch.Tensor,
            bands: Sequence[str], ratios: Sequence[float], sigma: float, levels: Sequence[int] | None = None,
            batch: int = 64, progress: Callable[[int], None] | None = None) -> dict:
    """Locality of frequency-aware (``bands``) against frequency-agnostic edits of seed i towards ref_seeds[i]."""
    seeds, ref_seeds = list(seeds), list(ref_seeds)
    weights = {"aware": level_weights(model, region, bands, levels),
               "agnostic": level_weights(model, region, None, levels)}
    sums = {kind: [None] * len(ratios) for kind in weights}
    for i in range(0, len(seeds), batch):
        gen = trajectory(model, seeds[i:i + batch], sigma)
        ref = trajectory(model, ref_seeds[i:i + batch], sigma)
        part = score(model, gen, ref.z_t, ref.x, sigma, ratios, weights, region)[1]
        sums = {kind: [add(a, b) for a, b in zip(sums[kind], part[kind])] for kind in weights}
        if progress:
            progress(len(seeds[i:i + batch]))
    return table(sums, ratios)
