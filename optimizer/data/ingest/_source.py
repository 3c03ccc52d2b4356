"""Reading one raw file safely, in bounded memory, and staging its lines in DuckDB.

* :func:`read_raw` reads the file's sha256 (files above ``INLINE_BYTES`` are hashed in a streaming pass and read
  again in chunks later, so a big file is never held whole; the second reading is hashed too, and a file whose
  content changed in between is refused).
* :func:`decompressed_chunks` yields the content in chunks of at most ``CHUNK_BYTES``: gzip (detected by its
  magic bytes, whatever the extension; any number of members, NUL padding between members tolerated) is
  decompressed incrementally, and the caps of :class:`Limits` are enforced AS IT GOES, so a decompression bomb
  is stopped after a few megabytes: the decompressed size (``MAX_DECOMPRESSED_MB``, default 2048 MiB) and the
  expansion ratio (``MAX_EXPANSION_RATIO``, default 100x, checked once 8 MiB are out). A file compressed twice,
  a truncated or corrupt stream are refused with the line where they break.
* :func:`stage_lines` refuses what is not UTF-8 text -- UTF-16/32 (byte-order mark or NUL bytes), invalid UTF-8
  (a file mixing UTF-8 and Latin-1 is named as such), CR-only or mixed-CR line ends, a line longer than
  ``MAX_LINE_BYTES`` -- and appends the non-blank physical lines to the staging table ``_ing_lines(_fid BIGINT,
  line BIGINT, l VARCHAR)`` (``_fid``: the file's number in the batch): line ends stripped, ``line`` = the
  1-based physical line number of the decompressed file (blank lines -- empty or only spaces and tabs -- keep
  their number but are not staged). The tokenizer is numpy over the bytes (no Python string per
  line); the lines reach DuckDB as one zero-copy Arrow array per chunk.
* :func:`read_text` returns the whole text (JSON inputs), capped and checked the same way.
* :func:`probe_delimited` is the fast path of a regular delimited file with a record-count trailer (raw FINRA
  files): it PROVES in a few numpy passes over the bytes that the line path would stage exactly the header, the data
  lines and the trailer, each data line with the same number of delimiters (see its doc), and hands DuckDB's own CSV
  reader those exact bytes (the data lines, in an anonymous in-memory file: ``os.memfd_create``), so no line table is
  built and no line is split in SQL. Anything it is not sure of returns None: the file takes the line path, whose
  messages and line numbers are the rules. :class:`MemFiles` holds the data lines DuckDB reads.

Every refusal is an :class:`~optimizer.errors.InputFileError` (``file:line: reason``).
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from optimizer.errors import InputFileError, ParameterError
from optimizer.settings import Settings

__all__ = [
    "GZIP_MAGIC",
    "INLINE_BYTES",
    "CHUNK_BYTES",
    "MAX_LINE_BYTES",
    "LINES_TABLE",
    "Limits",
    "RawFile",
    "Lines",
    "IsJson",
    "read_raw",
    "decompressed_chunks",
    "stage_lines",
    "reset_lines",
    "LineSink",
    "read_text",
    "too_big",
    "Delimited",
    "MemFiles",
    "probe_delimited",
    "stage_line_numbers",
]

GZIP_MAGIC = b"\x1f\x8b"
INLINE_BYTES = 64 << 20
CHUNK_BYTES = 16 << 20
MAX_LINE_BYTES = 1 << 20
_LONG_LINE = f"line longer than {MAX_LINE_BYTES >> 20} MiB: not a line-oriented text file"
_STEP_BYTES = 1 << 20  # gzip output per decompression call
LINES_TABLE = "_ing_lines"
_BOMS = ((b"\xff\xfe", "FF FE"), (b"\xfe\xff", "FE FF"), (b"\x00\x00\xfe\xff", "00 00 FE FF"))


@dataclass(frozen=True)
class Limits:
    """Caps on what one file may expand to (see the module doc)."""

    max_bytes: int = 2048 << 20
    max_ratio: float = 100.0
    ratio_floor: int = 8 << 20

    def __post_init__(self) -> None:
        if not (isinstance(self.max_bytes, (int, np.integer)) and self.max_bytes >= 1):
            raise ParameterError(f"max_decompressed_mb must be >= 1, got max_bytes={self.max_bytes!r}")
        if not (isinstance(self.max_ratio, (int, float)) and np.isfinite(self.max_ratio) and self.max_ratio >= 1):
            raise ParameterError(f"max_expansion_ratio must be a finite number >= 1, got max_expansion_ratio={self.max_ratio!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        return cls(max_bytes=int(settings.max_decompressed_mb) << 20, max_ratio=float(settings.max_expansion_ratio))


@dataclass(frozen=True)
class RawFile:
    path: Path
    file: str
    sha256: str
    size: int
    data: bytes | None  # the bytes when the file is at most INLINE_BYTES


@dataclass
class Lines:
    """What :func:`stage_lines` saw: the first and last non-blank lines (number, text) and the counts."""

    first_no: int = 0
    first: str = ""
    last_no: int = 0
    last: str = ""
    staged: int = 0
    physical: int = 0


@dataclass
class Delimited(Lines):
    """A file :func:`probe_delimited` proved regular: the :class:`Lines` the line path would report, ``header`` =
    which of the given headers it starts with, and its ``rows`` data lines (physical lines 2 .. ``rows + 1``, line
    ends kept): ``data`` until :meth:`MemFiles.add` appends them to an in-memory file, then ``path`` (read by DuckDB's
    ``read_csv``), ``first`` (the 1-based row of its first data line there) and the byte range ``offset`` /
    ``nbytes`` in ``fd``."""

    header: int = 0
    rows: int = 0
    data: object = None
    path: str = ""
    first: int = 0
    fd: int = -1
    offset: int = 0
    nbytes: int = 0

    def line_texts(self, numbers: list[int]) -> list[str]:
        """The text of the given data lines (physical line numbers, line ends stripped), as the line path stages
        them (the rejected rows' raw text)."""
        lines = os.pread(self.fd, self.nbytes, self.offset).split(b"\n")
        return [lines[n - 2].removesuffix(b"\r").decode("ascii") for n in numbers]


class MemFiles:
    """The in-memory files (``os.memfd_create``: nothing on disk, freed when closed, also by a killed process) holding
    the data lines of a batch's fast-path files, one per header (a layout: one CSV reading), read by DuckDB as
    ``/proc/self/fd/N``. One file per layout rather than per input file: DuckDB's reader costs ~0.5 ms per file
    opened and a file-name column to tell them apart."""

    def __init__(self) -> None:
        self.files: dict[object, list[int]] = {}  # key -> [fd, bytes written, rows written]

    def add(self, d: Delimited, key: object = None) -> None:
        """Append ``d.data`` to the file of ``key`` (default: ``d.header``) and record where it went (OSError: nothing
        appended)."""
        key = d.header if key is None else key
        if key not in self.files:
            self.files[key] = [os.memfd_create("accumopt-ingest", os.MFD_CLOEXEC), 0, 0]
        f = self.files[key]
        view = memoryview(d.data)
        d.fd, d.offset, d.nbytes, d.first, d.path = f[0], f[1], len(view), f[2] + 1, f"/proc/self/fd/{f[0]}"
        try:
            while view:
                view = view[os.pwrite(f[0], view, f[1] + d.nbytes - len(view)):]
        except OSError:
            os.ftruncate(f[0], f[1])  # what was written of it would be read as rows of the file before it
            raise
        f[1] += d.nbytes
        f[2] += d.rows
        d.data = None

    def close(self) -> None:
        while self.files:
            os.close(self.files.popitem()[1][0])


class IsJson(Exception):
    """Raised by :func:`stage_lines` when the content is a JSON document (the caller reads it whole)."""


def read_raw(path: str | Path, file: str) -> RawFile:
    """The file's checksum (and bytes when small). OSError propagates (the caller names it)."""
    p = Path(path)
    size = os.stat(p).st_size
    if size <= INLINE_BYTES:
        data = p.read_bytes()
        return RawFile(p, file, hashlib.sha256(data).hexdigest(), len(data), data)
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        while block := fh.read(CHUNK_BYTES):
            h.update(block)
    return RawFile(p, file, h.hexdigest(), size, None)


def _raw_chunks(raw: RawFile) -> Iterator[bytes]:
    """The file's bytes in chunks; a file read again from disk (above INLINE_BYTES) is hashed as it is read and
    refused at its end when it is not the content :func:`read_raw` hashed (a download still being written, a file
    replaced in between): its rows would be stored under another content's checksum."""
    if raw.data is not None:
        yield raw.data
        return
    h = hashlib.sha256()
    with open(raw.path, "rb") as fh:
        while block := fh.read(CHUNK_BYTES):
            h.update(block)
            yield block
    if h.hexdigest() != raw.sha256:
        raise InputFileError(raw.file, None, "the file changed while it was read (its checksum differs between two "
                                             "reads): ingest it again once it is complete")


def too_big(raw: RawFile, limits: Limits) -> InputFileError:
    """The refusal of a file whose content exceeds ``limits.max_bytes`` (also a Parquet file's, ``lit``)."""
    return InputFileError(
        raw.file, None,
        f"content exceeds the size limit of {limits.max_bytes >> 20} MiB (set MAX_DECOMPRESSED_MB or "
        "--max-decompressed-mb to allow more)",
    )


def decompressed_chunks(raw: RawFile, limits: Limits) -> Iterator[bytes]:
    """The file's content in chunks (see the module doc)."""
    it = _raw_chunks(raw)
    first = next(it, b"")
    if first[:2] != GZIP_MAGIC:
        if raw.size > limits.max_bytes:
            raise too_big(raw, limits)
        if first:
            yield first
        yield from it
        return
    fed = out = newlines = 0
    d = zlib.decompressobj(wbits=31)
    pending: bytes | None = first
    checked_nested = False
    acc: list[bytes] = []
    acc_n = 0
    while True:
        if not pending:
            pending = next(it, None)
            if pending is None:
                break
        if d.eof:  # a new gzip member (NUL padding between members is tolerated)
            pending = pending.lstrip(b"\x00")
            if not pending:
                continue
            d = zlib.decompressobj(wbits=31)
        buf = pending
        try:  # small steps, so the caps stop a bomb after a few megabytes
            piece = d.decompress(buf, _STEP_BYTES)
        except zlib.error as exc:
            raise InputFileError(raw.file, newlines + 1, f"corrupt gzip stream ({exc})") from None
        pending = d.unconsumed_tail if d.unconsumed_tail else d.unused_data
        fed += len(buf) - len(d.unconsumed_tail) - (len(d.unused_data) if d.eof else 0)
        if not piece:
            continue
        if not checked_nested:
            checked_nested = True
            if piece[:2] == GZIP_MAGIC:
                raise InputFileError(raw.file, 1, "gzip inside gzip: the file was compressed twice; decompress it once")
        out += len(piece)
        newlines += piece.count(b"\n")
        if out > limits.max_bytes:
            raise too_big(raw, limits)
        if out >= limits.ratio_floor and out > limits.max_ratio * max(fed, 1):
            raise InputFileError(
                raw.file, None,
                f"gzip expands more than {limits.max_ratio:g}x ({fed} compressed bytes gave {out} bytes so far): "
                "refused as a possible decompression bomb (set MAX_EXPANSION_RATIO or --max-expansion to allow more)",
            )
        acc.append(piece)
        acc_n += len(piece)
        if acc_n >= CHUNK_BYTES:
            yield b"".join(acc)
            acc, acc_n = [], 0
    if not d.eof:
        raise InputFileError(raw.file, newlines + 1, f"truncated gzip stream: it ends after {out} decompressed bytes")
    if acc:
        yield b"".join(acc)


_UNZIP = "only gzip is decompressed (decompress it, or save it as UTF-8 text)"
_AS_CSV = "save it as CSV (UTF-8 text)"
# what a binary file under a text name is, by its first bytes (gzip is decompressed before this is seen)
_MAGICS = (
    (b"PK\x03\x04", "a zip archive (an .xlsx workbook is one too)", _UNZIP),
    (b"BZh", "a bzip2 stream", _UNZIP),
    (b"\xfd7zXZ\x00", "an xz stream", _UNZIP),
    (b"\x28\xb5\x2f\xfd", "a zstd stream", _UNZIP),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", _UNZIP),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel .xls workbook", _AS_CSV),
    (b"PAR1", "a Parquet file", _AS_CSV),
)


