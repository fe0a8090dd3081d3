"""FID of one-step samples at several training steps of one HKD run (is it still improving?).

    python analyses/fid_vs_steps.py runs/hkd-fashion-step2000.safetensors ... [--count 1000]

Held-out seeds 1,000,000+, against `count` Fashion-MNIST train images at the model's resolution
(cached). Few samples bias FID upward: compare the rows with each other, not with 5k numbers.
Writes analyses/results/fid_vs_steps.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from koopscope.io.atomic import write_json

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1_000_000)
    ap.add_argument("--ref", default="fashion:train", help="FID reference (dataset:split, as koopscope fid)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "analyses/results/fid_vs_steps.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from koopscope.hkd.sample import one_step
    from koopscope.hkd.task import load_hkd
    from koopscope.metrics import evaluate
    from koopscope.metrics.samples import load_ref

    rows, refs = [], {}   # reference features per resolution, loaded once
    for path in args.checkpoints:
        model, meta = load_hkd(path)
        size = model.cfg.unet.resolution
        if size not in refs:
            refs[size] = load_ref(args.ref, args.count, size)
        x = one_step(model, range(args.seed, args.seed + args.count)).clamp(-1, 1)
        s = evaluate(x, refs[size])
        rows.append({"checkpoint": str(path), "step": meta["state"]["step"],
                     **{k: s[k] for k in ("fid", "kid_mean", "kid_std", "precision", "recall")}})
        print(f"step {rows[-1]['step']:>6}: FID {s['fid']:.2f}, KID {s['kid_mean'] * 1e3:.2f}e-3, "
              f"P {s['precision']:.3f}, R {s['recall']:.3f}  [{path}]", flush=True)
    write_json(args.out, {"count": args.count, "seeds": [args.seed, args.seed + args.count - 1],
                          "reference": args.ref, "rows": rows})


if __name__ == "__main__":
    main()
