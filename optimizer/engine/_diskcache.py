"""A content-addressed on-disk cache of plain numpy arrays, for pure results a later process may reuse.

A result lives in ``<out>/.cache/<kind>/<prefix>-<name>.npz`` (``optimizer.paths.cache_dir``: only inside a
command's ``caching_under`` block, never with env ``ACCUMOPT_CACHE=off``), where ``name`` is a digest of the key (the
content the result was computed from). The file is an uncompressed ``.npz`` of plain arrays (read with
``allow_pickle=False``: never a pickle) stamped with a digest of the name and of ``versions`` (the code and
libraries that computed it), written atomically (a reader sees a whole file or none; two writers of one key write
the same arrays, the last rename wins). A file that is missing, partial (truncated), corrupt (zip CRC), foreign
(another key's or another version's stamp), of another shape or dtype than the caller expects, or larger than
``MAX_FILE_BYTES`` is never trusted: ``load`` returns None, the caller recomputes and ``save`` overwrites it. A folder
that cannot be written (read-only, full) costs only the recomputation. At most ``max_files`` files per folder: the
least recently used (read or written) are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from optimizer.paths import atomic_write, cache_dir

__all__ = ["MAX_FILE_BYTES", "Expect", "load", "save"]

MAX_FILE_BYTES = 64 << 20  # a stored result is KBs to a few MB; a bigger file is not one of ours
_STAMP = "_id"

# name -> (shape, dtype) the caller expects; a None in a shape matches any length of that axis
Expect = Mapping[str, tuple[tuple[int | None, ...], np.dtype | type]]


def _name(prefix: str, key: bytes) -> bytes:
    """20-byte digest of ``key``: its file's name."""
    return hashlib.blake2b(prefix.encode() + b"\0" + key, digest_size=20).digest()


def _stamp(name: bytes, versions: bytes) -> bytes:
    """20-byte stamp of the result stored under ``name``, computed by ``versions``."""
    return hashlib.blake2b(name + b"\0" + versions, digest_size=20).digest()


def _path(d: Path, prefix: str, name: bytes) -> Path:
    return d / f"{prefix}-{name.hex()}.npz"


def _fits(shape: tuple[int, ...], want: tuple[int | None, ...]) -> bool:
    return len(shape) == len(want) and all(w is None or s == w for s, w in zip(shape, want))


def _read(path: Path, ident: bytes, expect: Expect) -> dict[str, np.ndarray] | None:
    """The arrays of ``path`` when it is a whole file of exactly ``expect``'s members (and the stamp ``ident``), each
    of its shape and dtype (checked in the member's header before its data is read); else None."""
    if path.stat().st_size > MAX_FILE_BYTES:
        return None
    want = {_STAMP: ((len(ident),), np.dtype(np.uint8)), **{k: (s, np.dtype(t)) for k, (s, t) in expect.items()}}
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        if sorted(names) != sorted(f"{k}.npy" for k in want):
            return None
        for name in names:
            k = name[:-4]
            shape, dtype = want[k]
            with z.open(name) as f:
                major, minor = np.lib.format.read_magic(f)
                if (major, minor) != (1, 0):
                    return None
                got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(f)
                if fortran or got_dtype != dtype or not _fits(got_shape, shape):
                    return None
            with z.open(name) as f:  # read to the end: the zip checks the member's CRC
                a = np.lib.format.read_array(f, allow_pickle=False)
                if f.read(1):
                    return None
            out[k] = a
    if out.pop(_STAMP).tobytes() != ident:
        return None  # a foreign file under this name: another key's, or another version's
    return out


def load(kind: str, prefix: str, key: bytes, versions: Callable[[], bytes],
         expect: Expect) -> dict[str, np.ndarray] | None:
    """The arrays stored for ``key`` (computed by ``versions()``, called only when a cache is on) in the running
    command's cache of ``kind``, or None (no cache, no file, or a file not to trust: see the module docstring)."""
    d = cache_dir(kind)
    if d is None:
        return None
    name = _name(prefix, key)
    path = _path(d, prefix, name)
    try:
        arrays = _read(path, _stamp(name, versions()), expect)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, MemoryError):  # unreadable: recomputed
        return None
    if arrays is not None:
        with contextlib.suppress(OSError):  # recently used (the eviction order); a read-only cache evicts less well
            os.utime(path)
    return arrays


def save(kind: str, prefix: str, key: bytes, versions: Callable[[], bytes], arrays: Mapping[str, np.ndarray],
         max_files: int) -> None:
    """Store ``arrays`` for ``key`` in the running command's cache of ``kind`` (atomically), then keep the folder to
    ``max_files`` files. A cache that cannot be written costs the next process a recomputation."""
    d = cache_dir(kind)
    if d is None:
        return
    name = _name(prefix, key)
    ident = _stamp(name, versions())

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **{_STAMP: np.frombuffer(ident, dtype=np.uint8)}, **arrays)

    try:
        d.mkdir(parents=True, exist_ok=True)
        atomic_write(_path(d, prefix, name), write)
        _evict(d, max_files)
    except OSError:
        return


def _evict(d: Path, keep: int) -> None:
    """Remove the least recently used ``.npz`` files of ``d`` (oldest modification time first) beyond ``keep``;
    temporary files of writers that died are removed after an hour."""
    files = []
    with os.scandir(d) as it:
        for e in it:
            with contextlib.suppress(OSError):  # removed by another process meanwhile
                if not e.is_file(follow_symlinks=False):
                    continue
                st = e.stat(follow_symlinks=False)
                if e.name.endswith(".npz"):
                    files.append((st.st_mtime_ns, e.name))
                elif e.name.startswith(".") and e.name.endswith(".tmp") and time.time() - st.st_mtime > 3600:
                    (d / e.name).unlink(missing_ok=True)
    for _, name in sorted(files)[: max(len(files) - keep, 0)]:
        with contextlib.suppress(OSError):
            (d / name).unlink(missing_ok=True)
