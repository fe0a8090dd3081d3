"""How much of the generation the Koopman dynamics carry (docs/method.md §4).

Any function of a trajectory's end point is a Koopman eigenfunction with eigenvalue 0, so the
end-point losses are minimised as well by A = 0 and an encoder that computes the one-step map from
every x_t. These measurements tell such a model apart from one whose linear dynamics do the work:

- ``dynamics_share``: how far exp((eps - T) A) carries z_T = E(x_T) towards E(x_eps), the encoding of
  the teacher's sample, and how much the one-step sample changes when the dynamics are removed;
- ``latent_consistency``: the Koopman property along teacher trajectories,
  |exp((s - t) A) E(x_t) - E(x_s)| / |E(x_s)|, beside the same error without evolution;
- ``eigen_spread``: the spread of |Re| of each level's eigenvalues (0 everywhere: A = 0);
- ``trajectory_fidelity``: decoded closed-form states D(exp((t - T) A) E(x_T)) against the teacher's x_t.

Each takes a model and a TrajectoryStore (its first ``count`` trajectories). The grid is the store's
positive noise levels (the last one is eps) with the teacher's states there; x_eps is the teacher's
sample (sigma = 0, the HKD training target). Latent norms are pooled over samples and coordinates,
per level (bottleneck last) and over all levels ("overall").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..diffusion.precond import c_in
from ..errors import KoopscopeError
from .model import HKD


def _load(model: HKD, store, count: int) -> tuple[Tensor, Tensor]:
    """(states (N, K, C, H, W) of the first `count` trajectories on the model's device, their sigmas (K,))."""
    u = model.cfg.unet
    if tuple(store.image_shape) != (u.img_channels, u.resolution, u.resolution):
        raise KoopscopeError(f"store images {tuple(store.image_shape)} do not fit the model "
                             f"{(u.img_channels, u.resolution, u.resolution)}")
    n = min(count, len(store))
    if n <= 0:
        raise KoopscopeError(f"{store.path}: no trajectories to measure (count={count})")
    return torch.stack([store[i] for i in range(n)]).to(next(model.parameters()).device), store.sigmas


def _sq(a: Tensor, b: Tensor | None = None) -> float:
    d = a.double() if b is None else a.double() - b.double()
    return float(d.pow(2).sum())


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


@torch.no_grad()
def dynamics_share(model: HKD, store, count: int = 64, batch: int = 64) -> dict:
    """Share of the latent move from z_T to E(x_eps) that the Koopman evolution makes.

    With z_K = exp((eps - T) A) z_T and z* = E(x_eps), per level:
      share     = |z_K - z_T| / (|z_K - z_T| + |z* - z_K|), in [0, 1]: the part of the way to z*
                  covered by the dynamics (0 for A = 0, 1 when they land on z*);
      explained = 1 - |z* - z_K|^2 / |z* - z_T|^2: the fraction of the actual latent displacement
                  the linear evolution explains (0 for A = 0, < 0 when it moves the wrong way).
    Image space (pixel units): ``rmse`` of the one-step sample D(z_K) against the teacher's,
    ``ablated_rmse`` of D(z_T) (dynamics removed), and ``change``, the rms difference of the two.
    """
    x, sig = _load(model, store, count)
    T, eps = float(sig[0]), model.cfg.sigma_min
    moved, resid, disp = ([0.0] * model.levels for _ in range(3))
    img = {"rmse": 0.0, "ablated_rmse": 0.0, "change": 0.0}
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        z_T = model.encode(xb[:, 0], T)
        z_K = model.evolve(z_T, T, eps)
        z_star = model.encode(xb[:, -1], eps)
        for lv, (a, k, s) in enumerate(zip(z_T, z_K, z_star)):
            moved[lv] += _sq(k, a)
            resid[lv] += _sq(s, k)
            disp[lv] += _sq(s, a)
        sample, ablated = model.decode(z_K, eps), model.decode(z_T, eps)
        img["rmse"] += _sq(sample, xb[:, -1])
        img["ablated_rmse"] += _sq(ablated, xb[:, -1])
        img["change"] += _sq(sample, ablated)

    def measures(m: float, r: float, d: float) -> dict:
        return {"share": _ratio(math.sqrt(m), math.sqrt(m) + math.sqrt(r)), "explained": 1 - _ratio(r, d),
                "moved": math.sqrt(m), "residual": math.sqrt(r), "displacement": math.sqrt(d)}

    return {"levels": [measures(*v) for v in zip(moved, resid, disp)],
            "overall": measures(sum(moved), sum(resid), sum(disp)),
            **{k: math.sqrt(v / x[:, -1].numel()) for k, v in img.items()}, "count": len(x)}


@torch.no_grad()
def latent_consistency(model: HKD, store, count: int = 64, batch: int = 64) -> dict:
    """Koopman property along teacher trajectories: for grid times t > s,
    error = |exp((s - t) A) E(x_t) - E(x_s)| / |E(x_s)|, and ``static``, the same with identity
    evolution (|E(x_t) - E(x_s)| / |E(x_s)|). Both are averaged over the pairs (t, s), per level and
    overall; ``pairs`` lists the overall values of every pair. An error well below ``static`` means
    the dynamics explain how the latents move; error = static means A does nothing.
    """
    x, sig = _load(model, store, count)
    grid = sig[:-1].tolist()
    pairs = [(i, j) for i in range(len(grid)) for j in range(i + 1, len(grid))]
    if not pairs:
        raise KoopscopeError("latent consistency needs at least two positive grid times")
    err, static, ref = ({p: [0.0] * model.levels for p in pairs} for _ in range(3))
    for b in range(0, len(x), batch):
        zs = [model.encode(x[b:b + batch, k], s) for k, s in enumerate(grid)]
        for i, j in pairs:
            pred = model.evolve(zs[i], grid[i], grid[j])
            for lv in range(model.levels):
                err[i, j][lv] += _sq(pred[lv], zs[j][lv])
                static[i, j][lv] += _sq(zs[i][lv], zs[j][lv])
                ref[i, j][lv] += _sq(zs[j][lv])

    def rel(acc: dict, p, lv: int | None) -> float:
        num = sum(acc[p]) if lv is None else acc[p][lv]
        den = sum(ref[p]) if lv is None else ref[p][lv]
        return math.sqrt(_ratio(num, den))

    def mean(acc: dict, lv: int | None) -> float:
        return sum(rel(acc, p, lv) for p in pairs) / len(pairs)

    return {"levels": [{"error": mean(err, lv), "static": mean(static, lv)} for lv in range(model.levels)],
            "overall": {"error": mean(err, None), "static": mean(static, None)},
            "pairs": [{"t": grid[i], "s": grid[j], "error": rel(err, (i, j), None),
                       "static": rel(static, (i, j), None)} for i, j in pairs],
            "count": len(x)}


def _stats(re: Tensor, threshold: float) -> dict:
    q = torch.quantile(re, torch.tensor([0.1, 0.5, 0.9], dtype=re.dtype))
    return {"mean": float(re.mean()), "std": float(re.std(unbiased=False)), "min": float(re.min()),
            "max": float(re.max()), "q10": float(q[0]), "median": float(q[1]), "q90": float(q[2]),
            "frac_above": float((re > threshold).double().mean()), "modes": re.numel()}


@torch.no_grad()
def eigen_spread(model: HKD, threshold: float | None = None) -> dict:
    """Spread of |Re| of the generators' eigenvalues (one value per 2x2 block and location), per level.

    |Re| is in the generators' time unit (``time``: ln sigma by default). ``frac_above`` is the fraction
    of modes with |Re| > ``threshold``, by default 0.05 / |tau(eps) - tau(T)|: a mode below it changes
    its amplitude by less than about 5 % over the whole trajectory. Levels without dynamics (Koopman
    off, or hierarchy off) count as |Re| = 0. All zero means the degenerate A = 0 solution.
    """
    cfg = model.cfg
    span = abs(cfg.dt(cfg.sigma_max, cfg.sigma_min))
    threshold = 0.05 / span if threshold is None else threshold
    res = [(g.alpha.detach().abs() * float(g.enabled)).double().flatten() for g in model.koopman.levels]
    return {"levels": [_stats(r, threshold) for r in res], "overall": _stats(torch.cat(res), threshold),
            "threshold": threshold, "time_axis": cfg.time_axis}


@torch.no_grad()
def trajectory_fidelity(model: HKD, store, count: int = 64, batch: int = 64) -> dict:
    """RMSE of D(exp((t - T) A) E(x_T)) against c_in(t) x_t (sigma-normalised units) at each grid time.

    Returns ``sigmas`` (the positive grid, T first, eps last), ``rmse`` per sigma and their ``mean``.
    """
    x, sig = _load(model, store, count)
    grid = sig[:-1].tolist()
    sq = [0.0] * len(grid)
    for b in range(0, len(x), batch):
        xb = x[b:b + batch]
        z_T = model.encode(xb[:, 0], grid[0])
        for k, s in enumerate(grid):
            pred = model.decode(model.evolve(z_T, grid[0], s))
            sq[k] += _sq(pred, c_in(torch.tensor(s, dtype=torch.float64)) * xb[:, k].double())
    rmse = [math.sqrt(v / x[:, 0].numel()) for v in sq]
    return {"sigmas": grid, "rmse": rmse, "mean": sum(rmse) / len(rmse), "count": len(x)}
