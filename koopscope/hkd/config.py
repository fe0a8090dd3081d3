"""HKD's config, checkpoint kind and time axis, without torch (``koopscope spectrum`` reads with these alone).

This module is the one owner of the map from noise level sigma to the generators' time tau: the
generators themselves only take a step dt (``koopman.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..diffusion.config import SIGMA_MAX, SIGMA_MIN, UNetConfig

KIND = "hkd"
TIME_CONVENTIONS = {"log": "generator acts on tau = ln(sigma)", "linear": "generator acts on tau = sigma"}
ENCODER_CONDITIONINGS = ("sigma", "blind")
NOISE_ESTIMATES = ("haar", "energy")
# Names from before the renames, old -> new: mapped by ``current_names`` alone, so that checkpoints, run
# folders and saved datasets written before them still load and resume.
LEGACY_KEYS = {"time": "time_axis", "encoder_time": "encoder_conditioning", "times": "points"}
LEGACY_TIME_AXES = {"sigma": "linear"}


@dataclass
class HKDConfig:
    unet: UNetConfig
    time_axis: str = "log"        # what the generators act on: "log" (tau = ln sigma) or "linear" (tau = sigma)
    encoder_conditioning: str = "blind"  # "sigma" | "blind" (default: observables of x alone, docs/method.md §2)
    noise_estimate: str = "haar"  # the blind encoder's sigma_hat(x): "haar" (wavelet MAD) | "energy" (before 0.2)
    koopman: bool = True          # Koopman evolution on (off = identity for every level)
    hierarchy: bool = True        # all levels evolve (off = only the bottleneck)
    sigma_min: float = SIGMA_MIN
    sigma_max: float = SIGMA_MAX

    def to_dict(self) -> dict:
        d = asdict(self)
        d["unet"] = self.unet.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HKDConfig:
        # checkpoints written before the noise estimate was a choice used the energy estimate
        d = {"noise_estimate": "energy", **current_names(d)}
        return cls(**{**d, "unet": UNetConfig.from_dict(d["unet"])})

    def dt(self, sigma_from, sigma_to):
        """The step in tau that maps a latent at ``sigma_from`` to ``sigma_to`` (floats or tensors)."""
        return delta_tau(sigma_from, sigma_to, self.time_axis)

    def active_levels(self) -> list[bool]:
        """Per level (bottleneck last), whether it carries dynamics: all, or only the bottleneck."""
        n = len(self.unet.level_shapes())
        return [self.hierarchy or i == n - 1 for i in range(n)]


def current_names(record: dict) -> dict:
    """HKD settings written before the renames, in today's names: an HKDConfig dict, an HKD task record
    (its "model" too), or a saved dataset's attrs (consistency files kept the time axis in time_convention)."""
    d = dict(record)
    if d.get("time_convention") in TIME_CONVENTIONS.keys() | LEGACY_TIME_AXES.keys():
        d["time_axis"] = d.pop("time_convention")
    d = {LEGACY_KEYS.get(k, k): v for k, v in d.items()}
    if "time_axis" in d:
        d["time_axis"] = LEGACY_TIME_AXES.get(d["time_axis"], d["time_axis"])
    if isinstance(d.get("model"), dict):
        d["model"] = current_names(d["model"])
    return d


def tau(sigma, kind: str = "log"):
    """Koopman time of noise level ``sigma``: ln sigma ("log") or sigma itself ("linear").

    Floats give floats; tensors are taken in float64 (the one-step dt = -10.6 needs the digits).
    """
    if kind not in TIME_CONVENTIONS:
        raise ValueError(f"unknown time axis {kind!r}; expected one of {tuple(TIME_CONVENTIONS)}")
    if hasattr(sigma, "double"):
        sigma = sigma.double()
    if kind == "linear":
        return sigma
    return sigma.log() if hasattr(sigma, "log") else math.log(sigma)


def delta_tau(sigma_from, sigma_to, kind: str = "log"):
    """dt = tau(sigma_to) - tau(sigma_from): the step that maps a latent at sigma_from to sigma_to."""
    return tau(sigma_to, kind) - tau(sigma_from, kind)
