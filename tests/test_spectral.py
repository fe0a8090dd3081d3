import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from koopscope.cli.main import app
from koopscope.diffusion.samplers import karras_sigmas, seeded_noise
from koopscope.diffusion.unet import UNetConfig
from koopscope.hkd.model import HKD, HKDConfig
from koopscope.hkd.task import load_hkd
from koopscope.io.checkpoint import save_checkpoint
from koopscope.models import default_checkpoint
from koopscope.spectral import (
    band_mask,
    band_reconstructions,
    level_bases,
    level_view,
    load_spectrum,
    save_spectrum,
    spectrum,
    spectrum_from_dense,
)

UNET = UNetConfig(img_channels=1, resolution=8, channels=4, channel_mult=(1, 2), blocks=1, attn_resolutions=())
SIGMAS = karras_sigmas(4, final_zero=False).tolist()


def small_hkd(time_axis="log", hierarchy=True, seed=0):
    """A tiny HKD with random generators and a non-zero decoder output."""
    torch.manual_seed(seed)
    model = HKD(HKDConfig(unet=UNET, time_axis=time_axis, hierarchy=hierarchy))
    with torch.no_grad():
        for g in model.koopman.levels:
            g.alpha.normal_(0, 0.3)
            g.beta.normal_(0, 1.0)
        torch.nn.init.normal_(model.decoder.conv_out.weight, std=0.3)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def model():
    return small_hkd()


def test_eigenvalues_match_numpy(model):
    ds = spectrum(model)
    assert ds.attrs["time_convention"] == "generator acts on tau = ln(sigma)"
    assert ds.attrs["path"] == "block" and list(ds.band.values) == ["low", "mid", "high"]
    for level, A in enumerate(model.koopman.dense()):
        want = np.linalg.eigvals(A.double().numpy())  # (h, w, d)
        lv = level_view(ds, level)
        got = lv.eigenvalue.values
        assert got.shape == want.shape and bool(lv.valid.all())
        np.testing.assert_allclose(np.sort_complex(got), np.sort_complex(want), rtol=1e-12, atol=1e-12)
        rate = np.abs(got.real)
        assert (np.diff(rate, axis=-1) >= 0).all()
        np.testing.assert_array_equal(got[..., 1::2], got[..., ::2].conj())  # pairs adjacent
    assert not ds.valid.sel(level=1, y=slice(4, None)).any()  # padding beyond the 4x4 level
    assert np.isnan(ds.eigenvalue.sel(level=1, y=5).values.real).all()


@pytest.mark.parametrize("time", ["log", "linear"])
def test_derived_quantities(time):
    model = small_hkd(time)
    ds = spectrum(model).where(lambda d: d.valid)
    dtau = np.log(0.002 / 80) if time == "log" else 0.002 - 80
    assert ds.attrs["dtau"] == pytest.approx(dtau) and f"tau = {'ln(sigma)' if time == 'log' else 'sigma'}" in \
        ds.attrs["time_convention"]
    lam = ds.eigenvalue
    xr.testing.assert_allclose(ds.growth, np.abs(np.exp(lam * dtau)).where(ds.valid))
    decay = lam.real * -np.sign(dtau)  # along T -> eps
    xr.testing.assert_allclose(ds.decay, decay.where(ds.valid))
    assert (ds.decay > 0).any() and (ds.decay < 0).any()  # the test model has both kinds
    assert ((ds.growth < 1) == (ds.decay > 0)).where(ds.valid == 1, True).all()
    xr.testing.assert_allclose(ds.half_life, (np.log(2) / decay).where(decay > 0))
    xr.testing.assert_allclose(ds.doubling_time, (np.log(2) / -decay).where(decay < 0))
    xr.testing.assert_equal(ds.decay_rate, np.abs(lam.real).where(ds.valid))
    xr.testing.assert_equal(ds.frequency, lam.imag.where(ds.valid))


