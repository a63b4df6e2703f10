"""Zip uploads of photo folders: unpacked safely (no ``../``, links, bombs, duplicates or names the file system
cannot hold) into a folder of the app's state folder named by the zip's content, ready for ``folder:PATH``; kept
only when trainable, with the least recently used uploads expiring to keep the folder under a total size."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..core import settings
from ..core.errors import DataError
from ..imaging.loader import MAX_BYTES
from .folders import SPLITS, _visible, describe_folder, plan_split, scan_folder, usable_files

MAX_ZIP_FILES = 20_000  # Caltech101 has 9,146 photos
MAX_EXTRACTED_BYTES = 2 * 1024 ** 3  # what one upload may become on disk
MAX_RATIO = 50  # photos barely compress (JPEG ~1:1); a bomb reaches 1000:1
RATIO_FLOOR = 1024 * 1024  # entries smaller than this may compress well (a plain PNG); their ratio is not judged
MAX_NAME_PART = 255  # bytes in one file or folder name (Linux's NAME_MAX: longer fails with "File name too long")
MAX_NAME_PATH = 1024  # characters in a member's whole path
MAX_UPLOADS_BYTES = 2 * 1024 ** 3  # the whole uploads folder; the oldest uploads expire to make room


def _short(name: str) -> str:
    """A member name fit for a one-line message."""
    return name if len(name) <= 80 else f"{name[:60]}...{name[-16:]}"


def _bad_name(name: str) -> str | None:
    """Why a member name is unsafe to extract, or None."""
    if "\x00" in name:
        return "a NUL byte in a file name"
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return f"an absolute path ({_short(name)})"
    if any(part == ".." for part in PurePosixPath(posix).parts):
        return f"a path leaving the folder ({_short(name)})"
    if len(posix) > MAX_NAME_PATH or any(len(p.encode()) > MAX_NAME_PART for p in PurePosixPath(posix).parts):
        return f"a file name too long to unpack ({_short(name)})"
    return None


def _member_path(info: zipfile.ZipInfo) -> str:
    return PurePosixPath(info.filename.replace("\\", "/")).as_posix()


def _check_tree(members: list[zipfile.ZipInfo]) -> None:
    """Refuse a name that is both a file and a folder (``cats`` and ``cats/0.png``), or that appears twice."""
    files, folders = set(), set()
    for info in members:
        path = _member_path(info)
        if path in files:
            raise DataError(f"zip refused: {_short(info.filename)} appears twice")
        files.add(path)
        folders.update(p.as_posix() for p in PurePosixPath(path).parents)
    both = sorted(files & folders)
    if both:
        raise DataError(f"zip refused: {_short(both[0])} is both a file and a folder")


def extract_zip_dataset(source: bytes | str | os.PathLike | IO[bytes], dest_root: str | os.PathLike,
                        max_files: int = MAX_ZIP_FILES, max_bytes: int = MAX_EXTRACTED_BYTES,
                        max_ratio: float = MAX_RATIO) -> Path:
    """Unpack an uploaded zip of class folders into a new folder under ``dest_root`` and return that folder
    (ready for ``folder:PATH``). The whole zip is refused (DataError, nothing left on disk) when it has
    ``../`` or absolute names, symlinks, encrypted members, more than ``max_files`` files, declares more than
    ``max_bytes`` or a compression ratio above ``max_ratio``; bytes actually written are counted too, so a
    zip whose headers lie stops at the cap."""
    with contextlib.ExitStack() as stack:
        if isinstance(source, (bytes, bytearray)):
            raw: IO[bytes] = io.BytesIO(source)
        elif hasattr(source, "read"):
            raw = source  # type: ignore[assignment]
        else:
            try:
                raw = stack.enter_context(open(source, "rb"))
            except OSError as e:
                raise DataError(f"cannot read the zip {source}: {e.strerror or e}") from None
        try:
            zf = stack.enter_context(zipfile.ZipFile(raw))
        except (zipfile.BadZipFile, OSError, ValueError):
            raise DataError("the upload is not a zip file") from None
        members = _check_members(zf, max_files, max_bytes, max_ratio)
        dest_root = Path(dest_root)
        dest_root.mkdir(parents=True, exist_ok=True)
        out = Path(tempfile.mkdtemp(prefix="upload-", dir=dest_root))
        try:
            _extract(zf, members, out, max_bytes)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    return out


def _check_members(zf: zipfile.ZipFile, max_files: int, max_bytes: int, max_ratio: float) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    members = []
    for info in infos:
        why = _bad_name(info.filename)
        if why:
            raise DataError(f"zip refused: it contains {why}")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DataError(f"zip refused: it contains a symbolic link ({info.filename})")
        if info.flag_bits & 0x1:
            raise DataError(f"zip refused: {info.filename} is encrypted")
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if info.is_dir() or not parts or not all(_visible(p) for p in parts):
            continue  # folders are made as needed; __MACOSX/, ._resource forks and .DS_Store are dropped
        members.append(info)
    if len(members) > max_files:
        raise DataError(f"zip refused: {len(members):,} files, more than the {max_files:,} allowed")
    declared = sum(i.file_size for i in members)
    packed = sum(i.compress_size for i in members)
    if declared > max_bytes:
        raise DataError(f"zip refused: it unpacks to {declared / 1024 ** 2:,.0f} MB, more than the "
                        f"{max_bytes / 1024 ** 2:,.0f} MB allowed")
    for i in members:
        if i.file_size > RATIO_FLOOR and i.file_size > max_ratio * max(i.compress_size, 1):
            raise DataError(f"zip refused: {i.filename} expands {i.file_size / max(i.compress_size, 1):,.0f}x "
                            "(a zip bomb?); photos barely compress")
    if declared > RATIO_FLOOR and declared > max_ratio * max(packed, 1):
        raise DataError(f"zip refused: it expands {declared / max(packed, 1):,.0f}x (a zip bomb?)")
    if not members:
        raise DataError("the zip holds no files")
    _check_tree(members)
    return members


def _extract(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], out: Path, max_bytes: int) -> None:
    written = 0
    base = out.resolve()
    for info in members:
        target = out.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
        if not target.resolve().is_relative_to(base):  # belt and braces: the name checks already refused it
            raise DataError(f"zip refused: {info.filename} would land outside the upload folder")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "xb") as dst:  # "x": a duplicate name never overwrites
                entry = 0
                while chunk := src.read(1024 * 1024):
                    entry += len(chunk)
                    written += len(chunk)
                    if entry > info.file_size or written > max_bytes:
                        raise DataError(f"zip refused: {info.filename} unpacks to more than it declares "
                                        "(a zip bomb?)")
                    dst.write(chunk)
        except FileExistsError:
            raise DataError(f"zip refused: {_short(info.filename)} appears twice") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
            raise DataError(f"the zip is damaged or uses an unsupported compression at {info.filename} "
                            f"({type(e).__name__})") from None
        except (IsADirectoryError, NotADirectoryError):
            raise DataError(f"zip refused: {_short(info.filename)} is both a file and a folder") from None
        except OSError as e:  # a name the file system refuses, a full disk
            raise DataError(f"cannot unpack {_short(info.filename)}: {e.strerror or e}") from None


def import_zip(data: bytes, uploads_root: str | os.PathLike | None = None, max_upload: int = MAX_BYTES,
               max_total: int = MAX_UPLOADS_BYTES, in_use: Iterable[str] = ()) -> dict[str, Any]:
    """Unpack an uploaded zip of class folders into ``<uploads>/photos-<hash>`` (``settings.uploads_dir()``, in
    the app's state folder: never the shared data folder) and describe it.

    The folder is named by the zip's content (SHA-256), never by the uploaded file name, so the same zip
    uploaded again is found rather than unpacked twice. It is kept only when it is trainable: two or more classes
    whose photos decode with the safe loader, each with enough for training, validation and testing. A zip that
    is too large, hostile (see ``extract_zip_dataset``) or not trainable raises a one-line DataError and leaves
    nothing on disk. The oldest uploads (by last use) expire so that the folder stays under ``max_total``, never
    one that a dataset of ``in_use`` (the jobs' ``folder:PATH``, running or waiting) trains on.
    Returns ``describe_folder``'s dict plus ``path`` (for ``folder:PATH``), ``new`` and ``expired`` (the names
    of the uploads removed to make room)."""
    if len(data) > max_upload:
        raise DataError(f"the zip is larger than {max_upload / 1024 ** 2:.3g} MB; upload fewer or smaller photos, "
                        "or copy the folder to the server and give its path")
    uploads = Path(uploads_root) if uploads_root is not None else settings.uploads_dir()
    final = (uploads / f"photos-{hashlib.sha256(data).hexdigest()[:16]}").resolve()
    if final.is_dir():
        return _found(final)
    made = _missing_folders(uploads)
    tmp = None
    try:
        tmp = extract_zip_dataset(data, uploads, max_bytes=min(MAX_EXTRACTED_BYTES, max_total))
        _check_trainable(tmp)
        expired = _make_room(uploads, max_total, _folders(in_use))
        try:
            tmp.rename(final)
        except OSError:  # the same zip, unpacked meanwhile by another session: keep that one
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return _found(final)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: never another upload
        raise
    return {**describe_folder(final), "path": str(final), "new": True, "expired": expired}


def _found(final: Path) -> dict[str, Any]:
    """An upload unpacked before: touched, so that it is the last to expire."""
    with contextlib.suppress(OSError):
        os.utime(final)
    return {**describe_folder(final), "path": str(final), "new": False, "expired": []}


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, outermost first: removed again on a refusal."""
    missing = []
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing.append(p)
    return missing[::-1]


def _check_trainable(folder: Path) -> None:
    """Refuse (one line, the temporary folder's name hidden) an upload a run could not train on: fewer than two
    classes with a decodable photo for training, validation and testing each."""
    try:
        scan = scan_folder(folder)
    except DataError as e:  # its message names the temporary folder, which is about to go
        raise DataError(str(e).replace(str(folder), "the zip")) from None
    usable = usable_files(scan)
    if not usable:
        files = len({f for part in scan.files.values() for fs in part.values() for f in fs})
        raise DataError(f"none of the {files} files in the zip is a usable image (JPEG, PNG, WebP, BMP, GIF or TIFF)")
    split, _ = plan_split(scan, readable=usable)
    ready = [c for c in scan.classes if all(split[s].get(c) for s in SPLITS)]
    if len(ready) < 2:
        raise DataError(f"the zip has {len(ready)} class folder(s) with enough usable photos; a classifier needs two "
                        "or more, each with at least 3 photos (one each for training, validation and testing)")


def _tree_bytes(path: Path) -> int:
    """Bytes of the regular files below ``path`` (links not followed)."""
    total = 0
    for here, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(here, f))
                total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def _folders(datasets: Iterable[str]) -> list[Path]:
    """The real folders of the ``folder:PATH`` datasets among ``datasets``."""
    return [Path(d.split(":", 1)[1]).resolve() for d in datasets if d.startswith("folder:")]


def _make_room(uploads: Path, max_total: int, keep: list[Path]) -> list[str]:
    """Remove the least recently used uploads until the folder (the new one included) fits ``max_total``, none
    that holds a folder of ``keep``; a one-line refusal when it cannot (uploads in use or still unpacking)."""
    used = _tree_bytes(uploads)
    expired = []
    for _, old in sorted((p.stat().st_mtime_ns, p) for p in uploads.glob("photos-*") if not p.is_symlink()):
        if used <= max_total:
            break
        if any(k.is_relative_to(old.resolve()) for k in keep):
            continue
        used -= _tree_bytes(old)
        shutil.rmtree(old, ignore_errors=True)
        expired.append(old.name)
    if used > max_total:
        raise DataError(f"no room for this upload: the uploads folder may hold {max_total / 1024 ** 2:,.0f} MB and "
                        "the other uploads are being trained on or unpacked; try again later")
    return expired
