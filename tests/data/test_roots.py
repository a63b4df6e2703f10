"""Visitors choose photo folders only under the data roots: the listing finds them (and nothing through a
symlink), and a typed or forged path outside the roots is refused with one message that never says whether the
path exists."""

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from cnn_core.core.errors import DataError
from cnn_core.data.roots import folder_datasets, resolve_under_roots


def photos(root: Path, counts: dict[str, int]) -> Path:
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(buf, "PNG")
            (root / cls / f"{i}.png").write_bytes(buf.getvalue())
    return root


@pytest.fixture
def roots(tmp_path):
    data, uploads = tmp_path / "data", tmp_path / "state" / "uploads"
    photos(data / "pets", {"cats": 3, "dogs": 4})
    photos(data / "course" / "flowers" / "train", {"rose": 3, "tulip": 3})
    photos(data / "course" / "flowers" / "test", {"rose": 1, "tulip": 1})
    photos(uploads / "photos-abc" / "shapes", {"dark": 3, "light": 3})  # a zip's wrapper folder
    photos(data / ".hidden", {"a": 3, "b": 3})
    photos(tmp_path / "outside" / "secret", {"a": 3, "b": 3})
    (data / "linked").symlink_to(tmp_path / "outside" / "secret", target_is_directory=True)
    return [data, uploads]


def test_the_listing_holds_the_folders_under_the_roots_and_nothing_through_a_symlink(roots, tmp_path):
    rows = folder_datasets(roots)
    assert [r["name"] for r in rows] == ["data/course/flowers", "data/pets", "uploads/photos-abc/shapes"]
    pets = rows[1]
    assert pets["path"] == str((roots[0] / "pets").resolve())
    assert (pets["classes"], pets["files"], pets["layout"]) == (2, 7, "8:1:1")
    assert rows[0]["layout"] == "parts" and rows[0]["files"] == 8
    assert all("outside" not in r["path"] and ".hidden" not in r["path"] for r in rows)


def test_the_listing_leaves_out_folders_above_the_scan_limits(roots):
    assert [r["name"] for r in folder_datasets(roots, max_files=7)] == ["data/pets", "uploads/photos-abc/shapes"]


def test_every_listed_name_and_path_resolves_to_its_folder(roots):
    for row in folder_datasets(roots):
        assert resolve_under_roots(row["name"], roots) == Path(row["path"])
        assert resolve_under_roots(row["path"], roots) == Path(row["path"])
    assert resolve_under_roots("pets", roots) == (roots[0] / "pets").resolve()


@pytest.mark.parametrize("given", ["/root/.ssh", "/etc", "/no/such/dir", "../outside/secret", "pets/../../outside",
                                   "linked", "data/linked", "/proc/self", "", "pets/cats/0.png", "nope\x00"])
def test_anything_outside_the_roots_is_refused_with_one_message(roots, given):
    with pytest.raises(DataError) as e:
        resolve_under_roots(given, roots)
    offered = "is not one of the photo folders offered here; choose one from the list of folders"
    assert str(e.value) == f"{given!r} {offered}"


def test_the_refusal_never_says_whether_a_path_exists(roots, tmp_path):
    messages = set()
    for given in (str(tmp_path / "outside" / "secret"), str(tmp_path / "outside" / "missing")):
        with pytest.raises(DataError) as e:
            resolve_under_roots(given, roots)
        messages.add(str(e.value).replace(given, "PATH"))
    assert len(messages) == 1


def test_the_default_roots_are_the_data_dir_and_the_uploads_folder(roots, tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_DATA_DIR", str(roots[0]))
    monkeypatch.setenv("CNN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("CNN_DATA_ROOTS", raising=False)
    assert len(folder_datasets()) == 3
    monkeypatch.setenv("CNN_DATA_ROOTS", str(roots[1]))
    assert [r["name"] for r in folder_datasets()] == ["uploads/photos-abc/shapes"]
    with pytest.raises(DataError):
        resolve_under_roots(roots[0] / "pets")
    assert os.path.isdir(roots[0] / "pets")
