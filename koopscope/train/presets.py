"""Named presets: data, network and schedule for each scale.

smoke    tiny; the whole chain runs here in about a minute (tests, demos)
fashion  Fashion-MNIST 32x32; trains on 2 CPU cores in about two hours
cifar10  the EDM paper's DDPM++ CIFAR-10 network and schedule (GPU)
ffhq64   the EDM paper's FFHQ-64 network and schedule (GPU)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..diffusion.unet import UNetConfig
from ..errors import KoopscopeError
from .loop import TrainConfig


@dataclass
class TeacherPreset:
    dataset: str
    resolution: int
    unet: UNetConfig
    train: TrainConfig
    flip: bool = False
    sampler_steps: int = 18   # Heun grid points: NFE = 2N - 1
    data_limit: int | None = None


TEACHER_PRESETS: dict[str, TeacherPreset] = {
    "smoke": TeacherPreset(
        dataset="fashion", resolution=16, data_limit=2048,
        unet=UNetConfig(img_channels=1, resolution=16, channels=8, channel_mult=(1, 2), blocks=1,
                        attn_resolutions=()),
        train=TrainConfig(steps=300, batch=32, lr=2e-3, warmup=10, ema_halflife=1000, log_every=10,
                          ckpt_every=100),
        sampler_steps=6,
    ),
    "fashion": TeacherPreset(
        dataset="fashion", resolution=32,
        unet=UNetConfig(img_channels=1, resolution=32, channels=32, channel_mult=(1, 2, 2, 2), blocks=1,
                        attn_resolutions=(8,)),
        train=TrainConfig(steps=3000, batch=128, lr=1e-3, warmup=200, ema_halflife=40_000, log_every=20,
                          ckpt_every=250, sample_every=1000, grad_clip=1.0),
    ),
    "cifar10": TeacherPreset(
        dataset="cifar10", resolution=32, flip=True,
        unet=UNetConfig(img_channels=3, resolution=32, channels=128, channel_mult=(2, 2, 2), blocks=4,
                        attn_resolutions=(16,), dropout=0.13),
        train=TrainConfig(steps=390_625, batch=512, lr=1e-3, warmup=19_531, ema_halflife=500_000,
                          ckpt_every=5000, sample_every=25_000, amp="bf16"),
    ),
    "ffhq64": TeacherPreset(
        dataset="images", resolution=64, flip=True,
        unet=UNetConfig(img_channels=3, resolution=64, channels=128, channel_mult=(1, 2, 2, 2), blocks=4,
                        attn_resolutions=(16,), dropout=0.05),
        train=TrainConfig(steps=312_500, batch=256, lr=2e-4, warmup=39_062, ema_halflife=500_000,
                          ckpt_every=5000, sample_every=25_000, amp="bf16"),
        sampler_steps=40,
    ),
}


def teacher_preset(name: str) -> TeacherPreset:
    if name not in TEACHER_PRESETS:
        raise KoopscopeError(f"unknown preset '{name}'; choose one of: {', '.join(TEACHER_PRESETS)}")
    return TEACHER_PRESETS[name]


@dataclass
class HKDPreset:
    teacher: str                 # the teacher preset whose network HKD reuses
    train: TrainConfig
    points: int = 4              # s: time points per trajectory (T plus s-1 grid times)
    distance: str = "mse"
    encoder_conditioning: str = "blind"  # "sigma" | "blind" (docs/method.md §4)
    intermediate: float = 1.0    # weight of intermediate-state supervision (0 = paper objective)
    latent: float = 1.0          # weight of latent consistency (0 = paper objective; docs/method.md §5)
    noise_estimate: str = "haar"  # the blind encoder's noise-level estimate
    time_axis: str = "log"       # what the generators act on: "log" (ln sigma) | "linear" (sigma)


HKD_PRESETS: dict[str, HKDPreset] = {
    "smoke": HKDPreset(teacher="smoke", points=3,
                       train=TrainConfig(steps=300, batch=16, lr=1e-3, warmup=10, ema_halflife=500, log_every=10,
                                         ckpt_every=100, grid=16)),
    "fashion": HKDPreset(teacher="fashion", points=3,  # ~1.7 s/step on one CPU core
                         train=TrainConfig(steps=4000, batch=32, lr=3e-4, warmup=100, ema_halflife=10_000,
                                           log_every=20, ckpt_every=100, sample_every=500, grad_clip=1.0)),
    "cifar10": HKDPreset(teacher="cifar10", points=4, distance="huber",
                         train=TrainConfig(steps=200_000, batch=256, lr=1e-3, warmup=5000, ema_halflife=500_000,
                                           ckpt_every=5000, sample_every=10_000, amp="bf16")),
    "ffhq64": HKDPreset(teacher="ffhq64", points=4, distance="huber",
                        train=TrainConfig(steps=200_000, batch=64, lr=1e-3, warmup=5000, ema_halflife=500_000,
                                          ckpt_every=5000, sample_every=10_000, amp="bf16")),
}


def hkd_preset(name: str) -> HKDPreset:
    if name not in HKD_PRESETS:
        raise KoopscopeError(f"unknown preset '{name}'; choose one of: {', '.join(HKD_PRESETS)}")
    return HKD_PRESETS[name]
