"""Koopman generators of HKD: one block-diagonal generator per level and spatial location.

At level l and location (i, j) the latent evolves as dz/dtau = A z, with A block diagonal
with 2x2 blocks [[alpha_k, -beta_k], [beta_k, alpha_k]] on channel pairs (2k, 2k+1), so its
eigenvalues are exactly alpha_k +- i beta_k. Propagation is closed form: on each pair,
exp(dt A) acts as multiplication of z_{2k} + i z_{2k+1} by exp(dt (alpha_k + i beta_k)).

Time parameterisation. The generators take a step dt in tau; ``config.tau`` maps noise levels to tau:

- ``"sigma"``: tau = sigma, as in the paper. The one-step map from T = 80 to eps = 0.002 has
  dt = -80, so e^(alpha dt) leaves float32 (max ~e^88, smallest normal ~e^-87) once
  |alpha| > ~1.1, and its gradient explodes well before that.
- ``"log"`` (default): tau = ln sigma. The same map has dt = ln(eps / T) = -10.6, so
  |alpha| up to ~5.6 keeps every exponent within the clamp below; the time scale of a
  mode, 1 / |alpha|, is then measured in e-folds of the noise level, which is how
  EDM samplers spend their steps.

In both cases the exponent alpha * dt is clamped to [-EXPONENT_CLAMP, EXPONENT_CLAMP]
(e^60 ~ 1e26): propagation stays finite in float32 for any parameters, at the price of a
zero gradient for alpha at locations where the clamp is active (never, under "log",
while |alpha| < 5.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

EXPONENT_CLAMP = 60.0


class Factors(NamedTuple):
    """exp(dt (alpha + i beta)) per block and location: real and imaginary parts, shape ([B,] K, H, W)."""

    re: Tensor
    im: Tensor


def apply_precomputed(z: Tensor, factors: Factors) -> Tensor:
    """Apply precomputed factors to z of shape (B, dim, H, W); no trigonometry involved.

    Without autograd the rotation is written into one preallocated output (four fused passes, no
    temporaries): it is all the one-step sampler does beyond the encoder and decoder.
    """
    pairs = z.unflatten(1, (z.shape[1] // 2, 2))
    z0, z1 = pairs[:, :, 0], pairs[:, :, 1]
    re, im = (f.to(z.dtype) for f in factors)
    if torch.is_grad_enabled() and (z.requires_grad or re.requires_grad):
        return torch.stack((re * z0 - im * z1, im * z0 + re * z1), dim=2).flatten(1, 2)
    shape = torch.broadcast_shapes(re.shape, z0.shape)
    out = z.new_empty((*shape[:2], 2, *shape[2:]))
    o0, o1 = out[:, :, 0], out[:, :, 1]
    torch.mul(re, z0, out=o0).addcmul_(im, z1, value=-1)
    torch.mul(im, z0, out=o1).addcmul_(re, z1)
    return out.flatten(1, 2)


class KoopmanGenerators(nn.Module):
    """Block-diagonal Koopman generators for one level of shape (dim, height, width).

    Parameters ``alpha`` and ``beta`` have shape (dim // 2, height, width) and start at zero
    (identity evolution). With ``enabled = False`` the evolution is the identity whatever the
    parameters (the "Koopman evolution off" ablation); ``dense``, ``propagator`` and
    ``propagate`` all describe the operator actually applied.
    """

    def __init__(self, dim: int, height: int, width: int, enabled: bool = True):
        super().__init__()
        if dim <= 0 or dim % 2:
            raise ValueError(f"dim must be a positive even number, got {dim}")
        self.dim, self.height, self.width = dim, height, width
        self.enabled = enabled
        self.alpha = nn.Parameter(torch.zeros(dim // 2, height, width))
        self.beta = nn.Parameter(torch.zeros(dim // 2, height, width))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, height={self.height}, width={self.width}, enabled={self.enabled}"

    def precompute(self, dt: float | Tensor) -> Factors:
        """Factors of exp(dt A); dt is a float, a 0-d tensor or a per-sample tensor of shape (B,)."""
        dt = torch.as_tensor(dt, dtype=self.alpha.dtype, device=self.alpha.device)
        if dt.ndim > 1:
            raise ValueError(f"dt must be a scalar or of shape (B,), got shape {tuple(dt.shape)}")
        dt = dt.reshape(-1, 1, 1, 1) if dt.ndim == 1 else dt
        if not self.enabled:
            shape = torch.broadcast_shapes(dt.shape, self.alpha.shape)
            return Factors(self.alpha.new_ones(shape), self.alpha.new_zeros(shape))
        scale = torch.exp(torch.clamp(self.alpha * dt, -EXPONENT_CLAMP, EXPONENT_CLAMP))
        angle = self.beta * dt
        return Factors(scale * torch.cos(angle), scale * torch.sin(angle))

    def propagate(self, z: Tensor, dt: float | Tensor) -> Tensor:
        """exp(dt A) z for z of shape (B, dim, H, W), dt in units of tau."""
        if z.ndim != 4 or tuple(z.shape[1:]) != (self.dim, self.height, self.width):
            raise ValueError(f"expected z of shape (B, {self.dim}, {self.height}, {self.width}), "
                             f"got {tuple(z.shape)}")
        return apply_precomputed(z, self.precompute(dt))

    def _blocks(self, diag: Tensor, off: Tensor) -> Tensor:
        """Dense (H, W, dim, dim) matrices with 2x2 blocks [[diag, -off], [off, diag]]."""
        d, o = diag.permute(1, 2, 0), off.permute(1, 2, 0)
        blocks = torch.stack((torch.stack((d, -o), -1), torch.stack((o, d), -1)), -2)  # (H, W, K, 2, 2)
        eye = torch.eye(self.dim // 2, dtype=d.dtype, device=d.device)
        out = blocks[..., :, None, :, :] * eye[:, :, None, None]  # (H, W, K, K, 2, 2)
        return out.transpose(-3, -2).reshape(self.height, self.width, self.dim, self.dim)

    def dense(self) -> Tensor:
        """Generator matrices A, shape (H, W, dim, dim); zero when disabled."""
        scale = 1.0 if self.enabled else 0.0
        return self._blocks(self.alpha * scale, self.beta * scale)

    def propagator(self, dt: float | Tensor) -> Tensor:
        """Dense exp(dt A), shape (H, W, dim, dim), for a scalar dt (reference and analysis)."""
        if torch.as_tensor(dt).ndim:
            raise ValueError("propagator takes a scalar dt")
        return self._blocks(*self.precompute(dt))


class HierarchicalKoopman(nn.Module):
    """One ``KoopmanGenerators`` per level, ``shapes = [(d_l, h_l, w_l), ...]``, bottleneck last.

    ``active[l]`` says whether level l carries dynamics (default: all). "Hierarchy off" is
    ``active = [False] * (L - 1) + [True]``: only the bottleneck evolves.
    """

    def __init__(self, shapes: Sequence[tuple[int, int, int]], active: Sequence[bool] | None = None,
                 enabled: bool = True):
        super().__init__()
        active = [True] * len(shapes) if active is None else list(active)
        if len(active) != len(shapes):
            raise ValueError(f"active has {len(active)} entries for {len(shapes)} levels")
        self.active = tuple(bool(a) for a in active)
        self.levels = nn.ModuleList(KoopmanGenerators(d, h, w) for d, h, w in shapes)
        self.enabled = enabled

    @property
    def enabled(self) -> bool:
        """Koopman evolution on (active levels evolve) or off (every level is the identity)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        for level, act in zip(self.levels, self.active):
            level.enabled = self._enabled and act

    def _check(self, items: Sequence) -> None:
        if len(items) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} levels, got {len(items)}")

    def precompute(self, dt: float | Tensor) -> list[Factors]:
        return [level.precompute(dt) for level in self.levels]

    def apply_precomputed(self, zs: Sequence[Tensor], factors: Sequence[Factors]) -> list[Tensor]:
        self._check(zs)
        self._check(factors)
        return [apply_precomputed(z, f) for z, f in zip(zs, factors)]

    def propagate(self, zs: Sequence[Tensor], dt: float | Tensor) -> list[Tensor]:
        self._check(zs)
        return [level.propagate(z, dt) for level, z in zip(self.levels, zs)]

    def dense(self) -> list[Tensor]:
        return [level.dense() for level in self.levels]
