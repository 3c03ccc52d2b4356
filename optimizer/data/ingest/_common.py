"""Shared machinery of the raw-file ingest: decoding, strict CSV reading, row rejects and the atomic write.

Every parser turns one file's bytes into a :class:`Parsed` (accepted rows, rejected rows, and the keys the file
covers); :func:`write_parsed` applies it in ONE transaction: delete the covered keys, insert the rows, insert
the rejects, append the ``ingest_log`` row. Format errors are :class:`~optimizer.errors.InputFileError`
(``file:line: reason``) raised before anything is written.

Line numbers are 1-based physical lines of the (decompressed) file, the header being line 1. For JSON inputs
the "line" is the 1-based record index; for Parquet the 1-based row index.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from optimizer.errors import InputFileError

__all__ = [
    "Parsed",
    "RowText",
    "sha256_bytes",
    "decode_bytes",
    "split_lines",
    "read_csv_text",
    "parse_numeric",
    "parse_dates",
    "collect_rejects",
    "duplicate_rejects",
    "write_parsed",
    "log_failure",
    "name_date",
    "table_types",
]

_DELIMS = {",": "','", "|": "'|'", ";": "';'", "\t": "tab"}


class RowText:
    """Lazy ``raw`` text of frame rows (built only for rejected rows): values joined by ','."""

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df

    def __getitem__(self, i: int) -> str:
        return ",".join("" if pd.isna(v) else str(v) for v in self._df.iloc[int(i)].tolist())


@dataclass
class Parsed:
    """One file's content, ready to write.

    ``rows``: accepted rows with exactly the target table's columns (minus ``source_file``, which the writer adds
    when the table has it and the frame lacks it). ``rejects``: columns line, reason, raw. ``cover``: the key
    columns whose existing rows the file replaces (deleted before the insert).
    """

    table: str
    rows: pd.DataFrame
    cover: pd.DataFrame
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({"line": [], "reason": [], "raw": []}))
    # columns filled from the stored row when the file's value is NULL (a file holding one side of a record)
    coalesce_existing: tuple[str, ...] = ()
    # columns that keep the later of the stored and the new value (e.g. a combined row's publication date)
    greatest_existing: tuple[str, ...] = ()

    @property
    def n_rejects(self) -> int:
        return int(len(self.rejects))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _gunzip(file: str, data: bytes) -> bytes:
    """Decompress every gzip member; a truncated or corrupt stream is an InputFileError at the line it breaks."""
    out: list[bytes] = []
    rest = data
    while rest:
        d = zlib.decompressobj(wbits=31)
        try:
            out.append(d.decompress(rest))
            out.append(d.flush())
        except zlib.error as exc:
            done = b"".join(out)
            raise InputFileError(file, done.count(b"\n") + 1, f"corrupt gzip stream ({exc})") from None
        if not d.eof:
            done = b"".join(out)
            raise InputFileError(
                file, done.count(b"\n") + 1, f"truncated gzip stream: it ends after {len(done)} decompressed bytes"
            )
        rest = d.unused_data.lstrip(b"\x00")
    return b"".join(out)


def decode_bytes(file: str, data: bytes) -> str:
    """Raw bytes -> text: gunzip when the gzip magic is present (whatever the extension), UTF-8 (BOM ok) else latin-1."""
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(file, data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def split_lines(text: str) -> list[str]:
    """Physical lines (LF or CRLF), without the line ends; a final newline adds no empty line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def name_date(path: str | Path) -> pd.Timestamp | None:
    """The date in a file name: ``CNMSshvol20200102.txt`` or ``..._2020-01-02...``; None when absent or invalid."""
    name = Path(path).name
    for pat, fmt in ((r"(?<!\d)(\d{4}-\d{2}-\d{2})(?!\d)", "%Y-%m-%d"), (r"(?<!\d)(\d{8})(?!\d)", "%Y%m%d")):
        m = re.search(pat, name)
        if m:
            ts = pd.to_datetime(m.group(1), format=fmt, errors="coerce")
            if not pd.isna(ts):
                return pd.Timestamp(ts)
    return None


