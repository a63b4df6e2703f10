"""Photo-folder datasets (``folder:PATH``).

A folder holds one subfolder per class (photos of any size, format and mode), or ``train/``, ``test/`` (and
optionally ``val/``) parts that each hold the class subfolders. Without those parts it is split 8:1:1 per
class with a fixed seed. Every photo goes through the one safe loader (``images.load_image``) and is resized
to the model's input side once; the decoded arrays are cached like the built-in datasets.

A scan never leaves the folder and never blocks: only real subfolders and regular files count (symlinks, FIFOs,
sockets and devices are skipped unopened), and it stops in one line above ``MAX_FOLDER_FILES`` files or
``MAX_FOLDER_BYTES`` bytes. Which folders a visitor of the app may name is ``roots``' business, not this module's.

A run keeps its split as ``split.json`` (relative file lists per split and class) in its folder: evaluation
and resume then use exactly the same images, even after photos are added to the folder.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import DataError, ImageError
from ..core.files import read_json, write_json
from ..imaging.loader import load_image, to_model_array
from .cache import cached_arrays
from .registry import Dataset, register_prefix

SPLIT_SEED = 0  # fixed: runs with different seeds on one folder are tested on the same images
SPLITS = ("train", "val", "test")
PART_NAMES = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}
FEW_IMAGES = 5  # fewer per class than this gets a warning
MAX_IMAGE_BYTES = 50 * 1024 * 1024  # per photo in a folder (uploads of single images keep images.MAX_BYTES)
JUNK = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}
SPLIT_FORMAT = 1


# ------------------------------------------------------------------------------------------------ scanning

def _visible(name: str) -> bool:
    return not name.startswith(".") and name not in JUNK


def _subdirs(path: Path) -> list[Path]:
    """Visible real subfolders: a symlinked folder is never entered (it could point anywhere on the machine)."""
    with os.scandir(path) as it:
        return sorted(Path(e.path) for e in it if _visible(e.name) and e.is_dir(follow_symlinks=False))


class _Budget:
    """Counts the files and bytes a scan has seen, and stops it in one line above the limits: a visitor's folder
    (or a mistyped path such as /) must not keep the server listing files for minutes."""

    def __init__(self, where: Path, max_files: int, max_bytes: int) -> None:
        self.where, self.max_files, self.max_bytes, self.files, self.bytes = where, max_files, max_bytes, 0, 0
        self.seen: list[str] = []

    def add(self, rel: str, st: os.stat_result) -> None:
        self.files += 1
        self.bytes += st.st_size
        self.seen.append(f"{rel}|{st.st_size}|{st.st_mtime_ns}")
        if self.files > self.max_files:
            raise DataError(f"{self.where} holds more than {self.max_files:,} files, the limit for a photo folder; "
                            "choose a smaller folder")
        if self.bytes > self.max_bytes:
            raise DataError(f"{self.where} holds more than {self.max_bytes / 1024 ** 3:.3g} GB, the limit for a "
                            "photo folder; choose a smaller folder")

    def signature(self) -> str:
        """Changes whenever a file the scan saw is added, removed or rewritten (and only then)."""
        return hashlib.sha256("\n".join(sorted(self.seen)).encode()).hexdigest()[:16]


def _files_below(folder: Path, root: Path, budget: _Budget) -> list[str]:
    """Every visible regular file below ``folder``, as sorted POSIX paths relative to ``root``. Symlinks (to
    files or folders), FIFOs, sockets and devices are skipped unopened: lstat decides, never the name."""
    out = []
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if not _visible(e.name):
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                elif e.is_file(follow_symlinks=False):
                    rel = Path(e.path).relative_to(root).as_posix()
                    budget.add(rel, e.stat(follow_symlinks=False))
                    out.append(rel)
    return sorted(out)


def find_root(path: Path) -> Path:
    """Step into single wrapper folders (a zip of ``photos/cats, photos/dogs`` has one top folder)."""
    for _ in range(8):
        dirs = _subdirs(path)
        if len(dirs) == 1 and _part_of(dirs[0].name) is None and _subdirs(dirs[0]):
            path = dirs[0]
        else:
            break
    return path


def _part_of(name: str) -> str | None:
    return next((part for part, names in PART_NAMES.items() if name.lower() in names), None)


MAX_FOLDER_FILES = 20_000  # Caltech101 has 9,146 photos
MAX_FOLDER_BYTES = 4 * 1024 ** 3  # Caltech101 is 130 MB; ImageNet-sized folders belong to the CLI's own machine


@dataclass
class Scan:
    """What is in a folder before anything is decoded."""

    root: Path
    layout: str  # "8:1:1" (one folder per class) or "parts" (train/ test/ [val/] folders)
    classes: list[str]
    files: dict[str, dict[str, list[str]]]  # part ("all" or train/val/test) -> class -> relative paths
    notes: list[str] = field(default_factory=list)
    signature: str = ""  # of every file's path, size and mtime: the decode cache's key


def scan_folder(path: str | os.PathLike, max_files: int = MAX_FOLDER_FILES, max_bytes: int = MAX_FOLDER_BYTES
                ) -> Scan:
    """Find the classes and files of a photo folder; a clear DataError when it cannot be a dataset or holds more
    than ``max_files`` files or ``max_bytes`` bytes. Only real folders and regular files count (see _files_below).
    """
    given = Path(path).expanduser()
    if not given.is_dir():
        raise DataError(f"folder {given} does not exist (folder:PATH needs a folder with one subfolder per class)")
    root = find_root(given)
    budget = _Budget(root, max_files, max_bytes)
    parts = {_part_of(d.name): d for d in _subdirs(root) if _part_of(d.name)}
    if "train" in parts:
        layout, classes = "parts", [d.name for d in _subdirs(parts["train"])]
        files = {part: _class_files(folder, classes, root, budget) for part, folder in parts.items()}
        for folder in parts.values():
            extra = sorted({d.name for d in _subdirs(folder)} - set(classes))
            if extra:
                raise DataError(f"{folder.name}/ has class folders that train/ lacks: {', '.join(extra[:5])}; "
                                "every class needs training photos")
    else:
        layout, classes = "8:1:1", [d.name for d in _subdirs(root)]
        files = {"all": _class_files(root, classes, root, budget)}
    _check_classes(root, classes, files["train" if layout == "parts" else "all"])
    return Scan(root, layout, classes, files, [], budget.signature())


def _class_files(folder: Path, classes: list[str], root: Path, budget: _Budget) -> dict[str, list[str]]:
    """Class -> files for the classes that are real subfolders of ``folder``."""
    real = {d.name for d in _subdirs(folder)}
    return {c: _files_below(folder / c, root, budget) for c in classes if c in real}


def _check_classes(root: Path, classes: list[str], train_files: dict[str, list[str]]) -> None:
    if not classes:
        raise DataError(f"no class folders in {root}: put each class's photos in its own subfolder, "
                        f"e.g. {root}/cats/ and {root}/dogs/")
    if len(classes) == 1:
        raise DataError(f"{root} has only one class folder ({classes[0]!r}); a classifier needs at least two: "
                        f"put each class's photos in its own subfolder, e.g. {root}/cats/ and {root}/dogs/")
    if not any(train_files.values()):
        raise DataError(f"the class folders in {root} hold no files")


# --------------------------------------------------------------------------------------------- splitting

def _share(n: int, fraction: float) -> int:
    """How many of a class's ``n`` images a held-out part gets: 10% rounded, but at least one from 3 images
    on, so that every class is validated and tested."""
    if fraction <= 0 or n < 3:
        return 0
    return max(1, int(n * fraction + 0.5))


def split_files(by_class: dict[str, list[str]], val: float = 0.1, test: float = 0.1, seed: int = SPLIT_SEED
                ) -> dict[str, dict[str, list[str]]]:
    """Stratified, seeded split of each class's files into train/val/test (8:1:1 by default). Each class is
    shuffled by its own generator, so one class's photos never change another's split."""
    out: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
    for c, files in by_class.items():
        files = sorted(files)
        rng = np.random.default_rng([seed, zlib.crc32(c.encode())])
        order = [files[i] for i in rng.permutation(len(files))]
        n_test, n_val = _share(len(files), test), _share(len(files), val)
        out["test"][c] = sorted(order[:n_test])
        out["val"][c] = sorted(order[n_test:n_test + n_val])
        out["train"][c] = sorted(order[n_test + n_val:])
    return out


def plan_split(scan: Scan, readable: set[str] | None = None) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """The train/val/test file lists for a scanned folder (only ``readable`` files when given), and notes."""
    def keep(files: list[str]) -> list[str]:
        return [f for f in files if readable is None or f in readable]

    notes = []
    if scan.layout == "8:1:1":
        split = split_files({c: keep(f) for c, f in scan.files["all"].items()})
    else:
        parts = {p: {c: keep(scan.files[p].get(c, [])) for c in scan.classes} for p in scan.files}
        split = {s: parts.get(s, {c: [] for c in scan.classes}) for s in SPLITS}
        carve = [s for s in ("test", "val") if s not in parts]
        if carve:  # a missing part comes from train/, 10% per class, seeded like the 8:1:1 split
            cut = split_files(split["train"], val=0.1 if "val" in carve else 0, test=0.1 if "test" in carve else 0)
            split["train"] = cut["train"]
            for s in carve:
                split[s] = cut[s]
            notes.append(f"no {' or '.join(p + '/' for p in carve)} folder: held out 10% of train/ per class "
                         f"as {' and '.join(carve)}")
    return split, notes


def split_counts(split: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, int]]:
    return {s: {c: len(files) for c, files in split[s].items()} for s in SPLITS}


def describe_folder(path: str | os.PathLike) -> dict[str, Any]:
    """What training on this folder would use, without decoding anything (files, not yet checked images):
    root, layout, classes, per-class counts per split, and notes. For the app to show right after an upload."""
    scan = scan_folder(path)
    split, notes = plan_split(scan)
    return {"root": str(scan.root), "layout": scan.layout, "classes": scan.classes,
            "counts": split_counts(split), "notes": notes + _few_notes(split, scan.classes)}


def _few_notes(split: dict[str, dict[str, list[str]]], classes: list[str]) -> list[str]:
    totals = {c: sum(len(split[s].get(c, [])) for s in SPLITS) for c in classes}
    few = [f"{c} ({n})" for c, n in totals.items() if n < FEW_IMAGES]
    if not few:
        return []
    listed = ", ".join(few[:10]) + (", ..." if len(few) > 10 else "")
    plural = "es" if len(few) > 1 else ""
    note = (f"warning: {len(few)} class{plural} with fewer than {FEW_IMAGES} images: {listed}; accuracy on them "
            "means little (aim for 50+)")
    return [note]


# ---------------------------------------------------------------------------------------------- decoding

def _decode_one(path: Path, size: int) -> tuple[np.ndarray, bool] | None:
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):  # swapped for a link or a FIFO since the scan: never opened
            return None
        im = load_image(path, draft_size=size, max_bytes=MAX_IMAGE_BYTES)
    except (ImageError, OSError):
        return None
    return to_model_array(im, size, 3), im.mode == "L"


def usable_files(scan: Scan, size: int = 32) -> set[str]:
    """The scanned files the safe loader decodes as images (at ``size``: enough to prove they decode), for
    checking a dataset before keeping it."""
    paths = sorted({f for part in scan.files.values() for files in part.values() for f in files})
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        ok = list(pool.map(lambda f: _decode_one(scan.root / f, size) is not None, paths))
    return {f for f, good in zip(paths, ok) if good}


def _decode_folder(scan: Scan, size: int) -> dict[str, Any]:
    """Every file below the root at ``size``: x (N, C, size, size) of the readable ones, their paths, and the
    paths that were not usable images. One channel only when every photo is grayscale."""
    paths = sorted({f for part in scan.files.values() for files in part.values() for f in files})
    x = np.empty((len(paths), 3, size, size), dtype=np.uint8)  # filled in place: no second copy of the data
    ok = np.zeros(len(paths), dtype=bool)
    gray = np.zeros(len(paths), dtype=bool)

    def work(i: int) -> None:
        got = _decode_one(scan.root / paths[i], size)
        if got is not None:
            x[i], gray[i] = got
            ok[i] = True

    # PIL releases the GIL while decoding and resizing, so threads keep both cores busy
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(work, range(len(paths))))
    x = x[ok]
    if ok.any() and gray[ok].all():
        x = np.ascontiguousarray(x[:, :1])
    good = np.array([p for p, k in zip(paths, ok) if k], dtype=str)
    bad = np.array([p for p, k in zip(paths, ok) if not k], dtype=str)
    return {"x": x, "paths": good.astype("U") if len(good) else np.array([], dtype="U1"),
            "skipped": bad.astype("U") if len(bad) else np.array([], dtype="U1"), "classes": scan.classes}


def _resolve(arg: str, data_dir: Path) -> Path:
    """folder:PATH is PATH itself, else PATH inside the data dir."""
    p = Path(arg).expanduser()
    if not arg:
        raise DataError("folder: needs a path, e.g. folder:my_photos")
    if p.is_dir() or p.is_absolute():
        return p
    return data_dir / p if (data_dir / p).is_dir() else p


# ------------------------------------------------------------------------------------------------- loading

def load_folder(arg: str, data_dir: Path, cache_dir: Path, size: int, split_file: Path | None = None) -> Dataset:
    """The ``folder:PATH`` loader. With ``split_file`` (a run's split.json), an existing file decides the split
    and a missing one is written with the split made now."""
    scan = scan_folder(_resolve(arg, data_dir))
    key = hashlib.sha256(str(scan.root.resolve()).encode()).hexdigest()[:10]
    arrays = cached_arrays(f"folder{key}x{size}-{scan.signature}", lambda: _decode_folder(scan, size),
                           cache_dir)
    x_all = torch.from_numpy(np.ascontiguousarray(arrays["x"]))
    index = {str(p): i for i, p in enumerate(arrays["paths"])}
    skipped = [str(p) for p in arrays["skipped"]]
    if not index:
        raise DataError(f"none of the {len(skipped)} files in {scan.root} is a usable image "
                        "(JPEG, PNG, WebP, BMP, GIF or TIFF)")

    saved = _read_split(split_file) if split_file is not None and split_file.is_file() else None
    if saved is not None:
        classes, split, notes = saved["classes"], saved["splits"], [f"using the run's saved split ({split_file})"]
        missing = [f for s in SPLITS for files in split[s].values() for f in files if f not in index]
        if missing:
            raise DataError(f"{len(missing)} images of this run's split are missing or unreadable in {scan.root} "
                            f"(e.g. {missing[0]}); put them back, or train a new run on the folder as it is now")
    else:
        classes = scan.classes
        split, notes = plan_split(scan, readable=set(index))
        empty = [c for c in classes if not split["train"].get(c)]
        if empty:
            notes.append(f"warning: no usable training images in class folder(s) {', '.join(empty[:5])}; left out")
            classes = [c for c in classes if c not in empty]
            split = {s: {c: split[s].get(c, []) for c in classes} for s in SPLITS}
        if len(classes) < 2:
            raise DataError(f"{scan.root} has usable images in only {len(classes)} class folder(s); a classifier "
                            "needs at least two classes with photos")
        if split_file is not None:
            _write_split(split_file, scan, classes, split, skipped)
    empty_parts = [s for s in ("val", "test") if not any(split[s].values())]
    if empty_parts:
        raise DataError(f"{scan.root} has too few photos to hold any out for {' and '.join(empty_parts)}: a class "
                        f"needs at least 3 (it gets 1 for validation and 1 for testing); add photos")
    if skipped:
        notes.append(f"warning: skipped {len(skipped)} unreadable file{'s' if len(skipped) > 1 else ''} "
                     f"(not an image, damaged, or too large), e.g. {', '.join(skipped[:3])}")
    notes += _few_notes(split, classes)
    notes.append(_count_line(scan, split, classes))

    def part(s: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx = [index[f] for c in classes for f in split[s].get(c, [])]
        y = [i for i, c in enumerate(classes) for _ in split[s].get(c, [])]
        return x_all[torch.tensor(idx, dtype=torch.long)], torch.tensor(y, dtype=torch.long)

    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = part("train"), part("val"), part("test")
    return Dataset(f"folder:{arg}", list(classes), x_tr, y_tr, x_te, y_te, flip=True, source=str(scan.root),
                   x_val=x_va, y_val=y_va, notes=notes)


def _count_line(scan: Scan, split: dict[str, dict[str, list[str]]], classes: list[str]) -> str:
    counts = split_counts(split)
    head = (f"{scan.root}: {len(classes)} classes, {'8:1:1 split' if scan.layout == '8:1:1' else 'train/val/test'}"
            f": {sum(counts['train'].values())} train / {sum(counts['val'].values())} val / "
            f"{sum(counts['test'].values())} test images")
    if len(classes) > 20:
        return head + " (per-class counts in the run's split.json)"
    return head + "\n" + "\n".join(f"  {c}: {counts['train'][c]} / {counts['val'][c]} / {counts['test'][c]}"
                                   for c in classes)


def _write_split(path: Path, scan: Scan, classes: list[str], split: dict[str, dict[str, list[str]]],
                 skipped: list[str]) -> None:
    write_json(path, {"format": SPLIT_FORMAT, "root": str(scan.root.resolve()), "layout": scan.layout,
                         "seed": SPLIT_SEED, "classes": classes, "counts": split_counts(split),
                         "splits": split, "skipped": skipped[:100]})


def _read_split(path: Path) -> dict[str, Any]:
    saved = read_json(path)
    try:
        classes = [str(c) for c in saved["classes"]]
        split = {s: {c: [str(f) for f in saved["splits"][s].get(c, [])] for c in classes} for s in SPLITS}
    except (KeyError, TypeError, AttributeError):
        raise DataError(f"{path} is not a readable split file; delete it to split the folder afresh") from None
    return {"classes": classes, "splits": split}


register_prefix("folder", load_folder)
