"""One training loop for every koopscope model (EDM teacher, HKD student).

A *task* supplies the network and the loss; the loop owns everything else:
Adam with warm-up, EMA, optional gradient clipping and bf16 autocast,
DistributedDataParallel under torchrun, atomic resumable checkpoints
(bit-for-bit: model, EMA, optimizer, step and every RNG; on another number of
processes the same but for the data order), a JSON-lines log,
the resolved options as JSON, and sample grids.

Files in the run folder:
    options.json          the resolved options (written once)
    log.jsonl             one line per logged step
    checkpoint.safetensors  full training state (resume from it; written first)
    model.safetensors     EMA weights + config + provenance (what users load; written second, and
                          rewritten from the checkpoint on resume if a kill left it behind)
    samples/step_XXXXXXX.png
    .lock                 held by the run training into the folder
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from ..errors import CheckpointError, KoopscopeError
from ..hkd.config import KIND as HKD_KIND
from ..hkd.config import current_names
from ..io.atomic import atomic_path, strict_json, write_json
from ..io.checkpoint import (
    load_checkpoint,
    optimizer_tensors,
    prefixed,
    provenance,
    read_meta,
    restore_optimizer,
    save_checkpoint,
    with_prefix,
)
from . import distributed as D


@dataclass
class TrainConfig:
    steps: int = 1000
    batch: int = 128          # global batch, split across ranks
    lr: float = 1e-3
    warmup: int = 100         # linear lr warm-up steps
    rampdown: int = 0         # the last steps of the run, over which the lr falls linearly to 0 (0 = constant lr)
    ema_halflife: float = 50_000   # in images
    ema_rampup: float = 0.05  # half-life at most this fraction of images seen so far
    grad_clip: float = 0.0    # 0 = off
    amp: str = "none"         # one of AMP: "bf16" autocasts the loss to bfloat16 (CPU with AVX512-BF16/AMX, or GPU)
    log_every: int = 20
    ckpt_every: int = 500
    sample_every: int = 0     # 0 = only at the end
    grid: int = 64            # images in each sample grid, 0 = no grids
    seed: int = 0
    threads: int = 0          # torch CPU threads per process, 0 = leave as is


AMP = ("none", "bf16")

# The smallest value each setting allows.
_LOWEST = {"steps": 1, "batch": 1, "warmup": 0, "rampdown": 0, "log_every": 1, "ckpt_every": 1, "sample_every": 0,
           "grid": 0, "threads": 0}
# Settings a resumed run may change; anything else in options.json must match the run's start.
_RESUMABLE = {"train.steps", "train.threads", "train.log_every", "train.ckpt_every", "train.sample_every",
              "train.grid", "world_size"}   # world size: a resume may change it (recorded anew)
# Paths a resumed run may find elsewhere (another checkout of the same files): what they hold is still checked through
# the sha256 recorded beside them (data.teacher_sha256, data.init_sha256), and the weights come from the checkpoint.
_MOVABLE = {"model.teacher", "model.init", "data.init"}


class Task(Protocol):
    kind: str
    net: nn.Module

    def wrap(self, net: nn.Module) -> nn.Module: ...
    def loss(self, model: nn.Module, batch_size: int, gen: torch.Generator, device) -> tuple[torch.Tensor, dict]: ...
    def config(self) -> dict: ...
    def data_provenance(self) -> dict: ...
    def save_samples(self, net: nn.Module, path: Path, count: int) -> None: ...


def ema_beta(step: int, batch: int, cfg: TrainConfig) -> float:
    """EDM-style EMA decay per step from a half-life in images with ramp-up."""
    halflife = cfg.ema_halflife
    if cfg.ema_rampup:
        halflife = min(halflife, (step + 1) * batch * cfg.ema_rampup)
    return 0.5 ** (batch / max(halflife, 1e-8))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of (0-based) `step`: linear warm-up to cfg.lr over cfg.warmup steps, constant, and with
    cfg.rampdown a linear fall over the run's last cfg.rampdown steps (the last step at cfg.lr / rampdown)."""
    scale = min(1.0, (step + 1) / max(cfg.warmup, 1))
    if cfg.rampdown:
        scale = min(scale, (cfg.steps - step) / cfg.rampdown)
    return cfg.lr * scale


def train_step(task: Task, model: nn.Module, net: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer,
               cfg: TrainConfig, step: int, local_batch: int, gen: torch.Generator,
               device: torch.device) -> tuple[torch.Tensor, dict]:
    """One optimizer step (0-based `step`): warm-up lr, the loss of `model` (bf16 autocast if cfg.amp), backward,
    non-finite gradients zeroed or capped, clipping, Adam on `net`, EMA update; returns (loss, terms)."""
    for g in opt.param_groups:
        g["lr"] = lr_at(step, cfg)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
        loss, terms = task.loss(model, local_batch, gen, device)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    for p in net.parameters():
        if p.grad is not None:
            torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)
    if cfg.grad_clip:
        nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    opt.step()
    beta = ema_beta(step, cfg.batch, cfg)
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), net.parameters()):
            pe.lerp_(p.detach(), 1 - beta)
        for be, b in zip(ema.buffers(), net.buffers()):
            be.copy_(b)
    return loss, terms


