#!/usr/bin/env bash
# Distil a given teacher into HKD students on one lent GPU (H100/H200) inside a time budget, offline:
#   bash analyses/device_distil.sh --teacher koopscope/models/teacher-fashion.safetensors \
#     --init checkpoints/hkd-fashion-mean13-18-15k-cool-step0003000.safetensors [--lrs "3e-4 1e-3"] [--count 100000] \
#     [--batch 512] [--budget 450] [--huber] [--runs DIR] [--dest DIR] [--smoke]
# What the CPU cannot reach: many trajectories (a student fitted to few memorises them: analyses/generalisation.py)
# and millions of training images. Timeline, all inside --budget seconds of this script:
#  1. the store's first shard, and one short run per learning rate side by side on it: an error shows within
#     a minute (while the lease can still rerun), and the rate the runs train at together is measured;
#  2. the store grown to --count trajectories (seeds 0 ..; capped at a third of the budget, then cut to whole shards);
#  3. one run per learning rate, side by side (on an H200 two ran at 1600 images/s each, one alone at 2100),
#     warm-started from --init, with as many steps as the measured rate fits in the time left and the learning
#     rate falling linearly to 0 over the last half; each run's EMA model at the start of that fall is kept too (`-mid`).
#     --huber: beside each learning rate's run (squared error), one with the pseudo-Huber distance and latent
#     consistency weighted 150 (its gradient is ~160x the squared error's at an rms error of 0.1 on 1024 pixels),
#     named lr<LR>-huber: the distance compared on the same images, same start and same schedule (two files per
#     run come back: with --huber, one learning rate keeps a lease's output within its 8 files).
# Copied to --dest (default $OUT): hkd-<RUN>.safetensors, hkd-<RUN>-mid.safetensors per run (RUN: lr<LR>[-huber]) and
# logs.tar.gz (each run's log.jsonl, options.json and sample grids, the store's manifest). Needs torch (CUDA) and
# koopscope's dependencies for python3 or $PYTHON; koopscope is imported from this checkout. No dataset is read.
# --smoke: the smoke preset with a tiny store and a few steps, on CPU too (tests/test_bench_training.py runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=fashion LRS="3e-4 1e-3" COUNT=100000 BATCH=512 BUDGET=450 SHARD=1024 CAL=80 MAX_STEPS=1000000
RUNS=runs/device-distil DEST=${OUT:-} TEACHER="" INIT="" HUBER=0
while [ $# -gt 0 ]; do
  case $1 in
    --teacher) TEACHER=$2; shift 2 ;;
    --init) INIT=$2; shift 2 ;;
    --lrs) LRS=$2; shift 2 ;;
    --count) COUNT=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --huber) HUBER=1; shift ;;
    --runs) RUNS=$2; shift 2 ;;
    --dest) DEST=$2; shift 2 ;;
    --smoke) PRESET=smoke COUNT=96 BATCH=16 SHARD=32 CAL=20 MAX_STEPS=20; shift ;;
    *) echo "device_distil.sh: unknown option $1 (expected --teacher CKPT, --init CKPT, --lrs 'LR ...'," \
         "--count N, --batch N, --budget S, --huber, --runs DIR, --dest DIR, --smoke)" >&2; exit 2 ;;
  esac
done
[ -n "$DEST" ] || { echo "device_distil.sh: no destination: pass --dest DIR or set OUT" >&2; exit 2; }
[ -n "$TEACHER" ] || { echo "device_distil.sh: pass --teacher CKPT (the teacher to distil)" >&2; exit 2; }
for f in "$TEACHER" "$INIT"; do
  [ -z "$f" ] || [ -f "$f" ] || { echo "device_distil.sh: no such checkpoint: $f" >&2; exit 2; }
done
for n in "$COUNT" "$BATCH" "$BUDGET"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "device_distil.sh: --count, --batch and --budget take positive integers (got $n)" >&2; exit 2; }
done
[ -n "$LRS" ] || { echo "device_distil.sh: --lrs names no learning rate" >&2; exit 2; }
[ -e "$RUNS" ] && { echo "device_distil.sh: $RUNS exists; pass another --runs DIR" >&2; exit 2; }
NAMES=()   # one run per learning rate, and with --huber its pseudo-Huber twin
declare -A OPTIONS   # what sets each run apart
for lr in $LRS; do
  NAMES+=("lr$lr") OPTIONS[lr$lr]="--lr $lr"
  [ "$HUBER" = 0 ] || { NAMES+=("lr$lr-huber") OPTIONS[lr$lr-huber]="--lr $lr --distance huber --latent 150"; }
done
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
$PY -c "import torch, numpy, safetensors, PIL, typer, rich" || { echo "device_distil.sh: $PY lacks torch or a koopscope dependency" >&2; exit 1; }
$PY -c "import torch; print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU only')"
T0=$SECONDS
say() { echo "[$((SECONDS - T0)) s] $*"; }
left() { echo $((BUDGET - (SECONDS - T0))); }

trajectories() {  # COUNT [CAP_S]
  timeout "${2:-100000}" "$PY" -m koopscope trajectories "$TEACHER" --out "$RUNS/store" --count "$1" \
    --batch "$SHARD" --shard-size "$SHARD" --no-progress
}

