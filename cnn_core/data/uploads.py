"""Zip uploads of photo folders: unpacked safely (no ``../``, links, bombs or duplicates) into a folder named by
the zip's content, ready for ``folder:PATH``."""

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
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..core.errors import DataError
from ..imaging.loader import MAX_BYTES
from .folders import _visible, describe_folder
from .registry import data_dir

MAX_ZIP_FILES = 20_000  # Caltech101 has 9,146 photos
MAX_EXTRACTED_BYTES = 2 * 1024 ** 3  # what one upload may become on disk
MAX_RATIO = 50  # photos barely compress (JPEG ~1:1); a bomb reaches 1000:1
RATIO_FLOOR = 1024 * 1024  # entries smaller than this may compress well (a plain PNG); their ratio is not judged
UPLOADS = "uploads"  # unpacked zip uploads live in <data dir>/uploads/photos-<content hash>/


def _bad_name(name: str) -> str | None:
    """Why a member name is unsafe to extract, or None."""
    if "\x00" in name:
        return "a NUL byte in a file name"
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return f"an absolute path ({name})"
    if any(part == ".." for part in PurePosixPath(posix).parts):
        return f"a path leaving the folder ({name})"
    return None


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
    return members


def _extract(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], out: Path, max_bytes: int) -> None:
    written = 0
    base = out.resolve()
    for info in members:
        target = out.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
        if not target.resolve().is_relative_to(base):  # belt and braces: the name checks already refused it
            raise DataError(f"zip refused: {info.filename} would land outside the upload folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
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
            raise DataError(f"zip refused: {info.filename} appears twice") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
            raise DataError(f"the zip is damaged or uses an unsupported compression at {info.filename} "
                            f"({type(e).__name__})") from None
        except IsADirectoryError:
            raise DataError(f"zip refused: {info.filename} is both a file and a folder") from None


def import_zip(data: bytes, data_root: str | os.PathLike | None = None, max_upload: int = MAX_BYTES
               ) -> dict[str, Any]:
    """Unpack an uploaded zip of class folders into ``<data dir>/uploads/photos-<hash>`` and describe it.

    The folder is named by the zip's content (SHA-256), never by the uploaded file name, so the same zip
    uploaded again is found rather than unpacked twice. A zip that is too large, hostile (see
    ``extract_zip_dataset``) or not a dataset (one class, no files) raises a one-line DataError and leaves
    nothing on disk. Returns ``describe_folder``'s dict plus ``path`` (for ``folder:PATH``) and ``new``."""
    if len(data) > max_upload:
        raise DataError(f"the zip is larger than {max_upload / 1024 ** 2:.3g} MB; upload fewer or smaller photos, "
                        "or copy the folder to the server and give its path")
    uploads = data_dir(data_root) / UPLOADS
    final = (uploads / f"photos-{hashlib.sha256(data).hexdigest()[:16]}").resolve()
    if final.is_dir():
        return {**describe_folder(final), "path": str(final), "new": False}
    made_uploads = not uploads.exists()
    tmp = None
    try:
        tmp = extract_zip_dataset(data, uploads)
        try:
            describe_folder(tmp)  # one class, no files: refused before it gets a name
        except DataError as e:  # its message names the temporary folder, which is about to go
            raise DataError(str(e).replace(str(tmp), "the zip")) from None
        try:
            tmp.rename(final)
        except OSError:  # the same zip, unpacked meanwhile by another session: keep that one
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return {**describe_folder(final), "path": str(final), "new": False}
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if made_uploads:
            with contextlib.suppress(OSError):
                uploads.rmdir()  # only when empty: never another upload
        raise
    return {**describe_folder(final), "path": str(final), "new": True}
