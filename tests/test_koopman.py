import math

import pytest
import scipy.linalg
import torch

from koopscope.hkd.config import delta_tau, tau
from koopscope.hkd.koopman import EXPONENT_CLAMP, HierarchicalKoopman, KoopmanGenerators, apply_precomputed

T, EPS = 80.0, 0.002


def random_gen(dim=6, h=3, w=4, scale=1.0, dtype=torch.float64, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    gen = KoopmanGenerators(dim, h, w, **kw).to(dtype)
    with torch.no_grad():
        gen.alpha.copy_(scale * torch.randn(gen.alpha.shape, generator=g, dtype=dtype))
        gen.beta.copy_(3 * torch.randn(gen.beta.shape, generator=g, dtype=dtype))
    return gen


def randz(gen, batch=2, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, gen.dim, gen.height, gen.width, generator=g, dtype=dtype)


def per_location(A, z):
    """Apply (H, W, d, d) matrices to z of shape (B, d, H, W)."""
    return torch.einsum("hwij,bjhw->bihw", A, z)


def test_init_zero_is_identity_and_state_dict_plain():
    gen = KoopmanGenerators(4, 2, 3)
    assert gen.alpha.shape == gen.beta.shape == (2, 2, 3)
    assert not gen.alpha.any() and not gen.beta.any()
    z = torch.randn(2, 4, 2, 3)
    assert torch.equal(gen.propagate(z, -5.0), z)
    assert list(gen.state_dict()) == ["alpha", "beta"]
    hk = HierarchicalKoopman([(4, 4, 4), (8, 2, 2)])
    assert list(hk.state_dict()) == ["levels.0.alpha", "levels.0.beta", "levels.1.alpha", "levels.1.beta"]


def test_bad_arguments():
    with pytest.raises(ValueError):
        KoopmanGenerators(5, 2, 2)
    with pytest.raises(ValueError):
        KoopmanGenerators(4, 2, 2).propagate(torch.zeros(1, 4, 2, 3), 1.0)


@pytest.mark.parametrize("dt", [-10.6, -0.3, 0.0, 0.7, 2.5])
def test_matches_matrix_exponential(dt):
    gen = random_gen()
    z = randz(gen)
    A = gen.dense().detach()
    ref = per_location(torch.linalg.matrix_exp(dt * A), z)
    torch.testing.assert_close(gen.propagate(z, dt), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gen.propagator(dt), torch.linalg.matrix_exp(dt * A), rtol=1e-10, atol=1e-10)
    for i, j in [(0, 0), (2, 3), (1, 2)]:
        expected = scipy.linalg.expm(dt * A[i, j].numpy())
        torch.testing.assert_close(gen.propagator(dt)[i, j].detach(), torch.from_numpy(expected),
                                   rtol=1e-10, atol=1e-10)


def _sorted(values):
    return torch.sort(values.real * 1000 + values.imag, -1).values


def test_dense_structure_and_eigenvalues():
    gen = random_gen(dim=4, h=2, w=2)
    A = gen.dense().detach()
    assert A.shape == (2, 2, 4, 4)
    i, j, k = 1, 0, 1
    a, b = gen.alpha[k, i, j].item(), gen.beta[k, i, j].item()
    torch.testing.assert_close(A[i, j, 2:, 2:], torch.tensor([[a, -b], [b, a]], dtype=A.dtype))
    assert not A[i, j, :2, 2:].any() and not A[i, j, 2:, :2].any()
    ev = torch.linalg.eigvals(A)  # (H, W, 4)
    expected = torch.complex(gen.alpha, gen.beta).permute(1, 2, 0).detach()
    expected = torch.cat([expected, expected.conj()], -1)
    torch.testing.assert_close(_sorted(ev), _sorted(expected), rtol=1e-9, atol=1e-9)


def test_composition():
    gen = random_gen()
    z = randz(gen)
    torch.testing.assert_close(gen.propagate(gen.propagate(z, 0.4), -1.3), gen.propagate(z, -0.9))


def test_disabled_is_identity():
    gen = random_gen(enabled=False)
    z = randz(gen)
    assert torch.equal(gen.propagate(z, -3.0), z)
    assert torch.equal(gen.propagate(z, torch.tensor([1.0, -2.0])), z)
    assert not gen.dense().any()
    torch.testing.assert_close(gen.propagator(2.0), torch.eye(gen.dim, dtype=z.dtype).expand(3, 4, -1, -1))
    gen.enabled = True
    assert not torch.allclose(gen.propagate(z, -3.0), z)


def test_per_sample_dt():
    gen = random_gen()
    z = randz(gen, batch=3)
    dts = torch.tensor([-2.0, 0.0, 0.5], dtype=torch.float64)
    out = gen.propagate(z, dts)
    for b in range(3):
        torch.testing.assert_close(out[b:b + 1], gen.propagate(z[b:b + 1], dts[b]))
    torch.testing.assert_close(out[1], z[1])
    sig_from = torch.tensor([80.0, 10.0, 1.0], dtype=torch.float64)
    sig_to = torch.tensor([0.002, 0.002, 0.5], dtype=torch.float64)
    out = gen.propagate(z, delta_tau(sig_from, sig_to))
    torch.testing.assert_close(out[0:1], gen.propagate(z[0:1], math.log(0.002 / 80)))


def test_time_parameterisation():
    assert tau(80.0, "linear") == 80.0
    assert tau(80.0, "log") == pytest.approx(math.log(80.0))
    assert delta_tau(T, EPS, "log") == pytest.approx(-10.596634733)
    assert delta_tau(T, EPS, "linear") == pytest.approx(EPS - T)
    sig = torch.tensor([T, EPS], dtype=torch.float32)  # tensors: float64, the same values as floats
    assert tau(sig, "log").dtype == torch.float64 and tau(sig, "log")[0].item() == pytest.approx(math.log(T))
    with pytest.raises(ValueError, match="unknown time axis 'sigma'"):
        tau(1.0, "sigma")   # the old name of "linear"
    gen = random_gen()
    z = randz(gen)
    torch.testing.assert_close(gen.propagate(z, delta_tau(1.0, 0.5, "linear")), gen.propagate(z, -0.5))


def test_gradcheck():
    gen = random_gen(dim=4, h=2, w=1)
    z = randz(gen, batch=2).requires_grad_()
    dts = torch.tensor([-0.7, 1.1], dtype=torch.float64)
    # gradcheck perturbs its inputs in place, and propagate reads the perturbed parameters
    assert torch.autograd.gradcheck(lambda alpha, beta, z: gen.propagate(z, dts), (gen.alpha, gen.beta, z))


@pytest.mark.parametrize("kind, max_alpha", [("log", 5.0), ("linear", 5.0)])
def test_float32_full_range_stable(kind, max_alpha):
    gen = KoopmanGenerators(8, 4, 4)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        gen.alpha.uniform_(-max_alpha, max_alpha, generator=g)
        gen.alpha[0] = max_alpha
        gen.alpha[1] = -max_alpha
        gen.beta.normal_(0, 20, generator=g)
    z = (T * torch.randn(2, 8, 4, 4, generator=g)).requires_grad_()
    for s_from, s_to in [(T, EPS), (EPS, T)]:
        gen.zero_grad()
        z.grad = None
        out = gen.propagate(z, delta_tau(s_from, s_to, kind))
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        out.sum().backward()
        for p in (gen.alpha, gen.beta, z):
            assert torch.isfinite(p.grad).all()
    if kind == "log":  # no clamping over the full range: float32 agrees with float64
        dt = delta_tau(T, EPS, kind)
        assert max_alpha * abs(dt) < EXPONENT_CLAMP
        out = gen.propagate(z.detach(), dt)
        ref = gen.double().propagate(z.detach().double(), dt)
        torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_precomputed_equals_propagate():
    gen = random_gen()
    z = randz(gen)
    dt = delta_tau(T, EPS, "log")
    factors = gen.precompute(dt)
    assert factors.re.shape == factors.im.shape == (3, 3, 4)
    torch.testing.assert_close(apply_precomputed(z, factors), gen.propagate(z, dt))
    dts = torch.tensor([-1.0, 0.3], dtype=torch.float64)
    torch.testing.assert_close(apply_precomputed(z, gen.precompute(dts)), gen.propagate(z, dts))


@pytest.mark.parametrize("dt", [-10.6, torch.tensor([-1.0, 0.3], dtype=torch.float64)])
def test_no_grad_path_equals_autograd_path(dt):
    """Sampling (no autograd, one preallocated output) and training (autograd) propagate alike."""
    gen = random_gen()
    z = randz(gen)
    with_grad = gen.propagate(z, dt)
    assert with_grad.requires_grad
    with torch.no_grad():
        without = gen.propagate(z, dt)
        single = gen.propagate(z[:1], dt if isinstance(dt, float) else dt[:1])
    ref = with_grad.detach()
    tol = {"rtol": 1e-12, "atol": 1e-12 * float(ref.abs().max())}   # fused multiply-add rounds differently
    torch.testing.assert_close(without, ref, **tol)
    torch.testing.assert_close(single, ref[:1], **tol)
    assert without.shape == z.shape and without.is_contiguous()


def _hier(active=None, enabled=True):
    shapes = [(4, 4, 4), (6, 2, 2), (8, 1, 1)]
    hk = HierarchicalKoopman(shapes, active=active, enabled=enabled).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in hk.parameters():
            p.normal_(generator=g)
    zs = [torch.randn(2, d, h, w, generator=g, dtype=torch.float64) for d, h, w in shapes]
    return hk, zs


def test_hierarchical_all_levels():
    hk, zs = _hier()
    out = hk.propagate(zs, -1.5)
    for level, z, o in zip(hk.levels, zs, out):
        torch.testing.assert_close(o, level.propagate(z, -1.5))
        assert not torch.allclose(o, z)
    assert [A.shape for A in hk.dense()] == [(4, 4, 4, 4), (2, 2, 6, 6), (1, 1, 8, 8)]
    torch.testing.assert_close(hk.apply_precomputed(zs, hk.precompute(-1.5)), out)
    torch.testing.assert_close(hk.propagate(zs, delta_tau(T, EPS)), hk.propagate(zs, math.log(EPS / T)))
    with pytest.raises(ValueError):
        hk.propagate(zs[:2], 1.0)


def test_hierarchy_off_only_bottleneck_evolves():
    hk, zs = _hier(active=[False, False, True])
    out = hk.propagate(zs, -1.5)
    assert torch.equal(out[0], zs[0]) and torch.equal(out[1], zs[1])
    assert not torch.allclose(out[2], zs[2])
    assert not hk.dense()[0].any()


def test_hierarchical_evolution_off_and_back():
    hk, zs = _hier(active=[False, True, True], enabled=False)
    assert all(torch.equal(o, z) for o, z in zip(hk.propagate(zs, -1.5), zs))
    hk.enabled = True
    assert [lvl.enabled for lvl in hk.levels] == [False, True, True]
