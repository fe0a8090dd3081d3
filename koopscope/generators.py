"""Every trained model behind one loader: read a checkpoint once, know its kind, sample seeds.

``load_model(path, kind)`` gives the network (EMA weights, eval mode) and the metadata, with one error
for a checkpoint of the wrong kind. ``load_generator(path)`` wraps a teacher (Heun/Euler, any number of
steps), HKD (one step), KD (one step) or CD (one or more steps) as seeds -> images in [-1, 1]; the
samplers themselves live with their models (diffusion/samplers.py, hkd/sample.py, distill/).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import KoopscopeError

KINDS = ("teacher", "hkd", "kd", "cd")


def _build(kind: str, config: dict) -> nn.Module:
    from .diffusion.unet import UNetConfig

    if kind == "hkd":
        from .hkd.model import HKD, HKDConfig

        return HKD(HKDConfig.from_dict(config["model"]))
    unet = UNetConfig.from_dict(config["unet"])
    if kind == "cd":
        from .distill import cd

        return cd.build(unet, config["sigma_min"])
    from .diffusion.teacher import build_teacher

    return build_teacher(unet)  # the teacher, and the KD student (the teacher's network used at T only)


def load_model(path: str | Path, kind: str | Sequence[str] = KINDS) -> tuple[nn.Module, dict]:
    """The network of a koopscope checkpoint (EMA weights, eval mode, no gradients) and its metadata."""
    from .io.checkpoint import load_checkpoint, load_weights

    tensors, meta = load_checkpoint(path, kind=(kind,) if isinstance(kind, str) else tuple(kind))
    net = _build(meta["kind"], meta["config"])
    load_weights(net, tensors, path)
    return net.eval().requires_grad_(False), meta


@dataclass
class Generator:
    """A loaded model as a sampler: ``gen(seeds)`` gives images (N, C, H, W) in [-1, 1], CPU float32."""

    kind: str
    path: Path
    meta: dict
    net: nn.Module
    nfe: int                  # network evaluations per image
    steps: int | None         # teacher steps / CD steps; None for the one-step HKD and KD
    solver: str | None        # teacher ODE solver
    draw: Callable[[list[int]], torch.Tensor]

    def __call__(self, seeds: Sequence[int], batch: int = 256, progress: bool = False) -> torch.Tensor:
        from .progress import track

        seeds = list(seeds)
        chunks = [seeds[i:i + batch] for i in range(0, len(seeds), batch)]
        out = [self.draw(c) for c in track(chunks, f"sampling ({self.label})", progress)]
        return torch.cat(out) if out else torch.empty(0, *self.meta["config"]["image_shape"])

    @property
    def label(self) -> str:
        return {"teacher": f"{self.solver} {self.steps} steps", "hkd": "HKD one step", "kd": "KD one step",
                "cd": f"CD {self.steps} step{'s' if self.steps != 1 else ''}"}[self.kind]


def load_generator(path: str | Path, steps: int | None = None, solver: str = "heun") -> Generator:
    """A teacher, HKD, KD or CD checkpoint as a sampler. ``steps`` sets the teacher's solver steps (default:
    its training sampler) or CD's steps (1, 2 or 3; default 1); HKD and KD take none."""
    net, meta = load_model(path)
    kind, cfg = meta["kind"], meta["config"]
    if steps is not None and steps < 1:
        raise KoopscopeError(f"--steps must be at least 1, got {steps}")
    if kind == "teacher":
        from .diffusion.samplers import check_solver, nfe, sample

        check_solver(solver)
        steps = steps or cfg["sampler_steps"]
        shape = tuple(cfg["image_shape"])
        return Generator(kind, Path(path), meta, net, nfe(solver, steps), steps, solver,
                         lambda seeds: sample(net, seeds, shape, steps=steps, solver=solver)[0].float().clamp(-1, 1))
    if kind in ("hkd", "kd") and steps not in (None, 1):
        raise KoopscopeError(f"{path} is a one-step {kind.upper()} model; --steps does not apply")
    if kind == "hkd":
        from .hkd.sample import one_step

        return Generator(kind, Path(path), meta, net, 1, None, None, lambda seeds: one_step(net, seeds).clamp(-1, 1))
    if kind == "kd":
        from .distill import kd

        return Generator(kind, Path(path), meta, net, 1, None, None,
                         lambda seeds: kd.sample(net, seeds, cfg["sigma_max"]))
    from .distill import cd

    steps = steps or 1
    if steps > len(cd.MULTISTEP_SIGMAS) + 1:
        raise KoopscopeError(f"CD samples with 1 to {len(cd.MULTISTEP_SIGMAS) + 1} steps, got {steps}")
    mids = cd.MULTISTEP_SIGMAS[:steps - 1]
    return Generator(kind, Path(path), meta, net, steps, steps, None,
                     lambda seeds: cd.sample(net, seeds, cfg["sigma_max"], mids))
