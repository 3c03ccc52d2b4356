"""Raw-file ingest: the only writer of the raw tables.

``ingest_paths(con, kind, paths)`` expands files, directories (recursed) and globs, orders the files by date
(from the file name, e.g. ``CNMSshvol20200102.txt.gz``, else from the first data line) and ingests each file in
ONE transaction (``optimizer.data.store.transaction``):

* A file that breaks a format rule (wrong delimiter, missing column, non-numeric value, truncated gzip, trailer
  count mismatch, unparseable date, ...) changes NO data table. Its status is ``failed`` and its message is
  ``file:line: reason``; processing continues with the next file (``raise_on_error=True`` raises the
  ``InputFileError`` instead, after logging). Choice made here: the failure IS recorded in ``ingest_log`` (one
  ``failed`` row, rows 0/0), appended after the rollback in its own small transaction, so ``ingest_log`` is the
  only table a failed file touches.
* Rows that break an invariant (ShortVolume > TotalVolume, negative volume, OHLC inconsistent, duplicate key in
  the file, ...) go to ``ingest_rejects`` (ingest_id, file, line, reason, raw) and the rest of the file is
  stored (status ``rejected_rows``). With ``strict=True`` such a file fails instead and nothing is written.
* Re-ingesting an identical file (same sha256 already logged as ok / replaced / rejected_rows for this kind,
  unless a different version of a file with the same name was ingested since) is a no-op reported as
  ``skipped_identical`` (not logged). A file covering keys already stored (see each parser: FINRA = (date,
  facility), prices/lit/options = (date, symbol), OTC = (week, symbol)) deletes those rows first: ``replaced``.
* Symbol changes (``symbol_map``) are applied to every kind before the invariants are checked.

``IngestReport.exit_code`` is 0 when every file is ok / replaced / skipped, 1 when some rows were rejected,
2 when some file failed. The caller must not hold an open transaction on ``con``.
"""

from __future__ import annotations

import glob
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from optimizer.settings import Settings
from optimizer.errors import InputFileError, ParameterError
from optimizer.data.store import transaction
from optimizer.data.symbols import load_symbol_map
from optimizer.data.ingest._common import Parsed, decode_bytes, log_failure, name_date, sha256_bytes, write_parsed
from optimizer.data.ingest.finra_short import consolidated_short_sql, create_consolidated_view, parse_finra_short
from optimizer.data.ingest.lit import parse_lit_flow, parse_lit_trades
from optimizer.data.ingest.options import parse_options
from optimizer.data.ingest.otc_weekly import parse_otc_weekly
from optimizer.data.ingest.prices import parse_prices

__all__ = [
    "KINDS",
    "STATUSES",
    "FileResult",
    "IngestReport",
    "ingest_paths",
    "ingest_file",
    "expand_paths",
    "consolidated_short_sql",
    "create_consolidated_view",
]

KINDS: tuple[str, ...] = ("finra-short", "prices", "otc-weekly", "lit-trades", "lit-flow", "options")
STATUSES: tuple[str, ...] = ("ok", "replaced", "skipped_identical", "rejected_rows", "failed")
_DONE = ("ok", "replaced", "rejected_rows")


@dataclass(frozen=True)
class FileResult:
    file: str
    sha256: str
    status: str
    rows_accepted: int = 0
    rows_rejected: int = 0
    message: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


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
            "exit_code": self.exit_code,
        }


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ParameterError(f"kind must be one of {', '.join(KINDS)}, got kind={kind!r}")


