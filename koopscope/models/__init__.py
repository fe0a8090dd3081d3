"""The checkpoint that ships inside the package: the default model of the spectral toolkit.

hkd-fashion.safetensors is the Fashion-MNIST HKD student (EMA weights); hkd-fashion.json beside it
records how it was made (commands, config, data hash, steps) and its measured FID.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED = Path(__file__).parent / "hkd-fashion.safetensors"


def default_checkpoint() -> tuple[Path, str]:
    """(path, note) of the shipped model; the note says what it is, for the CLI's output."""
    return SHIPPED, "shipped Fashion-MNIST HKD model"
