"""HKD objective (docs/method.md §3): trajectory consistency + reconstruction, optionally
intermediate-state supervision and latent consistency, with a pluggable distance."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..diffusion.precond import c_in
from ..errors import KoopscopeError
from .model import HKD

DISTANCES = ("mse", "huber")  # LPIPS needs ImageNet weights that cannot be had offline


def distance(kind: str, a: Tensor, b: Tensor) -> Tensor:
    """Per-sample distance between image batches: MSE, or pseudo-Huber (iCT, c = 0.00054 sqrt(dim))."""
    diff = (a.float() - b.float()).flatten(1)
    if kind == "mse":
        return diff.pow(2).mean(1)
    if kind == "huber":
        c = 0.00054 * math.sqrt(diff.shape[1])
        return (diff.pow(2).sum(1) + c**2).sqrt() - c
    raise KoopscopeError(f"unknown distance '{kind}'; choose one of: {', '.join(DISTANCES)}")


@dataclass
class HKDLossConfig:
    distance: str = "mse"
    consistency: bool = True      # L_tc over intermediate times (off: only the x_T -> x_eps term)
    intermediate: float = 0.0     # weight of intermediate-state supervision (0 = the paper's objective)
    latent: float = 0.0           # weight of latent consistency (0 = the paper's objective)


def latent_inconsistency(model: HKD, zs: list[Tensor], sigmas: Tensor) -> Tensor:
    """1 - explained share of the encoder's latent moves between the sampled times, averaged over levels.

    zs: per-level latents (B * S, d, h, w) of states at ``sigmas`` (B, S), columns noisy to clean. For
    every pair of columns j < k and level l, with P = exp((tau_k - tau_j) A^(l)):

        L_l = sum ||E(x_k) - P E(x_j)||^2 / sum ||E(x_k) - E(x_j)||^2

    pooled over the batch and pairs. The ratio is invariant to the latents' scale, so shrinking them
    (the collapse a plain squared error invites) cannot lower it; it is 0 only when the generators
    explain how the encoder's latents move, 1 when they explain none of it (A = 0).
    """
    b, s = sigmas.shape
    j, k = torch.triu_indices(s, s, 1)
    terms = []
    for g, z in zip(model.koopman.levels, zs):
        z = z.unflatten(0, (b, s))
        src, dst = z[:, j].flatten(0, 1), z[:, k].flatten(0, 1)
        dt = model.cfg.dt(sigmas[:, j].flatten(), sigmas[:, k].flatten()).float()
        err = (dst - g.propagate(src, dt)).double().pow(2).sum()
        moved = (dst - src).double().pow(2).sum()
        terms.append(err / moved.clamp_min(1e-12))
    return torch.stack(terms).mean()


def hkd_loss(model: HKD, x: Tensor, sigmas: Tensor, x0: Tensor, cfg: HKDLossConfig, gen: torch.Generator):
    """x: (B, S, C, H, W) teacher states at sigmas (B, S), column 0 at T; x0: the teacher's sample.

    Returns (loss, terms). Every sampled time predicts the end state in one closed-form jump;
    with `intermediate` > 0 each also decodes the state at a later sampled grid time s < t
    (sigma-normalised: decoder output against c_in(s) x_s); with `latent` > 0 the encoder's latents
    of the sampled states must follow the generators (``latent_inconsistency``).
    """
    b, s = x.shape[:2]
    cols = s if cfg.consistency else 1
    xt, st = x[:, :cols].flatten(0, 1), sigmas[:, :cols].flatten()
    zs = model.encode(xt, st)
    eps = torch.full_like(st, model.cfg.sigma_min)
    target = x0.repeat_interleave(cols, 0)
    d = distance(cfg.distance, model.decode(model.evolve(zs, st, eps), eps), target).reshape(b, cols)
    terms = {"rec": d[:, 0].mean()}
    loss = terms["rec"]
    if cols > 1:
        terms["tc"] = d[:, 1:].mean()
        loss = loss + terms["tc"]
    if cfg.intermediate and s > 1:
        # target for column j: a random later column k > j (or itself for the last one)
        j = torch.arange(cols).repeat(b)
        k = torch.minimum(j + 1 + (torch.rand(b * cols, generator=gen) * (s - 1 - j)).long(), torch.tensor(s - 1))
        rows = torch.arange(b).repeat_interleave(cols)
        s_to = sigmas[rows, k]
        pred = model.decode(model.evolve(zs, st, s_to))
        ref = c_in(s_to).reshape(-1, 1, 1, 1) * x[rows, k].double()
        terms["mid"] = distance(cfg.distance, pred, ref).mean()
        loss = loss + cfg.intermediate * terms["mid"]
    if cfg.latent and cols > 1:
        terms["lat"] = latent_inconsistency(model, zs, sigmas[:, :cols])
        loss = loss + cfg.latent * terms["lat"]
    return loss, {k: v.detach() for k, v in terms.items()}
