"""The photo folders a visitor may train on: only those under the data roots (``settings.data_roots()``).

The CLI's ``folder:PATH`` takes any path (its user owns the machine); the app lists folders with
``folder_datasets`` and turns a visitor's choice into a path with ``resolve_under_roots``, which resolves
symlinks and ``..`` first and refuses anything outside the roots with one message that is the same whether or
not the path exists (so the app cannot be used to probe the server's files).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core import settings
from ..core.errors import DataError
from .folders import MAX_FOLDER_BYTES, MAX_FOLDER_FILES, _part_of, _subdirs, _visible, find_root, scan_folder

SEARCH_DEPTH = 2  # levels below a root: <root>/caltech101/101_ObjectCategories, <uploads>/photos-<hash>/<top>
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
REFUSED = "is not one of the photo folders offered here; choose one from the list of folders"


def _roots(roots: list[Path] | None) -> list[Path]:
    """The existing roots, resolved (a root given through a symlink is still a root)."""
    out = []
    for r in roots if roots is not None else settings.data_roots():
        p = Path(r).resolve()
        if p.is_dir() and p not in out:
            out.append(p)
    return out


def _holds_photos(folder: Path, look: int = 20) -> bool:
    """Does the folder directly hold a visible regular file named like a photo (among its first ``look``)?"""
    with os.scandir(folder) as it:
        for i, e in enumerate(it):
            if i >= look:
                return False
            if _visible(e.name) and e.is_file(follow_symlinks=False) and e.name.lower().endswith(IMAGE_SUFFIXES):
                return True
    return False


def _looks_like_dataset(folder: Path) -> bool:
    """Two or more class folders of photos, or a train/ part: cheap, before a full (bounded) scan."""
    subdirs = _subdirs(folder)
    if any(_part_of(d.name) == "train" for d in subdirs):
        return True
    return sum(_holds_photos(d) for d in subdirs[:200]) >= 2


def _candidates(root: Path, depth: int) -> list[Path]:
    """Folders at most ``depth`` levels below ``root`` (itself included) that look like datasets; a dataset's
    own subfolders are not searched, nor hidden or symlinked folders."""
    found, level = [], [root]
    for d in range(depth + 1):
        below = []
        for folder in level:
            try:
                inner = find_root(folder)
                if _looks_like_dataset(inner):
                    found.append(inner)
                elif d < depth:
                    below += _subdirs(folder)
            except OSError:  # unreadable: not offered
                continue
        level = below
    return found


def folder_datasets(roots: list[Path] | None = None, max_files: int = MAX_FOLDER_FILES,
                    max_bytes: int = MAX_FOLDER_BYTES, depth: int = SEARCH_DEPTH) -> list[dict[str, Any]]:
    """The photo folders under the data roots a visitor may choose, sorted by name: each a dict with ``name``
    (the root's folder name and the path below it, for display), ``path`` (absolute, for ``folder:PATH``),
    ``classes``, ``files`` and ``layout``. Folders that fail the scan (too many files, one class) are left out."""
    out: dict[Path, dict[str, Any]] = {}
    for root in _roots(roots):
        for folder in _candidates(root, depth):
            try:
                scan = scan_folder(folder, max_files=max_files, max_bytes=max_bytes)
            except (DataError, OSError):
                continue
            name = (Path(root.name) / folder.relative_to(root)).as_posix()
            files = sum(len(f) for part in scan.files.values() for f in part.values())
            out.setdefault(scan.root, {"name": name, "path": str(scan.root), "classes": len(scan.classes),
                                       "files": files, "layout": scan.layout})
    return sorted(out.values(), key=lambda row: row["name"])


def resolve_under_roots(name_or_path: str | os.PathLike, roots: list[Path] | None = None) -> Path:
    """The real folder a visitor's choice names: an absolute path, a path relative to a root, or a ``name`` from
    ``folder_datasets``. Resolved before any check; anything outside the roots, or not a folder, is refused with
    the same one line (it never says whether the path exists)."""
    given = os.fspath(name_or_path)
    bases = _roots(roots)
    for candidate in _spellings(given, bases):
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
            continue
        if any(real.is_relative_to(b) for b in bases) and real.is_dir():
            return real
    raise DataError(f"{given[:200]!r} {REFUSED}")


def _spellings(given: str, bases: list[Path]) -> list[Path]:
    """Where ``given`` may point: itself when absolute, else below each root, or below a root's parent when it
    starts with that root's name (the ``name`` folder_datasets shows)."""
    if not given or "\x00" in given:
        return []
    p = Path(given)
    if p.is_absolute():
        return [p]
    return [b / p for b in bases] + [b.parent / p for b in bases if p.parts and p.parts[0] == b.name]
