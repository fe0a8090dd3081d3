"""The spectrum of Koopman generators as an xarray Dataset (docs/method.md §7).

Layout: one Dataset for all levels, padded to a common (y, x, mode) shape. Levels have
different (d, h, w); entries beyond a level's own size are NaN (floats) or -1 (integers),
and ``valid`` marks the real modes. ``level_view(ds, l)`` returns one level unpadded.

Dims: level, y, x, mode (modes sorted by |Re| per location, conjugate pairs adjacent),
band, edge. Variables per mode: ``eigenvalue`` (complex, continuous time, per unit tau),
``decay_rate`` |Re|, ``frequency`` Im (angular, rad per unit tau), ``growth``
|exp(lambda dtau)| over the whole trajectory T -> eps (dtau = tau(eps) - tau(T) < 0, so
Re > 0 decays), ``decay`` the signed rate along the trajectory (Re sign(-dtau): positive
decays, negative grows), ``half_life`` ln 2 / decay for decaying modes and ``doubling_time``
ln 2 / -decay for growing ones (NaN otherwise; tau units), ``pair`` (conjugate group),
``block`` (latent channels 2k, 2k+1; -1 on the dense path), ``band_index``, ``valid``.
Per level and band: ``band_modes``, ``band_re_min``, ``band_re_max``; per level and edge:
``threshold`` (the quantile method's |Re| cuts; NaN for rank). Attrs record the time
convention, sigma range, band method and, for checkpoints, path and sha256.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import xarray as xr
from safetensors import SafetensorError, safe_open

from .. import __version__
from ..diffusion.config import SIGMA_MAX, SIGMA_MIN
from ..errors import CheckpointError
from ..hkd.config import KIND, TIME_CONVENTIONS, HKDConfig, delta_tau
from ..io.meta import read_meta, require_config, require_kind, sha256
from .bands import METHODS, assign_bands, band_names, block_modes

if TYPE_CHECKING:
    from ..hkd.koopman import HierarchicalKoopman
    from ..hkd.model import HKD

MODE_DIMS = ("level", "y", "x", "mode")


class Generators(NamedTuple):
    """One level's block generators alpha, beta (K, H, W) and whether the level evolves."""

    alpha: np.ndarray
    beta: np.ndarray
    enabled: bool


class LevelModes(NamedTuple):
    """Sorted eigenvalues (H, W, n), contiguous group ids, block of each mode (None: dense)."""

    values: np.ndarray
    pair: np.ndarray
    block: np.ndarray | None


def checkpoint_attrs(path: str | Path) -> dict:
    """Path and sha256 of a checkpoint, for a Dataset's attrs."""
    return {"checkpoint": str(path), "checkpoint_sha256": sha256(path)}


