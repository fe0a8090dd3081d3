import numpy as np
import pytest
import torch

from koopscope.hkd.koopman import KoopmanGenerators
from koopscope.spectral.eig import (
    block_eigs,
    close_mask,
    dense_eigs,
    project,
    reconstruct,
    sort_by_real,
)


def random_gen(dim=6, h=2, w=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    gen = KoopmanGenerators(dim, h, w).double()
    with torch.no_grad():
        gen.alpha.normal_(generator=g)
        gen.beta.normal_(0, 2, generator=g)
        gen.beta[0, 0, 0] = 0.0  # a real double eigenvalue in one block
    return gen


def block_of(gen):
    return block_eigs(gen.alpha.detach().permute(1, 2, 0), gen.beta.detach().permute(1, 2, 0))


def assert_eigenpairs(A, eig, tol=1e-9):
    A = torch.as_tensor(A).to(eig.vectors.dtype)
    torch.testing.assert_close(A @ eig.vectors, eig.vectors * eig.values.unsqueeze(-2), rtol=tol, atol=tol)


def assert_pairs_adjacent(eig):
    vals, pid = eig.values.reshape(-1, eig.values.shape[-1]), eig.pair_id.reshape(-1, eig.values.shape[-1])
    for v, p in zip(vals, pid):
        i = 0
        while i < len(v):
            if v[i].imag != 0:
                assert v[i].imag > 0 and v[i + 1] == v[i].conj() and p[i] == p[i + 1]
                i += 2
            else:
                assert i + 1 == len(v) or p[i + 1] != p[i]
                i += 1
        assert torch.equal(torch.unique_consecutive(p), torch.arange(int(p.max()) + 1))


def test_block_eigs_are_eigenpairs():
    gen = random_gen()
    eig = block_of(gen)
    assert eig.values.shape == (2, 3, 6) and eig.vectors.shape == (2, 3, 6, 6)
    assert eig.pair_id.tolist()[0][0] == [0, 0, 1, 1, 2, 2]
    a, b = gen.alpha[1, 1, 2].item(), gen.beta[1, 1, 2].item()
    torch.testing.assert_close(eig.values[1, 2, 2:4], torch.tensor([a + 1j * b, a - 1j * b], dtype=torch.complex128))
    assert_eigenpairs(gen.dense().detach(), eig)


def test_block_and_dense_paths_agree():
    gen = random_gen()
    block, dense = block_of(gen), dense_eigs(gen.dense())
    block_sorted = block.values.gather(-1, sort_by_real(block.values, block.pair_id))
    torch.testing.assert_close(dense.values, block_sorted, rtol=1e-10, atol=1e-10)
    assert_eigenpairs(gen.dense().detach(), dense)
    assert_pairs_adjacent(dense)


def test_dense_matches_numpy_random():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 7, 7))
    eig = dense_eigs(A)
    ref = np.linalg.eig(A).eigenvalues
    for got, want in zip(eig.values.numpy(), ref):
        np.testing.assert_allclose(np.sort_complex(got), np.sort_complex(want), rtol=1e-12, atol=1e-12)
    assert_eigenpairs(A, eig)
    assert_pairs_adjacent(eig)
    re = eig.values.real.abs()
    assert (re[..., 1:] >= re[..., :-1]).all()


@pytest.mark.parametrize("A", [
    [[0.0, 1.0], [0.0, 0.0]],  # Jordan block
    [[0.0, 0.0], [0.0, 0.0]],
    [[2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 2.0]],
    np.kron(np.eye(2), [[0.5, -3.0], [3.0, 0.5]]),  # repeated complex pair
    np.eye(4),
])
def test_defective_and_repeated_are_finite(A):
    A = np.asarray(A)
    eig = dense_eigs(torch.from_numpy(A))
    assert all(torch.isfinite(t).all() for t in (eig.values.real, eig.values.imag, eig.vectors.real,
                                                  eig.vectors.imag))
    assert_eigenpairs(A, eig, tol=1e-7)
    assert_pairs_adjacent(eig)
    z = torch.arange(1.0, A.shape[0] + 1, dtype=torch.float64)
    c = project(z, eig.vectors)
    assert torch.isfinite(c.real).all() and torch.isfinite(c.imag).all()
    assert torch.isfinite(reconstruct(c, eig.vectors)).all()


