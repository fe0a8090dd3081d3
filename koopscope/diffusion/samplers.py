"""Probability-flow ODE samplers as plain functions of (denoiser, x, sigmas, callback).

The state is kept in float64; `denoiser(x, sigma)` may compute in float32.
`callback(i, sigma, x)` is called with the state at every grid time, which is
where trajectories are recorded. Each sampler returns (x_final, nfe).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .config import SIGMA_MAX, SIGMA_MIN

Callback = Callable[[int, float, torch.Tensor], None] | None


def karras_sigmas(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = 7.0,
                  final_zero: bool = True) -> torch.Tensor:
    """Karras et al. grid t_0=sigma_max > ... > t_{n-1}=sigma_min (float64), plus t_n = 0 if final_zero."""
    i = torch.arange(n, dtype=torch.float64)
    t = (sigma_max ** (1 / rho) + i / max(n - 1, 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, t.new_zeros(1)]) if final_zero else t


def seeded_noise(seeds, shape: tuple[int, ...], device="cpu") -> torch.Tensor:
    """Standard normal noise (len(seeds), *shape), float64, one generator per seed.

    A sample depends only on its own seed, never on the batch it was drawn in.
    """
    out = torch.empty((len(seeds), *shape), dtype=torch.float64)
    for k, seed in enumerate(seeds):
        out[k] = torch.randn(shape, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    return out.to(device)


def _d(denoiser, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (x - denoiser(x, t).to(torch.float64)) / t


def heun(denoiser, x: torch.Tensor, sigmas: torch.Tensor, callback: Callback = None):
    """EDM Heun 2nd order; no correction on the last step (to sigma=0): NFE = 2N - 1."""
    x, sigmas, nfe = x.to(torch.float64), sigmas.to(torch.float64), 0
    for i in range(len(sigmas) - 1):
        t, t_next = sigmas[i], sigmas[i + 1]
        if callback is not None:
            callback(i, float(t), x)
        d = _d(denoiser, x, t)
        nfe += 1
        x_next = x + (t_next - t) * d
        if t_next > 0:
            d2 = _d(denoiser, x_next, t_next)
            nfe += 1
            x_next = x + (t_next - t) * 0.5 * (d + d2)
        x = x_next
    if callback is not None:
        callback(len(sigmas) - 1, float(sigmas[-1]), x)
    return x, nfe


def euler(denoiser, x: torch.Tensor, sigmas: torch.Tensor, callback: Callback = None):
    """Euler on the PF-ODE (DDIM in EDM's parameterisation): NFE = number of steps."""
    x, sigmas, nfe = x.to(torch.float64), sigmas.to(torch.float64), 0
    for i in range(len(sigmas) - 1):
        t, t_next = sigmas[i], sigmas[i + 1]
        if callback is not None:
            callback(i, float(t), x)
        x = x + (t_next - t) * _d(denoiser, x, t)
        nfe += 1
    if callback is not None:
        callback(len(sigmas) - 1, float(sigmas[-1]), x)
    return x, nfe


SAMPLERS = {"heun": heun, "euler": euler}


def check_solver(solver: str) -> None:
    if solver not in SAMPLERS:
        from ..errors import KoopscopeError

        raise KoopscopeError(f"unknown solver '{solver}'; choose one of: {', '.join(SAMPLERS)}")


def nfe(solver: str, steps: int) -> int:
    """Network evaluations per sample: Heun makes no correction on the step to 0."""
    return 2 * steps - 1 if solver == "heun" else steps


def sample(denoiser, seeds, shape, steps: int = 18, solver: str = "heun", sigma_max: float = SIGMA_MAX,
           sigma_min: float = SIGMA_MIN, rho: float = 7.0, callback: Callback = None):
    """Draw one sample per seed: x_T = sigma_max * n, then integrate to 0. Returns (x, nfe).

    The noise is drawn on the CPU (same numbers everywhere) and moved to the denoiser's device."""
    sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho)
    params = next(denoiser.parameters(), None) if isinstance(denoiser, torch.nn.Module) else None
    x = seeded_noise(seeds, shape, device=params.device if params is not None else "cpu") * sigma_max
    with torch.no_grad():
        return SAMPLERS[solver](denoiser, x, sigmas, callback)
