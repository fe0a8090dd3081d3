"""Test-wide settings (one CPU thread per test process: the suite runs beside training jobs) and the smoke
chain that several modules distil from."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    """A smoke teacher (the preset's 300 steps) and a 64-trajectory store of it."""
    from dataclasses import replace

    from koopscope.data import load_dataset
    from koopscope.diffusion.teacher import TeacherTask
    from koopscope.train.loop import train
    from koopscope.train.presets import TEACHER_PRESETS
    from koopscope.trajectories import TrajectoryStore, generate

    root = tmp_path_factory.mktemp("chain")
    p = TEACHER_PRESETS["smoke"]
    data = load_dataset(p.dataset, size=p.resolution, limit=p.data_limit)
    teacher = train(TeacherTask(p.unet, data, p.sampler_steps), replace(p.train, threads=1, grid=0),
                    root / "teacher", preset="smoke", progress=False)
    generate(teacher, root / "store", 64, progress=False)
    return teacher, TrajectoryStore(root / "store")


@pytest.fixture(scope="session")
def continued(chain, tmp_path_factory):
    """The chain's teacher trained 3 steps further (`train teacher --init`); returns its model path."""
    from dataclasses import replace

    from koopscope.pipeline import teacher_task
    from koopscope.train.loop import train

    task, cfg = teacher_task("smoke", init=chain[0])
    return train(task, replace(cfg, steps=3, threads=1, grid=0, sample_every=0),
                 tmp_path_factory.mktemp("continued") / "run", preset="smoke", progress=False)
