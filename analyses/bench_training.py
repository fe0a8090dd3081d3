"""Benchmark training throughput: images/s of a real train step of the teacher and the HKD student, per variant.

A train step is what koopscope.train.loop runs: the task's loss (under bf16 autocast where asked), backward,
gradient clean-up and clipping, Adam, EMA. Variants, each against the fp32 baseline on the same weights:

    fp32           the presets' training as it is (the baseline)
    bf16           torch.autocast("cpu", dtype=torch.bfloat16) around the loss (what TrainConfig.amp="bf16" does)
    channels_last  the network's weights in channels-last memory format
    compile        torch.compile of the model the loss calls (the error is recorded if it fails or takes more
                   than --compile-timeout seconds)
    batch xN       BATCH_FACTOR times the preset's batch on the same threads
    native 28x28   unpadded Fashion-MNIST ("not applicable", with the reason, where the U-Net cannot take
                   28x28, or, for HKD, where the trajectory store holds padded states)
    channels x2    not a speed-up but a cost: the teacher's U-Net with twice the base channels, fp32 (what a wider
                   teacher would cost per image; for HKD "not applicable": its networks are the teacher's)

Timing: one warm-up step per variant, then --repeats rounds; a round times --steps steps of every variant
of both models, alternated (the order rotates round by round) so drift on a shared machine hits all alike.
images/s is batch x steps over the median round (for HKD the batch counts trajectories, as the training log
does); ratio is over fp32's. Numerics: loss and gradient on one fixed batch (same weights, same noise) against
fp32: the relative loss difference and the cosine similarity of the flattened gradients. A variant wins at
ratio >= WIN with numerics within TOLERANCE.

    python analyses/bench_training.py [--teacher T] [--trajectories S] [--repeats 5] [--steps 2] [--threads 1]
    python analyses/bench_training.py --quick --out /tmp/b.json --figure /tmp/b.png   # smoke preset, a minute

Writes analyses/results/bench_training.json and figures/bench_training.{png,pdf}.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # torch.compile's workers stay on --threads' budget

import torch  # noqa: E402

from koopscope.errors import KoopscopeError  # noqa: E402
from koopscope.io.atomic import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RUNS = Path(os.environ.get("RUNS", "~/koopscope-runs")).expanduser()
WIN = 1.1
TOLERANCE = {"loss_rel_diff": 0.01, "grad_cosine": 0.99}
BATCH_FACTOR = 2
WIDER = 2            # the wider teacher's channel factor
NATIVE = 28          # Fashion-MNIST's own size (the presets pad it to 32)
NUMERICS_SEED = 1234
CPU = torch.device("cpu")


class Run:
    """One variant of one model: its own copy of the weights, Adam and EMA; `step()` is one train step."""

    def __init__(self, model: str, name: str, task, net, cfg, batch: int, amp: bool = False,
                 channels_last: bool = False, compiled: bool = False, numerics: bool = True):
        self.model, self.name, self.task, self.batch = model, name, task, batch
        self.cfg = replace(cfg, batch=batch, amp="bf16" if amp else "none")
        self.compiled, self.numerics = compiled, numerics
        self.net = copy.deepcopy(net)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        wrapped = task.wrap(self.net)
        self.wrapped = torch.compile(wrapped) if compiled else wrapped
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
        self.gen = torch.Generator().manual_seed(0)
        self.steps, self.seconds = 0, []
        self.result = {"name": name, "batch": batch, "status": "ok"}

    def step(self) -> None:
        """One step exactly as koopscope.train.loop trains."""
        from koopscope.train.loop import train_step

        train_step(self.task, self.wrapped, self.net, self.ema, self.opt, self.cfg, self.steps, self.batch, self.gen,
                   CPU)
        self.steps += 1

    def gradient(self) -> tuple[float, torch.Tensor]:
        """Loss and flattened gradient (logical order, float32) on the fixed batch; the weights are not changed."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.amp == "bf16"):
            loss = self.task.loss(self.wrapped, self.batch, torch.Generator().manual_seed(NUMERICS_SEED), CPU)[0]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).float().flatten()
                          for p in self.net.parameters() if p.requires_grad])
        self.opt.zero_grad(set_to_none=True)
        return loss.item(), grad


