"""Photo-folder datasets and zip uploads: what a student brings, from folder layout to a trained, evaluated run."""

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from photos_util import make_folder, photo, save_any  # noqa: F401  (shared with other tests)
from PIL import Image

from cnn_core.core.errors import DataError
from cnn_core.data import folders, uploads

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))


def cli(*args, env=None):
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "cnn_core", *args], cwd=ROOT, env=e, capture_output=True,
                          text=True, timeout=600, check=False)


# ---------------------------------------------------------------------------------------------- the split

def test_split_is_811_stratified_deterministic_and_disjoint():
    by_class = {"a": [f"a/{i}.jpg" for i in range(50)], "b": [f"b/{i}.jpg" for i in range(30)],
                "c": [f"c/{i}.jpg" for i in range(10)]}
    split = folders.split_files(by_class)
    counts = folders.split_counts(split)
    assert counts == {"train": {"a": 40, "b": 24, "c": 8}, "val": {"a": 5, "b": 3, "c": 1},
                      "test": {"a": 5, "b": 3, "c": 1}}
    assert folders.split_files(by_class) == split  # seeded: the same every time
    for c, files in by_class.items():
        parts = [set(split[s][c]) for s in folders.SPLITS]
        assert set().union(*parts) == set(files) and sum(map(len, parts)) == len(files)
    assert folders.split_files(by_class, seed=1)["test"] != split["test"]


def test_one_class_growing_leaves_the_others_split_alone():
    by_class = {"a": [f"a/{i}.jpg" for i in range(20)], "b": [f"b/{i}.jpg" for i in range(20)]}
    before = folders.split_files(by_class)
    after = folders.split_files({**by_class, "a": by_class["a"] + [f"a/new{i}.jpg" for i in range(7)]})
    assert all(before[s]["b"] == after[s]["b"] for s in folders.SPLITS)


def test_tiny_classes_still_get_a_val_and_test_image_from_three_on():
    split = folders.split_files({"three": ["1", "2", "3"], "two": ["1", "2"], "one": ["1"]})
    assert folders.split_counts(split) == {"train": {"three": 1, "two": 2, "one": 1},
                                           "val": {"three": 1, "two": 0, "one": 0},
                                           "test": {"three": 1, "two": 0, "one": 0}}


# ------------------------------------------------------------------------------------------------ loading

def test_mixed_photos_load_at_the_model_size_with_unreadables_skipped_and_small_classes_warned(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 12, "dog": 10, "owl": 3})
    (root / "cat" / "notes.txt").write_text("not a photo")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)  # a truncated JPEG
    (root / "dog" / ".DS_Store").write_bytes(b"junk")  # hidden files are not even considered
    ds = folders.load_folder(str(root), tmp_path, tmp_path / "cache", 40)
    assert ds.classes == ["cat", "dog", "owl"]
    assert ds.x_train.shape[1:] == (3, 40, 40) and ds.x_train.dtype == torch.uint8
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 25
    assert sorted(np.bincount(ds.y_test.numpy(), minlength=3).tolist()) == [1, 1, 1]
    text = "\n".join(ds.notes)
    assert "skipped 2 unreadable files" in text and "cat/notes.txt" in text
    assert "fewer than 5 images: owl (3)" in text
    assert "cat: 10 / 1 / 1" in text and "owl: 1 / 1 / 1" in text
    # the bright class really is bright after decoding, whatever the file's mode was
    dog = ds.x_train[ds.y_train == 1].float().mean()
    cat = ds.x_train[ds.y_train == 0].float().mean()
    assert dog > cat + 20  # classes 0 and 1 are dark and bright photos


def test_grayscale_only_folders_load_with_one_channel(tmp_path):
    for cls, value in (("black", 20), ("white", 230)):
        (tmp_path / "g" / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (30 + i, 25), value).save(tmp_path / "g" / cls / f"{i}.png")
    ds = folders.load_folder(str(tmp_path / "g"), tmp_path, tmp_path / "cache", 32)
    assert ds.channels == 1 and int(ds.x_train[ds.y_train == 1].min()) >= 200


