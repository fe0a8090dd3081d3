"""Editing and inpainting on the shipped model's closed-form trajectory (docs/method.md §8): exact at both ends
of the ratio, local in latent space, invertible for real images, and strict about its input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from koopscope.cli.main import app
from koopscope.data.fashion import DEFAULT_DIR
from koopscope.diffusion.samplers import seeded_noise
from koopscope.diffusion.teacher import load_teacher
from koopscope.editing.edit import apply_edit, level_weights, mix, trajectory
from koopscope.editing.images import read_images
from koopscope.editing.inpaint import Inpainting, fill_errors, hkd_inpaint, teacher_inpaint
from koopscope.editing.invert import invert, regenerate
from koopscope.editing.locality import split
from koopscope.editing.options import edit_time, parse_bands, region_mask
from koopscope.errors import KoopscopeError
from koopscope.hkd.sample import one_step
from koopscope.hkd.task import load_hkd
from koopscope.models import SHIPPED, SHIPPED_TEACHER
from koopscope.spectral.bands import channel_bands

SEEDS, REFS = [2_000_000, 2_000_001], [3_000_000, 3_000_001]


@pytest.fixture(scope="module")
def model():
    return load_hkd(SHIPPED)[0]


@pytest.fixture(scope="module")
def teacher():
    return load_teacher(SHIPPED_TEACHER)[0]


@pytest.fixture(scope="module")
def pair(model):
    """The edit time (the midpoint, sigma = sqrt(T eps)) and the seeds' and references' trajectories."""
    sigma = edit_time(model.cfg)
    return sigma, trajectory(model, SEEDS, sigma), trajectory(model, REFS, sigma)


@pytest.fixture(scope="module")
def image(model):
    """Two 'real' images: one-step samples rounded to 8 bits, as a PNG would hold them."""
    return ((one_step(model, [7, 8]).double() + 1) * 127.5).round().clamp(0, 255) / 127.5 - 1


def _region(name: str) -> torch.Tensor:
    return torch.from_numpy(region_mask(name, (32, 32)))


def test_the_midpoint_is_halfway_in_ln_sigma(model):
    assert edit_time(model.cfg) == pytest.approx((80 * 0.002) ** 0.5)


def test_ratio_zero_is_the_one_step_sample_bit_for_bit(model, pair):
    sigma, gen, ref = pair
    z_eps, x = apply_edit(model, gen, mix(gen.z_t, ref.z_t, 0.0, level_weights(model, _region("full"))), sigma)
    assert torch.equal(x, one_step(model, SEEDS))
    assert all(torch.equal(a, b) for a, b in zip(z_eps, gen.z_eps))


def test_ratio_one_with_every_band_and_the_full_region_is_the_reference(model, pair):
    sigma, gen, ref = pair
    mixed = mix(gen.z_t, ref.z_t, 1.0, level_weights(model, _region("full")))
    assert all(torch.equal(a, b) for a, b in zip(mixed, ref.z_t))   # lerp with weight 1: the end, exactly
    x = apply_edit(model, gen, mixed, sigma)[1]
    assert (x - ref.x).abs().max() < 1e-4   # z_gen,eps + exp(dtau A)(z_ref,t - z_gen,t): float32 rounding only


def test_latents_outside_the_region_never_change(model, pair):
    sigma, gen, ref = pair
    mixed = mix(gen.z_t, ref.z_t, 0.8, level_weights(model, _region("lower-left"), ["mid", "high"]))
    z_eps = apply_edit(model, gen, mixed, sigma)[0]
    for m, g, e, ge, r in zip(mixed, gen.z_t, z_eps, gen.z_eps, level_weights(model, _region("lower-left"))):
        outside = (r == 0).expand_as(g)
        assert torch.equal(m[outside], g[outside]) and torch.equal(e[outside], ge[outside])   # at t and at eps
        assert not torch.equal(m, g)


def test_band_and_level_weights_pick_their_coordinates(model):
    for g, w in zip(model.koopman.levels, level_weights(model, _region("full"), ["high"])):
        band = channel_bands(g.alpha.numpy(), g.beta.numpy(), 3)
        assert np.array_equal(w[0].numpy() > 0, band == 2) and set(np.unique(w.numpy())) == {0.0, 1.0}
    w = level_weights(model, _region("right"), None, levels=[0, 2])
    assert [bool(x.any()) for x in w] == [True, False, True, False, False]
    assert torch.equal(w[0][0, 0], _region("right").float())   # level 0 is at image resolution


def test_the_edit_time_does_not_matter_for_seed_references(model):
    """Region and band masks are equal on both channels of a pair, so the mix commutes with exp(dtau A)."""
    w = level_weights(model, _region("left"), ["high"])
    out = []
    for s in (0.05, 10.0):
        gen, ref = trajectory(model, SEEDS, s), trajectory(model, REFS, s)
        out.append(apply_edit(model, gen, mix(gen.z_t, ref.z_t, 0.5, w), s)[1])
    assert (out[0] - out[1]).abs().max() < 1e-4


def test_regions_and_bands_from_their_names(tmp_path):
    assert region_mask("lower-left", (4, 4)).tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]
    assert (region_mask("top", (4, 4)) + region_mask("bottom", (4, 4)) == region_mask("full", (4, 4))).all()
    assert (sum(region_mask(q, (6, 6)) for q in ("upper-left", "upper-right", "lower-left", "lower-right")) == 1).all()
    assert region_mask("box:1,0,3,2", (4, 4))[:, :2].tolist() == [[0, 0], [1, 1], [1, 1], [0, 0]]
    Image.fromarray(np.array([[255, 128], [0, 0]], np.uint8)).save(tmp_path / "m.png")
    assert region_mask(str(tmp_path / "m.png"), (2, 2)).tolist() == [[1, 128 / 255], [0, 0]]
    assert parse_bands("all", ["low", "mid", "high"]) is None
    assert parse_bands("high, mid,high", ["low", "mid", "high"]) == ["high", "mid"]
    with pytest.raises(KoopscopeError, match="mask .* is 2x2 pixels; the model's images are 4x4"):
        region_mask(str(tmp_path / "m.png"), (4, 4))


def test_the_low_pass_split_adds_up_and_separates_scales():
    yy, xx = np.mgrid[:32, :32]
    smooth, fine = np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 100), (-1.0) ** (yy + xx)
    for img in (smooth, fine):
        low, high = split(img)
        assert np.allclose(low + high, img)
    assert np.abs(split(smooth)[1]).max() < 0.05 and np.abs(split(fine)[0][5:-5, 5:-5]).max() < 1e-3   # inside


@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="Fashion-MNIST (dataset-fashion-mnist) not installed")
def test_inversion_then_regeneration_reproduces_real_images(teacher):
    """docs/method.md §8: at 18 steps on the shipped teacher, RMSE 0.031 on average (median 0.009) and at most 0.34
    over 64 test images; these two give 0.044 and 0.007."""
    x0 = torch.from_numpy(read_images("fashion:test:0", 2, (1, 32, 32)))
    inv = invert(teacher, x0, 18, 0.4)
    rmse = (regenerate(teacher, inv.x_T, 18) - x0).pow(2).flatten(1).mean(1).sqrt()
    assert rmse.max() <= 0.06 and rmse.min() <= 0.01, rmse
    assert inv.nfe == 2 * 18   # 18 grid steps with the edit time inserted, 2 NFE each
    assert 60 < inv.x_T.std() < 90 and inv.x_at.std() < 1.5   # noise of level ~T; the state at 0.4


def test_inpainting_keeps_the_known_pixels(model, teacher, image):
    """Tolerance 0: the last blend, at sigma = 0, writes x0 into the known part (as RePaint's does)."""
    region, noise = _region("lower-left"), seeded_noise([1, 2], (1, 32, 32))
    known = (region == 0).expand_as(image)
    runs = [hkd_inpaint(model, image, region, noise, 2), hkd_inpaint(model, image, region, noise, 2, "latent"),
            teacher_inpaint(teacher, image, region, noise, 3)]
    for res in runs:
        assert torch.equal(res.x[known], image[known]) and not torch.equal(res.x, image)
    # the blends steer the model itself: its own final state is near the known pixels, an unblended sample is not
    assert fill_errors(runs[0], image, region)["known_rmse_raw"] < 0.1
    unblended = one_step(model, [1, 2]).double()
    assert fill_errors(Inpainting(unblended, unblended), image, region)["known_rmse_raw"] > 0.3


def test_cli_edit_writes_the_figure_the_arrays_and_the_numbers(tmp_path):
    out = tmp_path / "e"
    r = CliRunner().invoke(app, ["edit", "--ref-seed", "3000000", "--rows", "2", "--ratios", "0,0.5,1", "--band",
                                 "mid,high", "--threads", "1", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["sigma"] == pytest.approx(0.4) and info["bands"] == "mid,high" and len(info["locality"]["aware"]) == 3
    assert info["locality"]["aware"][0]["image_inside"] == 0 and info["locality"]["agnostic"][2]["latent_outside"] == 0
    arrays = np.load(out / "edit.npz")
    assert arrays["aware"].shape == (3, 2, 1, 32, 32) and np.array_equal(arrays["aware"][0], arrays["original"])
    assert json.loads((out / "edit.json").read_text()) == info and (out / "edit.png").stat().st_size > 0


def test_cli_real_image_edit_and_inpaint(tmp_path, image):
    png = tmp_path / "real.png"
    Image.fromarray(((image[0, 0].numpy() + 1) * 127.5).round().astype(np.uint8)).save(png)
    r = CliRunner().invoke(app, ["edit", "--ref-image", str(png), "--rows", "1", "--steps", "4", "--route", "T",
                                 "--threads", "1", "--out", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    ref = json.loads((tmp_path / "e" / "edit.json").read_text())["reference_image"]
    assert ref["route"] == "T" and len(ref["route_latent_gap"][0]) == 5 and ref["nfe"]["inversion"] == 2 * 4
    assert "inversion (8 NFE)" in r.stdout
    r = CliRunner().invoke(app, ["inpaint", "--image", str(png), "--rows", "1", "--blends", "2", "--steps", "3",
                                 "--threads", "1", "--out", str(tmp_path / "i"), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["hkd"]["network_passes"] == 3 and info["teacher"]["nfe"] == 5 and info["hkd"]["masked_rmse"] > 0
    assert np.load(tmp_path / "i" / "inpaint.npz")["hkd"].shape == (1, 1, 32, 32)


def _one_line_error(r, *words):
    assert r.exit_code == 2 and r.stderr.startswith("error:") and r.stderr.strip().count("\n") == 0, r.output
    assert all(w in r.stderr for w in words), r.stderr


_EDIT = ["edit", "--ref-seed", "5", "--rows", "1"]
_INPAINT = ["inpaint", "--image", "fashion:test:0", "--rows", "1"]


@pytest.mark.parametrize("args,words", [
    ([*_EDIT, "--ratios", "0.5,1.5"], ["ratio 1.5 is outside [0, 1]"]),
    ([*_EDIT, "--ratios", "-0.1"], ["ratio -0.1 is outside [0, 1]"]),
    ([*_EDIT, "--ratios", "nan"], ["ratio nan is outside [0, 1]"]),
    ([*_EDIT, "--ratios", "half"], ["--ratios 'half'"]),
    ([*_EDIT, "--time", "100"], ["sigma 100 is outside [eps, T] = [0.002, 80]"]),
    ([*_EDIT, "--time", "0.001"], ["sigma 0.001 is outside"]),
    ([*_EDIT, "--band", "ultra"], ["unknown band 'ultra'"]),
    ([*_EDIT, "--band", "high,low,treble"], ["unknown band 'treble'"]),
    ([*_EDIT, "--region", "middle"], ["unknown region 'middle'", "box:y0,x0,y1,x1"]),
    ([*_EDIT, "--region", "box:0,0,40,8"], ["need 0 <= y0 < y1 <= 32"]),
    ([*_EDIT, "--region", "box:1,2"], ["four integers"]),
    ([*_EDIT, "--levels", "7"], ["level 7 does not exist"]),
    ([*_EDIT, "--rows", "0"], ["--rows"]),
    (["edit", "--rows", "1"], ["exactly one reference"]),
    ([*_EDIT, "--ref-image", "fashion:test:0"], ["exactly one reference"]),
    (["edit", str(SHIPPED_TEACHER), "--ref-seed", "5"], ["'teacher' checkpoint", "needs an HKD checkpoint"]),
    (["inpaint", str(SHIPPED_TEACHER), "--image", "fashion:test:0"], ["'teacher' checkpoint"]),
    (["inpaint", "--image", "nowhere.png"], ["image not found: nowhere.png"]),
    ([*_INPAINT, "--region", "full"], ["covers the whole image"]),
    ([*_INPAINT, "--blends", "0"], ["--blends"]),
    ([*_INPAINT, "--region", "nowhere.png"], ["mask file not found"]),
])
def test_bad_input_is_one_line_exit_2_before_any_output(tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    _one_line_error(CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")]), *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [_EDIT, _INPAINT])
def test_a_mask_of_the_wrong_size_is_refused(tmp_path, command):
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "mask.png")
    r = CliRunner().invoke(app, [*command, "--region", str(tmp_path / "mask.png"), "--out", str(tmp_path / "out")])
    _one_line_error(r, "is 16x16 pixels; the model's images are 32x32")


def test_refused_options_do_not_load_torch():
    code = ("import sys; from typer.testing import CliRunner; from koopscope.cli.main import app; "
            "r = CliRunner().invoke(app, ['edit', '--ref-seed', '1', '--ratios', '2']); assert r.exit_code == 2; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]"
