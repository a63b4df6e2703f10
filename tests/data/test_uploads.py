"""Zip uploads on a server a class shares: they live in the app's state folder (never the shared data folder),
are kept only when trainable, stay under a total size by expiring the oldest, and every hostile or unusable zip
is refused in one line with nothing left on disk."""

import io
import os
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from cnn_core.core.errors import DataError
from cnn_core.data import uploads


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "state"


def jpeg(value: int, side: int = 20) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (value, value, value)).save(buf, "JPEG")
    return buf.getvalue()


def zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def photos_zip(seed: int, per_class: int = 3, side: int = 20) -> bytes:
    return zip_of({f"set{seed}/{c}/{i}.jpg": jpeg((seed * 7 + i + v) % 256, side)
                   for c, v in (("dark", 20), ("light", 200)) for i in range(per_class)})


def left_on_disk(tmp_path: Path) -> list[str]:
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "cache" not in p.parts)


def test_uploads_land_in_the_state_folder_never_in_the_data_folder(tmp_path, state):
    (tmp_path / "data").mkdir()
    got = uploads.import_zip(photos_zip(1))
    assert Path(got["path"]).is_relative_to((state / "uploads").resolve())
    assert not any((tmp_path / "data").iterdir())


@pytest.mark.parametrize("entries,error", [
    ({f"junk/{c}/{i}.jpg": os.urandom(2000) for c in "ab" for i in range(5)}, "none of the 10 files .* usable image"),
    ({**{f"x/a/{i}.jpg": jpeg(i) for i in range(3)}, **{f"x/b/{i}.jpg": b"no" for i in range(3)}}, "1 class folder"),
    ({f"x/{c}/{i}.jpg": jpeg(i) for c in "ab" for i in range(2)}, "0 class folder"),  # too few to test each class
    ({"x/only/0.jpg": jpeg(1), "x/only/1.jpg": jpeg(2)}, "only one class folder"),
])
def test_an_untrainable_zip_is_refused_and_leaves_nothing(tmp_path, entries, error):
    with pytest.raises(DataError, match=error) as e:
        uploads.import_zip(zip_of(entries))
    assert "\n" not in str(e.value) and "upload-" not in str(e.value)
    assert left_on_disk(tmp_path) == []


def test_ten_megabytes_of_non_images_leave_nothing_behind(tmp_path):
    junk = zip_of({f"j/{c}/{i}.jpg": os.urandom(500_000) for c in "abc" for i in range(6)})
    assert len(junk) > 8 * 1024 ** 2
    with pytest.raises(DataError, match="usable image"):
        uploads.import_zip(junk)
    assert left_on_disk(tmp_path) == []


def test_the_cap_expires_the_least_recently_used_upload(state):
    sizes, names = [], []
    for seed in range(3):
        got = uploads.import_zip(photos_zip(seed, side=64), max_total=10 ** 9)
        names.append(Path(got["path"]).name)
        sizes.append(sum(f.stat().st_size for f in Path(got["path"]).rglob("*") if f.is_file()))
        os.utime(got["path"], (1000 + seed, 1000 + seed))  # ages: 0 oldest
    uploads.import_zip(photos_zip(0, side=64))  # used again: now the newest
    cap = sum(sizes) + 10  # room for three, not four
    fourth = uploads.import_zip(photos_zip(3, side=64), max_total=cap)
    assert fourth["new"] and fourth["expired"] == [names[1]]
    kept = sorted(p.name for p in (state / "uploads").iterdir())
    assert kept == sorted([names[0], names[2], Path(fourth["path"]).name])


def test_an_upload_a_job_trains_on_does_not_expire_the_next_oldest_does(state):
    """A run waiting in the queue (or training) on an upload must still find it: in-use uploads are skipped."""
    sizes, paths = [], []
    for seed in range(3):
        got = uploads.import_zip(photos_zip(seed, side=64), max_total=10 ** 9)
        paths.append(Path(got["path"]))
        sizes.append(sum(f.stat().st_size for f in paths[-1].rglob("*") if f.is_file()))
        os.utime(got["path"], (1000 + seed, 1000 + seed))  # ages: 0 oldest
    in_use = {f"folder:{paths[0]}", "digits", "folder:/elsewhere"}  # the jobs' datasets, as the manager lists them
    fourth = uploads.import_zip(photos_zip(3, side=64), max_total=sum(sizes) + 10, in_use=in_use)
    assert fourth["expired"] == [paths[1].name] and paths[0].is_dir() and not paths[1].exists()
    with pytest.raises(DataError, match="^no room for this upload: .* the other uploads are being trained on or"):
        uploads.import_zip(photos_zip(4, side=64), max_total=sizes[0] + 10,
                           in_use={f"folder:{p}" for p in [paths[0], paths[2], Path(fourth["path"])]})


def test_an_upload_larger_than_the_whole_cap_is_refused_in_one_line(tmp_path, state):
    first = uploads.import_zip(photos_zip(1))
    with pytest.raises(DataError, match="unpacks to .* more than the") as e:
        uploads.import_zip(photos_zip(2, per_class=40, side=64), max_total=50_000)
    assert "\n" not in str(e.value)
    assert [p.name for p in (state / "uploads").iterdir()] == [Path(first["path"]).name]  # nothing expired for it


@pytest.mark.parametrize("entries,error", [
    ({"x/cats": b"a file", "x/cats/0.png": b"and a folder", "x/dogs/0.png": b"."}, "cats is both a file and a folder"),
    ({"x/cats/0.png": b"a folder", "x/cats": b"then a file", "x/dogs/0.png": b"."}, "cats is both a file and a folder"),
    ({"x/cats/" + "c" * 300 + ".png": b"long", "x/dogs/0.png": b"."}, "file name too long"),
])
def test_names_the_file_system_cannot_hold_are_refused_in_one_line_leaving_nothing(tmp_path, entries, error):
    with pytest.raises(DataError, match=error) as e:
        uploads.import_zip(zip_of(entries))
    assert "\n" not in str(e.value) and len(str(e.value)) < 200
    assert left_on_disk(tmp_path) == []
