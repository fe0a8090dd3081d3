"""EDM training loss: ln(sigma) ~ N(P_mean, P_std), weight (s^2+sd^2)/(s sd)^2."""

from __future__ import annotations

import torch


class EDMLoss:
    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2, sigma_data: float = 0.5):
        self.p_mean, self.p_std, self.sigma_data = p_mean, p_std, sigma_data

    def __call__(self, denoiser, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean weighted denoising error of `denoiser` on clean images x."""
        device = generator.device if generator is not None else x.device   # the loop's generator is a CPU one
        rnd = torch.randn(x.shape[0], 1, 1, 1, device=device, generator=generator).to(x.device)
        sigma = (rnd * self.p_std + self.p_mean).exp()
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        noise = torch.randn(x.shape, device=device, generator=generator).to(x.device) * sigma
        denoised = denoiser(x + noise, sigma.flatten())
        return (weight * (denoised - x) ** 2).mean()
