"""HKD objective (method.md section 3): trajectory consistency + reconstruction,
optionally intermediate-state supervision, with a pluggable distance."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import KoopscopeError
from .model import HKD, c_in

DISTANCES = ("mse", "huber", "lpips")


def distance(kind: str, a: Tensor, b: Tensor) -> Tensor:
    """Per-sample distance between image batches: MSE, or pseudo-Huber (iCT, c = 0.00054 sqrt(dim))."""
    diff = (a.float() - b.float()).flatten(1)
    if kind == "mse":
        return diff.pow(2).mean(1)
    if kind == "huber":
        c = 0.00054 * math.sqrt(diff.shape[1])
        return (diff.pow(2).sum(1) + c**2).sqrt() - c
    if kind == "lpips":
        raise KoopscopeError("LPIPS needs ImageNet backbone weights that are not installed here; "
                             "use --distance mse or huber")
    raise KoopscopeError(f"unknown distance '{kind}'; choose one of: {', '.join(DISTANCES)}")


@dataclass
class HKDLossConfig:
    distance: str = "mse"
    consistency: bool = True      # L_tc over intermediate times (off: only the x_T -> x_eps term)
    intermediate: float = 0.0     # weight of intermediate-state supervision (0 = the paper's objective)


def hkd_loss(model: HKD, x: Tensor, sigmas: Tensor, x0: Tensor, cfg: HKDLossConfig, gen: torch.Generator):
    """x: (B, S, C, H, W) teacher states at sigmas (B, S), column 0 at T; x0: the teacher's sample.

    Returns (loss, terms). Every sampled time predicts the end state in one closed-form jump;
    with `intermediate` > 0 each also decodes the state at a later sampled grid time s < t
    (sigma-normalised: decoder output against c_in(s) x_s).
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
    return loss, {k: v.detach() for k, v in terms.items()}
