"""Read a trajectory store: memory-mapped random access for HKD training."""

from __future__ import annotations

import bisect
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..errors import KoopscopeError
from . import store as S


class TrajectoryBatch(NamedTuple):
    x: torch.Tensor       # (B, S, C, H, W) states at the sampled grid times
    index: torch.Tensor   # (B, S) grid indices into store.sigmas; column 0 is always 0 (t = T)
    x0: torch.Tensor      # (B, C, H, W) the trajectory's final state (last grid time, sigma = 0)


class TrajectoryStore:
    """A store written by `generate`, opened read-only; RAM use does not depend on its size."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = S.read_header(self.path)
        self.shards = S.read_shards(self.path)
        self.sigmas = torch.tensor(self.manifest["sigmas"], dtype=torch.float64)
        self.image_shape = tuple(self.manifest["image_shape"])
        seeds = [S.open_shard(self.path, e, self._state_shape)[1] for e in self.shards]
        self.seeds = np.concatenate(seeds) if seeds else np.zeros(0, np.int64)
        self._starts = np.cumsum([0] + [e["count"] for e in self.shards]).tolist()
        self._states = lru_cache(maxsize=64)(self._open)

    def __getstate__(self) -> dict:   # picklable for DataLoader workers; they reopen the shards
        return {k: v for k, v in self.__dict__.items() if k != "_states"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._states = lru_cache(maxsize=64)(self._open)

    @property
    def _state_shape(self) -> tuple[int, ...]:
        return (len(self.sigmas), *self.image_shape)

    @property
    def complete(self) -> bool:
        """Whether the store holds every trajectory its last run asked for."""
        return len(self) == self.manifest["count"]

    def require_complete(self) -> TrajectoryStore:
        """This store, if no process is writing it and it holds every trajectory asked for (what training needs;
        a part would silently train on a fraction)."""
        have, want = len(self), self.manifest["count"]
        if S.being_written(self.path):
            raise KoopscopeError(f"{self.path} is still being written by another process ({have} of {want} "
                                 "trajectories so far); use it once that run has finished")
        if not self.complete:
            raise KoopscopeError(f"{self.path} is incomplete: {have} of {want} trajectories; finish it by re-running "
                                 f"`koopscope trajectories` into it with --count {want}")
        return self

    def _open(self, shard: int) -> np.ndarray:
        return S.open_shard(self.path, self.shards[shard], self._state_shape)[0]

    def __len__(self) -> int:
        return self._starts[-1]

    def _locate(self, i: int) -> tuple[np.ndarray, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"trajectory {i} out of range for a store of {len(self)}")
        i %= len(self)
        shard = bisect.bisect_right(self._starts, i) - 1
        return self._states(shard), i - self._starts[shard]

    def __getitem__(self, i: int) -> torch.Tensor:
        """Trajectory i: (K, C, H, W) float32, the state at every grid time (self.sigmas)."""
        states, row = self._locate(int(i))
        return torch.from_numpy(np.array(states[row]))

    def finals(self, count: int | None = None, batch: int = 256):
        """The teacher's samples: the final states (sigma = 0) of the first ``count`` trajectories (default: all),
        clamped to [-1, 1], as (B, C, H, W) batches of at most ``batch``."""
        count = len(self) if count is None else min(count, len(self))
        for i in range(0, count, batch):
            yield torch.stack([self[j][-1] for j in range(i, min(i + batch, count))]).clamp(-1, 1)

    def sample(self, batch_size: int, times_per_traj: int,
               generator: torch.Generator | None = None) -> TrajectoryBatch:
        """Random trajectories with the start time T plus times_per_traj - 1 distinct grid times drawn
        uniformly from the interior of the grid (0 < sigma < T), sorted from noisy to clean."""
        K = len(self.sigmas)
        if len(self) == 0:
            raise KoopscopeError(f"{self.path} holds no trajectories")
        if not 1 <= times_per_traj <= K - 1:
            raise KoopscopeError(f"times_per_traj must be in [1, {K - 1}] for a grid of {K} times")
        rows = torch.randint(len(self), (batch_size,), generator=generator)
        inner = torch.rand(batch_size, K - 2, generator=generator).argsort(dim=1)[:, :times_per_traj - 1] + 1
        index = torch.cat([torch.zeros(batch_size, 1, dtype=torch.long), inner.sort(dim=1).values], dim=1)
        x = torch.empty(batch_size, times_per_traj, *self.image_shape)
        x0 = torch.empty(batch_size, *self.image_shape)
        for b, (i, idx) in enumerate(zip(rows.tolist(), index.numpy())):
            states, row = self._locate(i)
            x[b] = torch.from_numpy(states[row, idx])
            x0[b] = torch.from_numpy(np.array(states[row, K - 1]))
        return TrajectoryBatch(x, index, x0)
