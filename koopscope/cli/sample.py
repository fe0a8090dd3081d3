"""`koopscope sample`: images from a teacher, HKD, KD or CD checkpoint as a PNG grid or npz."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import Solver, outputs, user_errors


@user_errors
def sample(
    ckpt: Path = typer.Argument(..., help="Teacher, HKD, KD or CD checkpoint (model.safetensors)."),
    count: int = typer.Option(64, help="Number of images."),
    seed: int = typer.Option(0, help="First seed; image i uses seed + i."),
    out: Path = typer.Option(Path("samples.png"), help="Output: .png (grid) or .npz (uint8 images, seeds); a folder "
                                                       "gets samples.png."),
    steps: int = typer.Option(None, help="Teacher: grid points (Heun NFE = 2N - 1); CD: steps (1-3)."),
    solver: Solver = typer.Option(Solver.heun, help="Teacher only: ODE solver."),
    batch: int = typer.Option(256, help="Images per batch."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Draw COUNT samples (HKD, KD: one network pass per image)."""
    import numpy as np

    from ..errors import KoopscopeError
    from ..generators import load_generator
    from ..io.atomic import atomic_path
    from ..io.images import save_grid

    if count <= 0:
        raise KoopscopeError("--count must be positive")
    if batch <= 0:
        raise KoopscopeError("--batch must be positive")
    if steps is not None and steps <= 0:
        raise KoopscopeError("--steps must be positive")
    out = outputs(out, "samples", (".png", ".npz"))["npz" if out.suffix == ".npz" else "png"]
    seeds = range(seed, seed + count)
    gen = load_generator(ckpt, steps=steps, solver=solver.value)
    x, nfe = gen(seeds, batch=batch, progress=progress), gen.nfe
    if out.suffix == ".png":
        save_grid(x, out)
    else:
        u8 = ((x + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.savez(f, images=u8, seeds=np.asarray(list(seeds)), nfe=nfe)
    print(f"{count} samples ({nfe} NFE each) -> {out}")
