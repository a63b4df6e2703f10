"""The decode cache: a dataset decoded once into ``.npy`` files keyed by a fingerprint of its source, so later
runs start in about a second. Written to a temp folder and renamed: a crash never leaves half a cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .registry import Dataset

CACHE_VERSION = 1


def fingerprint(path: Path) -> str:
    """Changes whenever the source changes: size and mtime of a file, or of every file below a folder."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{path.resolve()}".encode())
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    else:
        st = path.stat()
        h.update(f"{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cached_arrays(key: str, build: Callable[[], dict[str, np.ndarray | list[str]]], cdir: Path
                  ) -> dict[str, np.ndarray | list[str]]:
    """The arrays cached under ``key``, building them once. Written to a temp folder, then renamed: a crash
    mid-write leaves no half cache, and a leftover temp folder is removed the next time."""
    final = cdir / key
    if (final / "meta.json").is_file():
        try:
            meta = json.loads((final / "meta.json").read_text())
            out: dict[str, np.ndarray | list[str]] = {k: np.load(final / f"{k}.npy") for k in meta["arrays"]}
            out["classes"] = meta["classes"]
            return out
        except (OSError, ValueError, KeyError):
            shutil.rmtree(final, ignore_errors=True)  # unreadable: rebuild it
    cdir.mkdir(parents=True, exist_ok=True)
    for stale in cdir.glob(f"{key.split('-')[0]}-*.tmp*"):
        shutil.rmtree(stale, ignore_errors=True)
    arrays = build()
    tmp = Path(tempfile.mkdtemp(prefix=key + ".tmp", dir=cdir))
    names = [k for k in arrays if k != "classes"]
    for k in names:
        with open(tmp / f"{k}.npy", "wb") as f:
            np.save(f, arrays[k])
            f.flush()
            os.fsync(f.fileno())
    (tmp / "meta.json").write_text(json.dumps({"arrays": names, "classes": arrays["classes"]}))
    if final.exists():
        shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    # keep only the newest cache of this dataset: an old fingerprint is a source that changed
    for old in cdir.glob(f"{key.rsplit('-', 1)[0]}-*"):
        if old != final and not old.name.endswith(".tmp"):
            shutil.rmtree(old, ignore_errors=True)
    return arrays


def to_dataset(name: str, arrays: dict, flip: bool, source: str) -> Dataset:
    return Dataset(name, list(arrays["classes"]),
                   torch.from_numpy(np.ascontiguousarray(arrays["x_train"])),
                   torch.from_numpy(np.ascontiguousarray(arrays["y_train"])).long(),
                   torch.from_numpy(np.ascontiguousarray(arrays["x_test"])),
                   torch.from_numpy(np.ascontiguousarray(arrays["y_test"])).long(), flip, source)


# ------------------------------------------------------------------------------------------------- decoding

def decode_image_bytes(data: bytes, channels: int) -> np.ndarray:
    """A dataset image (already trusted: it comes from the dataset itself) as uint8 (C, H, W)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _decode_many(blobs: list[Callable[[], bytes]], channels: int) -> np.ndarray:
    # PIL releases the GIL while decoding, so threads use both cores without copying data between processes
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return np.stack(list(pool.map(lambda get: decode_image_bytes(get(), channels), blobs, chunksize=256)))


def read_zip_split(zf: zipfile.ZipFile, top: str, split: str, channels: int
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    prefix = f"{top}/{split}/"
    members = [n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/")]
    classes = sorted({n[len(prefix):].split("/")[0] for n in members})
    index = {c: i for i, c in enumerate(classes)}
    members.sort()
    labels = np.array([index[n[len(prefix):].split("/")[0]] for n in members], dtype=np.int64)
    data = [zf.read(n) for n in members]  # zipfile is not thread-safe; reading is fast, decoding is not
    x = _decode_many([lambda d=d: d for d in data], channels)
    return x, labels, classes


def read_folder_split(root: Path, channels: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels = [], []
    for i, c in enumerate(classes):
        for p in sorted((root / c).iterdir()):
            if p.is_file():
                files.append(p)
                labels.append(i)
    x = _decode_many([p.read_bytes for p in files], channels)
    return x, np.array(labels, dtype=np.int64), classes
