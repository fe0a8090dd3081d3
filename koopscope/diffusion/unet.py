"""DDPM++-style U-Net with one skip tensor per resolution.

The down path (`encode`) returns the skip at every resolution plus the
bottleneck; the up path (`decode`) consumes them. The HKD encoder and decoder
reuse these two halves, so the levels of the Koopman hierarchy are exactly the
tensors that cross the U-Net's skip connections.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import UNetConfig


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, ch // 4) if ch >= 4 else 1, ch, eps=1e-6)


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of the scalar noise label c_noise."""

    def __init__(self, dim: int, max_positions: int = 10000):
        super().__init__()
        self.dim, self.max_positions = dim, max_positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        freqs = torch.arange(self.dim // 2, dtype=torch.float32, device=x.device) / (self.dim // 2)
        freqs = (1 / self.max_positions) ** freqs
        x = x.float().outer(freqs)
        return torch.cat([x.cos(), x.sin()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv residual block with adaptive scale/shift from the embedding.

    With emb=None the block is unconditional (used by a time-blind HKD encoder
    and by the uniform decoder).
    """

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm0, self.conv0 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb_dim, 2 * cout)
        self.norm1, self.conv1 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = dropout
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv1.weight)
        nn.init.zeros_(self.conv1.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        h = self.norm1(h)
        if emb is not None:
            scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
            h = h * (scale + 1) + shift
        h = F.dropout(F.silu(h), p=self.dropout, training=self.training)
        return (self.skip(x) + self.conv1(h)) / math.sqrt(2)


class Attention(nn.Module):
    """Single-head self-attention over pixels."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm, self.qkv, self.proj = _norm(ch), nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return (x + self.proj(a.transpose(1, 2).reshape(b, c, h, w))) / math.sqrt(2)


class Stage(nn.Module):
    """Residual blocks at one resolution, each optionally followed by attention."""

    def __init__(self, cin: int, cout: int, n: int, emb_dim: int, dropout: float, attn: bool):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout, emb_dim, dropout) for i in range(n))
        self.attn = nn.ModuleList(Attention(cout) if attn else nn.Identity() for _ in range(n))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        for block, attn in zip(self.blocks, self.attn):
            x = attn(block(x, emb))
        return x


class Embedding(nn.Module):
    """c_noise -> embedding vector shared by all blocks."""

    def __init__(self, ch: int, emb_dim: int):
        super().__init__()
        self.pos = PositionalEmbedding(ch)
        self.mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        return F.silu(self.mlp(self.pos(c_noise)))


class DownPath(nn.Module):
    """Image -> [skip at each resolution..., bottleneck]."""

    def __init__(self, cfg: UNetConfig, emb_dim: int):
        super().__init__()
        ch = cfg.channels
        self.conv_in = nn.Conv2d(cfg.img_channels, ch, 3, padding=1)
        self.stages, self.downs = nn.ModuleList(), nn.ModuleList()
        res, cin = cfg.resolution, ch
        for i, m in enumerate(cfg.channel_mult):
            cout = ch * m
            self.stages.append(Stage(cin, cout, cfg.blocks, emb_dim, cfg.dropout, res in cfg.attn_resolutions))
            last = i == len(cfg.channel_mult) - 1
            self.downs.append(nn.Identity() if last else nn.Conv2d(cout, cout, 3, stride=2, padding=1))
            res, cin = (res if last else res // 2), cout
        self.mid = Stage(cin, cin, 2, emb_dim, cfg.dropout, attn=True)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> list[torch.Tensor]:
        h, levels = self.conv_in(x), []
        for stage, down in zip(self.stages, self.downs):
            h = stage(h, emb)
            levels.append(h)
            h = down(h)
        levels.append(self.mid(h, emb))
        return levels


class UpPath(nn.Module):
    """[skip at each resolution..., bottleneck] -> image."""

    def __init__(self, cfg: UNetConfig, emb_dim: int):
        super().__init__()
        ch, mult = cfg.channels, cfg.channel_mult
        self.stages, self.ups = nn.ModuleList(), nn.ModuleList()
        res = cfg.resolution // 2 ** (len(mult) - 1)
        cin = ch * mult[-1]
        for i in reversed(range(len(mult))):
            cout = ch * mult[i]
            first = i == len(mult) - 1
            self.ups.append(nn.Identity() if first else nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cin, 3, padding=1)))
            res = res if first else res * 2
            self.stages.append(Stage(cin + cout, cout, cfg.blocks + 1, emb_dim, cfg.dropout,
                                     res in cfg.attn_resolutions))
            cin = cout
        self.norm_out, self.conv_out = _norm(cin), nn.Conv2d(cin, cfg.img_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, levels: list[torch.Tensor], emb: torch.Tensor | None) -> torch.Tensor:
        *skips, h = levels
        for up, stage, skip in zip(self.ups, self.stages, reversed(skips)):
            h = stage(torch.cat([up(h), skip], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))


class UNet(nn.Module):
    """F(x, c_noise): the raw backbone that EDM preconditioning wraps."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        emb_dim = cfg.channels * cfg.emb_mult
        self.embed = Embedding(cfg.channels, emb_dim)
        self.down = DownPath(cfg, emb_dim)
        self.up = UpPath(cfg, emb_dim)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        emb = self.embed(c_noise)
        return self.up(self.down(x, emb), emb)
