"""The HKD student: hierarchical encoder, per-level Koopman generators, uniform decoder.

    z^(l)_t = E^(l)(x_t)                      encoder = the teacher U-Net's down path
    z^(l)_s = exp((tau(s) - tau(t)) A^(l)) z^(l)_t   closed form, per level and pixel
    x_s     = D({z^(l)_s}) / c_in(s)          decoder = the up path, one for all times

The decoder predicts the sigma-normalised state c_in(s) x_s (unit scale at every noise
level, c_in = 1/sqrt(s^2 + sigma_data^2)); decoding at eps gives the sample.

Encoder conditioning (docs/method.md §2, §4) is `encoder_conditioning`:
- "sigma": E sees the noise level as the teacher does (c_in scaling, noise embedding),
  so its observables are g(x, t) of the time-augmented state.
- "blind": E sees x alone. The same c_in scaling and embedding are fed with a noise level
  estimated from x itself, so E is a function of x only: a proper Koopman observable of the state.

The blind encoder's estimate is `noise_estimate`:
- "haar" (default): the median absolute diagonal Haar wavelet coefficient over 0.6745 (Donoho's
  robust estimator). White noise of level sigma gives coefficients of std sigma; the smooth or
  flat regions that fill most images contribute near zero, so it holds from T down to ~eps.
- "energy" (checkpoints before it): sqrt(max(mean(x^2) - sigma_data^2, eps^2)); it assumes a clean
  image has mean square sigma_data^2 = 0.25, but Fashion-MNIST in [-1, 1] has ~0.7, so the estimate
  sits near 0.7 for every sigma below ~0.3.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..diffusion.config import SIGMA_DATA, SIGMA_MIN
from ..diffusion.precond import c_in, c_noise
from ..diffusion.unet import DownPath, Embedding, ResBlock, UNet, UpPath
from .config import NOISE_ESTIMATES, HKDConfig
from .koopman import HierarchicalKoopman


def sigma_hat(x: Tensor, method: str = "haar") -> Tensor:
    """Noise level estimated from images x (B, C, H, W) alone, per sample (see the module docstring)."""
    x = x.double()
    if method == "energy":
        energy = x.flatten(1).pow(2).mean(1) - SIGMA_DATA**2
        return energy.clamp_min(SIGMA_MIN**2).sqrt()
    if method == "haar":
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        x = x[..., :h, :w]
        hh = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2
        return (hh.flatten(1).abs().median(1).values / 0.6745).clamp_min(SIGMA_MIN)
    raise ValueError(f"unknown noise estimate {method!r}; expected one of {NOISE_ESTIMATES}")


class HKD(nn.Module):
    def __init__(self, cfg: HKDConfig):
        super().__init__()
        self.cfg = cfg
        u = cfg.unet
        emb_dim = u.channels * u.emb_mult
        self.embed = Embedding(u.channels, emb_dim)
        self.encoder = DownPath(u, emb_dim)
        self.decoder = UpPath(u, emb_dim)
        self.koopman = HierarchicalKoopman(u.level_shapes(), active=cfg.active_levels(),
                                           enabled=cfg.koopman)
        # Parameters the forward never uses are frozen (DistributedDataParallel needs a gradient for
        # every trainable one): the uniform decoder's embedding affines, generators of static levels.
        for block in self.decoder.modules():
            if isinstance(block, ResBlock):
                block.affine.requires_grad_(False)
        for level in self.koopman.levels:
            level.requires_grad_(level.enabled)

    @property
    def levels(self) -> int:
        return len(self.koopman.levels)

    def init_from_teacher(self, teacher_backbone: UNet) -> None:
        """Copy the teacher's embedding, down path and up path (the paper's initialisation)."""
        self.embed.load_state_dict(teacher_backbone.embed.state_dict())
        self.encoder.load_state_dict(teacher_backbone.down.state_dict())
        self.decoder.load_state_dict(teacher_backbone.up.state_dict())

    def encode(self, x: Tensor, sigma: Tensor | float) -> list[Tensor]:
        """Latents of every level (bottleneck last) for states x at noise level sigma."""
        if self.cfg.encoder_conditioning == "blind":
            sigma = sigma_hat(x, self.cfg.noise_estimate)
        else:
            sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1).expand(x.shape[0])
        scale = c_in(sigma).reshape(-1, 1, 1, 1)
        emb = self.embed(c_noise(sigma).float())
        return self.encoder((scale * x).float(), emb)

    def evolve(self, zs: list[Tensor], sigma_from, sigma_to) -> list[Tensor]:
        """exp((tau(to) - tau(from)) A) z per level; sigmas are floats or per-sample tensors."""
        return self.koopman.propagate(zs, self.cfg.dt(sigma_from, sigma_to))

    def decode(self, zs: list[Tensor], sigma: Tensor | float | None = None) -> Tensor:
        """The state the latents stand for; sigma=None returns the normalised state c_in x."""
        out = self.decoder(zs, None)
        if sigma is None:
            return out
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=out.device).reshape(-1, 1, 1, 1)
        return (out.double() / c_in(sigma)).to(out.dtype)

    def forward(self, x_t: Tensor, sigma_t, sigma_s=None) -> Tensor:
        """Decode the state at sigma_s (default eps) predicted from x_t at sigma_t."""
        sigma_s = self.cfg.sigma_min if sigma_s is None else sigma_s
        return self.decode(self.evolve(self.encode(x_t, sigma_t), sigma_t, sigma_s), sigma_s)
