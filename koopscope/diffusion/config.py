"""The teacher's settings without torch: EDM's noise range and the U-Net's config.

Checkpoint readers that must not load torch (``koopscope spectrum``) build configs from these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

SIGMA_DATA = 0.5
SIGMA_MIN = 0.002
SIGMA_MAX = 80.0


@dataclass
class UNetConfig:
    img_channels: int = 1
    resolution: int = 32
    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    blocks: int = 1
    attn_resolutions: tuple[int, ...] = (8,)
    dropout: float = 0.0
    emb_mult: int = 4

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        d = dict(d)
        for k in ("channel_mult", "attn_resolutions"):
            d[k] = tuple(d[k])
        return cls(**d)

    def level_shapes(self) -> list[tuple[int, int, int]]:
        """(channels, h, w) of every skip level and of the bottleneck."""
        shapes = []
        res = self.resolution
        for i, m in enumerate(self.channel_mult):
            shapes.append((self.channels * m, res, res))
            if i < len(self.channel_mult) - 1:
                res //= 2
        shapes.append((self.channels * self.channel_mult[-1], res, res))
        return shapes

HELD_OUT_SEED = 2_000_000   # first seed of measurement trajectories; training stores start at 0, HKD FID at 1e6
