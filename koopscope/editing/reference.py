"""A real image as an edit reference: its latents at the edit time by two routes (docs/method.md §8).

The image is inverted through the teacher's PF-ODE (``invert``); then either

- ``"T"``: x_T is encoded at T and propagated in closed form to the edit time, or
- ``"mid"``: the inversion's state at the edit time itself is encoded there (no propagation).

Both routes are computed from one inversion, with the numbers that say how far to trust them: the
inversion error (the teacher's sample from the inverted noise against the image), how far the routes'
latents and decoded samples disagree, and how far each route's decoded sample is from the image.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..hkd.model import HKD
from .edit import encode_at
from .invert import invert, regenerate

ROUTES = ("mid", "T")


class ImageReference(NamedTuple):
    latents: dict[str, list[torch.Tensor]]   # route -> latents at the edit time
    decoded: dict[str, torch.Tensor]         # route -> the sample those latents decode to at eps
    report: dict                             # per-image numbers (lists) and the NFE spent


def decode_from(model: HKD, z_t: list[torch.Tensor], sigma: float) -> torch.Tensor:
    """The sample latents at ``sigma`` stand for: propagated to eps and decoded."""
    eps = model.cfg.sigma_min
    with torch.no_grad():
        return model.decode(model.evolve(z_t, sigma, eps), eps).float()


def _rmse(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    return (a.double().cpu() - b.double().cpu()).pow(2).flatten(1).mean(1).sqrt().tolist()


@torch.no_grad()
def image_reference(model: HKD, teacher, x0: torch.Tensor, sigma: float, steps: int = 18) -> ImageReference:
    """Both routes' latents at ``sigma`` for real images x0 (B, C, H, W) in [-1, 1], and the report."""
    cfg = model.cfg
    inv = invert(teacher, x0, steps, sigma)
    regen = regenerate(teacher, inv.x_T, steps)
    latents = {"mid": encode_at(model, inv.x_at, sigma, sigma),
               "T": encode_at(model, inv.x_T, cfg.sigma_max, sigma)}
    decoded = {k: decode_from(model, z, sigma) for k, z in latents.items()}
    level_gap = [((a - b).double().flatten(1).norm(dim=1) / b.double().flatten(1).norm(dim=1)).tolist()
                 for a, b in zip(latents["T"], latents["mid"])]
    dim = x0[0].numel()
    report = {
        "inversion_rmse": _rmse(regen, x0),
        "inversion_max_abs": (regen - x0).abs().flatten(1).amax(1).tolist(),
        "inverted_noise_scale": (inv.x_T.flatten(1).norm(dim=1) / (cfg.sigma_max * dim**0.5)).tolist(),
        "route_latent_gap": [list(v) for v in zip(*level_gap)],   # per image, per level: |z_T - z_mid| / |z_mid|
        "route_sample_rmse": _rmse(decoded["T"], decoded["mid"]),
        "reconstruction_rmse": {k: _rmse(v, x0) for k, v in decoded.items()},
        "nfe": {"inversion": inv.nfe, "regeneration": 2 * steps - 1},
    }
    return ImageReference(latents, decoded, report)
