"""Raw-file ingest: the only writer of the raw tables.

``ingest_paths(con, kind, paths)`` expands files, directories (recursed) and globs, orders the files by date
(from the file name, e.g. ``CNMSshvol20200102.txt.gz``, else from the first data line; files of one date in the
order given, so a later path's rows win) and ingests each file in
ONE transaction (``optimizer.data.store.transaction``). A file is read in bounded memory (``_source``: gzip
decompressed incrementally under a size and an expansion-ratio cap, UTF-8 text required), staged in DuckDB and
validated there by SQL over the whole file (``_common``: the one place the rules live; one parser module per
kind names its columns and rules). A raw FINRA file proven regular over its bytes (``_source.probe_delimited``) is
not staged line by line: DuckDB's CSV reader reads its data lines (``_common.csv_relation``); such a file with a
format error, or one the reader refuses, is staged again line by line, which words the error, so every message,
reject and line number is the line path's:

* A file that breaks a format rule (wrong delimiter, missing column, non-numeric value, truncated gzip, trailer
  count mismatch, unparseable date, ...) changes NO data table. Its status is ``failed`` and its message is
  ``file:line: reason``; processing continues with the next file (``raise_on_error=True`` raises the
  ``InputFileError`` instead, after logging). Choice made here: the failure IS recorded in ``ingest_log`` (one
  ``failed`` row, rows 0/0), appended after the rollback in its own small transaction, so ``ingest_log`` is the
  only table a failed file touches.
* Rows that break an invariant (ShortVolume > TotalVolume, negative volume, OHLC inconsistent, duplicate key in
  the file, ...) go to ``ingest_rejects`` (ingest_id, file, line, reason, raw) and the rest of the file is
  stored (status ``rejected_rows``). With ``strict=True`` such a file fails instead and nothing is written.
* A file covering keys already stored (see each parser: FINRA = (date, facility), FINRA API rows = (date,
  symbol), prices/lit/options = (date, symbol), OTC = (week, symbol)) deletes those rows first: ``replaced``.
* A file is ``skipped_identical`` (a no-op, not logged) only when re-ingesting it would change nothing: the same
  content (sha256; with the settings that change its rows, :func:`_parse_tag`) was ingested as this kind before (ok / replaced / rejected_rows) AND that ingest's rows are
  still the stored rows of the keys it covers, or every file that replaced some of them comes again later in the
  same call (skipping the file then ends the call as re-ingesting it would). Proven cheaply (``_History``): no
  later write into the kind's table deleted a stored row (``ingest_log``); or the stored rows tagged with that
  file's name (``source_file``; prices: ``source``) are exactly as many as the latest ingests of every path of
  that name stored (one GROUP BY over the table, read only when some file needs it, then kept up to date by each
  write); or every later replacing write is of a file (same name and content) later in the call. So a file whose
  rows another file replaced since (a per-symbol file after a combined one, a corrected copy under another name)
  is ingested again (``replaced``) unless that file follows it in the call, and a second run over the same
  folders (files of one name in several folders, raw FINRA files and a tidy file of the same days included)
  skips every file when nothing changed. Limits: a prices file whose rows take their ``source`` from the file (a
  ``source`` column, Polygon) has no count to prove it intact (after a later replacing write into prices_daily it
  is re-ingested unless that write's file follows it); a key the file covers without a stored row of its own (a
  header-only FINRA file, a (date, facility) of rejected rows only) is not checked.
* A file read again under other settings than its latest ingest (:func:`_parse_tag`: lit-trades' zone, window and
  reading rules' version, a Polygon prices file's zone) leaves the store as if only the new reading had happened: the kind's ``stale``
  hook deletes, in the file's transaction, the rows the earlier reading stored on keys the new one does not cover
  and that are still that reading's (``lit.stale_rows``, ``prices.stale_rows``); counted as replaced rows.
* A kind may check a written file against the stored rows of other files (in the file's transaction, one query):
  what looks wrong but may be real is a warning (``FileResult.warnings``, ``IngestReport.warnings``), not a
  rejection; prices warn of a split the file is not adjusted for (``prices.split_warnings``).
* Symbols are canonicalized (``optimizer.data.symbols``) and symbol changes (``symbol_map``) applied to every
  kind before the invariants are checked.
* Decompression caps come from ``Settings.max_decompressed_mb`` / ``max_expansion_ratio`` (env
  MAX_DECOMPRESSED_MB, MAX_EXPANSION_RATIO; CLI ``--max-decompressed-mb``, ``--max-expansion``).

Files are handled in batches (the first small, each next one twice as large up to ``BATCH_FILES`` / ``BATCH_BYTES``,
none more than half of the files still to come: the call ends on ever smaller batches): while the files of batch k
are written, in order and one transaction per file, by a second connection of the same database in a worker thread,
batch k+1 is read, staged and validated (``_Pipeline``; ``overlap=False`` runs the same code in one thread; with the
overlap DuckDB's ``threads`` setting is 1 for the duration of the call, the two threads being the parallelism). The
outcome does not depend on the timing: the stored rows, the ``ingest_log`` (order, statuses, messages) and the
report are those of ingesting the files one by one. An exception while staging batch k+1 lets batch k finish first;
Ctrl-C (also DuckDB's ``Query interrupted``, its report of a Ctrl-C during a staging query) stops after the file
being written.

``IngestReport.exit_code`` is 0 when every file is ok / replaced / skipped, 1 when some rows were rejected,
2 when some file failed. The caller must not hold an open transaction on ``con``.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import datetime as dt
import itertools
import os
import re
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from optimizer.settings import Settings
from optimizer.data.calendar import market_today
from optimizer.errors import InputFileError, MachineError, ParameterError, is_query_interrupt, machine_error
from optimizer.paths import not_utf8, shown_name
from optimizer.data.store import checkpoint_budget, create_consolidated_view, memory_budget, transaction
from optimizer.data.symbols import load_symbol_map
from optimizer.data.ingest import finra_short, lit, options, otc_weekly, prices, splits
from optimizer.data.ingest._common import (
    FILES,
    PARAMS,
    Ctx,
    Prep,
    Spec,
    Summary,
    REPLACED_PREFIX,
    log_failure,
    name_date,
    sql_str,
    stage_rows,
    summarize,
    write_rows,
)
from optimizer.data.ingest._source import (
    LINES_TABLE,
    Delimited,
    IsJson,
    Limits,
    LineSink,
    MemFiles,
    RawFile,
    read_raw,
    read_text,
    reset_lines,
    stage_line_numbers,
    stage_lines,
)

__all__ = [
    "KINDS",
    "STATUSES",
    "FileResult",
    "IngestReport",
    "ingest_paths",
    "ingest_file",
    "expand_paths",
    "tag_rules",
    "Limits",
]

KINDS: tuple[str, ...] = ("finra-short", "prices", "otc-weekly", "lit-trades", "lit-flow", "options", "splits")
STATUSES: tuple[str, ...] = ("ok", "replaced", "skipped_identical", "rejected_rows", "failed")
_DONE = ("ok", "replaced", "rejected_rows")


@dataclass(frozen=True)
class _Kind:
    json_ok: bool
    prepare: Callable
    spec: Callable
    plan: Callable
    table: str  # the table its plans write
    need_lines: Callable[[RawFile], bool] = lambda raw: True
    reads_lines: bool = False  # its prepare() queries _ing_lines (the staged lines must be flushed first)
    check: Callable | None = None  # (ctx, table, fid, file) -> warnings, run in the file's write transaction;
    # an InputFileError it raises refuses the file (the transaction rolled back, the file logged failed)
    # (ctx, prep, table, fid, file, earlier settings, earlier rules version) -> stored rows deleted: the rows an
    # earlier reading of the file under other settings or rules wrote on keys this reading does not cover (run in
    # the file's write transaction)
    stale: Callable | None = None
    source_col: str = "source_file"  # the column of ``table`` naming where a row came from
    source_is_name: bool = True  # source_col always holds the file name (prices: a ``source`` column may replace it)
    # (raw, limits) -> a Delimited (``_source.probe_delimited``) when the file is proven regular enough for DuckDB's
    # CSV reader (no line table, no split in SQL), else None: the line path
    probe: Callable | None = None
    source_counts: str | None = None  # SQL (source, rows) of the stored rows per source, when not a GROUP BY of table


_KINDS: dict[str, _Kind] = {
    "finra-short": _Kind(finra_short.JSON_OK, finra_short.prepare, finra_short.spec, finra_short.plan, "finra_short_daily",
                         probe=finra_short.probe, source_counts=finra_short.SOURCE_COUNTS),
    "prices": _Kind(prices.JSON_OK, prices.prepare, prices.spec, prices.plan, "prices_daily", check=prices.split_warnings,
                    source_col="source", source_is_name=False, stale=prices.stale_rows),
    "otc-weekly": _Kind(otc_weekly.JSON_OK, otc_weekly.prepare, otc_weekly.spec, otc_weekly.plan, "finra_otc_weekly"),
    "lit-trades": _Kind(False, lit.trades_prepare, lit.trades_spec, lit.trades_plan, "lit_flow_daily", lit.trades_need_lines,
                        True, stale=lit.stale_rows),
    "lit-flow": _Kind(False, lit.flow_prepare, lit.flow_spec, lit.flow_plan, "lit_flow_daily"),
    "options": _Kind(options.JSON_OK, options.prepare, options.spec, options.plan, "options_daily"),
    "splits": _Kind(splits.JSON_OK, splits.prepare, splits.spec, splits.plan, "splits", check=splits.factor_check),
}
# a batch of files is staged and validated together (then written one transaction per file); the first batch is
# small so that writing starts early, each next one twice as large up to the caps, 256 files (many small files)
# and 8 MiB: batch k+1 is staged while batch k is written, so batches of one size keep both threads busy (with 32
# MiB, a 252-file call of 330 KiB CNMS files ran 12/24/48/84/... files and the stager waited behind each large
# write); the tail halves (TAIL_FILES), so the last write, which nothing overlaps, is short
BATCH_FILES = 256
BATCH_BYTES = 8 << 20
FIRST_BATCH_FILES = 16
FIRST_BATCH_BYTES = 2 << 20
TAIL_FILES = 2
# anything a file the rules did not foresee can raise inside the SQL or pandas steps
_UNFORESEEN = (duckdb.Error, ValueError, TypeError, KeyError, OverflowError, IndexError)


@dataclass(frozen=True)
class FileResult:
    file: str
    sha256: str
    status: str
    rows_accepted: int = 0
    rows_rejected: int = 0
    message: str | None = None
    warnings: tuple[str, ...] = ()  # the file is stored; something in it looks wrong (e.g. an unadjusted split)

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"warnings": list(self.warnings)}


@dataclass
class IngestReport:
    kind: str
    files: list[FileResult] = field(default_factory=list)

    @property
    def rows_accepted(self) -> int:
        return sum(f.rows_accepted for f in self.files)

    @property
    def rows_rejected(self) -> int:
        return sum(f.rows_rejected for f in self.files)

    @property
    def warnings(self) -> list[str]:
        """Every file's warnings, in order; the same warning of several files (the columns a folder of one vendor's
        files does not have read) once, naming how many files and the first few (each FileResult keeps its own)."""
        groups: dict[str, list[str]] = {}
        order: list[tuple[str, str]] = []
        for f in self.files:
            tag = f": {Path(f.file).name}: "
            for w in f.warnings:
                key = w.replace(tag, ": \0: ", 1) if tag in w else w
                if key not in groups:
                    groups[key] = []
                    order.append((key, w))
                groups[key].append(Path(f.file).name)
        out = []
        for key, first in order:
            names = list(dict.fromkeys(groups[key]))
            if len(names) < 2 or "\0" not in key:
                out.append(first)
                continue
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            out.append(key.replace("\0", f"{len(names):,} files ({shown})", 1))
        return out

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(f.status == s for f in self.files) for s in STATUSES}

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def exit_code(self) -> int:
        if any(f.status == "failed" for f in self.files):
            return 2
        if any(f.status == "rejected_rows" or f.rows_rejected for f in self.files):
            return 1
        return 0

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "files": [f.to_dict() for f in self.files],
            "totals": {
                "files": len(self.files),
                "rows_accepted": self.rows_accepted,
                "rows_rejected": self.rows_rejected,
                **self.counts,
            },
            "warnings": self.warnings,
            "exit_code": self.exit_code,
        }


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ParameterError(f"kind must be one of {', '.join(KINDS)}, got kind={kind!r}")


# a browser's or a file manager's later download of NAME.ext: 'NAME (1).ext', 'NAME(2).ext.gz'
_COPY_RE = re.compile(r"^(.+?) ?\((\d{1,6})\)((?:\.[^.\s()]+)*)$")


def _copy_of(path: Path) -> tuple[str, int]:
    """(the name ``path`` is a later download of, its number): ``NAME (2).ext`` -> (``NAME.ext``, 2); any other name
    is (its name, 0)."""
    m = _COPY_RE.match(path.name)
    return (m.group(1) + m.group(3), int(m.group(2))) if m else (path.name, 0)


def _listed(paths: Iterable[Path]) -> list[Path]:
    """A folder's or a glob's files in name order, except that a later download ``NAME (n).ext`` comes right after
    ``NAME.ext``, in n order (by name, ``NAME (1).ext`` sorts before ``NAME.ext`` and ``(10)`` before ``(2)``: the
    older file would be read last and its rows stand)."""
    def key(p: Path) -> tuple:
        name, n = _copy_of(p)
        return (*p.parent.parts, name), n
    return sorted(paths, key=key)


def _walk(root: Path) -> list[Path]:
    """The files under the directory ``root``, recursively, in name order (:func:`_listed`): hidden entries (a name starting with '.') are
    skipped; a symlinked directory is followed and every real directory is walked once (a symlink loop, or two
    links to one folder, ends and lists each file once); a symlink whose target does not exist is listed (its ingest
    fails naming it, instead of the file being left out without a word). An unreadable directory is a
    ParameterError."""
    out: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            st = d.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise ParameterError(f"paths must be readable, got the directory {str(d)!r} ({exc.strerror})") from None
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            p = Path(e.path)
            if e.is_dir():  # follows a symlink
                subdirs.append(p)
            elif e.is_file() or (e.is_symlink() and not os.path.exists(p)):  # a broken or looping link
                out.append(p)
        stack.extend(reversed(subdirs))  # depth first in name order: a folder reached twice is listed under the
        # path that comes first, whatever order the file system lists entries in
    return _listed(out)


def _glob(pattern: str) -> list[Path]:
    """The paths a glob matches, in name order (:func:`_listed`; ``**``: any depth). pathlib's glob, whose ``**`` does not enter symlinked
    directories (as the shells' globstar): ``glob.glob(recursive=True)`` follows them and never ended on a symlink
    loop. Hidden names (a '.' first) match only a pattern component that starts with '.' (as ``glob.glob``)."""
    parts = Path(pattern).parts
    k = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?["))
    base = Path(*parts[:k]) if k else Path(".")
    rest = parts[k:]
    hits: Iterable[Path] = base.glob(str(Path(*rest)))
    if not any(part.startswith(".") for part in rest):
        hits = (h for h in hits if not any(q.startswith(".") for q in h.relative_to(base).parts))
    return _listed(hits)


def expand_paths(paths: Sequence[str | Path] | str | Path) -> list[Path]:
    """Files, directories (recursed: :func:`_walk`) and globs (:func:`_glob`) -> unique existing files. A glob that
    matches nothing, a path that does not exist and a directory without a (visible) file are ParameterErrors."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: dict[Path, None] = {}
    for p in paths:
        s = str(p)
        if any(ch in s for ch in "*?[") and not Path(s).exists():
            hits = _glob(s)
            if not hits:
                raise ParameterError(f"paths must match at least one file, got no match for {s!r}")
            cands: Iterable[Path] = hits
        else:
            cands = [Path(s)]
        for c in cands:
            if c.is_dir():
                found = _walk(c)
                if not found:  # as a glob that matches nothing: a wrong folder, not "0 files ingested, ok"
                    raise ParameterError(f"paths must hold at least one file, got the empty directory {str(c)!r}")
                out.update(dict.fromkeys(f for f in found if f not in out))
            elif c.is_file():
                out.setdefault(c, None)
            else:
                raise ParameterError(f"paths must exist, got {s!r} (no such file or directory)")
    for f in out:  # the store records each file's name as text: a name of bytes that are no UTF-8 cannot be
        if not_utf8(str(f)):
            shown = shown_name(str(f))
            raise ParameterError(f"paths must be valid UTF-8 names (the store records each file's name), got "
                                 f"{shown!r}; rename it")
    return list(out)


_DATE_RE = re.compile(rb"(?<!\d)(\d{4}-\d{2}-\d{2}|\d{8})(?!\d)")


def _peek_date(path: Path) -> pd.Timestamp | None:
    """The first date on the data lines of a file (cheap: at most 64 KiB read), for ordering only."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
        if head[:2] == b"\x1f\x8b":
            head = zlib.decompressobj(wbits=31).decompress(head, 65536)
    except (OSError, zlib.error):
        return None
    for ln in head.split(b"\n")[1:4]:
        m = _DATE_RE.search(ln)
        if m:
            raw = m.group(1).decode()
            ts = pd.to_datetime(raw, format="%Y-%m-%d" if "-" in raw else "%Y%m%d", errors="coerce")
            if not pd.isna(ts):
                return pd.Timestamp(ts)
    return None


def _order(files: list[Path]) -> list[Path]:
    """The files by date (the file name's, else the first data line's; none: last), files of one date in the order
    given (a later path wins: ``jan/ fixes/`` stores a re-published day's correction, ``prices_all.csv
    AAPL_fix.csv`` the fix; name or path order stored the original over it)."""
    far = pd.Timestamp.max
    dated = []
    for p in files:
        d = name_date(p) or _peek_date(p)
        dated.append(d if d is not None else far)
    return [files[i] for i in sorted(range(len(files)), key=lambda i: (dated[i], i))]


@dataclass(frozen=True)
class _Ingested:
    """One successful ingest (ok / replaced / rejected_rows) into a kind's table, in ingest order."""

    seq: int
    kind: str
    path: str  # the file as given to that ingest (ingest_log.file)
    sha: str
    rows: int  # rows it stored (ingest_log.rows_accepted)


class _History:
    """Whether re-ingesting a file would change nothing (``skipped_identical``), from ``ingest_log`` (read once per
    call, then kept up to date by the writer) and, only when needed, one count of the stored rows per source.

    A file of content ``sha`` is identical when an earlier successful ingest L of that content, as this kind,
    still has all its rows stored (a write deletes stored rows only of the keys it covers, and inserts exactly its
    ``rows_accepted`` rows, tagged with its file NAME):

    * no LATER ingest into the kind's table deleted a stored row (status ``replaced``, or ``rejected_rows`` with
      a message saying it replaced rows): nothing can have removed L's rows; else
    * L is the latest ingest of its path, and the stored rows tagged with L's name are exactly as many as the
      latest ingests of every path of that name stored (``live``): a later write deleted none of them; else
    * every later write into the table that deleted stored rows is replayed later in THIS call (a file of the same
      kind, name and content comes after this one): whatever it took from L it takes again, so skipping L's file
      ends the call with the rows re-ingesting it would (a second run over files that replace each other's rows,
      e.g. raw FINRA files and a tidy file of the same days, is a no-op).

    So a file another file (another name, or the same name in another folder) partly replaced is ingested again,
    unless that file comes again later in the call; files of one name in several folders are not re-ingested on
    every run. The count needs the source column to hold the file name: prices rows whose ``source`` comes from
    the file (a ``source`` column, Polygon) are proven intact by the other rules only. Thread-safe (the staging and
    the writing thread both ask)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, kind: str, settings: Settings | None = None) -> None:
        k = _KINDS[kind]
        self.kind, self.table, self.source_col = kind, k.table, k.source_col
        self.counts_sql = k.source_counts or f"SELECT {k.source_col}, count(*) FROM {k.table} GROUP BY ALL"
        self.tag = _parse_tag(kind, settings)
        self.kinds = [n for n, x in _KINDS.items() if x.table == k.table]  # lit-trades and lit-flow share one
        marks = ", ".join("?" for _ in self.kinds)
        rows = con.execute(
            f"SELECT kind, file, sha256, rows_accepted, status = 'replaced' OR (status = 'rejected_rows' AND "
            f"starts_with(coalesce(message, ''), ?)) FROM ingest_log WHERE kind IN ({marks}) "
            "AND status IN ('ok', 'replaced', 'rejected_rows') ORDER BY id",
            [REPLACED_PREFIX, *self.kinds],
        ).fetchall()
        self.lock = threading.Lock()
        self.by_sha: dict[tuple[str, str], list[_Ingested]] = {}  # (kind, sha) -> its ingests, in order
        self.live: dict[str, _Ingested] = {}  # path -> its latest ingest
        self.named: dict[str, _Ingested] = {}  # file name -> the latest ingest of a file of that name
        self.expected: dict[str, int] = {}  # file name -> rows its paths' latest ingests stored
        self.last_delete = -1  # seq of the latest ingest that deleted stored rows
        self.counts: dict[str, int] | None = None  # stored rows per source (lazy; None = to be read)
        self.deletes: list[_Ingested] = []  # the ingests that deleted stored rows, in order
        self.delete_seqs: list[int] = []  # their seq
        self.run: dict[str, list[tuple[int, Path]]] = {}  # the call's files by name: (position, path)
        self.run_sha: dict[Path, str | None] = {}  # their checksums, read when a replay check needs them
        self.seq = 0
        for kd, f, sha, n, deleted in rows:
            self._add(str(kd), str(f), str(sha), int(n), bool(deleted))

    def _add(self, kind: str, file: str, sha: str, rows: int, deleted: bool) -> None:
        e = _Ingested(self.seq, kind, file, sha, rows)
        self.seq += 1
        self.by_sha.setdefault((kind, sha), []).append(e)
        name = Path(file).name
        old = self.live.get(file)
        self.expected[name] = self.expected.get(name, 0) - (old.rows if old is not None else 0) + rows
        self.live[file] = e
        self.named[name] = e
        if deleted:
            self.last_delete = e.seq
            self.deletes.append(e)
            self.delete_seqs.append(e.seq)

    def set_run(self, files: Sequence[Path]) -> None:
        """The files of this call, in the order they are ingested (a file's position is its index here)."""
        with self.lock:
            self.run = {}
            for i, f in enumerate(files):
                self.run.setdefault(f.name, []).append((i, f))

    def key(self, sha: str) -> str:
        """What ``ingest_log.sha256`` records for a file of content ``sha`` read by this call (:func:`_parse_tag`)."""
        return f"{sha}+{self.tag}" if self.tag else sha

    def _sha(self, path: Path) -> str | None:
        if path not in self.run_sha:
            try:
                self.run_sha[path] = self.key(read_raw(path, str(path)).sha256)
            except OSError:  # unreadable: it replays nothing (its own turn reports the error)
                self.run_sha[path] = None
        return self.run_sha[path]

    def _replayed(self, e: _Ingested, pos: int) -> bool:
        """Every ingest that deleted stored rows after ``e`` comes again after position ``pos`` in this call."""
        later = {(d.kind, Path(d.path).name, d.sha) for d in self.deletes[bisect.bisect_right(self.delete_seqs, e.seq):]}
        return all(kind == self.kind and any(q > pos and self._sha(p) == sha for q, p in self.run.get(name, ()))
                   for kind, name, sha in later)

    def earlier_reading(self, file: str, sha: str) -> str | None:
        """The tag (:func:`_parse_tag`; "" = the defaults) of the earlier reading of this file under OTHER settings
        when the latest ingest of a file of its name, as this kind, is this content read so; else None."""
        with self.lock:
            e = self.named.get(Path(file).name)
            if e is None or e.kind != self.kind:
                return None
            base, _, tag = e.sha.partition("+")
            return tag if base == sha and e.sha != self.key(sha) else None

    def lost_by(self) -> str | None:
        """The column a write should report its deleted rows by (so that the counts, once read, stay exact without
        being read again after each write that replaces rows), or None while they are not read."""
        with self.lock:
            return self.source_col if self.counts is not None else None

    def add(self, file: str, sha: str, rows: int, deleted: int, lost: dict[str, int] | None) -> None:
        """The writer stored ``file``: ``rows`` rows, after deleting ``deleted`` stored ones (``lost``: how many
        each source lost, when :meth:`lost_by` asked for it)."""
        with self.lock:
            self._add(self.kind, file, self.key(sha), rows, deleted > 0)
            if self.counts is None:
                return
            if (deleted and lost is None) or not _KINDS[self.kind].source_is_name:
                self.counts = None  # read again when needed
                return
            for src, n in (lost or {}).items():
                self.counts[src] = self.counts.get(src, 0) - n
            name = Path(file).name
            self.counts[name] = self.counts.get(name, 0) + rows

    def _stored(self, con: duckdb.DuckDBPyConnection, name: str) -> int:
        if self.counts is None:
            self.counts = {str(s): int(n) for s, n in con.execute(self.counts_sql).fetchall()}
        return self.counts.get(name, 0)

    def identical(self, con: duckdb.DuckDBPyConnection, sha: str, pos: int) -> bool:
        """Whether the file at position ``pos`` of this call, of content ``sha``, would change nothing."""
        with self.lock:
            done = self.by_sha.get((self.kind, self.key(sha)), [])
            if not done:
                return False
            if done[-1].seq >= self.last_delete:  # its own deletions came before its inserts
                return True
            for e in reversed(done):
                name = Path(e.path).name
                if self.live.get(e.path) is e and self._stored(con, name) == self.expected[name]:
                    return True
            return self._replayed(done[-1], pos)


def _parse_tag(kind: str, settings: Settings | None) -> str:
    """The settings and rules a file of ``kind`` is read under that change its rows, as recorded beside its checksum
    in ``ingest_log.sha256`` (``<sha256>+<tag>``): for lit-trades the market time zone and the regular-session window
    when they are not the defaults (which trades are kept, on which session date), then the version of the reading
    rules, ``rules=N`` (``lit.TRADES_RULES``; ``rules=2`` alone under the default zone and window). A file ingested
    under other settings or older rules (a key without ``rules=``: version 1) is therefore never skipped as
    identical: re-ingesting it re-reads it, its stale rows removed. Empty for every other kind (the bare checksum).
    Prices carry no tag: a Polygon bar's session is New York's date whatever ``MARKET_TZ`` says
    (``prices.polygon_dates``); a prices file recorded as ``tz=...`` by an earlier accumopt (which dated the bars in
    ``MARKET_TZ``) is re-read once, its shifted rows removed."""
    if settings is None:
        return ""
    d = Settings()
    if kind == "lit-trades":
        now, default = (settings.market_tz, settings.rth_start, settings.rth_end), (d.market_tz, d.rth_start, d.rth_end)
        window = "" if now == default else f"tz={now[0]};rth={now[1]}-{now[2]};"
        return f"{window}rules={lit.TRADES_RULES}"
    return ""


def _tag_settings(tag: str, now: Settings) -> Settings:
    """The settings a reading recorded as ``tag`` (:func:`_parse_tag`) was made under ("" = the defaults)."""
    d = Settings()
    fields = dict(part.split("=", 1) for part in tag.split(";") if "=" in part)
    tz = fields.get("tz", d.market_tz)
    lo, _, hi = fields.get("rth", f"{d.rth_start}-{d.rth_end}").partition("-")
    return dataclasses.replace(now, market_tz=tz, rth_start=lo, rth_end=hi)


def tag_rules(tag: str) -> int:
    """The reading rules' version a reading recorded as ``tag`` was made under (``rules=N``; 1 without it: the
    rules before the version was recorded)."""
    fields = dict(part.split("=", 1) for part in tag.split(";") if "=" in part)
    return int(fields.get("rules", 1))


def _context(con: duckdb.DuckDBPyConnection, settings: Settings) -> Ctx:
    return Ctx(con=con, settings=settings, limits=Limits.from_settings(settings), symmap=load_symbol_map(con),
               today=market_today())  # New York's: a date after it is in the future, whatever the machine's zone


@dataclass
class _Entry:
    """One file of a batch on its way through stage -> validate -> write."""

    path: Path
    file: str
    fid: int
    raw: RawFile | None = None
    prep: Prep | None = None
    error: InputFileError | None = None
    result: FileResult | None = None
    group: int = -1
    pos: int = 0  # its position among the files of the call


@dataclass
class _Staged:
    """A staged and validated batch, ready to be written (its tables live in the staging database ``slot``)."""

    entries: list[_Entry]
    slot: str
    search_path: str
    tables: list[str]
    specs: dict[int, tuple[tuple, Spec, str]]
    summaries: dict[int, Summary]


def _one_line(exc: BaseException) -> str:
    """An exception's message as one short line (DuckDB's messages span lines and add advice)."""
    text = " ".join(str(exc).split("\n\n")[0].split())
    return text if len(text) <= 300 else text[:297] + "..."


def _unforeseen(file: str, kind: str, exc: BaseException) -> InputFileError:
    """The error of a file an unforeseen exception stopped; the machine's failure (DuckDB out of memory, a full
    disk) is not the file's: raised as MachineError, it stops the ingest."""
    if (machine := machine_error(exc)) is not None:
        raise MachineError(f"{file}: not stored: {machine} (the files before it are stored; run the same command "
                           "again once there is room)") from exc
    return InputFileError(file, None, f"unreadable {kind} file ({type(exc).__name__}: {_one_line(exc)})")


def _skipped(e: _Entry) -> FileResult:
    return FileResult(e.file, e.raw.sha256, "skipped_identical", 0, 0, "identical file already ingested")


def _files_read_afresh(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the fast path's reading is sound on ``con``: DuckDB reads a local file from the file itself (its
    in-memory files are named /proc/self/fd/N, names a later file reuses: not with DuckDB's cache of local files on)
    and keeps the rows of a scan in file order (the line numbers: not with preserve_insertion_order off)."""
    try:
        cache, order = con.execute(
            "SELECT current_setting('cache_local_files'), current_setting('preserve_insertion_order')").fetchall()[0]
    except duckdb.Error:  # a DuckDB without these settings
        return False
    return cache in (False, "false") and order in (True, "true")


def _stage(ctx: Ctx, kind: str, e: _Entry, history: _History, sink: LineSink, open_writes: set,
           mem: MemFiles | None = None) -> None:
    """Read, check and stage one file (sets e.raw / e.prep, or e.result / e.error).

    A file is skipped as identical here only when no file whose write is still open (``open_writes``: the staged
    files of the batch being written and the earlier staged files of this batch) can change that answer (any
    write may delete stored rows); otherwise it is staged and the writer decides (:func:`_write_batch`), as a
    one-by-one ingest would."""
    try:
        e.raw = read_raw(e.path, e.file)
    except OSError as exc:
        e.error = InputFileError(e.file, None, f"unreadable file ({exc.strerror})")
        return
    if not open_writes and history.identical(ctx.con, e.raw.sha256, e.pos):
        e.result = _skipped(e)
        return
    _read(ctx, kind, e, sink, mem)
    if e.prep is not None:
        open_writes.add(e.file)


def _read(ctx: Ctx, kind: str, e: _Entry, sink: LineSink, mem: MemFiles | None = None) -> None:
    """Stage ``e`` and prepare it (sets e.prep, or e.error): its lines, or with ``mem`` the fast path's proof
    (``_Kind.probe``), its data lines appended to ``mem`` once prepared."""
    k = _KINDS[kind]
    lines = text = None
    try:
        if mem is not None and k.probe is not None:
            lines = k.probe(e.raw, ctx.limits)
        if lines is None and k.need_lines(e.raw):
            try:
                lines = stage_lines(ctx.con, e.raw, ctx.limits, e.fid, json_ok=k.json_ok, sink=sink)
            except IsJson:
                text = read_text(e.raw, ctx.limits)
        if k.reads_lines:
            sink.flush()
        e.prep = k.prepare(ctx, e.raw, e.fid, lines, text)
        if isinstance(lines, Delimited) and e.prep.data is lines:
            try:
                mem.add(lines)
            except OSError:  # no in-memory file to be had (too many open files, no memory): the line path
                e.prep = None
                _read(ctx, kind, e, sink)
    except InputFileError as exc:
        e.error = exc
    except _UNFORESEEN as exc:
        e.error = _unforeseen(e.file, kind, exc)


def _param_sql(value: object, sql_type: str) -> str:
    """A per-file value as a typed SQL literal (dates, numbers and text; None is NULL)."""
    if value is None:
        return f"CAST(NULL AS {sql_type})"
    if isinstance(value, (dt.date, pd.Timestamp)):
        return f"CAST({sql_str(pd.Timestamp(value).date().isoformat())} AS {sql_type})"
    return f"CAST({sql_str(value)} AS {sql_type})"


def _files_table(ctx: Ctx, entries: list[_Entry]) -> None:
    """``_ing_files``: the per-file values (PARAMS) of the staged files, one row per file (a VALUES list: a
    registered frame costs ~3 ms a batch)."""
    rows = [f"({int(e.fid)}, " + ", ".join(_param_sql(e.prep.params.get(p), t) for p, t in PARAMS.items()) + ")"
            for e in entries if e.prep is not None]
    cols = ", ".join(["_fid", *PARAMS])
    if not rows:  # the columns and types, no row
        rows = ["(0, " + ", ".join(_param_sql(None, t) for t in PARAMS.values()) + ")"]
        where = " WHERE false"
    else:
        where = ""
    casts = ", ".join(f"CAST({p} AS {t}) AS {p}" for p, t in PARAMS.items())
    ctx.con.execute(f"CREATE OR REPLACE TABLE {FILES} AS SELECT CAST(_fid AS BIGINT) AS _fid, {casts} "
                    f"FROM (VALUES {', '.join(rows)}) v({cols}){where}")


def _stage_batch(ctx: Ctx, kind: str, batch: list[_Entry], slot: str, main: str, history: _History,
                 open_writes: set) -> _Staged:
    """Stage every file of the batch into the staging database ``slot`` and validate each layout group in one
    statement (nothing is written to a data table here); ``main``: the caller's database and schema."""
    con = ctx.con
    k = _KINDS[kind]
    search_path = f"{slot}.main,{main}"
    con.execute(f"SET search_path = {sql_str(search_path)}")
    reset_lines(con)
    sink = LineSink(con)
    mem = MemFiles() if _files_read_afresh(con) else None
    try:
        for e in batch:
            _stage(ctx, kind, e, history, sink, open_writes, mem)
        sink.flush()
        _files_table(ctx, batch)
        groups: dict[tuple, list[_Entry]] = {}
        for e in batch:
            if e.prep is not None:
                groups.setdefault(e.prep.sig, []).append(e)
        specs: dict[int, tuple[tuple, Spec, str]] = {}
        summaries: dict[int, Summary] = {}
        tables: list[str] = []
        todo = list(groups.items())
        while todo:
            sig, members = todo.pop(0)
            table = f"_ing_rows_{len(tables)}"
            tables.append(table)
            fast = [e for e in members if isinstance(e.prep.data, Delimited)]
            try:
                sp = k.spec(ctx, sig, [e.fid for e in members], {e.fid: e.prep for e in members})
                stage_rows(ctx, sp, table)
                got = summarize(ctx, sp, table, {e.fid: e.file for e in members})
                if fast:
                    _stage_rejected_lines(ctx, table, fast, got)
            except _UNFORESEEN as exc:
                # DuckDB's reader refused what the probe let through (a value that is no number): the line path
                # decides (a full disk or no memory is the machine's: told as without the fast path)
                if fast and machine_error(exc) is None:
                    todo += _line_path(ctx, kind, fast, sink)
                    continue
                for e in members:
                    e.error = _unforeseen(e.file, kind, exc)
                continue
            if fast and (again := [e for e in fast if got[e.fid].error is not None]):
                todo += _line_path(ctx, kind, again, sink)  # a format error: the line path words it
                members = [e for e in members if e not in again]
                for e in again:
                    del got[e.fid]
            summaries.update(got)
            for e in members:
                specs[e.fid] = (sig, sp, table)
    finally:
        ctx.unregister_all()
        if mem is not None:
            mem.close()
    return _Staged(batch, slot, search_path, tables, specs, summaries)


def _stage_rejected_lines(ctx: Ctx, table: str, fast: list[_Entry], summaries: dict[int, Summary]) -> None:
    """The raw text of the rejected rows of fast-path files (``_source.Delimited``: no line table was built), in
    ``_ing_lines`` where the writer reads it (``rejects_sql``)."""
    for e in fast:
        s = summaries[e.fid]
        if s.error is None and s.n_rejects:
            numbers = [int(r[0]) for r in ctx.con.execute(
                f"SELECT line FROM {table} WHERE _fid = {int(e.fid)} AND _reason IS NOT NULL ORDER BY line").fetchall()]
            stage_line_numbers(ctx.con, e.fid, numbers, e.prep.data.line_texts(numbers))


def _line_path(ctx: Ctx, kind: str, entries: list[_Entry], sink: LineSink) -> list[tuple]:
    """Stage fast-path files again by the line path (a fallback: same per-file values in ``_ing_files``); their
    groups, to be validated."""
    ctx.con.execute(f"DELETE FROM {LINES_TABLE} WHERE _fid IN ({', '.join(str(int(e.fid)) for e in entries)})")
    for e in entries:
        e.prep = None
        _read(ctx, kind, e, sink)
    sink.flush()
    groups: dict[tuple, list[_Entry]] = {}
    for e in entries:
        if e.prep is not None:
            groups.setdefault(e.prep.sig, []).append(e)
    return list(groups.items())


def _write_batch(ctx: Ctx, kind: str, st: _Staged, history: _History, strict: bool, raise_on_error: bool,
                 stop: threading.Event) -> list[FileResult]:
    """Write the files of a staged batch in order, each in ONE transaction (or log its failure); stops after the
    file being written when ``stop`` is set (Ctrl-C)."""
    con = ctx.con
    con.execute(f"SET search_path = {sql_str(st.search_path)}")
    out: list[FileResult] = []
    try:
        for e in st.entries:
            if stop.is_set():
                break
            if e.result is None and e.raw is not None and history.identical(con, e.raw.sha256, e.pos):
                e.result = _skipped(e)
            if e.result is None and e.error is None and e.fid in st.specs:
                e.error = st.summaries[e.fid].error
            if e.result is None and e.error is None and e.fid in st.specs:
                e.result = _write(ctx, kind, e, st.specs[e.fid], st.summaries[e.fid], history, strict)
            if e.result is None:
                err = e.error or _unforeseen(e.file, kind, RuntimeError("not staged"))
                e.result = _fail(con, kind, e.file, e.raw.sha256 if e.raw else "", err, raise_on_error)
            out.append(e.result)
    finally:
        for t in st.tables:
            con.execute(f"DROP TABLE IF EXISTS {st.slot}.main.{t}")
        ctx.unregister_all()
    return out


def _write(ctx: Ctx, kind: str, e: _Entry, group: tuple, s: Summary, history: _History, strict: bool) -> FileResult | None:
    """One file's transaction; None (with e.error set) when it fails."""
    sig, sp, table = group
    if strict and s.n_rejects:
        ln, reason = s.first_reject
        e.error = InputFileError(e.file, ln, f"{reason} (strict: {s.n_rejects} rows break invariants, nothing written)")
        return None
    try:
        plan = _KINDS[kind].plan(ctx, sig, sp, table, e.fid, e.prep, s, e.file)
    except _UNFORESEEN as exc:
        e.error = _unforeseen(e.file, kind, exc)
        return None
    check, stale = _KINDS[kind].check, _KINDS[kind].stale
    earlier = history.earlier_reading(e.file, e.raw.sha256) if stale is not None else None
    try:
        with transaction(ctx.con):
            n_stale = 0
            if earlier is not None:
                n_stale = stale(ctx, e.prep, table, e.fid, e.file, _tag_settings(earlier, ctx.settings),
                                tag_rules(earlier))
            status, deleted, lost = write_rows(ctx, plan, file=e.file, sha256=history.key(e.raw.sha256), kind=kind,
                                               lost_by=None if n_stale else history.lost_by(), deleted_before=n_stale)
            warnings = tuple(e.prep.warnings) + (tuple(check(ctx, table, e.fid, e.file)) if check is not None else ())
    except InputFileError as exc:  # a kind's check refused the file as written (rolled back)
        e.error = exc
        return None
    except duckdb.Error as exc:
        if (machine := machine_error(exc)) is not None:  # a full disk: not the file's fault, and every next file's
            raise MachineError(f"{e.file}: not stored: {machine} (the files before it are stored; run the same "
                               "command again once there is room)") from exc
        e.error = InputFileError(e.file, None, f"database rejected the file ({_one_line(exc)})")
        return None
    ctx.committed(plan)
    history.add(e.file, e.raw.sha256, int(plan.n_rows), deleted, lost)
    msg = None
    if plan.n_rejects:
        ln, reason = plan.first_reject
        more = plan.n_rejects - 1
        msg = f"{e.file}:{ln}: {reason}" + (f" (+{more} more rejected row{'s' if more != 1 else ''})" if more else "")
    elif status == "replaced":
        msg = "replaced the stored rows of the keys this file covers"
    return FileResult(e.file, e.raw.sha256, status, int(plan.n_rows), plan.n_rejects, msg, warnings)


def _fail(con, kind: str, file: str, sha: str, err: InputFileError, raise_on_error: bool) -> FileResult:
    log_failure(con, file=file, sha256=sha, kind=kind, message=str(err))
    if raise_on_error:
        raise err
    return FileResult(file, sha, "failed", 0, 0, str(err))


def _batches(files: list[Path]) -> Iterator[list[_Entry]]:
    """Consecutive files: the first batch at most FIRST_BATCH_FILES and about FIRST_BATCH_BYTES, each next one
    twice as large up to BATCH_FILES and BATCH_BYTES (small first batches let the writes start early), and none
    more than half of the files still to come, unless that is under TAIL_FILES (the last batch is written with
    nothing left to stage beside it: ending on ever smaller batches keeps that exposed write short)."""
    sizes = []
    for f in files:
        try:
            sizes.append(f.stat().st_size)
        except OSError:
            sizes.append(0)
    batch: list[_Entry] = []
    size = 0
    max_files, max_bytes = FIRST_BATCH_FILES, FIRST_BATCH_BYTES
    cap_files = min(max_files, max(TAIL_FILES, -(-len(files) // 2)))  # at most half of what is left
    for pos, (f, n) in enumerate(zip(files, sizes)):
        if batch and (len(batch) >= cap_files or size + n > max_bytes):
            yield batch
            batch, size = [], 0
            max_files, max_bytes = min(2 * max_files, BATCH_FILES), min(2 * max_bytes, BATCH_BYTES)
            cap_files = min(max_files, max(TAIL_FILES, -(-(len(files) - pos) // 2)))
        batch.append(_Entry(f, str(f), len(batch), pos=pos))
        size += n
    if batch:
        yield batch


def _main_path(con: duckdb.DuckDBPyConnection) -> str:
    """The caller's current database and schema, as a search-path entry."""
    db, schema = con.execute("SELECT current_database(), current_schema()").fetchone()
    return ".".join('"' + str(x).replace('"', '""') + '"' for x in (db, schema))


def _result(fut: Future) -> list[FileResult]:
    """The writer's results; waits in short steps, so that Ctrl-C reaches the calling thread while it waits (a
    signal delivered to another thread is handled only when the main thread runs Python code)."""
    while True:
        try:
            return fut.result(timeout=0.2)
        except FuturesTimeout:
            continue


class _Pipeline:
    """Stage + validate batch k+1 while the files of batch k are written, one transaction per file.

    Two connections of the caller's database instance (``con.cursor()``): the staging one (the calling thread)
    and the writing one (one worker thread when ``overlap``, else the calling thread: the same code with the
    overlap off). The staged tables of a batch live in one of two in-memory databases attached for the call
    (batch k in slot k % 2), visible to both connections; a slot is staged again only after its batch is written.
    Results, ``ingest_log`` rows and stored rows are the same whatever the timing: files are written in order
    by one writer, and whether a file is an identical re-ingest is decided by the writer when an earlier file
    still being written could change the answer. An exception while staging batch k+1 lets batch k finish
    first; Ctrl-C stops the writer after the file it is writing (each file is its own transaction)."""

    _serial = itertools.count()

    def __init__(self, con: duckdb.DuckDBPyConnection, kind: str, settings: Settings, *, strict: bool,
                 raise_on_error: bool, overlap: bool) -> None:
        self.kind, self.strict, self.raise_on_error, self.overlap = kind, strict, raise_on_error, overlap
        tag = f"_ingest_stage_{os.getpid()}_{next(self._serial)}"
        self.slots = [f"{tag}_{i}" for i in range(2)]
        self.con = con
        self.main = _main_path(con)
        self.attached: list[str] = []
        self.cursors: list[duckdb.DuckDBPyConnection] = []
        self.stop = threading.Event()
        try:
            for s in self.slots:
                con.execute(f"ATTACH ':memory:' AS {s}")
                self.attached.append(s)
            self.cursors = [con.cursor(), con.cursor()]
            for c in self.cursors:  # the caller's current database (a cursor starts on the instance's default)
                c.execute(f"USE {self.main}")
            self.ctx = _context(self.cursors[0], settings)
            self.wctx = Ctx(con=self.cursors[1], settings=settings, limits=self.ctx.limits, symmap=self.ctx.symmap,
                            today=self.ctx.today)
            self.history = _History(con, kind, settings)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for c in self.cursors:
            c.close()
        for s in self.attached:
            self.con.execute(f"DETACH DATABASE IF EXISTS {s}")
        self.cursors, self.attached = [], []

    @contextlib.contextmanager
    def threads(self, several: bool = True) -> Iterator[None]:
        """With the overlap, DuckDB's ``threads`` is 1 for the call (restored after): the staging and the writing
        thread are the two workers, each query runs on the thread that issued it (-20 % CPU, measured, and the
        writer, the critical path, is not queued behind staging tasks in DuckDB's shared pool). Not when the call
        has one file (``several`` False): its one batch is staged, then written, nothing runs beside either, and
        setting ``threads`` and back cost ~5-8 ms of CPU per call, ~15 % of a small file's ingest)."""
        if not self.overlap or not several:
            yield
            return
        before = self.con.execute("SELECT current_setting('threads')").fetchone()[0]
        self.con.execute("SET threads = 1")
        try:
            yield
        finally:
            self.con.execute(f"SET threads = {int(before)}")

    def _settle(self, batch: list[_Entry]) -> set[str]:
        """Just before ``batch`` is written (nothing is being written): its staged files that are identical given
        every file written so far and come before any file of the batch that may be written are skipped now (the
        writer would decide the same); returns the files that may be written (staging the next batch defers to the
        writer every file after one of them). A staged file deferred because of writes that turned out skips is
        thus settled one batch later, not staged again and again."""
        open_writes: set[str] = set()
        for e in batch:
            if e.prep is None or e.result is not None:
                continue
            if not open_writes and self.history.identical(self.ctx.con, e.raw.sha256, e.pos):
                e.result = _skipped(e)
            else:
                open_writes.add(e.file)
        return open_writes

    def _write(self, st: _Staged) -> list[FileResult]:
        return _write_batch(self.wctx, self.kind, st, self.history, self.strict, self.raise_on_error, self.stop)

    def run(self, batches: Iterable[list[_Entry]]) -> list[FileResult]:
        out: list[FileResult] = []
        pool = ThreadPoolExecutor(1, thread_name_prefix="accumopt-ingest-writer") if self.overlap else None
        pending: Future | None = None
        open_writes: set = set()
        try:
            for k, batch in enumerate(batches):
                staged = _stage_batch(self.ctx, self.kind, batch, self.slots[k % 2], self.main, self.history,
                                      open_writes)
                if pending is not None:
                    out.extend(_result(pending))
                    pending = None
                open_writes = self._settle(batch)
                if pool is not None:
                    pending = pool.submit(self._write, staged)
                else:
                    out.extend(self._write(staged))
            if pending is not None:
                out.extend(_result(pending))
                pending = None
        except BaseException as exc:
            if not isinstance(exc, Exception) or is_query_interrupt(exc):
                # Ctrl-C (a KeyboardInterrupt, or DuckDB's report of one that came during a staging query): the
                # writer stops after the file it is writing
                self.stop.set()
            if pending is not None:
                wexc = pending.exception()  # waits for the writer
                if wexc is not None and wexc is not exc:  # a writer failure after a staging one: both are told
                    exc.add_note(f"the ingest writer also failed: {type(wexc).__name__}: {_one_line(wexc)}")
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        return out


def _with_progress(batches: Iterator[list[_Entry]], n_files: int, enabled: bool, kind: str) -> Iterator[list[_Entry]]:
    if not enabled:
        yield from batches
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(f"[bold]ingest {kind}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=Console(stderr=True),  # on stderr: stdout holds the command's report (a file when redirected)
    ) as prog:
        task = prog.add_task("", total=n_files)
        for b in batches:
            prog.update(task, description=b[-1].path.name)
            yield b
            prog.advance(task, len(b))


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    path: str | Path,
    *,
    strict: bool = False,
    settings: Settings | None = None,
    raise_on_error: bool = False,
) -> FileResult:
    """Ingest one file (see the module doc); returns its FileResult."""
    _check_kind(kind)
    settings = settings or Settings.from_env()
    pipe = _Pipeline(con, kind, settings, strict=strict, raise_on_error=raise_on_error, overlap=False)
    try:
        pipe.history.set_run([Path(path)])
        return pipe.run([[_Entry(Path(path), str(path), 0)]])[0]
    finally:
        pipe.close()


def ingest_paths(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    paths: Sequence[str | Path] | str | Path,
    *,
    strict: bool = False,
    progress: bool = False,
    settings: Settings | None = None,
    raise_on_error: bool = False,
    overlap: bool = True,
) -> IngestReport:
    """Ingest every file under ``paths`` as ``kind`` (one of KINDS), in date order; see the module doc.

    ``overlap=False`` writes each batch before staging the next (same code, same results; one thread)."""
    _check_kind(kind)
    settings = settings or Settings.from_env()
    files = _order(expand_paths(paths))
    report = IngestReport(kind)
    pipe = _Pipeline(con, kind, settings, strict=strict, raise_on_error=raise_on_error, overlap=overlap)
    try:
        pipe.history.set_run(files)
        with memory_budget(con), checkpoint_budget(con), pipe.threads(len(files) > 1):
            report.files.extend(pipe.run(_with_progress(_batches(files), len(files), progress, kind)))
    finally:
        pipe.close()
    if kind == "finra-short":
        create_consolidated_view(con)
    report.files[:] = _copies_warned(kind, report.files)
    return report


def _copies_warned(kind: str, files: list[FileResult]) -> list[FileResult]:
    """``files`` with a warning on each file read after another download of the same file (``NAME.ext`` and ``NAME
    (1).ext`` of one folder) of other content: its rows stand where they overlap (the later file wins, so a user who
    meant the other copy learns which one is stored)."""
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(files):
        if f.status != "failed":
            p = Path(f.file)
            groups.setdefault((p.parent, _copy_of(p)[0]), []).append(i)
    out = list(files)
    for idx in groups.values():
        last = out[idx[-1]]
        other = [Path(out[i].file).name for i in idx[:-1] if out[i].sha256 != last.sha256]
        if not other:
            continue
        what = "another download" if len(other) == 1 else "other downloads"
        out[idx[-1]] = dataclasses.replace(last, warnings=(*last.warnings, (
            f"{kind}: {Path(last.file).name}: read after {', '.join(other)}, {what} of the same file with other "
            "content: its rows stand where they overlap")))
    return out
