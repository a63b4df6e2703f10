"""Decode a baseline JPEG at 1/8 scale, pixel for pixel as libjpeg does, on two cores.

A 12-megapixel phone photo shown to a 32x32 model is decoded at 1/8 scale (Pillow's ``draft``): libjpeg
then keeps only each block's DC coefficient (and, for 4:2:0 chroma, a 2x2 IDCT of the low ones), so
nearly all of its time goes into the entropy pass, which is sequential and single-threaded. ``_jpegdc.c``
does that pass on two threads: the second starts mid-file guessing that an MCU begins there and, Huffman
codes resynchronising within a few symbols, is soon decoding the true MCUs; the first one, from the start,
finds the exact bit where their MCU boundaries coincide and hands over (details in the C file). It steps
over the AC coefficients libjpeg would compute and discard, and then applies libjpeg's own integer
arithmetic: the 1x1 and 2x2 IDCTs, range limiting, box upsampling and YCbCr->RGB tables.
tests/test_jpegdc.py checks the result equals Pillow's draft decode exactly, for any place the second
thread starts, and that damaged files never crash it.

Only the common case is handled: 8-bit baseline or extended sequential Huffman JPEGs, one scan holding all
components, grey or YCbCr 4:4:4, 4:2:2 or 4:2:0 (restart markers allowed; one thread then). Anything else
(progressive, arithmetic coding, CMYK, RGB-coded, other sampling, a corrupt or truncated scan) returns
None, and the caller decodes with Pillow, which accepts or refuses the file its own way. Structure is
parsed and checked here; the C part only walks the entropy-coded bytes, bounds-checked. It is compiled on
first use into the cache directory with the system C compiler (``cc``); without one every call returns
None and ``unavailable()`` says why.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import cache_dir

SOURCE = Path(__file__).with_name("_jpegdc.c")
LOOKAHEAD = 10  # bits of the first-level Huffman lookup (the C file's LOOKAHEAD)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_lib_error: str | None = None


def _compile() -> ctypes.CDLL:
    src = SOURCE.read_bytes()
    out = cache_dir() / f"jpegdc-{hashlib.sha256(src).hexdigest()[:16]}.so"
    if not out.exists():
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if not cc:
            raise OSError("no C compiler (cc) found")
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".so.tmp")
        os.close(fd)
        try:
            subprocess.run([cc, "-O2", "-shared", "-fPIC", "-pthread", "-o", tmp, str(SOURCE)], check=True,
                           capture_output=True, timeout=120)
            os.replace(tmp, out)  # atomic: a crash never leaves a half-written library behind
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(out))
    p = ctypes.c_void_p
    i64 = ctypes.c_int64
    lib.jdc_decode.argtypes = [p, i64, ctypes.c_int, i64, i64, ctypes.c_int, p, ctypes.c_int, p, p, p, p, p, p,
                               p, i64, p, i64, i64, ctypes.c_int, i64]
    lib.jdc_decode.restype = i64
    return lib


def library() -> ctypes.CDLL | None:
    """The compiled decoder, built once per source version; None (and why in ``unavailable()``) if it
    cannot be built here."""
    global _lib, _lib_error
    if _lib is None and _lib_error is None:
        with _lock:
            if _lib is None and _lib_error is None:
                try:
                    _lib = _compile()
                except (OSError, subprocess.SubprocessError) as e:
                    _lib_error = str(e).splitlines()[0] if str(e) else type(e).__name__
    return _lib


def unavailable() -> str | None:
    """Why the fast decoder is off (None when it is on)."""
    library()
    return _lib_error


@dataclass
class Component:
    ident: int
    h: int
    v: int
    quant: int
    dc: int = 0
    ac: int = 0


@dataclass
class Header:
    width: int
    height: int
    components: list[Component]  # in frame order, which is also the scan's (Y, Cb, Cr)
    quant: dict[int, np.ndarray]  # natural (row-major) order, int32
    huffman: dict[tuple[int, int], tuple[bytes, bytes]]  # (class, id) -> (16 counts, symbols)
    restart_interval: int
    scan: memoryview  # the entropy-coded data, up to the end of the file


_ZIGZAG = np.array([0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
                    20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58,
                    59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63])
_SAMPLING = {(1, 1), (2, 1), (2, 2)}  # luma sampling with 1x1 chroma: 4:4:4, 4:2:2, 4:2:0
_LOG2 = {1: 0, 2: 1, 4: 2}  # box upsampling factors the C side takes (as shifts)
_UNSUPPORTED_FRAMES = {0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def parse(data: bytes) -> Header | None:
    """The structure of a JPEG this decoder handles, or None."""
    if data[:2] != b"\xff\xd8":
        return None
    mv = memoryview(data)
    pos, n = 2, len(data)
    quant: dict[int, np.ndarray] = {}
    huffman: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    frame: tuple[int, int, list[Component]] | None = None
    restart, jfif, adobe_transform = 0, False, None
    while True:
        while pos < n and data[pos] == 0xFF and pos + 1 < n and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > n or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker in (0xD8, 0xD9, 0x01) or 0xD0 <= marker <= 0xD7:
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2 or pos + 2 + length > n:
            return None
        body = data[pos + 4:pos + 2 + length]
        if marker == 0xDB:
            i = 0
            while i < len(body):
                precision, tq = body[i] >> 4, body[i] & 15
                size = 64 * (precision + 1)
                if precision > 1 or tq > 3 or i + 1 + size > len(body):
                    return None
                raw = np.frombuffer(body[i + 1:i + 1 + size], dtype=">u2" if precision else np.uint8)
                table = np.zeros(64, np.int32)
                table[_ZIGZAG] = raw
                quant[tq] = table
                i += 1 + size
        elif marker == 0xC4:
            i = 0
            while i < len(body):
                if i + 17 > len(body):
                    return None
                cls, th = body[i] >> 4, body[i] & 15
                counts = body[i + 1:i + 17]
                total = sum(counts)
                if cls > 1 or th > 3 or total > 256 or i + 17 + total > len(body):
                    return None
                huffman[(cls, th)] = (bytes(counts), bytes(body[i + 17:i + 17 + total]))
                i += 17 + total
        elif marker == 0xDD:
            if len(body) < 2:
                return None
            restart = int.from_bytes(body[:2], "big")
        elif marker in (0xC0, 0xC1):
            if len(body) < 6 or frame is not None:
                return None
            precision, height, width, nf = body[0], int.from_bytes(body[1:3], "big"), \
                int.from_bytes(body[3:5], "big"), body[5]
            if precision != 8 or height == 0 or width == 0 or nf not in (1, 3) or len(body) < 6 + 3 * nf:
                return None
            comps = [Component(body[6 + 3 * k], body[7 + 3 * k] >> 4, body[7 + 3 * k] & 15, body[8 + 3 * k])
                     for k in range(nf)]
            if any(not (1 <= c.h <= 4 and 1 <= c.v <= 4) or c.quant > 3 for c in comps):
                return None
            if len({c.ident for c in comps}) != nf:
                return None
            frame = (width, height, comps)
        elif marker in _UNSUPPORTED_FRAMES:
            return None
        elif marker == 0xE0 and body[:5] == b"JFIF\x00":
            jfif = True
        elif marker == 0xEE and body[:5] == b"Adobe" and len(body) >= 12:
            adobe_transform = body[11]
        elif marker == 0xDA:
            if frame is None or len(body) < 1:
                return None
            ns = body[0]
            width, height, comps = frame
            if ns != len(comps) or len(body) != 4 + 2 * ns:
                return None
            by_id = {c.ident: c for c in comps}
            scan_comps = []
            for k in range(ns):
                c = by_id.get(body[1 + 2 * k])
                if c is None or c in scan_comps:
                    return None
                c.dc, c.ac = body[2 + 2 * k] >> 4, body[2 + 2 * k] & 15
                if c.dc > 3 or c.ac > 3:
                    return None
                scan_comps.append(c)
            if scan_comps != comps:
                return None  # the C side takes the scan's order to be Y, Cb, Cr
            ss, se, ahal = body[1 + 2 * ns], body[2 + 2 * ns], body[3 + 2 * ns]
            if ss != 0 or se != 63 or ahal != 0:
                return None
            if len(comps) == 3 and not _is_ycbcr(comps, jfif, adobe_transform):
                return None
            return Header(width, height, scan_comps, quant, huffman, restart,
                          mv[pos + 2 + length:])
        pos += 2 + length


def _is_ycbcr(comps: list[Component], jfif: bool, adobe_transform: int | None) -> bool:
    """libjpeg's reading of a 3-component file's colour space (anything but YCbCr is left to Pillow)."""
    if jfif:
        return True
    if adobe_transform is not None:
        return adobe_transform == 1
    return [c.ident for c in comps] != [ord("R"), ord("G"), ord("B")]


@functools.lru_cache(maxsize=64)  # most photos use the same few tables (read-only results)
def _tables(counts: bytes, symbols: bytes, is_dc: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                  np.ndarray] | None:
    """Lookup table, maxcode, valoffset and symbols of one Huffman table; None if it is not a valid one."""
    lut = np.zeros(1 << LOOKAHEAD, np.uint16)
    maxcode = np.full(18, -1, np.int32)
    maxcode[17] = 0x7FFFFFFF
    valoffset = np.zeros(17, np.int32)
    huffval = np.zeros(256, np.uint8)
    huffval[:len(symbols)] = np.frombuffer(symbols, np.uint8)
    if is_dc and any(s > 15 for s in symbols):
        return None
    code, k = 0, 0
    for length in range(1, 17):
        count = counts[length - 1]
        valoffset[length] = k - code
        if count:
            if code + count > (1 << length):
                return None  # more codes than this length has room for
            maxcode[length] = code + count - 1
            if length <= LOOKAHEAD:
                for j in range(count):
                    first = (code + j) << (LOOKAHEAD - length)
                    lut[first:first + (1 << (LOOKAHEAD - length))] = (length << 8) | symbols[k + j]
        code, k = (code + count) << 1, k + count
    return lut, maxcode, valoffset, huffval


def _scaled_size(c: Component, hmax: int, vmax: int) -> int:
    """The IDCT output size libjpeg picks for a component at 1/8 scale (it scales chroma up by IDCT
    rather than upsampling where the sampling factors allow)."""
    ssize = 1
    while ssize < 8 and hmax % (c.h * ssize * 2) == 0 and vmax % (c.v * ssize * 2) == 0:
        ssize *= 2
    return ssize


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def decode_eighth(data: bytes, threads: int = 2) -> np.ndarray | None:
    """(ceil(H/8), ceil(W/8)) grey or (.., .., 3) RGB uint8, as libjpeg decodes it at scale 1/8; None when
    this decoder does not handle the file (the caller then uses Pillow)."""
    return decode(data, threads)[0]


def decode(data: bytes, threads: int = 2, split: int = 0) -> tuple[np.ndarray | None, int]:
    """decode_eighth's result and the MCU where its two threads met (0: one thread decoded everything).
    ``split``: the byte of the scan where the second thread starts guessing (0: the middle)."""
    lib = library()
    if lib is None:
        return None, 0
    hdr = parse(data)
    if hdr is None:
        return None, 0
    comps = hdr.components
    hmax, vmax = max(c.h for c in comps), max(c.v for c in comps)
    out_w, out_h = _ceil(hdr.width, 8), _ceil(hdr.height, 8)
    if len(comps) == 1:  # a non-interleaved scan: one block per MCU over the component's own blocks
        c = comps[0]
        mcus_x = _ceil(_ceil(hdr.width * c.h, hmax), 8)
        mcus_y = _ceil(_ceil(hdr.height * c.v, vmax), 8)
        layout = [(c, 1, 1)]
        blocks = [(0, 0, 0)]
    else:
        y, cb, cr = comps
        if (y.h, y.v) not in _SAMPLING or (cb.h, cb.v, cr.h, cr.v) != (1, 1, 1, 1):
            return None, 0  # the layouts tests/test_jpegdc.py checks: 4:4:4, 4:2:2, 4:2:0
        mcus_x, mcus_y = _ceil(hdr.width, 8 * hmax), _ceil(hdr.height, 8 * vmax)
        layout = [(c, c.h, c.v) for c in comps]
        blocks = [(i, dx, dy) for i, c in enumerate(comps) for dy in range(c.v) for dx in range(c.h)]
    if len(blocks) > 10:
        return None, 0
    luts = np.zeros((8, 1 << LOOKAHEAD), np.uint16)
    maxcodes = np.full((8, 18), -1, np.int32)
    valoffsets = np.zeros((8, 17), np.int32)
    huffvals = np.zeros((8, 256), np.uint8)
    for (cls, th), (counts, symbols) in hdr.huffman.items():
        t = _tables(counts, symbols, cls == 0)
        if t is None:
            return None, 0
        slot = th + 4 * cls
        luts[slot], maxcodes[slot], valoffsets[slot], huffvals[slot] = t
    quant = np.zeros((4, 64), np.int32)
    for k, table in hdr.quant.items():
        quant[k] = table
    info, planes, offset = [], [], 0
    for c, hs, vs in layout:
        if c.quant not in hdr.quant:
            return None, 0
        ssize = _scaled_size(c, hmax, vmax) if len(comps) > 1 else 1
        if ssize > 2 or hmax % (c.h * ssize) or vmax % (c.v * ssize):
            return None, 0
        rows, cols = mcus_y * vs * ssize, mcus_x * hs * ssize
        fy, fx = (vmax // (c.v * ssize), hmax // (c.h * ssize)) if len(comps) > 1 else (1, 1)
        if fx not in _LOG2 or fy not in _LOG2:
            return None, 0
        info.append([c.dc, 4 + c.ac, int(ssize == 2), c.quant, offset, cols, hs, vs, _LOG2[fx], _LOG2[fy]])
        planes.append((offset, rows, cols))
        offset += rows * cols
    out = np.empty(offset, np.uint8)
    rgb = np.empty((out_h, out_w, 3), np.uint8) if len(comps) == 3 else None
    comps_arr = np.ascontiguousarray(info, np.int64)
    blocks_arr = np.ascontiguousarray(blocks, np.int32)
    scan = np.frombuffer(hdr.scan, np.uint8)
    rc = lib.jdc_decode(scan.ctypes.data, len(scan), hdr.restart_interval, mcus_x, mcus_y, len(comps),
                        comps_arr.ctypes.data, len(blocks), blocks_arr.ctypes.data, luts.ctypes.data,
                        maxcodes.ctypes.data, valoffsets.ctypes.data, huffvals.ctypes.data, quant.ctypes.data,
                        out.ctypes.data, len(out), None if rgb is None else rgb.ctypes.data, out_w, out_h, threads,
                        split)
    if rc < 0:
        return None, 0
    if rgb is not None:
        return rgb, rc
    off, rows, cols = planes[0]
    return np.ascontiguousarray(out[off:off + rows * cols].reshape(rows, cols)[:out_h, :out_w]), rc
