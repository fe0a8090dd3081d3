"""The checkpoints that ship inside the package: the spectral toolkit's default model and its teacher.

hkd-fashion.safetensors is the Fashion-MNIST HKD student (EMA weights); hkd-fashion.json beside it
records how it was made (commands, config, data hash, steps) and its measured FID and consistency.
teacher-fashion.safetensors is the EDM teacher it was distilled from.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED = Path(__file__).parent / "hkd-fashion.safetensors"
SHIPPED_TEACHER = Path(__file__).parent / "teacher-fashion.safetensors"


def default_checkpoint() -> tuple[Path, str]:
    """(path, note) of the shipped model; the note says what it is, for the CLI's output."""
    return SHIPPED, "shipped Fashion-MNIST HKD model"
