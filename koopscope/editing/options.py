"""An edit's region, bands, ratios, levels and time from their command-line spellings (numpy only, no torch).

A region is an image mask (H, W) in [0, 1], 1 where the edit acts (or the inpainting fills):

- halves ``top``, ``bottom``, ``left``, ``right``; quadrants ``upper-left``, ``upper-right``,
  ``lower-left`` (the paper's Figure 3), ``lower-right``; ``full``;
- ``box:y0,x0,y1,x1``: rows y0 .. y1 - 1 and columns x0 .. x1 - 1, in pixels;
- a grayscale PNG of exactly H x W pixels: value / 255 (a soft mask blends proportionally).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import KoopscopeError
from ..hkd.config import HKDConfig, tau

HALVES = ("top", "bottom", "left", "right")
QUADRANTS = ("upper-left", "upper-right", "lower-left", "lower-right")
REGIONS = ("full", *HALVES, *QUADRANTS)
ALL_BANDS = "all"


def region_mask(spec: str, size: tuple[int, int]) -> np.ndarray:
    """The mask (H, W) float64 of region ``spec`` on images of ``size`` = (H, W)."""
    h, w = size
    mask = np.zeros((h, w))
    rows = {"top": slice(0, h // 2), "bottom": slice(h // 2, h), "upper": slice(0, h // 2),
            "lower": slice(h // 2, h)}
    cols = {"left": slice(0, w // 2), "right": slice(w // 2, w)}
    if spec == "full":
        mask[:] = 1
    elif spec in ("top", "bottom"):
        mask[rows[spec]] = 1
    elif spec in ("left", "right"):
        mask[:, cols[spec]] = 1
    elif spec in QUADRANTS:
        vertical, horizontal = spec.split("-")
        mask[rows[vertical], cols[horizontal]] = 1
    elif spec.startswith("box:"):
        y0, x0, y1, x1 = _box(spec, h, w)
        mask[y0:y1, x0:x1] = 1
    elif spec.lower().endswith(".png") or Path(spec).is_file():
        mask = _png(Path(spec), h, w)
    else:
        raise KoopscopeError(f"unknown region '{spec}'; choose one of: {', '.join(REGIONS)}, box:y0,x0,y1,x1 "
                             "or a mask .png")
    if not mask.any():
        raise KoopscopeError(f"region '{spec}' is empty")
    return mask


def _box(spec: str, h: int, w: int) -> tuple[int, int, int, int]:
    try:
        y0, x0, y1, x1 = (int(v) for v in spec[4:].split(","))
    except ValueError:
        raise KoopscopeError(f"region '{spec}': write a box as box:y0,x0,y1,x1 (four integers)") from None
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise KoopscopeError(f"region '{spec}': need 0 <= y0 < y1 <= {h} and 0 <= x0 < x1 <= {w}")
    return y0, x0, y1, x1


def _png(path: Path, h: int, w: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise KoopscopeError(f"mask file not found: {path}")
    try:
        with Image.open(path) as img:
            gray = np.asarray(img.convert("L"), np.float64) / 255
    except (UnidentifiedImageError, OSError, ValueError):
        raise KoopscopeError(f"cannot read mask {path}: not an image Pillow can read") from None
    if gray.shape != (h, w):
        raise KoopscopeError(f"mask {path} is {gray.shape[1]}x{gray.shape[0]} pixels; the model's images are "
                             f"{w}x{h}")
    return gray


def parse_bands(spec: str, names: list[str]) -> list[str] | None:
    """Band names from a comma list (``high``, ``mid,high``); ``all`` (frequency-agnostic) gives None."""
    if spec.strip() == ALL_BANDS:
        return None
    chosen = [b.strip() for b in spec.split(",") if b.strip()]
    if unknown := [b for b in chosen if b not in names]:
        raise KoopscopeError(f"unknown band '{unknown[0]}'; choose from {', '.join(names)} (comma list) or all")
    if not chosen:
        raise KoopscopeError("--band is empty; name a band or all")
    return list(dict.fromkeys(chosen))


def parse_ratios(spec: str) -> list[float]:
    """Edit ratios from a comma list; each in [0, 1]."""
    try:
        ratios = [float(r) for r in spec.split(",")]
    except ValueError:
        raise KoopscopeError(f"--ratios '{spec}': give numbers in [0, 1] separated by commas") from None
    if bad := [r for r in ratios if not 0 <= r <= 1]:   # NaN fails too
        raise KoopscopeError(f"ratio {bad[0]:g} is outside [0, 1]")
    return ratios


def parse_levels(spec: str | None, count: int) -> list[int] | None:
    """Levels from a comma list (0 = finest, count - 1 = bottleneck); None for every level."""
    if spec is None:
        return None
    try:
        levels = sorted({int(v) for v in spec.split(",")})
    except ValueError:
        raise KoopscopeError(f"--levels '{spec}': give level numbers separated by commas") from None
    if bad := [lv for lv in levels if not 0 <= lv < count]:
        raise KoopscopeError(f"level {bad[0]} does not exist; this model has levels 0..{count - 1}")
    return levels


def edit_time(cfg: HKDConfig, sigma: float | None = None) -> float:
    """``sigma`` checked to lie in [eps, T]; None: the midpoint of T and eps in the generators' time tau
    (sqrt(T eps) for tau = ln sigma, (T + eps) / 2 for tau = sigma)."""
    if sigma is None:
        mid = (tau(cfg.sigma_max, cfg.time_axis) + tau(cfg.sigma_min, cfg.time_axis)) / 2
        return math.exp(mid) if cfg.time_axis == "log" else mid
    if not cfg.sigma_min <= sigma <= cfg.sigma_max:   # NaN fails too
        raise KoopscopeError(f"edit time sigma {sigma:g} is outside [eps, T] = [{cfg.sigma_min:g}, {cfg.sigma_max:g}]")
    return float(sigma)
