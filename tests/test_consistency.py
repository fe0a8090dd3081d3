"""Latent consistency: the measurement (exact on a synthetic linear flow, low for a random encoder), the
training term (zero with zero gradient on a linear path, blind to the latents' scale), the noise-level
estimate, warm starts, and the `koopscope consistency` command."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from koopscope.cli.main import app
from koopscope.diffusion.samplers import karras_sigmas, seeded_noise
from koopscope.diffusion.unet import UNetConfig
from koopscope.hkd.loss import HKDLossConfig, hkd_loss, latent_inconsistency
from koopscope.hkd.model import HKD, HKDConfig, sigma_hat
from koopscope.spectral import load_spectrum
from koopscope.spectral.consistency import measure, summary, verdict

# 12 image channels of 8x8 hold exactly the two levels (6 x 8 x 8 each, 3 blocks per location) of this network
PACKED = UNetConfig(img_channels=12, resolution=8, channels=6, channel_mult=(1,), blocks=1, attn_resolutions=())


class PackedObservable(HKD):
    """An HKD whose encoder reads the latents straight out of the state: E(x) = (x[:6], x[6:]), or a fixed
    random mixing of them (``mix``), which no block generator can follow."""


    def __init__(self, mix: torch.Tensor | None = None):
        super().__init__(HKDConfig(PACKED))
        self.mix = mix

    def encode(self, x, sigma):
        x = x.float() if self.mix is None else torch.einsum("ij,bjhw->bihw", self.mix, x.float())
        return [x[:, :6], x[:, 6:]]


def _flow(model: HKD, n: int = 6, steps: int = 8):
    """States along an exactly linear latent flow: x_t packs exp((tau_t - tau_T) A) z_T; the last state (sigma 0)
    repeats the state at eps."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for level in model.koopman.levels:
            level.alpha.copy_(torch.rand(level.alpha.shape, generator=g) * 0.6 - 0.1)
            level.beta.copy_(torch.randn(level.beta.shape, generator=g) * 0.3)
    sigmas = karras_sigmas(steps)
    z_T = [torch.randn(n, 6, 8, 8, generator=g) for _ in range(2)]
    states = [torch.cat(model.evolve(z_T, float(sigmas[0]), max(float(s), 0.002)), 1) for s in sigmas]
    return torch.stack(states, 1), sigmas


def test_consistency_is_exact_on_a_linear_flow_and_low_for_a_random_encoder():
    exact = PackedObservable().eval()
    states, sigmas = _flow(exact)
    ds = measure(exact, states, sigmas, batch=4)
    upper = np.triu(np.ones((len(sigmas) - 1,) * 2, bool), 1)
    assert np.allclose(ds.explained.values[:, upper], 1, atol=1e-5)
    assert np.allclose(ds.error.values[:, upper], 0, atol=1e-3)
    assert np.isnan(ds.explained.values[:, ~upper]).all()
    assert (ds.band_validity.values > 0.999).all() and (ds.band_valid_fraction.values == 1).all()
    assert verdict(ds)[0] and summary(ds)["consistent"] and ds.attrs["consistent"] == 1

    mixed = PackedObservable(mix=torch.randn(12, 12, generator=torch.Generator().manual_seed(1))).eval()
    mixed.load_state_dict(exact.state_dict())
    ds = measure(mixed, states, sigmas, batch=4)
    assert ds.attrs["min_explained"] < 0.5 and not verdict(ds)[0]
    assert "NOT consistent" in verdict(ds)[1]


def test_consistency_of_a_model_without_dynamics_is_zero():
    model = PackedObservable().eval()
    states, sigmas = _flow(model)
    for level in model.koopman.levels:   # the states still move; the model's A is now 0
        level.alpha.data.zero_()
        level.beta.data.zero_()
    ds = measure(model, states, sigmas, batch=6)
    upper = np.triu(np.ones((len(sigmas) - 1,) * 2, bool), 1)
    assert np.allclose(ds.explained.values[:, upper], 0, atol=1e-12)
    assert ds.attrs["one_step_mse"] == ds.attrs["one_step_mse_no_dynamics"]


def test_latent_term_is_zero_with_zero_gradient_on_a_linear_path():
    model = PackedObservable()
    states, sigmas = _flow(model, n=3)
    cols = [0, 3, 5]
    x, s = states[:, cols], sigmas[cols].expand(3, -1)
    zs = [z.detach().clone().requires_grad_() for z in model.encode(x.flatten(0, 1), None)]
    loss = latent_inconsistency(model, zs, s)
    loss.backward()
    assert float(loss.detach()) < 1e-10
    grads = [*(z.grad for z in zs), *(p.grad for g in model.koopman.levels for p in (g.alpha, g.beta))]
    assert all(float(gr.abs().max()) < 1e-6 for gr in grads)