@pytest.mark.parametrize("layout,error", [
    ({"cats": 6}, "only one class folder"),
    ({}, "no class folders"),
])
def test_unusable_folders_are_refused_in_one_line(tmp_path, layout, error):
    root = make_folder(tmp_path / "d", layout) if layout else (tmp_path / "d")
    root.mkdir(exist_ok=True)
    with pytest.raises(DataError, match=error) as e:
        folders.load_folder(str(root), tmp_path, tmp_path / "cache", 32)
    assert "\n" not in str(e.value)


def test_classes_too_small_to_validate_and_test_are_refused_not_trained(tmp_path):
    root = make_folder(tmp_path / "d", {"a": 2, "b": 2})
    with pytest.raises(DataError, match="too few photos to hold any out for val and test: a class needs at least 3"):
        folders.load_folder(str(root), tmp_path, tmp_path / "cache", 32)


def test_a_folder_of_no_images_and_a_missing_folder_are_refused(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "t" / cls).mkdir(parents=True)
        (tmp_path / "t" / cls / "x.txt").write_text("hello")
    with pytest.raises(DataError, match="none of the 2 files"):
        folders.load_folder(str(tmp_path / "t"), tmp_path, tmp_path / "cache", 32)
    with pytest.raises(DataError, match="does not exist"):
        folders.load_folder(str(tmp_path / "nope"), tmp_path, tmp_path / "cache", 32)


def test_train_val_test_parts_are_honoured_and_a_wrapper_folder_is_entered(tmp_path):
    base = tmp_path / "upload" / "flowers"  # one top folder, as a zipped folder unpacks
    make_folder(base / "train", {"rose": 8, "tulip": 8})
    make_folder(base / "val", {"rose": 2, "tulip": 3}, seed=1)
    make_folder(base / "test", {"rose": 4, "tulip": 1}, seed=2)
    ds = folders.load_folder(str(tmp_path / "upload"), tmp_path, tmp_path / "cache", 32)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (16, 5, 5)
    assert np.bincount(ds.y_test.numpy()).tolist() == [4, 1]
    assert ds.source == str(base)


def test_missing_val_part_is_held_out_of_train(tmp_path):
    make_folder(tmp_path / "d" / "train", {"a": 20, "b": 20})
    make_folder(tmp_path / "d" / "test", {"a": 3, "b": 3}, seed=1)
    ds = folders.load_folder(str(tmp_path / "d"), tmp_path, tmp_path / "cache", 32)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (36, 4, 6)
    assert any("held out 10% of train/" in n for n in ds.notes)


def test_the_folder_is_found_inside_the_data_dir_too(tmp_path):
    make_folder(tmp_path / "data" / "mine", {"a": 5, "b": 5})
    ds = folders.load_folder("mine", tmp_path / "data", tmp_path / "cache", 32)
    assert len(ds.classes) == 2


def test_describe_folder_counts_without_decoding(tmp_path):
    make_folder(tmp_path / "d", {"a": 10, "b": 20, "c": 2})
    info = folders.describe_folder(tmp_path / "d")
    assert info["counts"]["train"] == {"a": 8, "b": 16, "c": 2} and info["layout"] == "8:1:1"
    assert any("c (2)" in n for n in info["notes"])


# -------------------------------------------------------------------------------------- split persistence

def test_a_saved_split_is_reused_when_photos_are_added_later(tmp_path):
    root = make_folder(tmp_path / "d", {"a": 20, "b": 20})
    split_file = tmp_path / "run" / "split.json"
    split_file.parent.mkdir()
    first = folders.load_folder(str(root), tmp_path, tmp_path / "cache", 32, split_file=split_file)
    saved = json.loads(split_file.read_text())
    assert saved["counts"]["test"] == {"a": 2, "b": 2} and all("/" in f for f in saved["splits"]["test"]["a"])
    make_folder(root, {"a": 10, "c": 10}, seed=5, prefix="new")  # 10 more in a, a new class c
    again = folders.load_folder(str(root), tmp_path, tmp_path / "cache", 32, split_file=split_file)
    assert again.classes == ["a", "b"]
    for x, y in (("x_train", "y_train"), ("x_val", "y_val"), ("x_test", "y_test")):
        assert (getattr(again, x) == getattr(first, x)).all() and (getattr(again, y) == getattr(first, y)).all()
    fresh = folders.load_folder(str(root), tmp_path, tmp_path / "cache", 32)  # a new run sees the new photos
    assert fresh.classes == ["a", "b", "c"]


