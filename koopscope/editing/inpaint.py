"""Inpainting a real image with HKD's closed-form trajectory, and with the teacher for comparison (docs/method.md §8).

Both fill the region (mask m, 1 = unknown) of x0 from the noise n of one seed, blending the known part
x0 + sigma n (the image noised along the noise the sample starts from, so it is x_T's own at T) into
the state at each blend time, RePaint-style without resampling:

- HKD, K blend times (the Karras grid of K + 1 points from T to eps, T left out; the last is eps):
  z = E(T n); at each sigma_k: z = exp((tau_k - tau_prev) A) z, x_hat = D(z) / c_in(sigma_k),
  x_k = (1 - m) (x0 + sigma_k n) + m x_hat, then ``blend = "image"``: z = E(x_k), so the encoder sees the
  known part and the fill together; ``"latent"``: z = lerp(z, E(x_k), 1 - m_l), the known part's latents
  replaced with the region mask area-averaged to each level, the fill's left on its own closed-form path.
  Finally x = D(z) / c_in(eps). Cost: K + 1 encoder and K + 1 decoder passes.
- the teacher: its Heun sampler on its Karras grid, the state blended at every grid time before the step.

Both end with the blend at sigma = 0, which writes x0 into the known part exactly; ``raw`` is the final
state before it (how far the model itself strays from the known pixels).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..diffusion.config import SIGMA_MAX, SIGMA_MIN
from ..diffusion.samplers import heun, karras_sigmas
from ..errors import KoopscopeError
from ..hkd.model import HKD
from .edit import level_weights

BLENDS = ("image", "latent")


class Inpainting(NamedTuple):
    x: torch.Tensor     # (B, C, H, W) float64: the filled images, x0 in the known part
    raw: torch.Tensor   # the model's own final state before the last blend writes x0 back


def blend_times(model: HKD, count: int) -> list[float]:
    """The K blend times of HKD inpainting: T excluded, eps last."""
    if count < 1:
        raise KoopscopeError(f"--blends must be at least 1, got {count}")
    cfg = model.cfg
    return karras_sigmas(count + 1, cfg.sigma_min, cfg.sigma_max, final_zero=False)[1:].tolist()


def _known(x0: torch.Tensor, noise: torch.Tensor, region: torch.Tensor, sigma: float, x: torch.Tensor):
    return torch.lerp(x0 + sigma * noise, x, region)


@torch.no_grad()
def hkd_inpaint(model: HKD, x0: torch.Tensor, region: torch.Tensor, noise: torch.Tensor, times: int,
                blend: str = "image") -> Inpainting:
    """Fill ``region`` (H, W) of images x0 (B, C, H, W) in [-1, 1] from standard noise (B, C, H, W); float64."""
    if blend not in BLENDS:
        raise KoopscopeError(f"unknown blend '{blend}'; choose one of: {', '.join(BLENDS)}")
    cfg, device = model.cfg, next(model.parameters()).device
    x0, noise, region = x0.double().to(device), noise.double().to(device), region.double().to(device)
    known = [1 - w[:, :1] for w in level_weights(model, region)]
    z, prev = model.encode(noise * cfg.sigma_max, cfg.sigma_max), cfg.sigma_max
    for sigma in blend_times(model, times):
        z, prev = model.evolve(z, prev, sigma), sigma
        x_k = _known(x0, noise, region, sigma, model.decode(z, sigma).double())
        z_k = model.encode(x_k, sigma)
        z = z_k if blend == "image" else [torch.lerp(a, b, w) for a, b, w in zip(z, z_k, known)]
    raw = model.decode(z, cfg.sigma_min).double()
    return Inpainting(_known(x0, noise, region, 0.0, raw), raw)


@torch.no_grad()
def teacher_inpaint(denoiser, x0: torch.Tensor, region: torch.Tensor, noise: torch.Tensor,
                    steps: int = 18) -> Inpainting:
    """The same blending along the teacher's Heun steps (2 steps - 1 NFE); float64."""
    sigmas, device = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX), next(denoiser.parameters()).device
    x0, noise, region = x0.double().to(device), noise.double().to(device), region.double().to(device)
    x = noise * SIGMA_MAX
    for i in range(steps):
        x = heun(denoiser, _known(x0, noise, region, float(sigmas[i]), x), sigmas[i:i + 2])[0]
    return Inpainting(_known(x0, noise, region, 0.0, x), x)


def fill_errors(res: Inpainting, x0: torch.Tensor, region: torch.Tensor) -> dict:
    """RMSE of the filled images against the real ones over the region (pooled and per image), and of the model's
    own final state over the known part (``raw``, before the final paste)."""
    x0, m = x0.double().cpu(), region.double().cpu()
    fill, raw = (res.x.double().cpu() - x0).pow(2), (res.raw.double().cpu() - x0).pow(2)
    n, c = x0.shape[:2]
    per_image = ((fill * m).sum((1, 2, 3)) / (m.sum() * c)).sqrt()
    return {"masked_rmse": float(((fill * m).sum() / (m.sum() * n * c)).sqrt()),
            "masked_rmse_per_image": per_image.tolist(),
            "known_rmse_raw": float(((raw * (1 - m)).sum() / ((1 - m).sum() * n * c)).sqrt())}