def _check_start(file: str, chunk: bytes) -> bytes:
    """Refuse UTF-16/32 by its byte-order mark and a compressed or binary format by its magic bytes (named: it
    was refused as 'NUL byte ... UTF-16 text'); strip a UTF-8 byte-order mark."""
    for bom, label in _BOMS:
        if chunk.startswith(bom):
            kind = "UTF-32" if len(bom) == 4 else "UTF-16"
            raise InputFileError(file, 1, f"{kind} text (byte-order mark {label}): save the file as UTF-8")
    for magic, label, advice in _MAGICS:
        if chunk.startswith(magic) and (magic != b"BZh" or chunk[3:4].isdigit()):
            raise InputFileError(file, 1, f"{label}, not text: {advice}")
    return chunk[3:] if chunk.startswith(b"\xef\xbb\xbf") else chunk


def _check_text(file: str, body: bytes, base: int) -> None:
    """NUL bytes and invalid UTF-8 in ``body`` (whose first line is line ``base + 1``)."""
    nul = body.find(b"\x00")
    if nul >= 0:
        line = base + body.count(b"\n", 0, nul) + 1
        raise InputFileError(file, line, "NUL byte: binary data or UTF-16 text without a byte-order mark (save the file as UTF-8 text)")
    if body.isascii():
        return
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = base + body.count(b"\n", 0, exc.start) + 1
        if exc.reason == "unexpected end of data":  # a body ends at a line feed, or is the file's last
            raise InputFileError(file, line, f"the file ends inside a UTF-8 character (byte 0x{body[exc.start]:02X}): "
                                             "truncated? (get the file again)") from None
        raise InputFileError(
            file, line,
            f"invalid UTF-8 (byte 0x{body[exc.start]:02X}): the file is not UTF-8 or mixes encodings such as UTF-8 "
            "and Latin-1 (save it as UTF-8)",
        ) from None


