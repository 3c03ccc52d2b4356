"""FINRA Reg SHO daily short-sale volume files -> ``finra_short_daily``.

Accepted forms:

* The files exactly as FINRA publishes them (``CNMSshvol20200102.txt`` or ``.txt.gz``; families CNMS, FNSQ,
  FNQC, FNYX, FNRA, FORF): pipe-delimited, header ``Date|Symbol|ShortVolume|ShortExemptVolume|TotalVolume|Market``
  or the older ``Date|Symbol|ShortVolume|TotalVolume|Market`` (short_exempt_volume -> NULL), LF or CRLF, and a
  last line holding the record count, which must equal the number of data rows. The facility is the file name
  prefix; every row's date must equal the file name's date. A header-only file (with trailer ``0``) is valid.
  Fractional volumes are rounded to whole shares.
* The tidy CSV ``date,symbol,short_volume[,short_exempt_volume],total_volume[,market],facility_file|facility``
  (e.g. ``finra_short_daily_2020.csv.gz`` or the FINRA API cache written by ``optimizer.data.fetch``): many
  dates/facilities in one file.

A file replaces every stored row of the (date, facility) pairs it covers.
Row invariants (rejected, or fatal under strict): volumes >= 0, short_volume <= total_volume, non-empty symbol,
(date, symbol, facility) unique within the file.

``consolidated_short_sql()`` gives one row per (date, symbol): the CNMS row when present (provenance 'CNMS'),
else the SUM of the per-facility rows (provenance 'FACILITY_SUM:FNQC+FNSQ+...', facilities sorted), else the
API row (provenance 'API'). ``create_consolidated_view(con)`` stores it as the view ``finra_short_consolidated``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from optimizer.errors import InputFileError
from optimizer.data.symbols import apply_symbol_map
from optimizer.data.ingest._common import (
    Parsed,
    collect_rejects,
    duplicate_rejects,
    name_date,
    parse_dates,
    parse_numeric,
    read_csv_text,
    rejects_frame,
    split_lines,
)

__all__ = [
    "FAMILIES",
    "FACILITY_FILES",
    "parse_finra_short",
    "consolidated_short_sql",
    "create_consolidated_view",
    "facility_of",
]

FAMILIES = ("CNMS", "FNSQ", "FNQC", "FNYX", "FNRA", "FORF")
FACILITY_FILES = tuple(f for f in FAMILIES if f != "CNMS")
_NEW = ("date", "symbol", "shortvolume", "shortexemptvolume", "totalvolume", "market")
_OLD = ("date", "symbol", "shortvolume", "totalvolume", "market")
_COLS = ["date", "symbol", "facility", "market", "short_volume", "short_exempt_volume", "total_volume"]


def facility_of(path: str | Path) -> str | None:
    """The family prefix of a FINRA file name (``CNMSshvol20200102.txt`` -> ``CNMS``), else None."""
    name = Path(path).name.upper()
    for fam in FAMILIES:
        if name.startswith(fam):
            return fam
    return None


def parse_finra_short(file: str, text: str, symmap: pd.DataFrame) -> Parsed:
    lines = split_lines(text)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputFileError(file, 1, "empty file: expected the header Date|Symbol|ShortVolume|...")
    head = lines[0].strip().lower()
    if "short_volume" in head:
        return _parse_tidy(file, text, symmap)
    return _parse_raw(file, lines, symmap)


def _parse_raw(file: str, lines: list[str], symmap: pd.DataFrame) -> Parsed:
    header = [h.strip().lower() for h in lines[0].split("|")]
    if len(header) == 1:
        for d, label in ((",", "','"), (";", "';'"), ("\t", "tab")):
            if d in lines[0]:
                raise InputFileError(file, 1, f"wrong delimiter: expected '|' between columns, found {label}")
        raise InputFileError(file, 1, f"header {lines[0]!r} is not Date|Symbol|ShortVolume|...")
    if tuple(header) == _NEW:
        layout = _NEW
    elif tuple(header) == _OLD:
        layout = _OLD
    else:
        want = _NEW if "shortexemptvolume" in header else _OLD
        missing = [c for c in want if c not in header]
        what = f"missing column {_pretty((missing[0],))[0]!r}" if missing else "unexpected columns"
        raise InputFileError(file, 1, f"{what}: header is {lines[0]!r}, expected {'|'.join(_pretty(want))!r}")
    facility = facility_of(file)
    if facility is None:
        raise InputFileError(file, None, f"cannot tell the facility: the file name must start with one of {', '.join(FAMILIES)}")
    if len(lines) < 2:
        raise InputFileError(file, 2, "missing record-count trailer line")
    trailer = lines[-1].strip()
    if not trailer.isdigit():
        raise InputFileError(
            file, len(lines), f"missing record-count trailer: last line {lines[-1][:60]!r} is not an integer (truncated file?)"
        )
    body = pd.Series(lines[1:-1], dtype=str)
    line_no = np.arange(2, len(lines), dtype=np.int64)
    nonblank = (body.str.strip() != "").to_numpy()
    body, line_no = body[nonblank].reset_index(drop=True), line_no[nonblank]
    if int(trailer) != len(body):
        raise InputFileError(file, len(lines), f"trailer says {int(trailer)} records, file has {len(body)}")
    nsep = body.str.count(r"\|").to_numpy()
    badn = nsep != len(layout) - 1
    if badn.any():
        i = int(np.argmax(badn))
        raise InputFileError(file, int(line_no[i]), f"expected {len(layout)} '|'-separated fields, found {nsep[i] + 1}")
    parts = _read_body(body, layout)
    parts["_line"] = line_no
    dates = parse_dates(file, parts, "date", label="Date")
    fdate = name_date(file)
    if fdate is not None and len(dates):
        off = (dates != fdate).to_numpy()
        if off.any():
            i = int(np.argmax(off))
            raise InputFileError(
                file, int(line_no[i]), f"date {parts['date'].iat[i]} does not match the file name date {fdate:%Y%m%d}"
            )
    short = parse_numeric(file, parts, "shortvolume", label="ShortVolume")
    total = parse_numeric(file, parts, "totalvolume", label="TotalVolume")
    exempt = (
        parse_numeric(file, parts, "shortexemptvolume", required=False, label="ShortExemptVolume")
        if layout is _NEW
        else np.full(len(parts), np.nan)
    )
    frame = pd.DataFrame(
        {
            "date": dates,
            "symbol": parts["symbol"].to_numpy(),
            "facility": facility,
            "market": parts["market"].replace("", None).to_numpy(),
            "short_volume": short,
            "short_exempt_volume": exempt,
            "total_volume": total,
        }
    )
    cover_dates = [fdate] if fdate is not None else sorted(set(dates))
    cover = pd.DataFrame({"date": pd.to_datetime(pd.Series(cover_dates, dtype="datetime64[s]")), "facility": facility})
    return _finish(file, frame, line_no, lines, cover, symmap)


def _read_body(body: pd.Series, layout: tuple[str, ...]) -> pd.DataFrame:
    """The data lines (field counts already checked) -> frame; numeric columns parsed by the C reader when clean,
    left as text when not (parse_numeric then names the bad line)."""
    num = [c for c in layout if c.endswith("volume")]
    if not len(body):
        return pd.DataFrame({c: pd.Series([], dtype=str) for c in layout})
    df = pd.read_csv(
        io.StringIO("\n".join(body.tolist())),
        sep="|",
        header=None,
        names=list(layout),
        index_col=False,
        dtype={c: str for c in layout if c not in num},
        keep_default_na=False,
        na_values={c: [""] for c in num},
        quoting=csv.QUOTE_NONE,
        engine="c",
    )
    for c in ("date", "symbol", "market"):
        df[c] = df[c].fillna("").str.strip()
    return df


def _pretty(cols: tuple[str, ...]) -> list[str]:
    names = {"date": "Date", "symbol": "Symbol", "shortvolume": "ShortVolume", "shortexemptvolume": "ShortExemptVolume",
             "totalvolume": "TotalVolume", "market": "Market"}
    return [names.get(c, c) for c in cols]


def _parse_tidy(file: str, text: str, symmap: pd.DataFrame) -> Parsed:
    df, lines = read_csv_text(
        file,
        text,
        required=("date", "symbol", "short_volume", "total_volume"),
        optional=("short_exempt_volume", "market", "facility", "facility_file"),
    )
    if "facility" not in df.columns:
        if "facility_file" in df.columns:
            df = df.rename(columns={"facility_file": "facility"})
        else:
            fam = facility_of(file)
            if fam is None:
                raise InputFileError(file, 1, "missing column 'facility_file' (or 'facility'), and the file name has no family prefix")
            df["facility"] = fam
    line_no = df["_line"].to_numpy()
    dates = parse_dates(file, df, "date")
    frame = pd.DataFrame(
        {
            "date": dates,
            "symbol": df["symbol"].to_numpy(),
            "facility": df["facility"].str.upper().to_numpy(),
            "market": (df["market"].replace("", None) if "market" in df.columns else pd.Series([None] * len(df))).to_numpy(),
            "short_volume": parse_numeric(file, df, "short_volume"),
            "short_exempt_volume": (
                parse_numeric(file, df, "short_exempt_volume", required=False)
                if "short_exempt_volume" in df.columns
                else np.full(len(df), np.nan)
            ),
            "total_volume": parse_numeric(file, df, "total_volume"),
        }
    )
    nofac = (frame["facility"].astype(str).str.strip() == "").to_numpy()
    if nofac.any():
        i = int(np.argmax(nofac))
        raise InputFileError(file, int(line_no[i]), "missing facility value")
    cover = frame[["date", "facility"]].drop_duplicates().reset_index(drop=True)
    return _finish(file, frame, line_no, lines, cover, symmap)


def _finish(
    file: str, frame: pd.DataFrame, line_no: np.ndarray, lines: list[str], cover: pd.DataFrame, symmap: pd.DataFrame
) -> Parsed:
    frame = apply_symbol_map(frame, symmap)
    s, t, e = frame["short_volume"].to_numpy(), frame["total_volume"].to_numpy(), frame["short_exempt_volume"].to_numpy()
    dup, dup_reason = duplicate_rejects(frame[["date", "symbol", "facility"]],
                                        line_no, ("date", "symbol", "facility"))
    sym_empty = (frame["symbol"].astype(str).str.strip() == "").to_numpy()
    checks = [
        (sym_empty, "empty symbol"),
        (s < 0, lambda ix: [f"negative short_volume {s[i]:.0f}" for i in ix]),
        (t < 0, lambda ix: [f"negative total_volume {t[i]:.0f}" for i in ix]),
        (np.nan_to_num(e, nan=0.0) < 0, lambda ix: [f"negative short_exempt_volume {e[i]:.0f}" for i in ix]),
        (s > t, lambda ix: [f"short_volume {s[i]:.0f} > total_volume {t[i]:.0f}" for i in ix]),
        (dup, dup_reason),
    ]
    bad, found = collect_rejects(checks, len(frame))
    rows = frame.loc[~bad, _COLS].reset_index(drop=True)
    for c in ("short_volume", "total_volume", "short_exempt_volume"):
        rows[c] = np.floor(rows[c].to_numpy() + 0.5)
    return Parsed("finra_short_daily", rows, cover, rejects_frame(found, line_no, lines))


def consolidated_short_sql(table: str = "finra_short_daily") -> str:
    """SQL for one row per (date, symbol): CNMS, else the facility sum, else the API row (see module doc)."""
    fac = ", ".join(f"'{f}'" for f in FACILITY_FILES)
    return f"""