def error_line(e: BaseException) -> str:
    """'Type: first line of the message'."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


@contextlib.contextmanager
def deadline(seconds: int):
    """Raise TimeoutError in the block after `seconds` (0 = no limit)."""
    def fire(*_):
        raise TimeoutError(f"took more than {seconds} s (--compile-timeout)")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def native_unet(unet):
    """(the preset's U-Net at 28x28, None) if it takes 28x28 images, else (None, why not)."""
    from koopscope.diffusion.unet import UNet

    cfg = replace(unet, resolution=NATIVE)
    try:
        with torch.no_grad():
            UNet(cfg)(torch.zeros(1, cfg.img_channels, NATIVE, NATIVE), torch.zeros(1))
    except RuntimeError as e:
        sizes = [NATIVE]
        for _ in unet.channel_mult[1:]:
            sizes.append((sizes[-1] + 1) // 2)   # a stride-2 3x3 conv with padding 1
        return None, (f"the {len(unet.channel_mult)}-level U-Net halves 28 to {'->'.join(map(str, sizes))} and "
                      f"upsamples {sizes[-1]} to {2 * sizes[-1]}, so skips no longer match "
                      f"({error_line(e)})")
    return cfg, None


def build_runs(preset: str, teacher: Path, store: Path, compiled: bool, compile_note: str) -> tuple[list, dict]:
    """Every variant of both models (built, not yet warmed up), and the variants that cannot run: {model: [...]}."""
    from koopscope.data import load_dataset
    from koopscope.diffusion.teacher import TeacherTask, load_teacher
    from koopscope.pipeline import hkd_task, teacher_task
    from koopscope.train.presets import teacher_preset

    t_task, t_cfg = teacher_task(preset)
    tnet, meta = load_teacher(teacher)
    if tnet.backbone.cfg != t_task.unet:
        raise KoopscopeError(f"{teacher} holds another network than the '{preset}' preset's teacher")
    t_task.net.load_state_dict(tnet.state_dict())
    h_task, h_cfg = hkd_task(preset, store, teacher)
    native, reason = native_unet(t_task.unet)
    runs, skipped = [], {"teacher": [], "hkd": []}
    for model, task, cfg in (("teacher", t_task, t_cfg), ("hkd", h_task, h_cfg)):
        b = cfg.batch
        runs += [Run(model, "fp32", task, task.net, cfg, b),
                 Run(model, "bf16", task, task.net, cfg, b, amp=True),
                 Run(model, "channels_last", task, task.net, cfg, b, channels_last=True)]
        if compiled:
            runs.append(Run(model, "compile", task, task.net, cfg, b, compiled=True))
        else:
            skipped[model].append({"name": "compile", "batch": b, "status": "skipped", "reason": compile_note})
        runs.append(Run(model, f"batch x{BATCH_FACTOR}", task, task.net, cfg, BATCH_FACTOR * b, numerics=False))
        name = f"native {NATIVE}x{NATIVE}"
        if model == "teacher" and native is not None:
            p = teacher_preset(preset)
            data = load_dataset(p.dataset, size=None, flip=p.flip, limit=p.data_limit)
            ntask = TeacherTask(native, data, p.sampler_steps)
            runs.append(Run(model, name, ntask, ntask.net, cfg, b, numerics=False))
        else:
            why = reason or f"the trajectory store holds {tuple(h_task.store.image_shape)} states"
            skipped[model].append({"name": name, "batch": b, "status": "not applicable", "reason": why})
        if model == "teacher":
            wide = TeacherTask(replace(task.unet, channels=WIDER * task.unet.channels), task.dataset)
            runs.append(Run(model, f"channels x{WIDER}", wide, wide.net, cfg, b, numerics=False))
        else:
            skipped[model].append({"name": f"channels x{WIDER}", "batch": b, "status": "not applicable",
                                   "reason": "the student's networks are its teacher's: a wider teacher widens it"})
    return runs, skipped


def prepare(runs: list[Run], compile_timeout: int) -> list[Run]:
    """Numerics against each model's fp32 run, then one warm-up step; a variant that fails is recorded and
    dropped (fp32's own failure is an error)."""
    base = {}
    ready = []
    for run in runs:
        try:
            with deadline(compile_timeout if run.compiled else 0):
                t0 = time.perf_counter()
                loss, grad = run.gradient() if run.numerics else (None, None)
                run.step()
                run.result["warmup_s"] = time.perf_counter() - t0
        except Exception as e:
            if run.name == "fp32":
                raise
            run.result.update(status="failed", reason=error_line(e))
            print(f"{run.model} {run.name}: failed ({run.result['reason']})", flush=True)
            continue
        print(f"{run.model} {run.name}: ready ({run.result['warmup_s']:.1f} s)", flush=True)
        if run.name == "fp32":
            base[run.model] = (loss, grad)
        elif run.numerics:
            loss0, grad0 = base[run.model]
            rel = abs(loss - loss0) / max(abs(loss0), 1e-12)
            cos = float(torch.nn.functional.cosine_similarity(grad.double(), grad0.double(), dim=0))
            run.result.update(loss_rel_diff=rel, grad_cosine=cos,
                              numerics_ok=rel <= TOLERANCE["loss_rel_diff"] and cos >= TOLERANCE["grad_cosine"])
        ready.append(run)
    return ready


def measure(runs: list[Run], repeats: int, steps: int) -> None:
    """--repeats rounds of --steps steps of every run, alternated; the order rotates round by round."""
    for r in range(repeats):
        k = r % len(runs)
        for run in runs[k:] + runs[:k]:
            t0 = time.perf_counter()
            for _ in range(steps):
                run.step()
            run.seconds.append(time.perf_counter() - t0)


def summarize(runs: list[Run], skipped: dict, steps: int) -> dict:
    """{model: [variant results]} with images/s, the ratio to fp32 and whether the variant wins."""
    out = {}
    for model in ("teacher", "hkd"):
        mine = [r for r in runs if r.model == model]
        for r in mine:
            if r.seconds:
                med = statistics.median(r.seconds)
                r.result.update(seconds=r.seconds, median_s=med, images_per_s=r.batch * steps / med)
        base = next(r.result["images_per_s"] for r in mine if r.name == "fp32")
        for r in mine:
            if "images_per_s" in r.result:
                ratio = r.result["images_per_s"] / base
                r.result.update(ratio=ratio, wins=ratio >= WIN and r.result.get("numerics_ok", False))
        order = [r.result for r in mine] + skipped[model]
        out[model] = order
    return out


def figure(res: dict, path: Path) -> None:
    from koopscope.io.figures import pyplot, save_figure

    plt = pyplot()
    names = [v["name"] for v in res["teacher"]]
    names += [v["name"] for v in res["hkd"] if v["name"] not in names]
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    width = 0.38
    for k, (model, color) in enumerate((("teacher", "C0"), ("hkd", "C1"))):
        by = {v["name"]: v for v in res[model]}
        for i, name in enumerate(names):
            x, v = i + (k - 0.5) * width, by.get(name, {})
            if "ratio" in v:
                ax.bar(x, v["ratio"], width, color=color, label="teacher" if k == 0 and i == 0 else
                       ("HKD student" if k == 1 and i == 0 else None))
                ax.annotate(f"{v['ratio']:.2f}", (x, v["ratio"]), ha="center", va="bottom", fontsize=7)
            else:
                ax.annotate(v.get("status", "n/a").replace("not applicable", "n/a"), (x, 0.02), ha="center",
                            va="bottom", fontsize=7, rotation=90, color="0.4")
    ax.axhline(1, color="0.3", lw=0.8)
    ax.axhline(WIN, color="0.6", lw=0.8, ls="--")
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("images/s over fp32")
    ax.set_title(f"training step, {res['threads']} thread(s), median of {res['repeats']} x {res['steps']} steps "
                 f"(dashed: {WIN}x)", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    save_figure(fig, path)


def report(res: dict) -> None:
    print(f"{res['preset']} preset, {res['threads']} thread(s), median of {res['repeats']} rounds x "
          f"{res['steps']} steps")
    print(f"{'variant':<15} {'model':<8} {'batch':>5} {'images/s':>9} {'ratio':>6} {'loss rel':>9} {'grad cos':>9}")
    for model in ("teacher", "hkd"):
        for v in res[model]:
            if "ratio" not in v:
                print(f"{v['name']:<15} {model:<8} {v['batch']:>5}  {v['status']}: {v['reason']}")
                continue
            rel = f"{v['loss_rel_diff']:.2e}" if "loss_rel_diff" in v else "-"
            cos = f"{v['grad_cosine']:.5f}" if "grad_cosine" in v else "-"
            print(f"{v['name']:<15} {model:<8} {v['batch']:>5} {v['images_per_s']:>9.2f} {v['ratio']:>5.2f}x "
                  f"{rel:>9} {cos:>9}{'  wins' if v['wins'] else ''}")


def quick_inputs(folder: Path) -> tuple[Path, Path]:
    """An untrained smoke teacher and an 8-trajectory store of it, for a smoke test of this script."""
    from koopscope.diffusion.teacher import save_untrained
    from koopscope.train.presets import teacher_preset
    from koopscope.trajectories import generate

    p = teacher_preset("smoke")
    torch.manual_seed(0)
    teacher = save_untrained(folder / "teacher.safetensors", p.unet, p.sampler_steps, std=0.05)
    generate(teacher, folder / "store", 8, progress=False)
    return teacher, folder / "store"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fashion", help="teacher and HKD preset (default fashion)")
    ap.add_argument("--teacher", type=Path, default=ROOT / "koopscope" / "models" / "teacher-fashion.safetensors")
    ap.add_argument("--trajectories", type=Path, default=RUNS / "traj-fashion", help="the teacher's store")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds (median)")
    ap.add_argument("--steps", type=int, default=2, help="train steps per round and variant")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile-timeout", type=int, default=300, help="seconds torch.compile may take per model")
    ap.add_argument("--quick", action="store_true", help="smoke preset, untrained teacher, 2 x 1 steps, no compile")
    ap.add_argument("--out", type=Path, default=ROOT / "analyses" / "results" / "bench_training.json")
    ap.add_argument("--figure", type=Path, default=ROOT / "figures" / "bench_training.png")
    args = ap.parse_args()
    for name in ("repeats", "steps", "threads", "compile_timeout"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.quick:
        for name in ("teacher", "trajectories"):
            if not getattr(args, name).exists():
                ap.error(f"--{name} {getattr(args, name)} does not exist")
    torch.set_num_threads(args.threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.quick:
                args.preset, args.repeats, args.steps = "smoke", 2, 1
                args.teacher, args.trajectories = quick_inputs(Path(tmp))
            runs, skipped = build_runs(args.preset, args.teacher, args.trajectories, not args.quick,
                                       "skipped in --quick (compiling takes minutes)")
            measure(prepare(runs, args.compile_timeout), args.repeats, args.steps)
    except KoopscopeError as e:
        sys.exit(f"error: {e}")
    res = {"preset": args.preset, "teacher": str(args.teacher), "trajectories": str(args.trajectories),
           "quick": args.quick, "threads": args.threads, "repeats": args.repeats, "steps": args.steps,
           "cpus": os.cpu_count(), "torch": torch.__version__, "cpu_bf16": cpu_bf16(),
           "timing": "median of rounds, variants alternated round by round after one warm-up step",
           "win": WIN, "tolerance": TOLERANCE, **summarize(runs, skipped, args.steps)}
    res["winners"] = [f"{m}: {v['name']}" for m in ("teacher", "hkd") for v in res[m] if v.get("wins")]
    report(res)
    write_json(args.out, res)
    figure(res, args.figure)
    print(f"wrote {args.out} and {args.figure.with_suffix('')}.{{png,pdf}}")


def cpu_bf16() -> list[str]:
    """The CPU's bf16 instruction sets (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return sorted({f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile")})


if __name__ == "__main__":
    main()
