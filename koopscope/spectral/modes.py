"""Per-band reconstructions along the Koopman trajectory (paper Figure 2).

For seeds and noise levels T >= sigma_1 > ... >= eps, the closed-form latents
z_t = exp((tau(t) - tau(T)) A) E(x_T) are masked to a band's modal coordinates (other modes
zeroed) and decoded at t: "isolated" keeps one band, "cumulative" the bands from low up to
it. ``level`` masks one level only (the others kept whole). Energies are sum |c|^2 over a
band's modal coefficients c, per level, for the same band sets.

Two bases: ``"block"`` (default, exact, no eigendecomposition) uses the modal coordinates of
the 2x2 block form, the complex pairs z_2k + i z_2k+1, so masking a band zeroes the channel
pairs of the other modes; ``"dense"`` eigendecomposes the dense generators and masks with
``eig.project`` / ``eig.reconstruct`` (any generator; exact up to rounding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from ..diffusion.samplers import seeded_noise
from ..hkd.model import HKD
from .bands import assign_bands, band_names, channel_bands
from .eig import Eig, dense_eigs, project, reconstruct
from .spectrum import TIME_CONVENTIONS


class BlockBasis:
    """Modal coordinates of the 2x2 block form; ``band`` is the band of each channel (d, H, W)."""

    def __init__(self, band: Tensor):
        self.band = band

    def keep(self, z: Tensor, bands: Tensor) -> Tensor:
        """z (B, d, H, W) with the channels of modes outside ``bands`` zeroed."""
        return z * torch.isin(self.band, bands).to(z.dtype)

    def energy(self, z: Tensor, n: int) -> Tensor:
        """Per band sum of |c|^2 = z_2k^2 + z_2k+1^2 (both unit-norm modes of a pair): (B, n)."""
        return z.new_zeros(z.shape[0], n, dtype=torch.float64).index_add_(
            1, self.band.flatten(), z.double().pow(2).flatten(1))


class DenseBasis:
    """Modal coordinates c = V^-1 z of dense generators (H, W, d, d); ``band`` per mode (H, W, d)."""

    def __init__(self, eig: Eig, band: Tensor):
        self.eig, self.band = eig, band

    def _coeffs(self, z: Tensor) -> Tensor:
        return project(z.permute(0, 2, 3, 1), self.eig.vectors)

    def keep(self, z: Tensor, bands: Tensor) -> Tensor:
        out = reconstruct(self._coeffs(z), self.eig.vectors, torch.isin(self.band, bands), self.eig.pair_id)
        return out.permute(0, 3, 1, 2).to(z.dtype)

    def energy(self, z: Tensor, n: int) -> Tensor:
        c2 = self._coeffs(z).abs().pow(2)
        return c2.new_zeros(z.shape[0], n).index_add_(1, self.band.flatten(), c2.flatten(1))


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def level_bases(model: HKD, bands: int = 3, method: str = "rank", path: str = "block") -> list:
    """One basis per level with the spectrum's band assignment (same ``bands`` / ``method``)."""
    out = []
    for g in model.koopman.levels:
        if path == "block":
            band = channel_bands(_numpy(g.alpha * g.enabled), _numpy(g.beta * g.enabled), bands, method)
            out.append(BlockBasis(torch.from_numpy(band)))
        elif path == "dense":
            eig = dense_eigs(g.dense())
            band = assign_bands(_numpy(eig.values), _numpy(eig.pair_id), bands, method)[0]
            out.append(DenseBasis(eig, torch.from_numpy(band)))
        else:
            raise ValueError(f"unknown path '{path}'; choose block or dense")
    return out


@torch.no_grad()
def band_reconstructions(model: HKD, seeds: Sequence[int], sigmas: Sequence[float], bands: int = 3,
                         method: str = "rank", keep: Sequence[str] | None = None, level: int | None = None,
                         cumulative: bool = False, path: str = "block", batch: int = 16,
                         attrs: dict | None = None, progress: Callable[[int], None] | None = None) -> xr.Dataset:
    """Decoded states per band over time, and per-band latent energies.

    Returns a Dataset with ``image`` (band, time, sample, channel, y, x): the state x_t
    decoded from the kept modes, and ``energy`` (band, level, time, sample); coords ``sigma``
    (time, sigmas clamped to the model's range) and ``sample`` (the seeds). ``keep`` selects
    band names (default all); with ``cumulative`` band b stands for bands low .. b. Seeds go through the
    model ``batch`` at a time, so memory beyond these outputs does not grow with their number;
    ``progress(n)`` is called after each batch of n seeds.
    """
    names = band_names(bands)
    keep = list(names if keep is None else keep)
    if unknown := [b for b in keep if b not in names]:
        raise ValueError(f"unknown band {', '.join(map(repr, unknown))}; choose from {', '.join(names)}")
    if level is not None and not 0 <= level < model.levels:
        raise ValueError(f"level {level} does not exist; this model has levels 0..{model.levels - 1}")
    cfg, seeds = model.cfg, list(seeds)
    sigmas = [min(max(float(s), cfg.sigma_min), cfg.sigma_max) for s in sigmas]
    basis = level_bases(model, bands, method, path)
    rows = [torch.arange(names.index(b) + 1) if cumulative else torch.tensor([names.index(b)]) for b in keep]
    masked = range(model.levels) if level is None else [level]
    shape = (cfg.unet.img_channels, cfg.unet.resolution, cfg.unet.resolution)
    image = torch.empty(len(rows), len(sigmas), len(seeds), *shape)
    energy = torch.empty(len(rows), model.levels, len(sigmas), len(seeds), dtype=torch.float64)
    for i in range(0, len(seeds), batch):
        part = slice(i, i + batch)
        z_T = model.encode(seeded_noise(seeds[part], shape) * cfg.sigma_max, cfg.sigma_max)
        for k, s in enumerate(sigmas):
            zs = model.evolve(z_T, cfg.sigma_max, s)
            for lvl, (b, z) in enumerate(zip(basis, zs)):
                e = b.energy(z, bands)
                energy[:, lvl, k, part] = torch.stack([e[:, r].sum(-1) for r in rows])
            for j, r in enumerate(rows):
                kept = [b.keep(z, r) if lvl in masked else z for lvl, (b, z) in enumerate(zip(basis, zs))]
                image[j, k, part] = model.decode(kept, s).float()
        if progress:
            progress(len(seeds[part]))
    coords = {"band": keep, "sigma": ("time", sigmas), "sample": seeds, "level": range(model.levels)}
    meta = {"mode": "cumulative" if cumulative else "isolated", "masked_levels": "all" if level is None else level,
            "bands": bands, "band_method": method, "path": path, "time_axis": cfg.time_axis,
            "time_convention": TIME_CONVENTIONS[cfg.time_axis], "sigma_min": cfg.sigma_min, "sigma_max": cfg.sigma_max}
    return xr.Dataset({
        "image": (("band", "time", "sample", "channel", "y", "x"), image.numpy(),
                  {"long_name": "state x_sigma decoded from the kept modes"}),
        "energy": (("band", "level", "time", "sample"), energy.numpy(),
                   {"long_name": "sum of |modal coefficient|^2 of the kept modes, per level"}),
    }, coords, {**meta, **(attrs or {})})
