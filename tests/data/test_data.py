import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets_util import have_dataset
from PIL import Image

from cnn_core import data
from cnn_core.core.errors import DataError
from cnn_core.data import builtin


def test_digits_is_embedded_and_fixed():
    ds = data.load_dataset("digits")
    assert ds.x_train.dtype == torch.uint8 and ds.x_train.shape[1:] == (1, 8, 8)
    assert len(ds.x_train) + len(ds.x_test) == 1797 and len(ds.x_test) == 360
    assert ds.classes == [str(i) for i in range(10)] and not ds.flip
    assert int(ds.x_train.max()) == 255


def test_stratified_split_is_seeded_disjoint_and_balanced():
    y = np.repeat(np.arange(5), 40)
    keep, held = data.stratified_split(y, 0.1, seed=3)
    keep2, held2 = data.stratified_split(y, 0.1, seed=3)
    assert (held == held2).all() and (keep == keep2).all()
    assert not set(keep) & set(held) and len(keep) + len(held) == 200
    assert np.bincount(y[held]).tolist() == [4] * 5
    assert not (data.stratified_split(y, 0.1, seed=4)[1] == held).all()


def test_channel_stats_match_numpy():
    x = torch.randint(0, 256, (50, 3, 6, 6), dtype=torch.uint8)
    mean, std = data.channel_stats(x)
    ref = x.numpy().astype(np.float64) / 255
    assert np.allclose(mean, ref.mean((0, 2, 3)), atol=1e-5)
    assert np.allclose(std, ref.std((0, 2, 3)), atol=1e-5)


def test_unknown_dataset_names_choices():
    with pytest.raises(DataError, match="cifar10, digits, mnist"):
        data.load_dataset("imagenet")


def test_missing_dataset_offline_says_where_to_put_it(tmp_path, monkeypatch):
    import torchvision

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match="cifar10-jpeg.zip"):
        data.load_dataset("cifar10", tmp_path / "empty")


def _write_zip(path, colour):
    with zipfile.ZipFile(path, "w") as zf:
        for split in ("train", "test"):
            for c, cls in enumerate(("cat", "dog")):
                for i in range(3):
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 32), (colour, c * 100, i)).save(buf, "PNG")
                    zf.writestr(f"cifar10/{split}/{cls}/{i:04d}.png", buf.getvalue())


def test_decode_cache_is_reused_and_rebuilt_when_the_source_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "data"
    src.mkdir()
    _write_zip(src / "cifar10-jpeg.zip", 10)
    calls = []
    real = builtin.read_zip_split
    monkeypatch.setattr(builtin, "read_zip_split", lambda *a: calls.append(1) or real(*a))
    ds = data.load_dataset("cifar10", src)
    assert len(calls) == 2 and ds.classes == ["cat", "dog"] and int(ds.x_train[0, 0, 0, 0]) == 10
    ds = data.load_dataset("cifar10", src)  # second time: from the cache, nothing decoded
    assert len(calls) == 2 and int(ds.x_train[0, 0, 0, 0]) == 10
    _write_zip(src / "cifar10-jpeg.zip", 200)  # the source changes
    import os
    os.utime(src / "cifar10-jpeg.zip", ns=(1, 1))
    ds = data.load_dataset("cifar10", src)
    assert len(calls) == 4 and int(ds.x_train[0, 0, 0, 0]) == 200
    caches = [p for p in (tmp_path / "cache").iterdir()]
    assert len(caches) == 1  # the stale cache is gone, no temp folders left


def test_interrupted_cache_write_leaves_no_half_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "data"
    src.mkdir()
    _write_zip(src / "cifar10-jpeg.zip", 10)
    real_save = np.save

    def crash(f, arr, *a, **k):
        real_save(f, arr[: len(arr) // 2])
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(np, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        data.load_dataset("cifar10", src)
    monkeypatch.setattr(np, "save", real_save)
    assert not list((tmp_path / "cache").glob("*/meta.json"))
    ds = data.load_dataset("cifar10", src)  # rebuilds cleanly
    assert len(ds.x_train) == 6 and not list((tmp_path / "cache").glob("*.tmp*"))


@pytest.mark.skipif(not have_dataset("cifar10"), reason="CIFAR-10 not in CNN_DATA_DIR")
def test_real_cifar10_from_the_shared_zip():
    ds = data.load_dataset("cifar10")
    assert ds.x_train.shape == (50000, 3, 32, 32) and ds.x_test.shape == (10000, 3, 32, 32)
    assert ds.classes[0] == "airplane" and ds.classes[-1] == "truck"
    assert np.bincount(ds.y_test.numpy()).tolist() == [1000] * 10


@pytest.mark.skipif(not have_dataset("mnist"), reason="MNIST not in CNN_DATA_DIR")
def test_real_mnist_from_the_shared_zip():
    ds = data.load_dataset("mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and len(ds.x_test) == 10000


def test_a_failed_download_leaves_nothing_and_an_empty_folder_is_not_present(tmp_path, monkeypatch):
    """An empty MNIST/raw/ (what a failed download used to leave) is not "present", and a failed download
    removes what it made: `datasets` and the app then say MNIST is missing, not that it is here."""
    import torchvision

    ddir = tmp_path / "data"
    (ddir / "MNIST" / "raw").mkdir(parents=True)
    assert data.dataset_info("mnist").locate(ddir) is None

    def offline(root, *a, download=False, **k):
        raw = Path(root) / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "partial.gz").write_bytes(b"half")  # what an interrupted download leaves
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    (ddir / "MNIST" / "raw").rmdir()
    (ddir / "MNIST").rmdir()
    with pytest.raises(DataError, match="MNIST not found"):
        data.load_dataset("mnist", ddir)
    assert list(ddir.iterdir()) == []