def reset_lines(con: duckdb.DuckDBPyConnection) -> None:
    """An empty ``_ing_lines`` (start of a batch), in the staging database first on ``con``'s search path (the
    ingest's staging connection: ``optimizer.data.ingest._Pipeline``)."""
    con.execute(f"CREATE OR REPLACE TABLE {LINES_TABLE} (_fid BIGINT, line BIGINT, l VARCHAR)")


class LineSink:
    """Collects tokenized chunks (Arrow tables) and appends them to ``_ing_lines`` in one statement per
    ``FLUSH_BYTES`` (small files of a batch share one insert; a big file still streams)."""

    FLUSH_BYTES = 32 << 20

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.pending: list[pa.Table] = []
        self.nbytes = 0

    def add(self, tbl: pa.Table) -> None:
        self.pending.append(tbl)
        self.nbytes += tbl.nbytes
        if self.nbytes >= self.FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        tbl = pa.concat_tables(self.pending)
        self.pending, self.nbytes = [], 0
        self.con.register("_ing_chunk", tbl)
        try:
            self.con.execute(f"INSERT INTO {LINES_TABLE} SELECT _fid, line, l FROM _ing_chunk")
        finally:
            self.con.unregister("_ing_chunk")


class _Stager:
    """Appends tokenized chunks of file ``fid`` to ``_ing_lines`` (created by :func:`reset_lines`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, file: str, fid: int, sink: LineSink | None = None) -> None:
        self.con, self.file, self.fid = con, file, int(fid)
        self.sink = sink
        self.info = Lines()
        self.lf_seen = False

    def add(self, body: bytes, base: int, final: bool) -> int:
        """Stage the lines of ``body`` (complete lines, the last one unterminated only when ``final``);
        returns the number of physical lines consumed."""
        _check_text(self.file, body, base)
        arr = np.frombuffer(body, dtype=np.uint8)
        nl = np.flatnonzero(arr == 10)
        if len(nl):
            self.lf_seen = True
        starts = np.concatenate(([0], nl + 1))
        ends = np.concatenate((nl, [len(body)]))
        if starts[-1] == len(body):  # the body ends with a line feed: no last partial line
            starts, ends = starts[:-1], ends[:-1]
        n = len(starts)
        if not n:
            return 0
        is_cr = arr == 13
        cr_end = (ends > starts) & is_cr[np.maximum(ends - 1, 0)]
        if np.count_nonzero(is_cr) != np.count_nonzero(cr_end):  # a carriage return left inside a line
            inner = is_cr.copy()
            inner[ends[cr_end] - 1] = False
            pos = int(np.flatnonzero(inner)[0])
            if not self.lf_seen:
                raise InputFileError(self.file, base + 1, "CR-only line ends (classic Mac OS): save the file with LF or CRLF line ends")
            k = int(np.searchsorted(starts, pos, side="right")) - 1
            raise InputFileError(self.file, base + k + 1, "carriage return inside a line (mixed line ends): save the file with LF or CRLF line ends")
        ends = ends - cr_end
        too_long = np.flatnonzero(ends - starts > MAX_LINE_BYTES)  # a long line followed by others in the chunk
        if len(too_long):
            raise InputFileError(self.file, base + int(too_long[0]) + 1, _LONG_LINE)
        if len(nl) or cr_end.any():
            drop = np.zeros(len(body), dtype=bool)
            drop[nl] = True
            drop[ends[cr_end]] = True
            data = arr[~drop]
        else:
            data = arr
        lens = (ends - starts).astype(np.int64)
        keep = lens > 0
        first = arr[np.minimum(starts, len(body) - 1)]
        for i in np.flatnonzero(keep & ((first == 32) | (first == 9))):  # a line of only spaces / tabs is blank too
            if not body[starts[i]:ends[i]].strip(b" \t"):
                keep[i] = False
        if keep.any():
            kept = np.flatnonzero(keep)
            if len(kept) < n:  # blank lines hold no bytes: dropping their (empty) strings keeps offsets right
                lens_k = lens[kept]
            else:
                lens_k = lens
            offsets = np.zeros(len(lens_k) + 1, dtype=np.int32)
            np.cumsum(lens_k, out=offsets[1:])
            if len(kept) < n and offsets[-1] != len(data):  # whitespace-only lines hold bytes: rebuild
                data = np.frombuffer(b"".join(body[starts[i]:ends[i]] for i in kept), dtype=np.uint8)
            nums = (base + 1 + kept).astype(np.int64)
            strings = pa.StringArray.from_buffers(len(lens_k), pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data)))
            tbl = pa.table({"_fid": pa.array(np.full(len(nums), self.fid, dtype=np.int64)), "line": pa.array(nums), "l": strings})
            if self.sink is not None:
                self.sink.add(tbl)
            else:
                one = LineSink(self.con)
                one.add(tbl)
                one.flush()
            i0, i1 = int(kept[0]), int(kept[-1])
            if not self.info.staged:
                self.info.first_no, self.info.first = base + 1 + i0, body[starts[i0]:ends[i0]].decode("utf-8")
            self.info.last_no, self.info.last = base + 1 + i1, body[starts[i1]:ends[i1]].decode("utf-8")
            self.info.staged += len(kept)
        return n

    def finish(self) -> Lines:
        return self.info


def stage_lines(
    con: duckdb.DuckDBPyConnection, raw: RawFile, limits: Limits, fid: int = 0, *, json_ok: bool = False,
    sink: LineSink | None = None,
) -> Lines:
    """Append the file's non-blank lines to ``_ing_lines`` as file ``fid`` (module doc; through ``sink`` when
    given: flush it before reading the table). Raises :class:`IsJson` when ``json_ok`` and the content starts
    with ``{`` or ``[`` (nothing staged)."""
    st = _Stager(con, raw.file, fid, sink)
    carry = b""
    base = 0
    started = False
    for chunk in decompressed_chunks(raw, limits):
        if not started:
            chunk = _check_start(raw.file, chunk)
            if json_ok and chunk.lstrip()[:1] in (b"{", b"["):
                raise IsJson()
            started = True
        buf = carry + chunk if carry else chunk
        cut = buf.rfind(b"\n")
        if cut < 0:
            carry = buf
        else:
            carry = buf[cut + 1:]
            base += st.add(buf[: cut + 1], base, final=False)
        if len(carry) > MAX_LINE_BYTES:
            if b"\n" not in carry and b"\r" in carry and not st.lf_seen:
                raise InputFileError(raw.file, base + 1, "CR-only line ends (classic Mac OS): save the file with LF or CRLF line ends")
            raise InputFileError(raw.file, base + 1, _LONG_LINE)
    if carry:
        base += st.add(carry, base, final=True)
    st.info.physical = base
    return st.finish()


# the fast path's size cap (decompressed): below the expansion-ratio floor, so a gzip file it takes could never
# have tripped the line path's ratio check; a raw FINRA file is well under 1 MiB
FAST_MAX_BYTES = 8 << 20
_FAST = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")  # private switch (tests: the line path)
# the bytes a fast-path file may hold besides CR / LF: printable ASCII without the double quote (so no space, tab,
# NUL, control character, quote or non-ASCII byte: no field the line path would trim, no UTF-8 question) and without
# '_' (DuckDB's number cast, which its CSV reader uses, reads 1_000 as 1000; the ingest refuses it)
_PLAIN = bytes(range(0x21, 0x7F)).replace(b'"', b"").replace(b"_", b"") + b"\r\n"


def _fast_body(raw: RawFile, limits: Limits) -> bytes | None:
    """The whole content when it is small and reads without any question (one gzip member, no padding, not
    compressed twice), else None."""
    data = raw.data
    if data is None or not _FAST:
        return None
    cap = min(FAST_MAX_BYTES, limits.max_bytes, limits.ratio_floor - 1)
    if data[:2] != GZIP_MAGIC:
        return data if len(data) <= cap else None
    d = zlib.decompressobj(wbits=31)
    try:
        body = d.decompress(data, cap + 1)
    except zlib.error:
        return None
    if not d.eof or d.unused_data or d.unconsumed_tail or len(body) > cap:
        return None
    return body


def probe_delimited(raw: RawFile, limits: Limits, headers: tuple[bytes, ...], delim: bytes) -> Delimited | None:
    """The fast path of a file whose first line is exactly one of ``headers`` and last line a record count
    (module doc), or None. Proven over the bytes: the content is at most ``FAST_MAX_BYTES`` (gzip: one member);
    every byte is printable ASCII but the double quote and '_', or a line end; the line ends are all LF or all
    CRLF (no CR elsewhere); no line is empty or longer than ``MAX_LINE_BYTES``; the header and every data line hold
    exactly the header's number of delimiters; the last line is digits only and equals the number of data lines (at least
    one). The line path stages such a file as header, data lines, trailer, numbered 1.. with nothing dropped and
    nothing trimmed, which is what DuckDB's CSV reader reads from the data lines (header / trailer left out) once
    :meth:`MemFiles.add` has written them."""
    body = _fast_body(raw, limits)
    if body is None:
        return None
    which = next((i for i, h in enumerate(headers) if body.startswith(h)), None)
    if which is None:
        return None
    h = headers[which]
    crlf = body[len(h):len(h) + 2] == b"\r\n"
    if not crlf and body[len(h):len(h) + 1] != b"\n":
        return None
    if body.translate(None, _PLAIN):
        return None
    arr = np.frombuffer(body, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    n_cr = int(np.count_nonzero(arr == 13))
    if crlf:
        if n_cr != len(nl) or not bool((arr[nl - 1] == 13).all()):
            return None
    elif n_cr:
        return None
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl - 1 if crlf else nl, [len(body)]))
    if starts[-1] == len(body):  # ends with a line end: no last partial line
        starts, ends = starts[:-1], ends[:-1]
    lens = ends - starts
    n_lines = len(starts)
    if n_lines < 3 or int(lens.min()) <= 0 or int(lens.max()) > MAX_LINE_BYTES:
        return None
    trailer = body[int(starts[-1]):int(ends[-1])]
    rows = n_lines - 2
    if not trailer.isdigit() or int(trailer) != rows:
        return None
    k = h.count(delim)
    cuts = np.flatnonzero(arr == delim[0])
    if len(cuts) != k * (n_lines - 1):  # the header and every data line k, the trailer none (digits only)
        return None
    if k:
        per = cuts.reshape(n_lines - 1, k)  # sorted: line i holds exactly k iff its first and last are inside it
        if not (bool((per[:, 0] >= starts[:-1]).all()) and bool((per[:, -1] < ends[:-1]).all())):
            return None
    text = body[:int(ends[0])].decode("ascii")
    return Delimited(first_no=1, first=text, last_no=n_lines, last=trailer.decode("ascii"), staged=n_lines,
                     physical=n_lines, header=which, rows=rows,
                     data=memoryview(body)[int(starts[1]):int(starts[-1])])


def stage_line_numbers(con: duckdb.DuckDBPyConnection, fid: int, numbers: list[int], texts: list[str]) -> None:
    """Append the given lines of file ``fid`` to ``_ing_lines`` (a fast-path file's rejected rows: their raw text)."""
    if not numbers:
        return
    sink = LineSink(con)
    sink.add(pa.table({"_fid": pa.array([int(fid)] * len(numbers), pa.int64()),
                       "line": pa.array(numbers, pa.int64()), "l": pa.array(texts, pa.string())}))
    sink.flush()


def read_text(raw: RawFile, limits: Limits) -> str:
    """The whole decompressed content as text (JSON inputs), capped and checked like :func:`stage_lines`."""
    parts = list(decompressed_chunks(raw, limits))
    body = _check_start(raw.file, b"".join(parts)) if parts else b""
    _check_text(raw.file, body, 0)
    return body.decode("utf-8")
