"""Assertions shared by several test modules."""

import torch

from koopscope.diffusion.teacher import save_untrained
from koopscope.diffusion.unet import UNetConfig
from koopscope.hkd.model import HKD, HKDConfig
from koopscope.io.checkpoint import load_checkpoint, provenance, save_checkpoint, with_prefix

TINY = UNetConfig(img_channels=1, resolution=8, channels=8, channel_mult=(1, 2), blocks=1, attn_resolutions=())


def assert_same_checkpoints(a, b) -> None:
    """Two checkpoint files hold the same tensors, bit for bit."""
    ta, _ = load_checkpoint(a)
    tb, _ = load_checkpoint(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def tiny_checkpoints(folder, sampler_steps: int, std: float | None = None):
    """Untrained teacher and HKD checkpoints of the tiny 8x8 network (seed torch first): their two paths."""
    teacher = save_untrained(folder / "teacher.safetensors", TINY, sampler_steps, std)
    hkd = HKD(HKDConfig(TINY))
    save_checkpoint(folder / "hkd.safetensors", with_prefix(hkd.state_dict(), "ema"), "hkd",
                    {"model": hkd.cfg.to_dict(), "image_shape": [1, 8, 8]}, provenance())
    return teacher, folder / "hkd.safetensors"