def _rng_tensors(gen: torch.Generator) -> dict[str, torch.Tensor]:
    states = {"torch": torch.get_rng_state(), "gen": gen.get_state()}
    out = {}
    for name, st in states.items():
        for r, s in enumerate(D.gather_bytes(st)):
            out[f"rank{r}.{name}"] = s
    return out


def check_config(cfg: TrainConfig) -> None:
    """Refuse impossible numbers before any work, one line naming the setting."""
    for name, low in _LOWEST.items():
        if getattr(cfg, name) < low:
            raise KoopscopeError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(cfg, name)}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise KoopscopeError(f"--lr must be a positive number, got {cfg.lr}")
    if cfg.rampdown > cfg.steps:
        raise KoopscopeError(f"--rampdown {cfg.rampdown} is longer than the run (--steps {cfg.steps})")
    if cfg.amp not in AMP:
        raise KoopscopeError(f"--amp must be one of: {', '.join(AMP)}; got {cfg.amp!r}")


def train(task: Task, cfg: TrainConfig, out: str | Path, resume: bool = False, preset: str = "",
          progress: bool = True) -> Path:
    """Train `task.net` for cfg.steps; returns the path of model.safetensors.

    A fresh run keeps the weights `task.net` was built with: seed torch with cfg.seed before building the
    task for a reproducible run. Rank 0 holds OUT/.lock throughout, so a second run into OUT is refused.
    """
    check_config(cfg)
    out = Path(out)
    rank, world, device = D.init()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.batch % world:
        raise KoopscopeError(f"batch {cfg.batch} is not divisible by world size {world}")
    check_run_folder(out, resume)
    with _lock(out) if rank == 0 else contextlib.nullcontext():
        return _train(task, cfg, out, resume, preset, progress, rank, world, device)


def _train(task: Task, cfg: TrainConfig, out: Path, resume: bool, preset: str, progress: bool, rank: int,
           world: int, device: torch.device) -> Path:
    ckpt_path, model_path = out / "checkpoint.safetensors", out / "model.safetensors"
    check_run_folder(out, resume)  # again, now that the folder is locked
    options = {"kind": task.kind, "preset": preset, "train": asdict(cfg), "model": task.config(),
               "data": task.data_provenance(), "world_size": world}
    if resume:
        _check_same_run(out / "options.json", options)

    torch.manual_seed(cfg.seed)
    net = task.net.to(device)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    step = 0

    if resume:
        if rank == 0:
            _recover(out)
        tensors, meta = load_checkpoint(ckpt_path, kind=task.kind)
        net.load_state_dict(prefixed(tensors, "model"))
        ema.load_state_dict(prefixed(tensors, "ema"))
        restore_optimizer(opt, prefixed(tensors, "optim"), meta["state"]["optimizer"])
        step = meta["state"]["step"]
        was = meta["state"].get("world_size")
        if was == world:
            rng = prefixed(tensors, "rng")
            torch.set_rng_state(rng[f"rank{rank}.torch"])
            gen.set_state(rng[f"rank{rank}.gen"])
        else:  # same global batch, optimizer and EMA; each rank draws a fresh stream from (seed, step, rank)
            fresh = ((cfg.seed * 1_000_003 + step) * 1024 + rank) * 2
            torch.manual_seed(fresh)
            gen.manual_seed(fresh + 1)
            if rank == 0:
                print(f"resuming at step {step} on {world} processes (trained on {was} so far): the data order "
                      "differs from an uninterrupted run", file=sys.stderr)
                options_now = json.loads((out / "options.json").read_text())
                write_json(out / "options.json", {**options_now, "world_size": world})
        if rank == 0:
            _truncate_log(out / "log.jsonl", step)
    elif rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "options.json", options)

    model = task.wrap(net)  # what computes the loss; DDP wraps it so gradients are all-reduced
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    local_batch = cfg.batch // world

    def save(final: bool) -> None:
        opt_t, opt_info = optimizer_tensors(opt)
        tensors = {**with_prefix(net.state_dict(), "model"), **with_prefix(ema.state_dict(), "ema"),
                   **with_prefix(opt_t, "optim"), **with_prefix(_rng_tensors(gen), "rng")}
        if rank != 0:
            return
        prov = provenance(preset=preset, seed=cfg.seed, step=step, images_seen=step * cfg.batch,
                          **task.data_provenance())
        save_checkpoint(ckpt_path, tensors, task.kind, task.config(), prov,
                        state={"step": step, "optimizer": opt_info, "world_size": world, "train": asdict(cfg)})
        save_checkpoint(model_path, with_prefix(ema.state_dict(), "ema"), task.kind, task.config(), prov,
                        state={"step": step})
        if cfg.grid and (final or (cfg.sample_every and step % cfg.sample_every == 0)):
            task.save_samples(ema, out / "samples" / f"step_{step:07d}.png", cfg.grid)

    bar = _progress(progress and rank == 0, cfg.steps, step, task.kind)
    t0, seen0 = time.perf_counter(), step
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    try:
        while step < cfg.steps:
            lr = lr_at(step, cfg)
            loss, terms = train_step(task, model, net, ema, opt, cfg, step, local_batch, gen, device)
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                terms = {k: D.mean(float(v)) for k, v in {"loss": loss.detach(), **terms}.items()}
                if log is not None:
                    rate = (step - seen0) * cfg.batch / (time.perf_counter() - t0)
                    record = {"step": step, "lr": lr, "images_per_s": round(rate, 2), **terms}
                    log.write(strict_json(record) + "\n")
                    log.flush()
                    if not math.isfinite(terms["loss"]):
                        raise KoopscopeError(f"loss became {terms['loss']} at step {step}; lower --lr")
                bar.update(step, terms["loss"])
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                save(final=step == cfg.steps)
    finally:
        bar.close()
        if log is not None:
            log.close()
        D.barrier()
        D.shutdown()
    return model_path