def expand_paths(paths: Sequence[str | Path] | str | Path) -> list[Path]:
    """Files, directories (recursed; hidden files skipped) and globs -> unique existing files."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: dict[Path, None] = {}
    for p in paths:
        s = str(p)
        if any(ch in s for ch in "*?[") and not Path(s).exists():
            hits = sorted(glob.glob(s, recursive=True))
            if not hits:
                raise ParameterError(f"paths must match at least one file, got no match for {s!r}")
            cands: Iterable[Path] = (Path(h) for h in hits)
        else:
            cands = [Path(s)]
        for c in cands:
            if c.is_dir():
                for f in sorted(c.rglob("*")):
                    if f.is_file() and not any(part.startswith(".") for part in f.relative_to(c).parts):
                        out.setdefault(f, None)
            elif c.is_file():
                out.setdefault(c, None)
            else:
                raise ParameterError(f"paths must exist, got {s!r} (no such file or directory)")
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
    far = pd.Timestamp.max

    def key(p: Path):
        d = name_date(p) or _peek_date(p)
        return (d if d is not None else far, p.name, str(p))

    return sorted(files, key=key)


def _parse(kind: str, file: str, data: bytes, symmap: pd.DataFrame, settings: Settings) -> Parsed:
    if kind == "lit-trades":
        return parse_lit_trades(file, data, symmap, settings)
    text = decode_bytes(file, data)
    if kind == "finra-short":
        return parse_finra_short(file, text, symmap)
    if kind == "prices":
        return parse_prices(file, text, symmap, settings.market_tz)
    if kind == "otc-weekly":
        return parse_otc_weekly(file, text, symmap)
    if kind == "lit-flow":
        return parse_lit_flow(file, text, symmap)
    return parse_options(file, text, symmap)


class _History:
    """What ingest_log says about earlier successful ingests of this kind (read once per call), plus the
    column types of the tables written (read once per call)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, kind: str) -> None:
        rows = con.execute(
            "SELECT file, sha256 FROM ingest_log WHERE kind = ? AND status IN ('ok', 'replaced', 'rejected_rows') ORDER BY id",
            [kind],
        ).fetchall()
        self.shas: set[str] = set()
        self.latest: dict[str, str] = {}
        self.types: dict[str, dict[str, str]] = {}
        for f, sha in rows:
            self.add(str(f), str(sha))

    def add(self, file: str, sha: str) -> None:
        self.shas.add(sha)
        self.latest[Path(file).name] = sha

    def identical(self, file: str, sha: str) -> bool:
        if sha not in self.shas:
            return False
        last = self.latest.get(Path(file).name)
        return last is None or last == sha


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    path: str | Path,
    *,
    strict: bool = False,
    settings: Settings | None = None,
    raise_on_error: bool = False,
    _symmap: pd.DataFrame | None = None,
    _history: _History | None = None,
) -> FileResult:
    """Ingest one file (see the module doc); returns its FileResult."""
    _check_kind(kind)
    settings = settings or Settings.from_env()
    file = str(path)
    symmap = load_symbol_map(con) if _symmap is None else _symmap
    history = _History(con, kind) if _history is None else _history
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return _fail(con, kind, file, "", InputFileError(file, None, f"unreadable file ({exc.strerror})"), raise_on_error)
    sha = sha256_bytes(data)
    if history.identical(file, sha):
        return FileResult(file, sha, "skipped_identical", 0, 0, "identical file already ingested")
    try:
        parsed = _parse(kind, file, data, symmap, settings)
    except InputFileError as exc:
        return _fail(con, kind, file, sha, exc, raise_on_error)
    except Exception as exc:  # a file the parsers did not foresee: report it, keep the batch going
        return _fail(con, kind, file, sha, InputFileError(file, None, f"unreadable {kind} file ({type(exc).__name__}: {exc})"), raise_on_error)
    if strict and parsed.n_rejects:
        first = parsed.rejects.iloc[0]
        err = InputFileError(
            file,
            int(first["line"]),
            f"{first['reason']} (strict: {parsed.n_rejects} rows break invariants, nothing written)",
        )
        return _fail(con, kind, file, sha, err, raise_on_error)
    try:
        with transaction(con):
            _, status = write_parsed(
                con, parsed, file=file, sha256=sha, kind=kind, source_file=Path(file).name, types_cache=history.types
            )
    except duckdb.Error as exc:
        return _fail(con, kind, file, sha, InputFileError(file, None, f"database rejected the file ({exc})"), raise_on_error)
    history.add(file, sha)
    msg = None
    if parsed.n_rejects:
        first = parsed.rejects.iloc[0]
        msg = f"{file}:{int(first['line'])}: {first['reason']} (+{parsed.n_rejects - 1} more rejected rows)"
    elif status == "replaced":
        msg = "replaced the stored rows of the keys this file covers"
    return FileResult(file, sha, status, int(len(parsed.rows)), parsed.n_rejects, msg)


def _fail(con, kind: str, file: str, sha: str, err: InputFileError, raise_on_error: bool) -> FileResult:
    log_failure(con, file=file, sha256=sha, kind=kind, message=str(err))
    if raise_on_error:
        raise err
    return FileResult(file, sha, "failed", 0, 0, str(err))


def _with_progress(files: list[Path], enabled: bool, kind: str) -> Iterator[Path]:
    if not enabled:
        yield from files
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(f"[bold]ingest {kind}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
    ) as prog:
        task = prog.add_task("", total=len(files))
        for f in files:
            prog.update(task, description=f.name)
            yield f
            prog.advance(task)


def ingest_paths(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    paths: Sequence[str | Path] | str | Path,
    *,
    strict: bool = False,
    progress: bool = False,
    settings: Settings | None = None,
    raise_on_error: bool = False,
) -> IngestReport:
    """Ingest every file under ``paths`` as ``kind`` (one of KINDS), in date order; see the module doc."""
    _check_kind(kind)
    settings = settings or Settings.from_env()
    files = _order(expand_paths(paths))
    report = IngestReport(kind)
    symmap = load_symbol_map(con)
    history = _History(con, kind)
    for f in _with_progress(files, progress, kind):
        report.files.append(
            ingest_file(
                con, kind, f, strict=strict, settings=settings, raise_on_error=raise_on_error,
                _symmap=symmap, _history=history,
            )
        )
    if kind == "finra-short":
        create_consolidated_view(con)
    return report
