"""netCDF files (engine h5netcdf) for spectral Datasets; complex variables as real/imag pairs.

A complex variable ``v`` is written as ``v_real`` and ``v_imag`` (attr ``complex_part``) and
joined again on load, so ``load_spectrum(save_spectrum(ds, p))`` is identical to ``ds``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import KoopscopeError
from ..hkd.config import current_names
from ..io.atomic import atomic_path

PARTS = ("real", "imag")


def save_spectrum(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a spectrum or band-reconstruction Dataset atomically."""
    data = {}
    for name, var in ds.data_vars.items():
        if np.iscomplexobj(var):
            for part in PARTS:
                data[f"{name}_{part}"] = (var.dims, getattr(var.values, part), {**var.attrs, "complex_part": part})
        else:
            data[name] = var.variable
    # Serialised in memory, then written as plain bytes: a full disk is then an ordinary OSError, where
    # HDF5 writing the file itself crashes the interpreter at exit after a failed write.
    raw = xr.Dataset(data, ds.coords, ds.attrs).to_netcdf(engine="h5netcdf")
    with atomic_path(path) as tmp:
        tmp.write_bytes(raw)
    return Path(path)


def load_spectrum(path: str | Path) -> xr.Dataset:
    """Read a Dataset written by ``save_spectrum`` into memory (attrs of files from before the renames in
    today's names)."""
    try:
        raw = xr.load_dataset(path, engine="h5netcdf")
    except (OSError, ValueError) as e:
        raise KoopscopeError(f"{path} is not a readable netCDF file ({e})") from None
    data = {}
    for name, var in raw.data_vars.items():
        part = var.attrs.get("complex_part")
        if part is None:
            data[name] = var.variable
        elif part == "real":
            base = name[: -len("_real")]
            attrs = {k: v for k, v in var.attrs.items() if k != "complex_part"}
            data[base] = (var.dims, var.values + 1j * raw[f"{base}_imag"].values, attrs)
    return xr.Dataset(data, raw.coords, current_names(raw.attrs))
