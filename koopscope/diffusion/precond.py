"""EDM preconditioning (Karras et al. 2022): D(x, sigma) around a raw backbone F."""

from __future__ import annotations

import torch
from torch import nn

from .config import SIGMA_DATA


def c_in(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """1 / sqrt(sigma^2 + sigma_data^2): the input scale that gives a noisy state unit variance."""
    return 1 / (sigma**2 + sigma_data**2).sqrt()


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    """ln(sigma) / 4: the noise-level input of the network."""
    return sigma.log() / 4


def edm_scalings(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA):
    """c_skip, c_out, c_in, c_noise for noise level sigma (any shape)."""
    s2, sd2 = sigma**2, sigma_data**2
    c_skip = sd2 / (s2 + sd2)
    c_out = sigma * sigma_data / (s2 + sd2).sqrt()
    return c_skip, c_out, c_in(sigma, sigma_data), c_noise(sigma)


class EDMPrecond(nn.Module):
    """D(x, sigma) = c_skip x + c_out F(c_in x, c_noise). Runs F in float32, returns x's dtype."""

    def __init__(self, backbone: nn.Module, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.backbone = backbone
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1)
        sigma = sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma
        c_skip, c_out, c_in, c_noise = (c.reshape(-1, 1, 1, 1) for c in edm_scalings(sigma, self.sigma_data))
        f = self.backbone((c_in * x).float(), c_noise.flatten().float())
        return (c_skip * x + c_out * f.to(torch.float64)).to(x.dtype)