runs() {  # PREFIX STEPS RAMPDOWN CAP_S: the runs (NAMES) side by side; fails if any fails uncapped
  local prefix=$1 steps=$2 rampdown=$3 cap=$4 name pids=() rc=0 bad=0
  for name in "${NAMES[@]}"; do
    timeout "$cap" "$PY" -m koopscope train hkd --preset "$PRESET" --out "$RUNS/$prefix$name" --steps "$steps" \
      --batch "$BATCH" ${OPTIONS[$name]} --rampdown "$rampdown" --amp bf16 --no-progress \
      --trajectories "$RUNS/store" --teacher "$TEACHER" ${INIT:+--init "$INIT"} > "$RUNS/$prefix$name.out" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    rc=0; wait "${pids[$i]}" || rc=$?
    name=${NAMES[$i]}
    if [ "$rc" = 124 ] && [ -f "$RUNS/$prefix$name/model.safetensors" ]; then
      say "$name: stopped at the $cap s cap; keeping the last checkpoint's EMA weights"
    elif [ "$rc" != 0 ]; then
      tail -n 5 "$RUNS/$prefix$name.out" >&2; bad=1
    fi
  done
  [ "$bad" = 0 ] || { echo "device_distil.sh: a $prefix run failed" >&2; exit 1; }
}

keep_mid() {  # RUN STEP: copy the run's EMA model once it holds STEP or later (a background watcher)
  $PY - "$@" <<'EOF'
import shutil, sys, time
from pathlib import Path
from koopscope.io.meta import read_meta
run, step = Path(sys.argv[1]), int(sys.argv[2])
while True:
    try:
        if read_meta(run / "model.safetensors")["state"]["step"] >= step:
            shutil.copy(run / "model.safetensors", f"{run}-mid.safetensors")
            break
    except Exception:  # not written yet
        pass
    time.sleep(1)
EOF
}

mkdir -p "$RUNS" "$DEST"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
say "1. first shard, and $CAL steps per run (${NAMES[*]}) side by side"
trajectories "$SHARD"
runs cal- "$CAL" 0 $((BUDGET / 4 + 60))
STEPS_PER_S=$($PY - "$RUNS" "${NAMES[@]}" <<'EOF'
import json, sys
rates = []
for name in sys.argv[2:]:   # steps/s between a run's first and last log line: start-up excluded
    run = f"{sys.argv[1]}/cal-{name}"
    batch = json.load(open(f"{run}/options.json"))["train"]["batch"]
    rows = [json.loads(line) for line in open(f"{run}/log.jsonl")]
    t = [r["step"] * batch / r["images_per_s"] for r in (rows[0], rows[-1])]
    rates.append((rows[-1]["step"] - rows[0]["step"]) / (t[1] - t[0]))
print(min(rates))
EOF
)
say "the runs train together at $STEPS_PER_S steps/s each (batch $BATCH)"
say "2. store grown to $COUNT trajectories"
rc=0; trajectories "$COUNT" $((BUDGET / 3)) || rc=$?
if [ "$rc" = 124 ]; then
  HAVE=$($PY -c "from koopscope.trajectories.loader import TrajectoryStore as S; print(len(S('$RUNS/store')))")
  COUNT=$((HAVE / SHARD * SHARD))
  say "stopped at the cap with $HAVE trajectories; the store is cut to $COUNT"
  trajectories "$COUNT"
elif [ "$rc" != 0 ]; then
  echo "device_distil.sh: trajectories failed (exit $rc)" >&2; exit 1
fi
TRAIN_S=$(($(left) - 30))   # start-up, the last save and the copies
[ "$TRAIN_S" -ge 30 ] || TRAIN_S=30
STEPS=$($PY -c "print(max(2, min($MAX_STEPS, int($STEPS_PER_S * $TRAIN_S * 0.92))))")
say "3. $STEPS steps x $BATCH per run in about $TRAIN_S s, rampdown over the last $((STEPS / 2))"
WATCHERS=()
for name in "${NAMES[@]}"; do keep_mid "$RUNS/hkd-$name" $((STEPS - STEPS / 2)) & WATCHERS+=($!); done
runs hkd- "$STEPS" $((STEPS / 2)) $((TRAIN_S + 20))
for p in "${WATCHERS[@]}"; do timeout 10 tail --pid="$p" -f /dev/null || true; done   # each polls every second
for name in "${NAMES[@]}"; do
  cp "$RUNS/hkd-$name/model.safetensors" "$DEST/hkd-$name.safetensors"
  [ -f "$RUNS/hkd-$name-mid.safetensors" ] && cp "$RUNS/hkd-$name-mid.safetensors" "$DEST/hkd-$name-mid.safetensors"
  echo "$name: $(tail -n 1 "$RUNS/hkd-$name/log.jsonl")"
done
tar -czf "$DEST/logs.tar.gz" -C "$RUNS" --exclude='*.safetensors' store/manifest.json $(cd "$RUNS" && ls -d cal-* hkd-*)
say "device_distil.sh: wrote $(ls "$DEST" | tr '\n' ' ')in $DEST"
