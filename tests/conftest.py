"""Test-wide settings: one CPU thread per test process (the suite runs beside training jobs)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