def load_generators(path: str | Path) -> tuple[list[Generators], HKDConfig]:
    """The Koopman generators of an HKD checkpoint (EMA weights), read without torch or the network's weights.

    A level evolves as in ``HKD``: Koopman on and the level active (hierarchy off: the bottleneck only).
    """
    meta = read_meta(path)
    require_kind(meta, path, KIND)
    require_config(meta, path, "model")
    cfg = HKDConfig.from_dict(meta["config"]["model"])
    shapes = {f"levels.{i}.{p}": (d // 2, h, w) for i, (d, h, w) in enumerate(cfg.unet.level_shapes())
              for p in ("alpha", "beta")}
    try:
        with safe_open(str(path), framework="numpy") as f:
            keys = list(f.keys())
            part = "ema" if any(k.startswith("ema.") for k in keys) else "model"
            head = f"{part}.koopman."
            tensors = {k[len(head):]: f.get_tensor(k) for k in keys if k.startswith(head)}
    except (OSError, ValueError, SafetensorError) as e:
        raise CheckpointError(f"{path}: no readable Koopman generators ({str(e).splitlines()[0]})") from None
    found = {k: t.shape for k, t in tensors.items()}
    if wrong := sorted(k for k in shapes.keys() | found.keys() if shapes.get(k) != found.get(k)):
        raise CheckpointError(f"{path}: Koopman generators do not match the stored config ({', '.join(wrong)})")
    if bad := sorted(k for k, t in tensors.items() if not np.isfinite(t).all()):
        raise CheckpointError(f"{path}: Koopman generators hold NaN or infinity ({', '.join(bad)}); the run "
                              "diverged, use an earlier checkpoint")
    enabled = [cfg.koopman and active for active in cfg.active_levels()]
    return [Generators(tensors[f"levels.{i}.alpha"], tensors[f"levels.{i}.beta"], on)
            for i, on in enumerate(enabled)], cfg


def spectrum(source: HKD | HierarchicalKoopman | str | Path, bands: int = 3, method: str = "rank",
             attrs: dict | None = None, time_axis: str = "log") -> xr.Dataset:
    """Spectrum of an HKD model, an HKD checkpoint, or bare generators, on the exact block path.

    A checkpoint is read without torch. A model or checkpoint brings its own time convention and
    sigma range; bare generators take ``time_axis`` and the default range. Disabled levels (Koopman off,
    hierarchy off) report the operator actually applied: zero.
    """
    attrs = dict(attrs or {})
    if isinstance(source, str | Path):
        levels, cfg = load_generators(source)
        time_axis = cfg.time_axis
        attrs = {**checkpoint_attrs(source), **attrs}
    else:
        from ..hkd.model import HKD

        cfg = source.cfg if isinstance(source, HKD) else None
        koopman = source.koopman if isinstance(source, HKD) else source
        levels = [Generators(g.alpha.detach().cpu().numpy(), g.beta.detach().cpu().numpy(), g.enabled)
                  for g in koopman.levels]
        time_axis = cfg.time_axis if cfg else time_axis
    sigmas = (cfg.sigma_min, cfg.sigma_max) if cfg else (SIGMA_MIN, SIGMA_MAX)
    modes = [LevelModes(*block_modes(g.alpha * g.enabled, g.beta * g.enabled)) for g in levels]
    return _assemble(modes, time_axis, bands, method, *sigmas, [g.enabled for g in levels], {"path": "block", **attrs})


def spectrum_from_dense(A, bands: int = 3, method: str = "rank", time_axis: str = "log", sigma_min: float = SIGMA_MIN,
                        sigma_max: float = SIGMA_MAX, attrs: dict | None = None) -> xr.Dataset:
    """Spectrum of dense real generators (numpy or torch), e.g. a Koopman-CFM generator.

    ``A``: one level as (n, n), (B, n, n) (laid out along x) or (h, w, n, n); or a list of
    such arrays, one per level (``HierarchicalKoopman.dense()`` gives one).
    """
    from .eig import dense_eigs

    levels = []
    for a in A if isinstance(A, list | tuple) else [A]:
        if not 2 <= a.ndim <= 4:
            raise ValueError(f"expected a generator of shape (n, n), (B, n, n) or (h, w, n, n), got {tuple(a.shape)}")
        eig = dense_eigs(a.reshape((1,) * (4 - a.ndim) + tuple(a.shape)))
        levels.append(LevelModes(eig.values.cpu().numpy(), eig.pair_id.cpu().numpy(), None))
    return _assemble(levels, time_axis, bands, method, sigma_min, sigma_max, [True] * len(levels),
                     {"path": "dense", **(attrs or {})})


def _assemble(levels: list[LevelModes], time_axis: str, n: int, method: str, sigma_min: float, sigma_max: float,
              active: list[bool], attrs: dict) -> xr.Dataset:
    names = band_names(n)
    if method not in METHODS:
        raise ValueError(f"unknown band method '{method}'; choose one of: {', '.join(METHODS)}")
    shapes = [tuple(lm.values.shape) for lm in levels]
    full = (len(levels), *np.max(shapes, axis=0))
    eig = np.full(full, np.nan + 1j * np.nan)
    pair, block = np.full(full, -1, np.int32), np.full(full, -1, np.int32)
    band = np.full(full, -1, np.int8)
    threshold = np.full((len(levels), n - 1), np.nan)
    for i, lm in enumerate(levels):
        h, w, m = lm.values.shape
        b, threshold[i] = assign_bands(lm.values, lm.pair, n, method)
        eig[i, :h, :w, :m], pair[i, :h, :w, :m], band[i, :h, :w, :m] = lm.values, lm.pair, b
        if lm.block is not None:
            block[i, :h, :w, :m] = lm.block
    dtau = delta_tau(float(sigma_max), float(sigma_min), time_axis)
    rate, decay = np.abs(eig.real), eig.real * -np.sign(dtau)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        growth = np.exp(eig.real * dtau)
        half_life = np.where(decay > 0, np.log(2) / decay, np.nan)
        doubling = np.where(decay < 0, np.log(2) / -decay, np.nan)
    stats = np.full((3, len(levels), n), np.nan)
    for i, b in np.ndindex(len(levels), n):
        r = rate[i][band[i] == b]
        stats[:, i, b] = (r.size, r.min(initial=np.inf), r.max(initial=-np.inf)) if r.size else (0, np.nan, np.nan)
    per_band = ("level", "band")
    data = {
        "eigenvalue": (MODE_DIMS, eig, {"long_name": "continuous-time eigenvalue", "units": "1/tau"}),
        "decay_rate": (MODE_DIMS, rate, {"long_name": "|Re lambda|", "units": "1/tau"}),
        "frequency": (MODE_DIMS, eig.imag, {"long_name": "Im lambda (angular frequency)", "units": "rad/tau"}),
        "growth": (MODE_DIMS, growth, {"long_name": "|exp(lambda dtau)| from sigma_max to sigma_min"}),
        "decay": (MODE_DIMS, decay, {"long_name": "signed decay rate along sigma_max -> sigma_min (< 0: grows)",
                                     "units": "1/tau"}),
        "half_life": (MODE_DIMS, half_life, {"long_name": "ln 2 / decay, decaying modes only", "units": "tau"}),
        "doubling_time": (MODE_DIMS, doubling, {"long_name": "ln 2 / -decay, growing modes only", "units": "tau"}),
        "pair": (MODE_DIMS, pair, {"long_name": "conjugate group within the location (-1: padding)"}),
        "block": (MODE_DIMS, block, {"long_name": "latent channels 2k, 2k+1 of the mode (-1: dense or padding)"}),
        "band_index": (MODE_DIMS, band, {"long_name": "index into the band coordinate (-1: padding)"}),
        "valid": (MODE_DIMS, pair >= 0, {"long_name": "a mode of the level (False: padding)"}),
        "threshold": (("level", "edge"), threshold, {"long_name": "|Re| cut between bands (quantile method)"}),
        "band_modes": (per_band, stats[0].astype(np.int64), {"long_name": "modes in the band"}),
        "band_re_min": (per_band, stats[1], {"long_name": "smallest |Re| in the band"}),
        "band_re_max": (per_band, stats[2], {"long_name": "largest |Re| in the band"}),
    }
    coords = {"level": np.arange(len(levels)), "y": np.arange(full[1]), "x": np.arange(full[2]),
              "mode": np.arange(full[3]), "band": names, "edge": np.arange(n - 1),
              "height": ("level", [s[0] for s in shapes]), "width": ("level", [s[1] for s in shapes]),
              "dim": ("level", [s[2] for s in shapes]), "active": ("level", np.array(active, dtype=bool))}
    meta = {"time_axis": time_axis, "time_convention": TIME_CONVENTIONS[time_axis], "sigma_min": float(sigma_min),
            "sigma_max": float(sigma_max), "dtau": dtau, "bands": n, "band_method": method,
            "layout": "levels padded to a common (y, x, mode) shape with NaN / -1; `valid` marks real modes",
            "koopscope_version": __version__}
    return xr.Dataset(data, coords, {**meta, **attrs})


def level_view(ds: xr.Dataset, level: int) -> xr.Dataset:
    """One level without padding (dims y, x, mode)."""
    lv = ds.sel(level=level)
    return lv.isel(y=slice(0, int(lv.height)), x=slice(0, int(lv.width)), mode=slice(0, int(lv["dim"])))


def band_mask(ds: xr.Dataset, band: str) -> xr.DataArray:
    """Boolean mask (level, y, x, mode) of the modes in ``band`` (select with ``ds.where(mask)``)."""
    names = list(ds.band.values)
    if band not in names:
        raise ValueError(f"unknown band '{band}'; this spectrum has: {', '.join(names)}")
    return ds.band_index == names.index(band)


def _mode(lv: xr.Dataset, flat: int) -> dict:
    y, x, m = np.unravel_index(flat, lv.decay_rate.shape)
    v = lv.isel(y=y, x=x, mode=m)
    lam = complex(v.eigenvalue)
    return {"re": lam.real, "im": lam.imag, "y": int(y), "x": int(x), "mode": int(m), "block": int(v.block),
            "decay": float(v.decay), "half_life": float(v.half_life), "doubling_time": float(v.doubling_time),
            "growth": float(v.growth)}


def summary(ds: xr.Dataset) -> list[dict]:
    """Per level: shape, mode count, |Re| / Im / growth ranges, share of decaying modes, bands, most
    persistent and fastest mode."""
    rows = []
    for level in ds.level.values:
        lv = level_view(ds, int(level))
        rate, im, growth = lv.decay_rate.values, lv.frequency.values, lv.growth.values
        rows.append({
            "level": int(level), "dim": int(lv["dim"]), "height": int(lv.height), "width": int(lv.width),
            "active": bool(lv.active), "modes": int(rate.size),
            "decay_rate": [float(rate.min()), float(rate.max())], "frequency": [float(im.min()), float(im.max())],
            "growth": [float(growth.min()), float(growth.max())], "decaying": float((lv.decay.values > 0).mean()),
            "thresholds": [float(t) for t in lv.threshold.values],
            "bands": {str(b): {"modes": int(lv.band_modes.sel(band=b)), "decay_rate": [
                float(lv.band_re_min.sel(band=b)), float(lv.band_re_max.sel(band=b))]} for b in lv.band.values},
            "most_persistent": _mode(lv, int(np.argmin(rate))), "fastest": _mode(lv, int(np.argmax(rate))),
        })
    return rows
