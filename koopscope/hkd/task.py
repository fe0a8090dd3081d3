"""HKD as a training task for koopscope.train.loop, and loading a trained HKD model."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import KoopscopeError
from ..io.images import save_grid
from ..io.meta import sha256, warm_starts
from .config import KIND, HKDConfig
from .loss import HKDLossConfig, hkd_loss
from .model import HKD
from .sample import one_step


class Objective(nn.Module):
    """The HKD loss as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, hkd: HKD, cfg: HKDLossConfig):
        super().__init__()
        self.hkd, self.cfg = hkd, cfg

    def forward(self, x, sigmas, x0, gen):
        return hkd_loss(self.hkd, x, sigmas, x0, self.cfg, gen)


class HKDTask:
    kind = KIND

    def __init__(self, cfg: HKDConfig, loss: HKDLossConfig, store, points: int, teacher: str | None = None,
                 init: str | None = None):
        if tuple(store.image_shape) != (cfg.unet.img_channels, cfg.unet.resolution, cfg.unet.resolution):
            raise KoopscopeError(f"trajectory store holds images of shape {tuple(store.image_shape)}, the preset's "
                                 f"network expects {(cfg.unet.img_channels, cfg.unet.resolution, cfg.unet.resolution)}")
        self.model_cfg, self.loss_cfg, self.store, self.points = cfg, loss, store, points
        self.teacher = teacher
        self.net = HKD(cfg)
        if teacher is not None:
            from ..diffusion.teacher import load_teacher

            tnet, _ = load_teacher(teacher)
            if tnet.backbone.cfg != cfg.unet:
                raise KoopscopeError("the teacher's network differs from the HKD network; HKD is initialised "
                                     "from the teacher's U-Net, so build it from the teacher's config")
            self.net.init_from_teacher(tnet.backbone)
        self.lineage = {}   # the warm start's path and sha256, recorded in every checkpoint's provenance
        if init is not None:
            self._warm_start(init)
        self.sigmas = store.sigmas

    def _warm_start(self, init: str) -> None:
        """Start from a trained HKD model's weights (same network; its other settings may differ)."""
        model, meta = load_hkd(init)
        if model.cfg.unet != self.model_cfg.unet:
            raise KoopscopeError(f"--init {init} has another network than this run's")
        # the store's teacher or one it was warm-started from (a student carried over to a teacher trained further)
        manifest = self.store.manifest
        lineage = {manifest["teacher_sha256"], *(d for d, _ in warm_starts(manifest.get("teacher", {})))}
        if meta["provenance"].get("teacher_sha256") not in lineage:
            raise KoopscopeError(f"--init {init} was distilled from another teacher than this trajectory store's "
                                 "(nor from one that it was trained further from)")
        self.net.load_state_dict(model.state_dict())
        self.lineage = {"init": str(init), "init_sha256": sha256(init)}

    def wrap(self, net: HKD) -> nn.Module:
        return Objective(net, self.loss_cfg)

    def loss(self, objective: nn.Module, batch_size: int, gen: torch.Generator, device):
        b = self.store.sample(batch_size, self.points, gen)
        return objective(b.x.to(device), self.sigmas[b.index].to(device), b.x0.to(device), gen)

    def config(self) -> dict:
        return {"model": self.model_cfg.to_dict(), "loss": vars(self.loss_cfg), "points": self.points,
                "image_shape": list(self.store.image_shape), "teacher": self.teacher,
                **({"init": self.lineage["init"]} if self.lineage else {})}

    def data_provenance(self) -> dict:
        m = self.store.manifest
        return {"trajectories": str(self.store.path), "trajectory_count": len(self.store),
                "teacher_sha256": m["teacher_sha256"], "grid_steps": m["steps"], **self.lineage}

    def save_samples(self, net: nn.Module, path: Path, count: int) -> None:
        save_grid(one_step(net, range(count)), path)


def load_hkd(path: str | Path) -> tuple[HKD, dict]:
    """EMA HKD model (eval mode) and the checkpoint metadata (``generators.load_model`` for this kind)."""
    from ..generators import load_model

    return load_model(path, KIND)
