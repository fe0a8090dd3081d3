"""Latent consistency: do the encoder's latents of the teacher's states follow the learned generators?

On a flow whose state reveals its own noise level, sigma(x)^lambda g(x_eps(x)) is an exact Koopman
eigenfunction for every complex lambda, so the generators' spectrum is whatever training chose. It
describes the teacher's flow only as far as the encoder's latents of real teacher states x_t equal
the closed-form latents exp((tau_t - tau_s) A) E(x_s). ``measure`` tests exactly that, on teacher
trajectories, per level and grid time:

- ``explained`` (level, source, time): 1 - err^2 / err_static^2 with err = |E(x_t) - exp(dtau A) E(x_s)|
  and err_static = |E(x_t) - E(x_s)| (no evolution), pooled over samples and coordinates, for every
  pair of grid times s (source) before t. 1: the generators explain how the latents move; 0: they
  explain none of it (A = 0); < 0: they move them the wrong way. ``error`` and ``static`` are err and
  err_static relative to |E(x_t)|.
- per-mode validity (level, block, y, x): the same share for one eigen-coordinate z_2k + i z_2k+1 of
  one location, from T to every later grid time, and its band summary (``band_validity``, the share
  pooled over a band's modes, and ``band_valid_fraction``, the fraction of its modes at or above
  ``threshold``).
- ``fidelity`` (time): RMSE of the decoded closed-form state D(exp((tau_t - tau_T) A) E(x_T)) against
  the teacher's c_in(t) x_t (sigma-normalised units).
- attrs ``one_step_mse`` / ``one_step_mse_no_dynamics``: the one-step sample's MSE to the teacher's
  sample as trained and with the generators zeroed (how much of the sample the dynamics carry).

The verdict (``verdict``) asks for an explained share >= threshold at every level and grid time
with sigma <= ``VERDICT_SIGMA`` (from T).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .. import __version__
from ..errors import KoopscopeError
from ..hkd.model import HKD, c_in
from .bands import band_names, channel_bands

THRESHOLD = 0.8      # explained share a consistent model reaches
VERDICT_SIGMA = 40.0  # ... at every grid time at or below this noise level (T itself has nothing to explain)


def resolve_teacher(meta: dict, teacher: str | Path | None = None) -> Path:
    """The teacher an HKD checkpoint was distilled from: ``teacher`` if given (it must match the recorded
    sha256), else the recorded path, else the shipped teacher, whichever has the recorded sha256."""
    from ..io.meta import read_meta, sha256
    from ..models import SHIPPED_TEACHER

    want = meta.get("provenance", {}).get("teacher_sha256")
    if teacher is not None:
        if read_meta(teacher)["kind"] != "teacher":
            raise KoopscopeError(f"--teacher {teacher} is not a teacher checkpoint")
        if want and sha256(teacher) != want:
            raise KoopscopeError(f"--teacher {teacher} is not the teacher this model was distilled from "
                                 f"(sha256 {want[:12]}...)")
        return Path(teacher)
    recorded = meta.get("config", {}).get("teacher")
    for cand in (recorded, SHIPPED_TEACHER):
        if cand and Path(cand).is_file() and want and sha256(cand) == want:
            return Path(cand)
    raise KoopscopeError("cannot find the teacher this model was distilled from "
                         f"(recorded: {recorded}, sha256 {str(want)[:12]}...); pass --teacher or --trajectories")


def store_trajectories(store, meta: dict, count: int):
    """The first ``count`` trajectories of a TrajectoryStore of the model's own teacher, and the grid."""
    want = meta.get("provenance", {}).get("teacher_sha256")
    if want and store.manifest.get("teacher_sha256") != want:
        raise KoopscopeError(f"{store.path} holds trajectories of another teacher than this model's "
                             f"(sha256 {str(store.manifest.get('teacher_sha256'))[:12]}... vs {want[:12]}...)")
    if count > len(store):
        raise KoopscopeError(f"{store.path} holds {len(store)} trajectories, fewer than --count {count}")
    return torch.stack([store[i] for i in range(count)]), store.sigmas