def read_csv_text(
    file: str,
    text: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    aliases: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Parse a comma-separated text with a header strictly.

    Returns (frame of str columns named in lower case, with ``_line`` = physical line number, physical lines).
    Header names are matched case-insensitively; ``aliases`` maps an alternative name to the canonical one.
    Raises InputFileError for a wrong delimiter, a missing column or a row with the wrong number of fields.
    Blank lines are skipped. Extra columns are dropped.
    """
    lines = split_lines(text)
    if not lines or not lines[0].strip():
        raise InputFileError(file, 1, f"empty file: expected a header with columns {','.join(required)}")
    header_line = lines[0]
    names = [h.strip().strip('"').strip().lower() for h in next(csv.reader([header_line]))]
    aliases = aliases or {}
    names = [aliases.get(n, n) for n in names]
    if len(names) == 1 and required and len(required) > 1:
        for d, label in _DELIMS.items():
            if d != "," and d in header_line:
                raise InputFileError(file, 1, f"wrong delimiter: expected ',' between columns, found {label}")
    missing = [c for c in required if c not in names]
    if missing:
        raise InputFileError(file, 1, f"missing column {missing[0]!r} (header has: {','.join(names)})")
    dups = sorted({n for n in names if names.count(n) > 1 and n in required + optional})
    if dups:
        raise InputFileError(file, 1, f"duplicate column {dups[0]!r} in header")
    ncol = len(names)
    body = pd.Series(lines[1:], dtype=str)
    blank = (body.str.strip() == "").to_numpy()
    if len(body):
        nsep = body.str.count(",").to_numpy()
        quoted = body.str.contains('"', regex=False).to_numpy()
        wrong = ~blank & ~quoted & (nsep != ncol - 1)
        if wrong.any():
            i = int(np.argmax(wrong))
            raise InputFileError(file, i + 2, f"expected {ncol} comma-separated fields, found {nsep[i] + 1}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(
                io.StringIO(text.lstrip("\ufeff")),
                header=None,
                skiprows=1,
                names=list(range(ncol)),
                index_col=False,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=False,
                engine="c",
            )
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise InputFileError(
                file, int(m.group(2)), f"expected {m.group(1)} comma-separated fields, found {m.group(3)}"
            ) from None
        raise InputFileError(file, None, f"unreadable CSV ({exc})") from None
    except pd.errors.EmptyDataError:
        df = pd.DataFrame({i: pd.Series([], dtype=str) for i in range(ncol)})
    df["_line"] = np.arange(2, len(df) + 2, dtype=np.int64)
    if len(df):
        if len(df) == len(body):
            drop = blank
        else:  # quoted fields spanning lines: fall back to the parsed values
            drop = (df[list(range(ncol))].apply(lambda c: c.str.strip() != "").sum(axis=1) == 0).to_numpy()
        df = df.loc[~drop]
    keep = {i: n for i, n in enumerate(names) if n in required + optional}
    out = df[list(keep)].rename(columns=keep)
    for c in out.columns:
        out[c] = out[c].str.strip()
    out["_line"] = df["_line"].to_numpy()
    return out.reset_index(drop=True), lines


def parse_numeric(
    file: str, df: pd.DataFrame, col: str, *, required: bool = True, label: str | None = None
) -> np.ndarray:
    """A str column -> float64; the first non-numeric (or, when required, empty) value is an InputFileError."""
    label = label or col
    if pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col]):
        vals = df[col].to_numpy(dtype=np.float64, na_value=np.nan)
        empty_n = np.isnan(vals)
        bad = np.isinf(vals) | (empty_n if required else np.zeros(len(vals), dtype=bool))
        if bad.any():
            i = int(np.argmax(bad))
            why = f"missing {label} value" if empty_n[i] else f"non-numeric {label} {vals[i]!r}"
            raise InputFileError(file, int(df["_line"].iat[i]), why)
        return vals
    s = df[col].astype(str).str.strip().str.replace(",", "", regex=False) if len(df) else df[col].astype(str)
    empty = ((s == "") | s.isna()).fillna(True)
    vals = pd.to_numeric(s.where(~empty, None), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(vals) & ~empty.to_numpy()
    if required:
        bad |= empty.to_numpy()
    inf = np.isinf(vals)
    bad |= inf
    if bad.any():
        i = int(np.argmax(bad))
        v = df[col].iat[i]
        why = f"missing {label} value" if (required and empty.iat[i]) else f"non-numeric {label} {v!r}"
        raise InputFileError(file, int(df["_line"].iat[i]), why)
    return vals


def parse_dates(file: str, df: pd.DataFrame, col: str, *, label: str | None = None) -> pd.Series:
    """YYYY-MM-DD or YYYYMMDD strings -> datetime64 (midnight); the first unparseable one is an InputFileError."""
    label = label or col
    codes, uniq = pd.factorize(df[col].astype(str).str.strip().to_numpy(), use_na_sentinel=False)
    u = pd.Series(uniq, dtype=str)
    iso = u.str.fullmatch(r"\d{4}-\d{2}-\d{2}").fillna(False).to_numpy(dtype=bool)
    compact = u.str.fullmatch(r"\d{8}").fillna(False).to_numpy(dtype=bool)
    du = pd.Series(pd.NaT, index=u.index, dtype="datetime64[s]")
    if iso.any():
        du[iso] = pd.to_datetime(u[iso], format="%Y-%m-%d", errors="coerce").to_numpy(dtype="datetime64[s]")
    if compact.any():
        du[compact] = pd.to_datetime(u[compact], format="%Y%m%d", errors="coerce").to_numpy(dtype="datetime64[s]")
    d = pd.Series(du.to_numpy()[codes] if len(codes) else np.array([], dtype="datetime64[s]"), dtype="datetime64[s]")
    s = pd.Series(np.asarray(uniq, dtype=object)[codes] if len(codes) else np.array([], dtype=object), dtype=object)
    bad = d.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise InputFileError(file, int(df["_line"].iat[i]), f"unparseable {label} {s.iat[i]!r} (expected YYYY-MM-DD or YYYYMMDD)")
    return d.astype("datetime64[s]").reset_index(drop=True)


def collect_rejects(checks: list[tuple[np.ndarray, object]], n: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Combine invariant checks. Each check is (bad-mask, reason): a string, an array of per-row reasons, or a
    callable taking the bad row indices and returning their reasons (so reasons are only built for bad rows).
    The first failing check of a row gives its reason. Returns (reject mask, [(row index, reason)])."""
    mask = np.zeros(n, dtype=bool)
    out: list[tuple[int, str]] = []
    for bad, reason in checks:
        bad = np.asarray(bad, dtype=bool) & ~mask
        if not bad.any():
            continue
        idx = np.flatnonzero(bad)
        if isinstance(reason, str):
            out.extend((int(i), reason) for i in idx)
        elif callable(reason):
            out.extend((int(i), str(r)) for i, r in zip(idx, reason(idx)))
        else:
            r = np.asarray(reason, dtype=object)
            out.extend((int(i), str(r[i])) for i in idx)
        mask |= bad
    return mask, out


def duplicate_rejects(keys: pd.DataFrame, lines: np.ndarray, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose key occurs more than once in the file (every copy is rejected: we cannot tell which is right)."""
    dup = keys.duplicated(keep=False).to_numpy()
    reasons = np.empty(len(keys), dtype=object)
    if dup.any():
        sub = keys.loc[dup].copy()
        for c in sub.columns:
            if pd.api.types.is_datetime64_any_dtype(sub[c]):
                sub[c] = sub[c].dt.strftime("%Y-%m-%d")
        k = sub.astype(str).agg(", ".join, axis=1)
        first = pd.Series(np.asarray(lines)[dup]).groupby(k.to_numpy()).transform(lambda x: ",".join(map(str, x)))
        reasons[dup] = [
            f"duplicate key ({', '.join(names)}) = ({kk}) on lines {ln}" for kk, ln in zip(k.to_numpy(), first.to_numpy())
        ]
    return dup, reasons


def rejects_frame(found: list[tuple[int, str]], line_no: np.ndarray, raw_lines: list[str] | None, raw_fallback=None) -> pd.DataFrame:
    """[(row index, reason)] -> DataFrame(line, reason, raw) sorted by line."""
    if not found:
        return pd.DataFrame({"line": pd.Series([], dtype="int64"), "reason": pd.Series([], dtype=str), "raw": pd.Series([], dtype=str)})
    idx = np.array([i for i, _ in found], dtype=np.int64)
    ln = np.asarray(line_no)[idx].astype(np.int64)
    if raw_lines is not None:
        raw = [raw_lines[int(x) - 1] if 0 < int(x) <= len(raw_lines) else "" for x in ln]
    elif raw_fallback is not None:
        raw = [str(raw_fallback[int(i)]) for i in idx]
    else:
        raw = [""] * len(idx)
    out = pd.DataFrame({"line": ln, "reason": [r for _, r in found], "raw": raw})
    return out.sort_values("line", kind="stable").reset_index(drop=True)


def table_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main' "
        "ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return {str(n): str(t) for n, t in rows}


def _insert_frame(con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame, types: dict[str, str]) -> None:
    if not len(df):
        return
    cols = [c for c in df.columns if c in types]
    name = "_ingest_rows"
    con.register(name, df[cols])
    try:
        sel = ", ".join(f'CAST("{c}" AS {types[c]})' for c in cols)
        con.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT {sel} FROM {name}")
    finally:
        con.unregister(name)


def _delete_cover(con: duckdb.DuckDBPyConnection, table: str, cover: pd.DataFrame, types: dict[str, str]) -> int:
    if not len(cover):
        return 0
    name = "_ingest_cover"
    con.register(name, cover.drop_duplicates())
    try:
        cond = " AND ".join(f't."{c}" = CAST(k."{c}" AS {types[c]})' for c in cover.columns)
        got = con.execute(f"DELETE FROM {table} AS t USING {name} AS k WHERE {cond}").fetchone()
    finally:
        con.unregister(name)
    return int(got[0]) if got else 0


def _merge_existing(con: duckdb.DuckDBPyConnection, parsed: Parsed, rows: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Fill NULL columns of the new rows from the stored rows with the same key (before they are deleted)."""
    if not len(rows):
        return rows
    keys = list(parsed.cover.columns)
    cols = [c for c in rows.columns if c in types]
    name = "_ingest_merge"
    con.register(name, rows[cols])
    try:
        sel = []
        for c in cols:
            n = f'CAST(n."{c}" AS {types[c]})'
            if c in parsed.coalesce_existing:
                sel.append(f'coalesce({n}, o."{c}") AS "{c}"')
            elif c in parsed.greatest_existing:
                sel.append(f'CASE WHEN o."{c}" IS NULL THEN {n} ELSE greatest({n}, o."{c}") END AS "{c}"')
            else:
                sel.append(f'{n} AS "{c}"')
        on = " AND ".join(f'o."{k}" = CAST(n."{k}" AS {types[k]})' for k in keys)
        merged = con.execute(f"SELECT {', '.join(sel)} FROM {name} n LEFT JOIN {parsed.table} o ON {on}").df()
    finally:
        con.unregister(name)
    return merged


def write_parsed(
    con: duckdb.DuckDBPyConnection,
    parsed: Parsed,
    *,
    file: str,
    sha256: str,
    kind: str,
    source_file: str,
    types_cache: dict[str, dict[str, str]] | None = None,
) -> tuple[int, str]:
    """Write one parsed file. The caller holds the transaction. Returns (ingest_id, status).

    ``types_cache`` (table -> column types) saves a catalog query per file in a batch."""
    cache = {} if types_cache is None else types_cache

    def types_of(t: str) -> dict[str, str]:
        if t not in cache:
            cache[t] = table_types(con, t)
        return cache[t]

    types = types_of(parsed.table)
    rows = parsed.rows
    if "source_file" in types and "source_file" not in rows.columns:
        rows = rows.assign(source_file=source_file)
    if parsed.coalesce_existing or parsed.greatest_existing:
        rows = _merge_existing(con, parsed, rows, types)
    deleted = _delete_cover(con, parsed.table, parsed.cover, types)
    _insert_frame(con, parsed.table, rows, types)
    ingest_id = int(con.execute("SELECT nextval('ingest_log_seq')").fetchone()[0])
    if parsed.n_rejects:
        rj = parsed.rejects.assign(ingest_id=ingest_id, file=file)[["ingest_id", "file", "line", "reason", "raw"]]
        _insert_frame(con, "ingest_rejects", rj, types_of("ingest_rejects"))
    if parsed.n_rejects:
        status = "rejected_rows"
    elif deleted:
        status = "replaced"
    else:
        status = "ok"
    msg_parts = []
    if deleted:
        msg_parts.append(f"replaced {deleted} existing rows")
    if parsed.n_rejects:
        first = parsed.rejects.iloc[0]
        msg_parts.append(f"{parsed.n_rejects} rows rejected, first {file}:{int(first['line'])}: {first['reason']}")
    con.execute(
        "INSERT INTO ingest_log (id, file, sha256, kind, rows_accepted, rows_rejected, status, message) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [ingest_id, file, sha256, kind, int(len(rows)), parsed.n_rejects, status, "; ".join(msg_parts) or None],
    )
    return ingest_id, status


def log_failure(con: duckdb.DuckDBPyConnection, *, file: str, sha256: str, kind: str, message: str) -> None:
    """Append a ``failed`` ingest_log row in its own small transaction (after the file's rollback)."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "INSERT INTO ingest_log (file, sha256, kind, rows_accepted, rows_rejected, status, message) "
            "VALUES (?, ?, ?, 0, 0, 'failed', ?)",
            [file, sha256, kind, message],
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