def test_a_saved_split_whose_photos_vanished_is_a_clear_error(tmp_path):
    root = make_folder(tmp_path / "d", {"a": 10, "b": 10})
    split_file = tmp_path / "split.json"
    folders.load_folder(str(root), tmp_path, tmp_path / "cache", 32, split_file=split_file)
    gone = json.loads(split_file.read_text())["splits"]["test"]["a"][0]
    (root / gone).unlink()
    with pytest.raises(DataError, match="missing or unreadable"):
        folders.load_folder(str(root), tmp_path, tmp_path / "cache", 32, split_file=split_file)


@pytest.mark.slow
def test_cli_trains_evaluates_and_resumes_a_folder_run_on_its_saved_split(tmp_path):
    root = make_folder(tmp_path / "photos", {"dark": 25, "bright": 25, "stripes": 25})
    (root / "dark" / "readme.txt").write_text("a stray file")
    env = {"CNN_CHECKPOINTS": str(tmp_path / "ck"), "CNN_CACHE_DIR": str(tmp_path / "cache")}
    p = cli("train", "-m", "lenet5", "-d", f"folder:{root}", "--epochs", "12", "--batch-size", "16",
            "--lr", "0.05", "--schedule", "onecycle", "--name", "own", "--json", env=env)
    assert p.returncode == 0, p.stderr
    assert "skipped 1 unreadable file" in p.stdout and "dark: 19 / 3 / 3" in p.stdout
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    run = tmp_path / "ck" / "own"
    split = json.loads((run / "split.json").read_text())
    assert split["counts"]["test"] == {"bright": 3, "dark": 3, "stripes": 3}
    assert summary["test_accuracy"] >= 0.66  # chance is 0.33

    make_folder(root, {"dark": 15, "bright": 5}, seed=9, prefix="late")  # more photos arrive later
    p = cli("evaluate", "own", "--json", env=env)
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["count"] == 9 and rep["classes"] == ["bright", "dark", "stripes"]
    assert rep["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-4)

    p = cli("train", "--resume", "own", "--epochs", "13", "--json", env=env)  # one more epoch, on the same split
    assert p.returncode == 0, p.stderr
    assert "(57 train / 9 val / 9 test" in p.stdout and json.loads(p.stdout.splitlines()[-1])["epochs_run"] == 13
    assert json.loads((run / "split.json").read_text()) == split

    p = cli("predict", "own", str(root / "bright" / "img000.jpg"), "--json", env=env)
    assert p.returncode == 0 and json.loads(p.stdout)[0]["top_k"][0]["label"] == "bright"


@pytest.mark.slow
def test_alexnet_trains_on_a_224_folder_end_to_end(tmp_path, runs):
    from cnn_core.config import TrainConfig
    from cnn_core.evaluation.reports import evaluate_run
    from cnn_core.workflows.run import train_run

    root = make_folder(tmp_path / "caltech", {"a": 6, "b": 6, "c": 6})
    cfg = TrainConfig(model="alexnet", dataset=f"folder:{root}", epochs=1, batch_size=8, lr=0.01)
    summary = train_run(cfg, name="alex")
    ckpt = json.loads((runs / "alex" / "split.json").read_text())
    assert summary["state"] == "finished" and sum(ckpt["counts"]["test"].values()) == 3
    from cnn_core.runs.checkpoint import load_checkpoint

    assert load_checkpoint(runs / "alex" / "best.pt")["input"]["size"] == 224
    rep = evaluate_run("alex")
    assert rep["count"] == 3 and len(rep["confusion_matrix"]) == 3


# ------------------------------------------------------------------------------------------- zip uploads

def zip_bytes(entries: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)
    return buf.getvalue()


def jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (value, value, value)).save(buf, "JPEG")
    return buf.getvalue()