def teacher_trajectories(teacher: str | Path, seeds: Sequence[int], steps: int | None = None,
                         batch: int = 64, progress: Callable[[int], None] | None = None):
    """States (N, K, C, H, W) float32 of the teacher's Heun trajectories from x_T = T n(seed), and the grid (K,)."""
    from ..diffusion.config import SIGMA_MAX, SIGMA_MIN
    from ..diffusion.samplers import karras_sigmas
    from ..diffusion.teacher import load_teacher
    from ..trajectories.generate import RHO, integrate

    net, meta = load_teacher(teacher)
    steps = steps or int(meta["config"]["sampler_steps"])
    shape = tuple(meta["config"]["image_shape"])
    sigmas = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX, RHO)
    seeds = list(seeds)
    states = np.empty((len(seeds), len(sigmas), *shape), np.float32)
    for i in range(0, len(seeds), batch):
        integrate(net, seeds[i:i + batch], shape, sigmas, "heun", states[i:i + batch])
        if progress:
            progress(len(seeds[i:i + batch]))
    return torch.from_numpy(states), sigmas


def _coords(z: torch.Tensor) -> torch.Tensor:
    """Eigen-coordinates z_2k + i z_2k+1 of a block latent (B, 2K, H, W) -> (B, K, H, W) complex128."""
    z = z.double()
    return torch.complex(z[:, 0::2], z[:, 1::2])


