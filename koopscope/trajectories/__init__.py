"""Teacher trajectory stores: streaming, resumable generation (torchrun-ready) and memory-mapped reading."""

from .generate import GenerateResult, generate
from .loader import TrajectoryBatch, TrajectoryStore

__all__ = ["GenerateResult", "TrajectoryBatch", "TrajectoryStore", "generate"]
