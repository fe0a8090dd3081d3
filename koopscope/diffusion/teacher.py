"""The EDM teacher as a training task, and loading a trained teacher."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..io.images import save_grid
from .loss import EDMLoss
from .precond import EDMPrecond
from .samplers import sample
from .unet import UNet, UNetConfig

KIND = "teacher"


def build_teacher(unet: UNetConfig) -> EDMPrecond:
    return EDMPrecond(UNet(unet))


def teacher_config(unet: UNetConfig, sampler_steps: int) -> dict:
    """A teacher checkpoint's config: the network, its default sampler steps, the image shape."""
    return {"unet": unet.to_dict(), "sampler_steps": sampler_steps,
            "image_shape": [unet.img_channels, unet.resolution, unet.resolution]}


def save_untrained(path: str | Path, unet: UNetConfig, sampler_steps: int, std: float | None = None) -> Path:
    """A teacher checkpoint with fresh weights (re-drawn from N(0, std) if given) for tests and benchmarks."""
    from ..io.checkpoint import provenance, save_checkpoint, with_prefix

    net = build_teacher(unet)
    if std is not None:
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0, std)
    return save_checkpoint(path, with_prefix(net.state_dict(), "ema"), KIND, teacher_config(unet, sampler_steps),
                           provenance(note="untrained"))


class TeacherTask:
    """EDM denoising loss on a dataset (see koopscope.train.loop.Task)."""

    kind = KIND

    def __init__(self, unet: UNetConfig, dataset, sampler_steps: int = 18, init: str | Path | None = None):
        self.unet, self.dataset, self.sampler_steps = unet, dataset, sampler_steps
        self.net = build_teacher(unet)
        self.edm_loss = EDMLoss()
        self.init = None
        if init is not None:
            self._warm_start(Path(init))

    def _warm_start(self, init: Path) -> None:
        """Start from a trained teacher's EMA weights (same network): a continuation with a fresh optimizer."""
        from ..errors import KoopscopeError
        from ..io.meta import sha256

        net, meta = load_teacher(init)
        if UNetConfig.from_dict(meta["config"]["unet"]) != self.unet:
            raise KoopscopeError(f"--init {init} has another network than this preset's")
        self.net.load_state_dict(net.state_dict())
        self.init = {"init": str(init), "init_sha256": sha256(init)}

    def wrap(self, net: nn.Module) -> nn.Module:
        return net

    def loss(self, net: nn.Module, batch_size: int, gen: torch.Generator, device):
        idx = torch.randint(len(self.dataset), (batch_size,), generator=gen)
        x = self.dataset.batch(idx, generator=gen).to(device)
        return self.edm_loss(net, x, generator=gen), {}

    def config(self) -> dict:
        return teacher_config(self.unet, self.sampler_steps)

    def data_provenance(self) -> dict:
        d = self.dataset
        return {"dataset": d.name, "split": d.split, "data_hash": d.hash, "data_count": len(d), **(self.init or {})}

    def save_samples(self, net: nn.Module, path: Path, count: int) -> None:
        shape = (self.unet.img_channels, self.unet.resolution, self.unet.resolution)
        x, _ = sample(net, range(count), shape, steps=self.sampler_steps)
        save_grid(x, path)


def load_teacher(path: str | Path) -> tuple[EDMPrecond, dict]:
    """EMA teacher network (eval mode) and the checkpoint metadata (``generators.load_model`` for this kind)."""
    from ..generators import load_model

    return load_model(path, KIND)