def test_latent_term_ignores_the_latents_scale():
    """Shrinking the latents (the collapse a plain squared error invites) neither lowers the term nor is
    pushed by its gradient."""
    model = PackedObservable()
    states, sigmas = _flow(model, n=3)
    x = states[:, [0, 2, 6]] + 0.3 * torch.randn(3, 3, 12, 8, 8, generator=torch.Generator().manual_seed(2))
    s = sigmas[[0, 2, 6]].expand(3, -1)
    zs = model.encode(x.flatten(0, 1), None)
    scale = torch.tensor(1.0, requires_grad=True)
    loss = latent_inconsistency(model, [scale * z for z in zs], s)
    loss.backward()
    assert float(loss.detach()) > 0.01 and abs(float(scale.grad)) < 1e-6
    with torch.no_grad():
        for c in (1e-3, 10.0):
            assert float(latent_inconsistency(model, [c * z for z in zs], s)) == pytest.approx(float(loss), rel=1e-5)


def test_latent_term_in_the_hkd_loss():
    model = PackedObservable()
    states, sigmas = _flow(model, n=4)
    x, s, x0 = states[:, [0, 2, 5]], sigmas[[0, 2, 5]].expand(4, -1), states[:, -1]
    gen = torch.Generator().manual_seed(0)
    loss, terms = hkd_loss(model, x, s, x0, HKDLossConfig(latent=0.5), gen)
    assert "lat" in terms and float(terms["lat"]) < 1e-10
    torch.testing.assert_close(loss, terms["rec"] + terms["tc"] + 0.5 * terms["lat"])
    _, terms = hkd_loss(model, x, s, x0, HKDLossConfig(), gen)
    assert "lat" not in terms


@pytest.mark.parametrize("sigma", [40.0, 3.0, 0.3, 0.05])
def test_haar_noise_estimate_tracks_sigma_where_the_energy_one_does_not(sigma):
    from koopscope.data import load_dataset

    clean = load_dataset("fashion", size=32, limit=64).batch(torch.arange(64))
    x = clean.double() + sigma * seeded_noise(range(64), (1, 32, 32))
    haar, energy = sigma_hat(x, "haar"), sigma_hat(x, "energy")
    assert float((haar / sigma).log().abs().median()) < 0.25
    if sigma <= 0.3:   # Fashion-MNIST's mean square is ~0.7, not sigma_data^2
        assert float((energy / sigma).log().abs().median()) > 0.5


def test_old_checkpoints_keep_their_noise_estimate():
    d = HKDConfig(PACKED).to_dict()
    assert HKDConfig.from_dict(d).noise_estimate == "haar"
    del d["noise_estimate"]
    assert HKDConfig.from_dict(d).noise_estimate == "energy"


# ---- the command, on the shipped model ----------------------------------------------------------------------------

def test_consistency_cli_on_the_shipped_model(tmp_path):
    r = CliRunner().invoke(app, ["consistency", "--count", "4", "--batch", "4", "--out", str(tmp_path / "c"),
                                 "--no-progress", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {"consistent", "verdict", "min_explained", "explained_from_T", "band_validity"} <= set(out)
    ds = load_spectrum(tmp_path / "c" / "consistency.nc")
    assert ds.attrs["count"] == 4 and ds.attrs["seeds"] == "2000000..2000003"
    assert ds.attrs["min_explained"] == pytest.approx(out["min_explained"])
    assert (tmp_path / "c" / "consistency.png").stat().st_size > 0
    saved = json.loads((tmp_path / "c" / "consistency.json").read_text())
    assert saved["checkpoint_sha256"] == ds.attrs["checkpoint_sha256"]
    assert (tmp_path / "c" / "consistency.pdf").read_bytes()[:5] == b"%PDF-"


def test_consistency_plot_goes_where_asked(tmp_path):
    r = CliRunner().invoke(app, ["consistency", "--count", "2", "--batch", "2", "--out", str(tmp_path / "r.nc"),
                                 "--plot", str(tmp_path / "figures" / "c.png"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "r.json", "r.nc"]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["c.pdf", "c.png"]


def test_consistency_cli_bad_input(tmp_path):
    from koopscope.models import SHIPPED_TEACHER

    runner = CliRunner()
    cases = [(["--count", "0"], "--count"),
             ([str(SHIPPED_TEACHER), "--count", "2"], "'teacher' checkpoint"),
             (["--out", str(tmp_path / "c.npz")], "a folder or a .nc / .png / .json file"),
             (["--teacher", str(tmp_path / "none.safetensors")], "not found")]
    for args, msg in cases:
        r = runner.invoke(app, ["consistency", *args, "--no-progress"])
        last = r.stderr.strip().splitlines()[-1]   # after the note naming the shipped model, if used
        assert r.exit_code == 2 and last.startswith("error:") and msg in last and "Traceback" not in r.output, args
