#!/usr/bin/env bash
# The Fashion-MNIST chain behind the shipped model and the headline numbers, resumable step by step:
#   bash analyses/fashion_pipeline.sh [THREADS]
# Each step skips work already done (training resumes, stores continue, references are cached).
set -euo pipefail
cd "$(dirname "$0")/.."
TH=${1:-1}
K=".venv/bin/koopscope"
PY=".venv/bin/python"
# The shipped teacher (checkpoints/) was made by the first command; set RETRAIN=1 to redo it.
TEACHER=koopscope/models/teacher-fashion.safetensors S=runs/traj-fashion H=runs/hkd-fashion

resume() { [ -f "$1/checkpoint.safetensors" ] && echo --resume || true; }
missing() { [ "${FORCE:-0}" = 1 ] || [ ! -f "$1" ]; }   # evaluations already saved are skipped (FORCE=1 redoes)

if [ "${RETRAIN:-0}" = 1 ]; then
  $K train teacher --preset fashion --out runs/teacher-fashion --threads "$TH" --no-progress $(resume runs/teacher-fashion)
  TEACHER=runs/teacher-fashion/model.safetensors
fi
missing figures/teacher_samples.png && $PY analyses/fig_teacher_samples.py $TEACHER
$K trajectories $TEACHER --out $S --count 5000 --threads "$TH" --no-progress
missing analyses/results/eval_teacher.json && $PY analyses/eval_teacher.py --teacher $TEACHER --trajectories $S --count 5000 --threads "$TH" --no-progress
$PY analyses/ablation_dynamics.py --preset fashion --teacher $TEACHER --trajectories $S --steps 300 --fid 1000 --threads "$TH" \
  --results analyses/results/ablation_dynamics-fashion.json --figure figures/ablation_dynamics_fashion
$K train hkd --preset fashion --trajectories $S --teacher $TEACHER --out $H --threads "$TH" --no-progress $(resume $H)
$PY analyses/eval_hkd.py --hkd $H/model.safetensors --trajectories $S --count 5000 --threads "$TH" --no-progress
$PY analyses/bench_speed.py --teacher $TEACHER --hkd $H/model.safetensors --threads "$TH"
$PY analyses/ship_model.py $H/model.safetensors   # -> koopscope/models/hkd-fashion.{safetensors,json}
$PY analyses/fig_hkd_samples.py --hkd $H/model.safetensors
$PY analyses/spectrum_reading.py --hkd $H/model.safetensors --threads "$TH"
