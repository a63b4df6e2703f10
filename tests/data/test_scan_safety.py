"""Scanning a photo folder is bounded and never leaves it: limits on files and bytes, no FIFOs or devices opened,
no symlinked class folders or photos followed, and the decode cache sees every photo the scan sees."""

import io
import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from cnn_core.core.errors import DataError
from cnn_core.data import folders


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))


def png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (value, value, value)).save(buf, "PNG")
    return buf.getvalue()


def photos(root: Path, counts: dict[str, int]) -> Path:
    for k, (cls, n) in enumerate(counts.items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / cls / f"{i}.png").write_bytes(png(40 * k + i))
    return root


def scan_within(path: Path, seconds: float = 20, **limits) -> folders.Scan:
    """scan_folder in a thread: a scan that opens a FIFO would block forever, so a hang fails the test."""
    out: dict = {}

    def run() -> None:
        try:
            out["scan"] = folders.scan_folder(path, **limits)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "scan_folder blocked"
    if "error" in out:
        raise out["error"]
    return out["scan"]


def test_too_many_files_is_one_line(tmp_path):
    photos(tmp_path / "d", {"a": 6, "b": 6})
    with pytest.raises(DataError, match="more than 10 files") as e:
        scan_within(tmp_path / "d", max_files=10)
    assert "\n" not in str(e.value)
    assert scan_within(tmp_path / "d", max_files=12).classes == ["a", "b"]


def test_too_many_bytes_is_one_line(tmp_path):
    photos(tmp_path / "d", {"a": 3, "b": 3})
    (tmp_path / "d" / "a" / "big.jpg").write_bytes(bytes(50_000))
    with pytest.raises(DataError, match="holds more than .* GB") as e:
        scan_within(tmp_path / "d", max_bytes=40_000)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_in_a_class_folder_is_skipped_without_blocking(tmp_path):
    root = photos(tmp_path / "d", {"a": 3, "b": 3})
    os.mkfifo(root / "a" / "pipe.jpg")  # opening it for reading would wait for a writer forever
    scan = scan_within(root)
    assert "a/pipe.jpg" not in scan.files["all"]["a"] and len(scan.files["all"]["a"]) == 3
    ds = folders.load_folder(str(root), tmp_path, tmp_path / "cache", 16)
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 6


def test_symlinked_class_folders_and_photos_are_not_followed(tmp_path):
    root = photos(tmp_path / "d", {"a": 3, "b": 3})
    outside = photos(tmp_path / "outside", {"secret": 4})
    (root / "c").symlink_to(outside / "secret", target_is_directory=True)
    (root / "a" / "stolen.png").symlink_to(outside / "secret" / "0.png")
    (root / "b" / "nested").symlink_to(outside, target_is_directory=True)
    scan = scan_within(root)
    assert scan.classes == ["a", "b"]
    assert sorted(scan.files["all"]["a"]) == ["a/0.png", "a/1.png", "a/2.png"]
    assert all("nested" not in f for f in scan.files["all"]["b"])


def test_a_symlinked_class_folder_in_a_test_part_is_not_followed(tmp_path):
    root = tmp_path / "d"
    photos(root / "train", {"a": 3, "b": 3})
    photos(root / "test", {"a": 2})
    photos(tmp_path / "outside", {"b": 2})
    (root / "test" / "b").symlink_to(tmp_path / "outside" / "b", target_is_directory=True)
    scan = scan_within(root)
    assert set(scan.files["test"]) == {"a"}


def test_a_photo_added_inside_a_class_folder_reaches_the_cache(tmp_path):
    root = photos(tmp_path / "d", {"a": 5, "b": 5})
    (root / "a" / "more").mkdir()
    before = folders.load_folder(str(root), tmp_path, tmp_path / "cache", 16)
    (root / "a" / "more" / "new.png").write_bytes(png(99))
    after = folders.load_folder(str(root), tmp_path, tmp_path / "cache", 16)
    count = lambda ds: len(ds.y_train) + len(ds.y_val) + len(ds.y_test)  # noqa: E731
    assert count(after) == count(before) + 1