def check_run_folder(out: str | Path, resume: bool) -> None:
    """Refuse, before any work, to resume a run that is not in `out`, or to start one where a run is."""
    out = Path(out)
    ckpt = out / "checkpoint.safetensors"
    if resume and not ckpt.exists():
        raise KoopscopeError(f"nothing to resume: {ckpt} does not exist")
    if not resume and ckpt.exists():
        raise KoopscopeError(f"run folder {out} already holds a run; pass --resume to continue it or choose "
                             "another --out")
    if not resume and any((out / f).exists() for f in ("options.json", "log.jsonl", "model.safetensors")):
        raise KoopscopeError(f"run folder {out} holds a run that saved no checkpoint (nothing to resume); "
                             "delete it or choose another --out")


def _recover(out: Path) -> None:
    """Repair what a kill while saving leaves: temp files, and a model.safetensors behind the checkpoint
    (written first), rewritten from the checkpoint's EMA weights as `save` would have written it."""
    for tmp in [*out.glob(".*.tmp"), *out.glob("samples/.*.tmp")]:
        tmp.unlink()
    step = read_meta(out / "checkpoint.safetensors")["state"]["step"]
    try:
        current = read_meta(out / "model.safetensors")["state"].get("step") == step
    except CheckpointError:  # missing or torn
        current = False
    if not current:
        tensors, meta = load_checkpoint(out / "checkpoint.safetensors")
        save_checkpoint(out / "model.safetensors", with_prefix(prefixed(tensors, "ema"), "ema"), meta["kind"],
                        meta["config"], meta["provenance"], state={"step": step})


@contextlib.contextmanager
def _lock(out: Path):
    """Hold an exclusive lock on the run folder while training (released if the process dies)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KoopscopeError(f"{out} is being trained by another process; wait for it or choose "
                                 "another --out") from None
        yield


def _flat(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _check_same_run(path: Path, options: dict) -> None:
    """Refuse to resume with other settings than the run started with (see options.json).

    Allowed to change: train.steps (to extend a run), train.threads, and the log, checkpoint and
    sample-grid settings (train.log_every, train.ckpt_every, train.sample_every, train.grid); and the paths
    of the teacher and the warm start, as long as they hold what they held (their sha256).
    """
    was = json.loads(path.read_text())
    if was.get("kind") == HKD_KIND:   # runs started before HKD's settings were renamed
        was["model"] = current_names(was["model"])
    # a setting added since the run started was recorded nowhere: the run had its default
    defaults = {f"train.{f.name}": f.default for f in fields(TrainConfig)}
    was, now = {**defaults, **_flat(was)}, _flat(json.loads(strict_json(options)))
    diff = [f"{k}={was.get(k)!r}, now {now.get(k)!r}" for k in sorted(was.keys() | now.keys())
            if k not in _RESUMABLE | _MOVABLE and was.get(k) != now.get(k)]
    if diff:
        raise KoopscopeError(f"--resume: this run was started with {' and '.join(diff)}; start a new --out "
                             "for other settings")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint a resumed run restarts from (they will be redone), and any
    incomplete or unreadable line (a full disk or a kill mid-write)."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if _step(line) <= step]
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in keep))


def _step(line: str) -> float:
    """The step a log line records; inf for a line that is not a complete record."""
    try:
        record = json.loads(line)
    except ValueError:
        return math.inf
    return record["step"] if isinstance(record, dict) and isinstance(record.get("step"), int) else math.inf


class _progress:
    """A rich progress bar (or nothing) showing step and loss."""

    def __init__(self, enabled: bool, total: int, start: int, name: str):
        from ..progress import bars

        self.name, self.p = name, bars(enabled)
        self.p.start()
        self.task = self.p.add_task(f"train {name}", total=total, completed=start)

    def update(self, step: int, loss: float) -> None:
        self.p.update(self.task, completed=step, description=f"train {self.name}, loss {loss:.4f}")

    def close(self) -> None:
        self.p.stop()
