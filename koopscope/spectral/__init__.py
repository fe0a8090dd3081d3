"""Spectral analysis of Koopman generators: eigendecompositions, bands, per-band reconstructions.

    ds = spectrum(ckpt_or_model)               # xarray Dataset (level, y, x, mode, band)
    ds = spectrum_from_dense(A)                # any dense real generator(s)
    save_spectrum(ds, "spectrum.nc"); load_spectrum("spectrum.nc")
    rec = band_reconstructions(model, seeds, sigmas, cumulative=True)   # Dataset: image, energy
    plot_spectrum(ds), plot_band_grid(rec)     # in koopscope.spectral.plots
"""

from .bands import METHODS, assign_bands, band_names
from .eig import Eig, block_eigs, close_mask, dense_eigs, project, reconstruct, sort_by_real
from .modes import band_reconstructions, level_bases
from .netcdf import load_spectrum, save_spectrum
from .spectrum import TIME_CONVENTIONS, band_mask, level_view, spectrum, spectrum_from_dense, summary

__all__ = [
    "METHODS", "TIME_CONVENTIONS", "Eig", "assign_bands", "band_mask", "band_names", "band_reconstructions",
    "block_eigs", "close_mask", "dense_eigs", "level_bases", "level_view", "load_spectrum", "project",
    "reconstruct", "save_spectrum", "sort_by_real", "spectrum", "spectrum_from_dense", "summary",
]
