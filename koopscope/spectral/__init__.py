"""Spectral analysis of Koopman generators: eigendecompositions, bands, per-band reconstructions.

    ds = spectrum(ckpt_or_model)               # xarray Dataset (level, y, x, mode, band)
    ds = spectrum_from_dense(A)                # any dense real generator(s)
    save_spectrum(ds, "spectrum.nc"); load_spectrum("spectrum.nc")
    rec = band_reconstructions(model, seeds, sigmas, cumulative=True)   # Dataset: image, energy
    plot_spectrum(ds), plot_band_grid(rec)     # in koopscope.spectral.plots

The torch-based parts (``eig``, ``modes``) load on first use, so the spectrum of a checkpoint
runs without importing torch.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from .bands import METHODS, assign_bands, band_names
from .netcdf import load_spectrum, save_spectrum
from .spectrum import TIME_CONVENTIONS, band_mask, level_view, spectrum, spectrum_from_dense, summary

if TYPE_CHECKING:
    from .eig import Eig, block_eigs, close_mask, dense_eigs, project, reconstruct, sort_by_real
    from .modes import band_reconstructions, level_bases

_TORCH_PARTS = {
    **dict.fromkeys(("Eig", "block_eigs", "close_mask", "dense_eigs", "project", "reconstruct", "sort_by_real"), "eig"),
    **dict.fromkeys(("band_reconstructions", "level_bases"), "modes"),
}


def __getattr__(name: str):
    if name in _TORCH_PARTS:
        return getattr(import_module(f".{_TORCH_PARTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "METHODS", "TIME_CONVENTIONS", "Eig", "assign_bands", "band_mask", "band_names", "band_reconstructions",
    "block_eigs", "close_mask", "dense_eigs", "level_bases", "level_view", "load_spectrum", "project",
    "reconstruct", "save_spectrum", "sort_by_real", "spectrum", "spectrum_from_dense", "summary",
]
