"""Datasets as uint8 tensors: where they are found, how they are decoded once and cached, how they are split.

Every dataset becomes ``x`` of shape (N, C, H, W) dtype uint8 and ``y`` int64, decoded once and cached on disk
as ``.npy`` files keyed by a fingerprint of the source, so that later runs start in about a second.
"""

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import cache_dir
from .errors import DataError

CACHE_VERSION = 1


@dataclass
class Dataset:
    """A dataset's train and test parts as uint8 tensors (N, C, H, W)."""

    name: str
    classes: list[str]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    flip: bool  # is a horizontal flip a label-preserving augmentation here (not for digits)
    source: str  # where it was read from, for the record
    x_val: torch.Tensor | None = None  # a validation split of its own (a folder's 8:1:1); None: carve from train
    y_val: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)  # what the user should hear: skipped files, tiny classes

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def native_size(self) -> int:
        return int(self.x_train.shape[-1])


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    classes: int
    flip: bool
    loader: Callable[[Path, Path], Dataset]  # (data_dir, cache_dir) -> Dataset
    locate: Callable[[Path], str | None]  # where it would be read from, None when absent and download is needed


_DATASETS: dict[str, DatasetInfo] = {}
_PREFIXES: dict[str, Callable[..., Dataset]] = {}  # "folder" -> loader(arg, data, cache, size[, split_file=])


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $CNN_DATA_DIR, else ./data."""
    return Path(explicit or os.environ.get("CNN_DATA_DIR") or "data")


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    if name not in _DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(list_datasets())}, or folder:PATH")
    return _DATASETS[name]


def register_prefix(prefix: str, loader: Callable[..., Dataset]) -> None:
    """Datasets named ``prefix:ARG`` (e.g. folder:PATH) load through ``loader(ARG, data_dir, cache_dir, size)``,
    plus ``split_file=`` when the caller has one (see load_dataset)."""
    _PREFIXES[prefix] = loader


def load_dataset(name: str, data_dir_: str | os.PathLike | None = None, image_size: int = 32,
                 split_file: Path | None = None) -> Dataset:
    """Load a dataset by name; ``image_size`` only matters for datasets whose images vary in size.
    ``split_file``: where a dataset that splits itself (folder:PATH) keeps a run's split, reused when present."""
    ddir, cdir = data_dir(data_dir_), cache_dir()
    if ":" in name:
        prefix, arg = name.split(":", 1)
        if prefix not in _PREFIXES:
            raise DataError(f"unknown dataset kind {prefix!r}; use one of: {', '.join(list_datasets())}, folder:PATH")
        if split_file is not None:
            return _PREFIXES[prefix](arg, ddir, cdir, image_size, split_file=split_file)
        return _PREFIXES[prefix](arg, ddir, cdir, image_size)
    return dataset_info(name).loader(ddir, cdir)