@pytest.mark.parametrize("method", ["rank", "quantile"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_bands_partition_modes(model, method, n):
    ds = spectrum(model, bands=n, method=method)
    assert list(ds.band.values) == (["low", "mid", "high"] if n == 3 else [f"band{i}" for i in range(n)])
    masks = [band_mask(ds, b) for b in ds.band.values]
    assert (sum(m.astype(int) for m in masks) == ds.valid.astype(int)).all()  # each valid mode in one band
    for level in ds.level.values:
        lv = level_view(ds, int(level))
        band, pair = lv.band_index.values, lv.pair.values
        assert (band[..., ::2] == band[..., 1::2]).all() and (pair[..., ::2] == pair[..., 1::2]).all()
        assert lv.band_modes.sum() == lv.valid.sum()
        rate = lv.decay_rate.values
        if method == "rank":  # same split at every location, bands ordered by |Re| within it
            assert (band == band[:1, :1]).all() and (np.diff(band, axis=-1) >= 0).all()
        else:
            edges = np.concatenate([[-np.inf], lv.threshold.values, [np.inf]])
            assert (edges[band] < rate).all() and (rate <= edges[band + 1]).all()


def test_block_and_dense_paths_agree(model):
    block, dense = spectrum(model, method="quantile"), spectrum_from_dense(model.koopman.dense(), method="quantile")
    assert dense.attrs["path"] == "dense" and (dense.block == -1).all()
    np.testing.assert_allclose(dense.eigenvalue.values, block.eigenvalue.values, rtol=1e-12, atol=1e-12)
    xr.testing.assert_equal(dense.band_index, block.band_index)


def test_dense_random_generator_matches_numpy():
    rng = np.random.default_rng(1)
    for A in (rng.standard_normal((41, 41)), torch.from_numpy(rng.standard_normal((3, 12, 12)))):
        ds = spectrum_from_dense(A, bands=4, method="rank")
        want = np.linalg.eigvals(np.asarray(A)).reshape(1, -1, A.shape[-1])
        got = ds.eigenvalue.isel(level=0).values
        np.testing.assert_allclose(np.sort_complex(got), np.sort_complex(want), rtol=1e-10, atol=1e-10)
        assert (np.diff(np.abs(got.real), axis=-1) >= -1e-12).all()
        band, pair = ds.band_index.values[0], ds.pair.values[0]
        for b, p in zip(band.reshape(-1, band.shape[-1]), pair.reshape(-1, pair.shape[-1])):
            assert all(len(set(b[p == g])) == 1 for g in np.unique(p))  # conjugate groups never split
    with pytest.raises(ValueError):
        spectrum_from_dense(np.ones((2, 2, 2, 3, 3)))


def test_checkpoint_path_reads_only_the_generators(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    path = default_checkpoint()[0]
    ds = spectrum(path)
    assert ds.attrs["checkpoint"] == str(path) and len(ds.attrs["checkpoint_sha256"]) == 64
    model, _ = load_hkd(path)
    attrs = {k: ds.attrs[k] for k in ("checkpoint", "checkpoint_sha256")}
    xr.testing.assert_identical(ds, spectrum(model, attrs=attrs))
    with safe_open(str(path), framework="numpy") as f:  # the same file without encoder and decoder
        kept = {k: f.get_tensor(k) for k in f.keys() if ".koopman." in k}  # noqa: SIM118 (not iterable)
        save_file(kept, tmp_path / "generators.safetensors", metadata=f.metadata())
    assert 0 < len(kept) < len(model.state_dict())
    stripped = spectrum(tmp_path / "generators.safetensors")
    xr.testing.assert_identical(ds.drop_attrs(), stripped.drop_attrs())


def test_spectrum_command_runs_without_torch(tmp_path):
    """`koopscope spectrum CKPT` reads the generators with numpy: importing torch alone takes about 1 s."""
    ckpt = str(default_checkpoint()[0])
    args = ["spectrum", ckpt, "--out", str(tmp_path / "s.nc"), "--plot", str(tmp_path / "s.png")]
    code = ("import sys; from typer.testing import CliRunner; from koopscope.cli.main import app; "
            f"r = CliRunner().invoke(app, {args!r}); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]"


def test_disabled_levels_report_zero():
    ds = spectrum(small_hkd(hierarchy=False))
    assert ds.active.values.tolist() == [False, False, True]
    assert (level_view(ds, 0).eigenvalue == 0).all() and (level_view(ds, 2).eigenvalue != 0).any()


def test_netcdf_round_trip(model, tmp_path):
    for ds in (spectrum(model, bands=1, method="quantile"), spectrum(model), spectrum_from_dense(np.eye(3)),
               band_reconstructions(model, [3, 4], SIGMAS, attrs={"checkpoint": "x"})):
        back = load_spectrum(save_spectrum(ds, tmp_path / "s.nc"))
        xr.testing.assert_identical(back, ds)
        assert all(back[k].dtype == ds[k].dtype for k in ds.variables)


def test_files_from_before_the_renames_load_in_todays_names(model, tmp_path):
    """Spectra and band reconstructions said time (tau = sigma: "sigma"); consistency files kept the time
    axis in time_convention and said encoder_time."""
    ds = spectrum(model)
    old = ds.assign_attrs(time="sigma")
    del old.attrs["time_axis"]
    back = load_spectrum(save_spectrum(old, tmp_path / "s.nc"))
    assert back.attrs["time_axis"] == "linear" and "time" not in back.attrs
    assert back.attrs["time_convention"] == ds.attrs["time_convention"]
    cons = xr.Dataset({"fidelity": ("time", [0.1, 0.2])}, {"time": [80.0, 1.0]},
                      {"time_convention": "log", "encoder_time": "blind"})
    back = load_spectrum(save_spectrum(cons, tmp_path / "c.nc"))
    assert {k: back.attrs[k] for k in ("time_axis", "encoder_conditioning")} == {"time_axis": "log",
                                                                               "encoder_conditioning": "blind"}
    assert "time_convention" not in back.attrs and "time" in back.coords


def plain_decodings(model, seeds, sigmas):
    cfg = model.cfg
    z_T = model.encode(seeded_noise(seeds, (1, 8, 8)) * cfg.sigma_max, cfg.sigma_max)
    return z_T, [model.decode(model.evolve(z_T, cfg.sigma_max, s), s) for s in sigmas]


@pytest.mark.parametrize("path", ["block", "dense"])
def test_all_bands_give_the_plain_decoding(model, path):
    seeds = [0, 1, 2]
    z_T, plain = plain_decodings(model, seeds, SIGMAS)
    exact = path == "block"
    # isolated: the band latents sum to the latent, so their sum decodes to the plain decoding
    bases = level_bases(model, path=path)
    for s, want in zip(SIGMAS, plain):
        zs = model.evolve(z_T, 80.0, s)
        summed = [sum(b.keep(z, torch.tensor([k])) for k in range(3)) for b, z in zip(bases, zs)]
        got = model.decode(summed, s)
        assert torch.equal(got, want) if exact else torch.allclose(got, want, rtol=1e-4, atol=1e-3 * s)
    # cumulative: the last row keeps every band
    cum = band_reconstructions(model, seeds, SIGMAS, cumulative=True, path=path)
    assert cum.attrs["mode"] == "cumulative" and cum.image.dims == ("band", "time", "sample", "channel", "y", "x")
    np.testing.assert_allclose(cum.sigma.values, SIGMAS)
    for k, want in enumerate(plain):
        got = torch.from_numpy(cum.image.sel(band="high").values[k])
        assert torch.equal(got, want) if exact else torch.allclose(got, want, rtol=1e-4, atol=1e-3 * SIGMAS[k])
    # energies: isolated bands add up to the whole latent's, which is the cumulative last
    iso = band_reconstructions(model, seeds, SIGMAS, path=path)
    xr.testing.assert_allclose(iso.energy.sum("band"), cum.energy.sel(band="high", drop=True))
    total = [[float(z.double().pow(2).sum()) for z in model.evolve(z_T, 80.0, s)] for s in SIGMAS]
    np.testing.assert_allclose(iso.energy.sum(("band", "sample")).values.T, total, rtol=1e-9)


def test_band_selection_and_level_mask(model):
    seeds = [5, 6]
    z_T, _ = plain_decodings(model, seeds, SIGMAS)
    one = band_reconstructions(model, seeds, SIGMAS, keep=["mid"], level=1)
    assert list(one.band.values) == ["mid"] and one.attrs["masked_levels"] == 1
    bases = level_bases(model)
    for k, s in enumerate(SIGMAS):
        zs = model.evolve(z_T, 80.0, s)
        zs[1] = bases[1].keep(zs[1], torch.tensor([1]))
        assert torch.equal(torch.from_numpy(one.image.values[0, k]), model.decode(zs, s))
    with pytest.raises(ValueError, match="level 3 does not exist"):
        band_reconstructions(model, seeds, SIGMAS, level=3)
    with pytest.raises(ValueError, match="unknown band"):
        band_reconstructions(model, seeds, SIGMAS, keep=["ultra"])


def test_cli_spectrum_and_modes_on_shipped_model(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["spectrum"])
    assert r.exit_code == 0, r.output
    assert default_checkpoint()[1] in r.output and "most persistent" in r.output and "bands by rank" in r.output
    r = runner.invoke(app, ["spectrum", str(default_checkpoint()[0]), "--json", "--bands", "2", "--method",
                            "quantile", "--out", str(tmp_path / "s.nc"), "--plot", str(tmp_path / "s.png")])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["attrs"]["bands"] == 2 and set(info["levels"][0]["bands"]) == {"band0", "band1"}
    assert all((tmp_path / f).stat().st_size > 0 for f in ("s.nc", "s.png", "s.pdf"))
    assert load_spectrum(tmp_path / "s.nc").attrs["band_method"] == "quantile"
    r = runner.invoke(app, ["modes", "--band", "low", "--columns", "3", "--count", "2", "--cumulative", "--level",
                            "0", "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    ds = load_spectrum(tmp_path / "m" / "modes_low_cumulative_level0.nc")
    assert ds.image.shape[:3] == (1, 3, 2) and (tmp_path / "m" / "modes_low_cumulative_level0.png").exists()


def test_cli_user_errors_are_one_line_exit_2(tmp_path):
    teacher = save_checkpoint(tmp_path / "teacher.safetensors", {"model.w": torch.zeros(1)}, "teacher", {}, {})
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    other = save_checkpoint(tmp_path / "other.safetensors", {"ema.koopman.levels.0.alpha": torch.zeros(2, 8, 8)},
                            "hkd", {"model": HKDConfig(unet=UNET).to_dict()}, {})
    shipped = str(default_checkpoint()[0])
    runner = CliRunner()
    for args, msg in ((["spectrum", str(teacher)], "'teacher' checkpoint"),
                      (["spectrum", str(tmp_path / "junk.safetensors")], "not a readable"),
                      (["spectrum", str(tmp_path / "missing.safetensors")], "not found"),
                      (["spectrum", str(other)], "levels.0.beta, levels.1.alpha"),
                      (["spectrum", shipped, "--bands", "0"], "--bands"),
                      (["modes", "--ckpt", str(teacher)], "'teacher' checkpoint"),
                      (["modes", "--ckpt", shipped, "--band", "ultra"], "unknown band 'ultra'"),
                      (["modes", "--ckpt", shipped, "--level", "7"], "level 7 does not exist")):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert r.output.count("\n") == 1 and r.output.startswith("error: ") and msg in r.output, r.output