def test_a_zip_of_class_folders_unpacks_and_trains_as_a_folder(tmp_path):
    entries = {f"shapes/{c}/{i}.jpg": jpeg(v) for c, v in (("dark", 20), ("light", 230)) for i in range(5)}
    entries["__MACOSX/shapes/dark/._0.jpg"] = b"apple metadata"
    src = tmp_path / "up.zip"
    src.write_bytes(zip_bytes(entries))
    out = uploads.extract_zip_dataset(src, tmp_path / "uploads")
    assert out.parent == tmp_path / "uploads" and not (out / "__MACOSX").exists()
    ds = folders.load_folder(str(out), tmp_path, tmp_path / "cache", 32)
    assert ds.classes == ["dark", "light"] and len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 10


@pytest.mark.parametrize("entries,symlinks,error", [
    ({"ok/a/1.jpg": b"x", "../../evil.sh": b"echo"}, (), "leaving the folder"),
    ({"ok/a/..\\..\\evil.txt": b"x"}, (), "leaving the folder"),
    ({"/etc/cron.d/evil": b"x"}, (), "absolute path"),
    ({"C:/Windows/evil.dll": b"x"}, (), "absolute path"),
    ({"ok/a/link.jpg": b"/etc/passwd"}, ("ok/a/link.jpg",), "symbolic link"),
    ({"ok/a/bomb.jpg": b"\x00" * (8 * 1024 * 1024)}, (), "expands"),
])
def test_hostile_zips_are_refused_whole_and_leave_nothing(tmp_path, entries, symlinks, error):
    dest = tmp_path / "uploads"
    with pytest.raises(DataError, match=error):
        uploads.extract_zip_dataset(zip_bytes(entries, symlinks), dest)
    assert not dest.exists() or not any(dest.iterdir())
    assert not (tmp_path / "evil.sh").exists()


def test_too_many_files_and_too_many_bytes_are_refused(tmp_path):
    many = zip_bytes({f"d/a/{i}.jpg": b"x" for i in range(30)})
    with pytest.raises(DataError, match="30 files, more than the 20"):
        uploads.extract_zip_dataset(many, tmp_path, max_files=20)
    big = zip_bytes({"d/a/1.jpg": os.urandom(300_000)})
    with pytest.raises(DataError, match="unpacks to"):
        uploads.extract_zip_dataset(big, tmp_path, max_bytes=100_000)


def test_a_zip_whose_headers_lie_about_sizes_is_refused_and_leaves_nothing(tmp_path):
    data = zip_bytes({"d/a/1.jpg": np.random.default_rng(0).bytes(50_000)})
    # declare 1,000 bytes where 50,000 follow (central directory and local header both lie)
    lie = (1000).to_bytes(4, "little")
    real = (50_000).to_bytes(4, "little")
    forged = data.replace(real, lie)
    assert forged != data
    dest = tmp_path / "uploads"
    with pytest.raises(DataError, match="zip"):
        uploads.extract_zip_dataset(forged, dest)
    assert not any(dest.iterdir())


def test_not_a_zip_is_one_clear_line(tmp_path):
    with pytest.raises(DataError, match="not a zip file"):
        uploads.extract_zip_dataset(b"PK-but-not-really", tmp_path)


def test_import_zip_names_the_folder_by_content_and_refuses_an_oversized_upload(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    entries = {f"shapes/{c}/{i}.jpg": jpeg(v + i) for c, v in (("dark", 20), ("light", 230)) for i in range(5)}
    data = zip_bytes(entries)
    first = uploads.import_zip(data)
    assert first["new"] and Path(first["path"]).parent == (tmp_path / "state" / "uploads").resolve()
    assert first["classes"] == ["dark", "light"] and first["counts"]["train"] == {"dark": 3, "light": 3}
    assert uploads.import_zip(data) == {**first, "new": False}  # same bytes: the same folder
    other = uploads.import_zip(zip_bytes({**entries, "shapes/dark/extra.jpg": jpeg(40)}))
    assert other["new"] and other["path"] != first["path"]  # other bytes: a folder of their own
    with pytest.raises(DataError, match="the zip is larger than 10 MB"):
        uploads.import_zip(data + bytes(10 * 1024 ** 2), tmp_path / "elsewhere")  # the app's upload cap
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "data").exists()
