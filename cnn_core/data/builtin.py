"""The built-in datasets: scikit-learn's digits (bundled), MNIST and CIFAR-10 (from the data dir: the shared
zips, unpacked folders or torchvision's own files; torchvision downloads them where it can)."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..imaging.digits import MNIST_BOX
from .cache import cached_arrays, fingerprint, read_folder_split, read_zip_split, to_dataset
from .registry import Dataset, register_dataset, stratified_split


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
    if (ddir / k.tv_marker).is_dir() and _torchvision_complete(k, ddir):
        return "torchvision", ddir / k.tv_marker
    return None


def _torchvision_complete(k: _Known, ddir: Path) -> bool:
    """Whether torchvision's own files are all there (a failed download can leave an empty MNIST/raw/ behind:
    a dataset is present only when it would load)."""
    import torchvision

    if k is _CIFAR:
        names = [name for name, _ in torchvision.datasets.CIFAR10.train_list + torchvision.datasets.CIFAR10.test_list]
        return all((ddir / k.tv_marker / n).is_file() for n in names)
    names = [Path(url).name.removesuffix(".gz") for url, _ in torchvision.datasets.MNIST.resources]
    return all((ddir / k.tv_marker / "raw" / n).is_file() for n in names)


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
        made = [p for p in (ddir, ddir / k.tv_marker) if not p.exists()]
        try:
            ddir.mkdir(parents=True, exist_ok=True)
            arrays = _torchvision_arrays(k, ddir, download=True)
        except Exception as e:  # offline, read-only, a broken mirror: all say the same thing to the user
            for p in reversed(made):  # a failed download leaves nothing: no empty folder reads as "present"
                shutil.rmtree(p, ignore_errors=True)
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
                        out[f"x_{split}"], out[f"y_{split}"], out["classes"] = read_zip_split(
                            zf, top, split, k.channels)
            except (zipfile.BadZipFile, IndexError, ValueError) as e:
                raise DataError(f"{path} is not a usable {k.title} zip ({e})") from None
        else:
            for split in ("train", "test"):
                out[f"x_{split}"], out[f"y_{split}"], out["classes"] = read_folder_split(path / split, k.channels)
        return out

    try:
        arrays = cached_arrays(f"{k.name}-{fingerprint(path)}", build, cdir)
    except DataError:
        raise
    except (OSError, RuntimeError, ValueError) as e:  # torchvision's "Dataset not found", an unreadable file, ...
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise DataError(f"{k.title} in {path} cannot be read ({first}); replace it, or put {k.zip_name} in "
                        f"{ddir}") from None
    return to_dataset(k.name, arrays, k.flip, str(path))


def _load_digits(ddir: Path, cdir: Path) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255 / 16)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8), 0..16 -> 0..255
    y = d.target.astype(np.int64)
    train, test = stratified_split(y, 0.2, seed=0)  # fixed: every run is tested on the same 360 images
    arrays = {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test],
              "classes": [str(i) for i in range(10)]}
    return to_dataset("digits", arrays, False, "scikit-learn load_digits")


def _where(k: _Known) -> Callable[[Path], str | None]:
    def locate(ddir: Path) -> str | None:
        found = _locate(k, ddir)
        return f"{found[0]}: {found[1]}" if found else None
    return locate


register_dataset("digits", "scikit-learn's 1,797 handwritten digits, 8x8 grayscale (bundled, no download)", 10, False,
                 _load_digits, lambda ddir: "bundled with scikit-learn", channels=1,
                 digit_box=1.0)  # measured: every one of the 1,797 digits spans all 8 rows
register_dataset("mnist", "MNIST: 70,000 handwritten digits, 28x28 grayscale", 10, False,
                 lambda d, c: _load_known(_MNIST, d, c), _where(_MNIST), channels=_MNIST.channels, digit_box=MNIST_BOX)
register_dataset("cifar10", "CIFAR-10: 60,000 photos in 10 classes, 32x32 RGB", 10, True,
                 lambda d, c: _load_known(_CIFAR, d, c), _where(_CIFAR), channels=_CIFAR.channels)