WITH cnms AS (
    SELECT date, symbol, short_volume, short_exempt_volume, total_volume, 'CNMS' AS provenance
    FROM {table} WHERE facility = 'CNMS'
), fsum AS (
    SELECT date, symbol,
           CAST(sum(short_volume) AS BIGINT) AS short_volume,
           CAST(sum(short_exempt_volume) AS BIGINT) AS short_exempt_volume,
           CAST(sum(total_volume) AS BIGINT) AS total_volume,
           'FACILITY_SUM:' || string_agg(facility, '+' ORDER BY facility) AS provenance
    FROM {table} WHERE facility IN ({fac})
    GROUP BY date, symbol
), api AS (
    SELECT date, symbol, short_volume, short_exempt_volume, total_volume, 'API' AS provenance
    FROM {table} WHERE facility = 'API'
)
SELECT * FROM cnms
UNION ALL
SELECT * FROM fsum f WHERE NOT EXISTS (SELECT 1 FROM cnms c WHERE c.date = f.date AND c.symbol = f.symbol)
UNION ALL
SELECT * FROM api a WHERE NOT EXISTS (SELECT 1 FROM cnms c WHERE c.date = a.date AND c.symbol = a.symbol)
                      AND NOT EXISTS (SELECT 1 FROM fsum f WHERE f.date = a.date AND f.symbol = a.symbol)
""".strip()


def create_consolidated_view(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create the view ``finra_short_consolidated`` from :func:`consolidated_short_sql`."""
    con.execute(f"CREATE OR REPLACE VIEW finra_short_consolidated AS {consolidated_short_sql()}")