def test_dense_rejects_bad_input():
    with pytest.raises(ValueError):
        dense_eigs(np.ones((2, 3)))
    with pytest.raises(ValueError):
        dense_eigs(np.array([[np.nan, 0.0], [0.0, 1.0]]))


def test_sort_by_real_keeps_pairs_together():
    vals = torch.tensor([0.3 + 2j, 0.3 - 2j, -0.1 + 0j, -0.3 - 1j, -0.3 + 1j, 0.3 + 2j, 0.3 - 2j],
                        dtype=torch.complex128)
    pid = torch.tensor([0, 0, 1, 2, 2, 3, 3])
    order = sort_by_real(vals, pid)
    assert vals[order].tolist() == [-0.1, -0.3 + 1j, -0.3 - 1j, 0.3 + 2j, 0.3 - 2j, 0.3 + 2j, 0.3 - 2j]
    assert pid[order].tolist() == [1, 2, 2, 0, 0, 3, 3]
    # same |Re| and |Im| with opposite signs of Re: pairs must not interleave
    vals = torch.tensor([0.5 + 1j, 0.5 - 1j, -0.5 + 1j, -0.5 - 1j], dtype=torch.complex128)
    order = sort_by_real(vals, torch.tensor([0, 0, 1, 1]))
    assert vals[order].tolist() == [-0.5 + 1j, -0.5 - 1j, 0.5 + 1j, 0.5 - 1j]


def test_close_mask():
    pid = torch.tensor([0, 0, 1, 2, 2])
    assert close_mask(torch.tensor([True, False, False, False, True]), pid).tolist() == [
        True, True, False, True, True]


@pytest.mark.parametrize("path", ["block", "dense"])
def test_reconstruction(path):
    gen = random_gen()
    eig = block_of(gen) if path == "block" else dense_eigs(gen.dense())
    z = torch.randn(4, 2, 3, 6, dtype=torch.float64)  # (B, H, W, dim)
    c = project(z, eig.vectors)
    full = reconstruct(c, eig.vectors)
    assert full.dtype == torch.float64
    torch.testing.assert_close(full, z)
    half = eig.values.imag >= 0  # one mode of every pair: closed under conjugation to all modes
    torch.testing.assert_close(reconstruct(c, eig.vectors, half, eig.pair_id), z)
    bands = [eig.pair_id % 3 == k for k in range(3)]  # a partition into whole groups
    parts = [reconstruct(c, eig.vectors, band, eig.pair_id) for band in bands]
    torch.testing.assert_close(sum(parts), z)
    raw = (eig.vectors @ (c * close_mask(bands[0], eig.pair_id)).unsqueeze(-1)).squeeze(-1)
    assert raw.imag.abs().max() < 1e-10 and raw.real.abs().max() > 1e-3
    with pytest.raises(ValueError):
        reconstruct(c, eig.vectors, bands[0])


def test_modal_propagation_matches_koopman():
    gen = random_gen()
    eig = block_of(gen)
    z = torch.randn(3, 6, 2, 3, dtype=torch.float64)
    dt = -1.7
    c = project(z.permute(0, 2, 3, 1), eig.vectors) * torch.exp(dt * eig.values)
    out = reconstruct(c, eig.vectors).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, gen.propagate(z, dt).detach())


def test_defective_projection_is_least_squares():
    eig = dense_eigs(np.array([[0.0, 1.0], [0.0, 0.0]]))  # eigenvectors span only e_0
    out = reconstruct(project(torch.tensor([1.0, 2.0]), eig.vectors), eig.vectors)
    torch.testing.assert_close(out, torch.tensor([1.0, 0.0], dtype=torch.float64))
