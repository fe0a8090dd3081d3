"""The one-step baselines KD and CD: boundary conditions, training lowers the loss, sampling spends the NFE it
claims (counted with forward hooks), resume is bit for bit, the loader knows every kind."""

from dataclasses import replace

import pytest
import torch
from checks import assert_same_checkpoints

from koopscope.diffusion.samplers import seeded_noise
from koopscope.distill import cd, kd
from koopscope.errors import KoopscopeError
from koopscope.generators import load_generator, load_model
from koopscope.train.loop import train
from koopscope.train.presets import HKD_PRESETS

TASKS = {"kd": kd.KDTask, "cd": cd.CDTask}


def _train(chain, method, out, steps, resume=False, **cfg):
    torch.manual_seed(0)
    task = TASKS[method](chain[0], chain[1])
    base = replace(HKD_PRESETS["smoke"].train, steps=steps, threads=1, grid=0, log_every=5, **cfg)
    return train(task, base, out, resume=resume, preset="smoke", progress=False)


@pytest.fixture(scope="module", params=["kd", "cd"])
def run(request, chain, tmp_path_factory):
    """60 smoke steps of one method; returns (method, run folder)."""
    out = tmp_path_factory.mktemp(request.param) / "run"
    _train(chain, request.param, out, 60)
    return request.param, out


def _calls(net):
    """Count forward passes of the U-Net inside ``net``."""
    count = [0]
    net.backbone.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return count


def test_consistency_model_boundary_and_start(chain):
    task = cd.CDTask(chain[0], chain[1])
    x = torch.randn(3, *chain[1].image_shape)
    torch.testing.assert_close(task.net(x, task.net.sigma_min), x, rtol=0, atol=0)  # f(x, eps) = x exactly
    assert float(task.sigmas[-1]) == task.net.sigma_min and float(task.sigmas[0]) == 80.0
    teacher, _ = load_model(chain[0], "teacher")  # the backbone starts as the teacher's
    for a, b in zip(task.net.backbone.parameters(), teacher.backbone.parameters()):
        assert torch.equal(a, b)


def test_kd_task_refuses_another_teachers_store(chain, tmp_path):
    fake = tmp_path / "teacher.safetensors"
    fake.write_bytes(chain[0].read_bytes() + b"")  # same bytes: accepted
    kd.KDTask(fake, chain[1])
    teacher, meta = load_model(chain[0], "teacher")
    from koopscope.io.checkpoint import save_checkpoint, with_prefix

    with torch.no_grad():
        next(teacher.parameters()).add_(1.0)
    save_checkpoint(fake, with_prefix(teacher.state_dict(), "ema"), "teacher", meta["config"], meta["provenance"])
    with pytest.raises(KoopscopeError, match="another teacher"):
        kd.KDTask(fake, chain[1])


def test_training_lowers_the_loss(chain, run):
    """The loss on one fixed batch of 64, at the start (the teacher's weights) and for the trained EMA model."""
    method, out = run
    task = TASKS[method](chain[0], chain[1])

    def loss():
        with torch.no_grad():
            return float(task.loss(task.net, 64, torch.Generator().manual_seed(99), "cpu")[0])

    before = loss()
    task.net.load_state_dict(load_model(out / "model.safetensors", method)[0].state_dict())
    after = loss()
    assert after < 0.8 * before, (before, after)


def test_sampling_spends_the_nfe_it_claims(chain, run):
    method, out = run
    for steps in ([None] if method == "kd" else [1, 2, 3]):
        gen = load_generator(out / "model.safetensors", steps=steps)
        count = _calls(gen.net)
        x = gen(range(5), batch=2)
        assert x.shape == (5, *chain[1].image_shape) and x.abs().max() <= 1
        assert count[0] == gen.nfe * 3 and gen.nfe == (steps or 1)  # three batches of <= 2 images
        torch.testing.assert_close(gen([3]), x[3:4])   # a sample depends on its seed alone


def test_kd_sample_is_the_denoiser_at_T(chain, run):
    method, out = run
    if method != "kd":
        pytest.skip("KD only")
    net, _ = load_model(out / "model.safetensors", "kd")
    x_T = seeded_noise([7], chain[1].image_shape) * 80.0
    torch.testing.assert_close(kd.sample(net, [7]), net(x_T, 80.0).float().clamp(-1, 1))


def test_resume_is_bit_for_bit(chain, tmp_path):
    for method in TASKS:
        _train(chain, method, tmp_path / method / "full", 8, ckpt_every=4)
        _train(chain, method, tmp_path / method / "split", 4, ckpt_every=4)
        _train(chain, method, tmp_path / method / "split", 8, ckpt_every=4, resume=True)
        assert_same_checkpoints(tmp_path / method / "full" / "checkpoint.safetensors",
                                tmp_path / method / "split" / "checkpoint.safetensors")


def test_loader_errors(chain, run):
    method, out = run
    with pytest.raises(KoopscopeError, match="this needs an HKD checkpoint"):
        load_model(out / "model.safetensors", "hkd")
    with pytest.raises(KoopscopeError, match="--steps" if method == "kd" else "1 to 3"):
        load_generator(out / "model.safetensors", steps=2 if method == "kd" else 4)
    assert load_generator(chain[0], steps=4, solver="euler").nfe == 4
    assert load_generator(chain[0], steps=4).nfe == 7


def test_cli_train_and_sample(chain, tmp_path):
    from typer.testing import CliRunner

    from koopscope.cli.main import app

    teacher, store = chain
    for method in TASKS:
        r = CliRunner().invoke(app, ["train", method, "--trajectories", str(store.path), "--teacher", str(teacher),
                                     "--steps", "3", "--grid", "0", "--threads", "1", "--no-progress",
                                     "--out", str(tmp_path / method)])
        assert r.exit_code == 0, r.output
        steps = ["--steps", "2"] if method == "cd" else []
        r = CliRunner().invoke(app, ["sample", str(tmp_path / method / "model.safetensors"), "--count", "4", *steps,
                                     "--out", str(tmp_path / f"{method}.npz"), "--no-progress"])
        assert r.exit_code == 0 and f"({2 if method == 'cd' else 1} NFE each)" in r.output, r.output
    r = CliRunner().invoke(app, ["train", "kd", "--trajectories", str(store.path), "--teacher",
                                 str(tmp_path / "cd" / "model.safetensors"), "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "needs a teacher checkpoint" in r.output, r.output
    assert not (tmp_path / "bad" / "log.jsonl").exists()