def stratified_split(y: np.ndarray | torch.Tensor, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) with ``fraction`` of each class held out, seeded; sorted for determinism."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    idx = np.arange(len(y))
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 and round(fraction * len(y)) >= len(counts[counts > 0]) else None
    keep, held = train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(keep), np.sort(held)


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) on the 0..1 scale, exact: from each channel's
    histogram of the 256 byte values (one pass, no float copy of the images)."""
    values = torch.arange(256, dtype=torch.float64) / 255
    mean, std = [], []
    for c in range(x.shape[1]):
        hist = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        n = hist.sum()
        m = (hist * values).sum() / n
        var = (hist * (values - m) ** 2).sum() / n
        mean.append(round(float(m), 6))
        std.append(round(max(float(var.clamp_min(1e-12).sqrt()), 1e-3), 6))
    return mean, std


# ---------------------------------------------------------------------------------------------------- the cache

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


def _to_dataset(name: str, arrays: dict, flip: bool, source: str) -> Dataset:
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


def _read_zip_split(zf: zipfile.ZipFile, top: str, split: str, channels: int
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


def _read_folder_split(root: Path, channels: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels = [], []
    for i, c in enumerate(classes):
        for p in sorted((root / c).iterdir()):
            if p.is_file():
                files.append(p)
                labels.append(i)
    x = _decode_many([p.read_bytes for p in files], channels)
    return x, np.array(labels, dtype=np.int64), classes


# ------------------------------------------------------------------------------------- CIFAR-10 and MNIST

@dataclass(frozen=True)
class _Known:
    name: str
    title: str
    zip_name: str  # the shared zip, e.g. cifar10-jpeg.zip
    channels: int
    tv_marker: str  # torchvision's own folder under the data dir
    flip: bool


_CIFAR = _Known("cifar10", "CIFAR-10", "cifar10-jpeg.zip", 3, "cifar-10-batches-py", True)
_MNIST = _Known("mnist", "MNIST", "mnist-png.zip", 1, "MNIST", False)


def _locate(k: _Known, ddir: Path) -> tuple[str, Path] | None:
    for folder in (ddir / k.name, ddir):
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            return "folder", folder
    if (ddir / k.zip_name).is_file():
        return "zip", ddir / k.zip_name
    if (ddir / k.tv_marker).is_dir():
        return "torchvision", ddir / k.tv_marker
    return None


def _torchvision_arrays(k: _Known, ddir: Path, download: bool) -> dict:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if k is _CIFAR else torchvision.datasets.MNIST
    out: dict = {}
    for split, train in (("train", True), ("test", False)):
        ds = cls(root=str(ddir), train=train, download=download)
        x = np.asarray(ds.data)  # CIFAR: (N, 32, 32, 3) uint8; MNIST: tensor (N, 28, 28)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        out[f"x_{split}"] = np.ascontiguousarray(x.astype(np.uint8))
        out[f"y_{split}"] = np.asarray(ds.targets, dtype=np.int64)
        out["classes"] = [c.split(" - ")[-1] for c in ds.classes]  # MNIST's "0 - zero" -> "zero"
    if k is _MNIST:
        out["classes"] = [str(i) for i in range(10)]  # the folder datasets name digits 0..9
    return out


def _load_known(k: _Known, ddir: Path, cdir: Path) -> Dataset:
    found = _locate(k, ddir)
    if found is None:
        try:
            ddir.mkdir(parents=True, exist_ok=True)
            arrays = _torchvision_arrays(k, ddir, download=True)
        except Exception as e:  # offline, read-only, a broken mirror: all say the same thing to the user
            raise DataError(
                f"{k.title} not found in {ddir} and the download failed ({type(e).__name__}); put {k.zip_name} "
                f"(or torchvision's {k.tv_marker}/ or an unpacked {k.name}/train,test/) there, or set "
                f"CNN_DATA_DIR / --data-dir") from None
        found = ("torchvision", ddir / k.tv_marker)
    kind, path = found

    def build() -> dict:
        if kind == "torchvision":
            return _torchvision_arrays(k, ddir, download=False)
        out: dict = {}
        if kind == "zip":
            try:
                with zipfile.ZipFile(path) as zf:
                    tops = {n.split("/")[0] for n in zf.namelist() if n.count("/") >= 2}
                    top = k.name if k.name in tops else sorted(tops)[0]
                    for split in ("train", "test"):
                        out[f"x_{split}"], out[f"y_{split}"], out["classes"] = _read_zip_split(
                            zf, top, split, k.channels)
            except (zipfile.BadZipFile, IndexError, ValueError) as e:
                raise DataError(f"{path} is not a usable {k.title} zip ({e})") from None
        else:
            for split in ("train", "test"):
                out[f"x_{split}"], out[f"y_{split}"], out["classes"] = _read_folder_split(path / split, k.channels)
        return out

    arrays = cached_arrays(f"{k.name}-{fingerprint(path)}", build, cdir)
    return _to_dataset(k.name, arrays, k.flip, str(path))


def _load_digits(ddir: Path, cdir: Path) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255 / 16)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8), 0..16 -> 0..255
    y = d.target.astype(np.int64)
    train, test = stratified_split(y, 0.2, seed=0)  # fixed: every run is tested on the same 360 images
    arrays = {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test],
              "classes": [str(i) for i in range(10)]}
    return _to_dataset("digits", arrays, False, "scikit-learn load_digits")


def _register(name: str, description: str, classes: int, flip: bool, loader: Callable[[Path, Path], Dataset],
              locate: Callable[[Path], str | None]) -> None:
    if name in _DATASETS:
        raise ValueError(f"dataset {name!r} is already registered")
    _DATASETS[name] = DatasetInfo(name, description, classes, flip, loader, locate)


def _where(k: _Known) -> Callable[[Path], str | None]:
    def locate(ddir: Path) -> str | None:
        found = _locate(k, ddir)
        return f"{found[0]}: {found[1]}" if found else None
    return locate


_register("digits", "scikit-learn's 1,797 handwritten digits, 8x8 grayscale (bundled, no download)", 10, False,
          _load_digits, lambda ddir: "bundled with scikit-learn")
_register("mnist", "MNIST: 70,000 handwritten digits, 28x28 grayscale", 10, False,
          lambda d, c: _load_known(_MNIST, d, c), _where(_MNIST))
_register("cifar10", "CIFAR-10: 60,000 photos in 10 classes, 32x32 RGB", 10, True,
          lambda d, c: _load_known(_CIFAR, d, c), _where(_CIFAR))

from . import folders  # noqa: E402, F401  (registers folder:PATH; imported last: it builds on the functions above)
