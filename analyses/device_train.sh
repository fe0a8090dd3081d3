#!/usr/bin/env bash
# Fashion-MNIST teacher -> trajectories -> HKD student on one lent GPU (H100/H200) in about 6 minutes, offline:
#   bash analyses/device_train.sh --data-root data/fashion-mnist [--runs DIR] [--dest DIR] [--smoke]
# Assumes the machine has torch (a CUDA build) and koopscope's other dependencies (numpy, safetensors, pillow,
# typer, rich) for python3 or $PYTHON; koopscope itself is imported from this checkout. The four Fashion-MNIST
# IDX files travel with the repo in an ignored folder (data/ is in .gitignore); this script copies nothing in,
# it reads them from --data-root, else $KOOPSCOPE_FASHION_DIR, else /usr/share/datasets/fashion-mnist.
# Both models train with bf16 autocast (`--amp bf16`) on larger batches than the CPU presets: teacher 4000 steps
# x 512, 5000 trajectories, HKD 3000 steps x 128 (step counts are estimates: untimed on a GPU so far; each run's
# log.jsonl has images_per_s).
# Each training stage is also capped at TEACHER_S / HKD_S seconds (default 200 / 150); a capped stage keeps its
# last checkpoint's EMA weights. The EMA models and logs are copied to --dest (default $OUT, the device tool's
# output folder): teacher.safetensors, hkd.safetensors, teacher-log.jsonl, hkd-log.jsonl.
# To distil a given teacher only (many trajectories, several learning rates, a time budget): device_distil.sh.
# --smoke: the smoke presets for a few steps, on CPU too (tests/test_bench_training.py runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=fashion T_STEPS=4000 T_BATCH=512 COUNT=5000 H_STEPS=3000 H_BATCH=128
RUNS=runs/device-train DEST=${OUT:-}
while [ $# -gt 0 ]; do
  case $1 in
    --data-root) export KOOPSCOPE_FASHION_DIR=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --dest) DEST=$2; shift 2 ;;
    --smoke) PRESET=smoke T_STEPS=20 T_BATCH=32 COUNT=16 H_STEPS=10 H_BATCH=16; shift ;;
    *) echo "device_train.sh: unknown option $1 (expected --data-root DIR, --runs DIR, --dest DIR, --smoke)" >&2; exit 2 ;;
  esac
done
[ -n "$DEST" ] || { echo "device_train.sh: no destination: pass --dest DIR or set OUT" >&2; exit 2; }
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
$PY -c "import torch, numpy, safetensors, PIL, typer, rich" || { echo "device_train.sh: $PY lacks torch or a koopscope dependency" >&2; exit 1; }
$PY -c "import torch; print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU only')"

train() {  # KIND RUN STEPS BATCH CAP_S [koopscope train options...]: bf16 autocast, capped at CAP_S seconds
  local kind=$1 run=$2 steps=$3 batch=$4 cap=$5 rc=0
  shift 5
  timeout "$cap" "$PY" -m koopscope train "$kind" --preset "$PRESET" --out "$run" --steps "$steps" --batch "$batch" \
    --amp bf16 --no-progress "$@" || rc=$?
  if [ "$rc" = 124 ] && [ -f "$run/model.safetensors" ]; then
    echo "$kind: stopped at the $cap s cap; keeping the last checkpoint's EMA weights"
  elif [ "$rc" != 0 ]; then
    echo "device_train.sh: $kind training failed (exit $rc)" >&2; exit 1
  fi
  tail -n 1 "$run/log.jsonl"
}

train teacher "$RUNS/teacher" "$T_STEPS" "$T_BATCH" "${TEACHER_S:-200}"
TEACHER=$RUNS/teacher/model.safetensors
$PY -m koopscope trajectories "$TEACHER" --out "$RUNS/store" --count "$COUNT" --batch 1000 \
  --no-progress
train hkd "$RUNS/hkd" "$H_STEPS" "$H_BATCH" "${HKD_S:-150}" --trajectories "$RUNS/store" --teacher "$TEACHER"
mkdir -p "$DEST"
for kind in teacher hkd; do
  cp "$RUNS/$kind/model.safetensors" "$DEST/$kind.safetensors"
  cp "$RUNS/$kind/log.jsonl" "$DEST/$kind-log.jsonl"
done
echo "device_train.sh: wrote teacher.safetensors and hkd.safetensors in $DEST"