@torch.no_grad()
def measure(model: HKD, states: torch.Tensor, sigmas: torch.Tensor, batch: int = 32, bands: int = 3,
            method: str = "rank", threshold: float = THRESHOLD, attrs: dict | None = None,
            progress: Callable[[int], None] | None = None) -> xr.Dataset:
    """Consistency of ``model`` on teacher trajectories ``states`` (N, K, C, H, W) at ``sigmas`` (K,), T first.

    Grid times with sigma > 0 are measured (the last state, at sigma = 0, is the teacher's sample).
    """
    u = model.cfg.unet
    if tuple(states.shape[2:]) != (u.img_channels, u.resolution, u.resolution):
        raise KoopscopeError(f"trajectory images {tuple(states.shape[2:])} do not fit the model "
                             f"{(u.img_channels, u.resolution, u.resolution)}")
    if len(states) == 0:
        raise KoopscopeError("no trajectories to measure (count 0)")
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    grid = [float(s) for s in sigmas if s > 0]
    if len(grid) < 2:
        raise KoopscopeError("consistency needs at least two positive grid times")
    k_len, n_lv = len(grid), model.levels
    device = next(model.parameters()).device
    err, static = np.zeros((n_lv, k_len, k_len)), np.zeros((n_lv, k_len, k_len))
    norm = np.zeros((n_lv, k_len))   # |E(x_t)|^2 per level and time
    shapes = model.cfg.unet.level_shapes()
    mode_err = [np.zeros((d // 2, h, w)) for d, h, w in shapes]
    mode_moved = [np.zeros((d // 2, h, w)) for d, h, w in shapes]
    fid_sq = np.zeros(k_len)
    one_step = {"trained": 0.0, "no_dynamics": 0.0}
    last = c_in(torch.tensor(grid[-1], dtype=torch.float64))   # the one-step sample is the decoding at eps
    for b0 in range(0, len(states), batch):
        xb = states[b0:b0 + batch].to(device)
        zs = [model.encode(xb[:, k], s) for k, s in enumerate(grid)]
        for j, z in enumerate(zs):
            for lv in range(n_lv):
                norm[lv, j] += float(z[lv].double().pow(2).sum())
        c_0 = [_coords(z) for z in zs[0]]
        from_t = [zs[0]]   # closed-form latents from T at every grid time
        for i in range(k_len):
            for j in range(i + 1, k_len):
                pred = model.evolve(zs[i], grid[i], grid[j])
                for lv in range(n_lv):
                    err[lv, i, j] += float((zs[j][lv] - pred[lv]).double().pow(2).sum())
                    static[lv, i, j] += float((zs[j][lv] - zs[i][lv]).double().pow(2).sum())
                if i == 0:
                    from_t.append(pred)
                    for lv in range(n_lv):
                        c_t = _coords(zs[j][lv])
                        mode_err[lv] += (c_t - _coords(pred[lv])).abs().pow(2).sum(0).cpu().numpy()
                        mode_moved[lv] += (c_t - c_0[lv]).abs().pow(2).sum(0).cpu().numpy()
        for k, s in enumerate(grid):
            out = model.decode(from_t[k]).double()
            fid_sq[k] += float((out - c_in(torch.tensor(s, dtype=torch.float64)) * xb[:, k].double()).pow(2).sum())
        final = xb[:, -1].double()
        one_step["trained"] += float((out / last - final).pow(2).sum())
        one_step["no_dynamics"] += float((model.decode(zs[0]).double() / last - final).pow(2).sum())
        if progress:
            progress(len(xb))

    with np.errstate(divide="ignore", invalid="ignore"):
        upper = np.triu(np.ones((k_len, k_len), bool), 1)
        explained = np.where(upper, 1 - err / static, np.nan)
        overall = np.where(upper[0], 1 - err.sum(0) / static.sum(0), np.nan)
        rel_err = np.where(upper, np.sqrt(err / norm[:, None]), np.nan)
        rel_static = np.where(upper, np.sqrt(static / norm[:, None]), np.nan)
    validity, band_share, band_frac = _mode_validity(model, mode_err, mode_moved, bands, method, threshold)
    pixels = states[:, 0].numel()
    data = {
        "explained": (("level", "source", "time"), explained,
                      {"long_name": "explained share 1 - err^2 / err_static^2 of the latent move source -> time"}),
        "explained_overall": (("source", "time"), overall, {"long_name": "explained share pooled over levels"}),
        "error": (("level", "source", "time"), rel_err,
                  {"long_name": "|E(x_t) - exp(dtau A) E(x_s)| / |E(x_t)|"}),
        "static": (("level", "source", "time"), rel_static,
                   {"long_name": "|E(x_t) - E(x_s)| / |E(x_t)| (no evolution)"}),
        "fidelity": (("time",), np.sqrt(fid_sq / pixels),
                     {"long_name": "RMSE of D(exp((tau_t - tau_T) A) E(x_T)) against c_in(t) x_t"}),
        "validity": (("level", "block", "y", "x"), validity,
                     {"long_name": "per-mode explained share from T (NaN: padding or a mode that never moves)"}),
        "band_validity": (("level", "band"), band_share,
                          {"long_name": "explained share pooled over the band's modes, from T"}),
        "band_valid_fraction": (("level", "band"), band_frac,
                                {"long_name": f"fraction of the band's modes with validity >= {threshold}"}),
    }
    coords = {"level": np.arange(n_lv), "source": grid, "time": grid, "band": band_names(bands),
              "block": np.arange(validity.shape[1]), "y": np.arange(validity.shape[2]),
              "x": np.arange(validity.shape[3])}
    mse = {k: v / pixels for k, v in one_step.items()}
    meta = {"count": len(states), "threshold": threshold, "verdict_sigma": VERDICT_SIGMA, "band_method": method,
            "time_axis": model.cfg.time_axis, "encoder_conditioning": model.cfg.encoder_conditioning,
            "noise_estimate": model.cfg.noise_estimate, "one_step_mse": mse["trained"],
            "one_step_mse_no_dynamics": mse["no_dynamics"],
            "dynamics_ratio": mse["no_dynamics"] / mse["trained"] if mse["trained"] > 0 else math.inf,
            "koopscope_version": __version__}
    ds = xr.Dataset(data, coords, {**meta, **(attrs or {})})
    ds.attrs["min_explained"], ds.attrs["consistent"] = _worst(ds)[0], int(verdict(ds)[0])
    return ds


def _mode_validity(model: HKD, mode_err, mode_moved, bands: int, method: str, threshold: float):
    """Per-mode explained share padded to (level, block, y, x), and per (level, band) pooled share / fraction."""
    shapes = [e.shape for e in mode_err]
    full = (len(shapes), *np.max(shapes, axis=0))
    validity = np.full(full, np.nan)
    share, frac = np.full((len(shapes), bands), np.nan), np.full((len(shapes), bands), np.nan)
    for lv, (e, m, g) in enumerate(zip(mode_err, mode_moved, model.koopman.levels)):
        k, h, w = e.shape
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(m > 0, 1 - e / m, np.nan)
        validity[lv, :k, :h, :w] = v
        on = float(g.enabled)
        band = channel_bands(g.alpha.detach().cpu().numpy() * on, g.beta.detach().cpu().numpy() * on,
                             bands, method)[0::2]
        for b in range(bands):
            sel = band == b
            if sel.any():
                share[lv, b] = 1 - e[sel].sum() / m[sel].sum() if m[sel].sum() > 0 else np.nan
                frac[lv, b] = float(np.mean(np.nan_to_num(v[sel], nan=-np.inf) >= threshold))
    return validity, share, frac


def _worst(ds: xr.Dataset) -> tuple[float, int, float]:
    """(smallest explained share from T at sigma <= VERDICT_SIGMA, its level, its sigma)."""
    from_t = ds.explained.isel(source=0).sel(time=ds.time[ds.time <= ds.attrs["verdict_sigma"]])
    if from_t.size == 0:
        return math.nan, -1, math.nan
    flat = int(np.nanargmin(from_t.values))
    lv, k = np.unravel_index(flat, from_t.shape)
    return float(from_t.values[lv, k]), int(from_t.level[lv]), float(from_t.time[k])


def verdict(ds: xr.Dataset) -> tuple[bool, str]:
    """(consistent?, one line saying so with the worst level and time)."""
    worst, lv, sigma = _worst(ds)
    limit, at = ds.attrs["threshold"], ds.attrs["verdict_sigma"]
    where = f"level {lv}, sigma {sigma:.3g}"
    if worst >= limit:
        return True, (f"consistent: the generators explain >= {limit:g} of the encoder's latent moves at every "
                      f"level and grid time sigma <= {at:g} (worst {worst:.3f}, {where})")
    return False, (f"NOT consistent: explained share {worst:.3f} at {where} (needs >= {limit:g} everywhere "
                   f"sigma <= {at:g}); the spectrum describes the model's decoding path, not how the "
                   "encoder's observables move along the teacher's flow")


def summary(ds: xr.Dataset) -> dict:
    """The numbers a checkpoint's metadata and the terminal table carry (plain floats)."""
    from_t = ds.explained.isel(source=0)
    ok, line = verdict(ds)
    return {
        "consistent": ok, "verdict": line, "min_explained": ds.attrs["min_explained"],
        "threshold": ds.attrs["threshold"], "verdict_sigma": ds.attrs["verdict_sigma"], "count": ds.attrs["count"],
        "sigmas": [float(s) for s in ds.time.values],
        "explained_from_T": [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in from_t.values],
        "band_validity": {str(b): [round(float(v), 4) for v in ds.band_validity.sel(band=b).values]
                          for b in ds.band.values},
        "fidelity_mean": float(ds.fidelity.mean()),
        "one_step_mse": ds.attrs["one_step_mse"], "one_step_mse_no_dynamics": ds.attrs["one_step_mse_no_dynamics"],
    }
