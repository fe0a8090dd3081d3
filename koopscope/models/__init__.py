"""Checkpoints that ship inside the package: the default model of the spectral toolkit."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
TRAINED = HERE / "hkd-fashion.safetensors"
SMOKE = HERE / "hkd-smoke.safetensors"


def default_checkpoint() -> tuple[Path, str]:
    """(path, note): the trained Fashion-MNIST HKD model if shipped, else the smoke one."""
    if TRAINED.exists():
        return TRAINED, "shipped Fashion-MNIST HKD model"
    return SMOKE, "shipped SMOKE model (tiny, barely trained: a stand-in until the Fashion-MNIST model ships)"
