"""Daily options activity -> ``options_daily``.

CSV ``date,symbol,call_volume,put_volume`` plus any of ``call_premium, put_premium, itm_call_volume,
otm_call_volume, itm_put_volume, otm_put_volume, atm_iv`` (absent columns or empty values -> NULL).
A file replaces the stored rows of the (date, symbol) keys it holds.
Row invariants (rejected, or fatal under strict): volumes and premiums >= 0, atm_iv >= 0, (date, symbol) unique.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.data.symbols import apply_symbol_map
from optimizer.data.ingest._common import Parsed, collect_rejects, duplicate_rejects, parse_dates, parse_numeric, read_csv_text, rejects_frame

__all__ = ["parse_options", "OPTIONAL_COLUMNS"]

OPTIONAL_COLUMNS = (
    "call_premium",
    "put_premium",
    "itm_call_volume",
    "otm_call_volume",
    "itm_put_volume",
    "otm_put_volume",
    "atm_iv",
)
_VALUES = ("call_volume", "put_volume") + OPTIONAL_COLUMNS


def parse_options(file: str, text: str, symmap: pd.DataFrame) -> Parsed:
    df, lines = read_csv_text(file, text, required=("date", "symbol", "call_volume", "put_volume"), optional=OPTIONAL_COLUMNS)
    line_no = df["_line"].to_numpy()
    frame = pd.DataFrame({"date": parse_dates(file, df, "date"), "symbol": df["symbol"].to_numpy()})
    for c in _VALUES:
        frame[c] = (
            parse_numeric(file, df, c, required=c in ("call_volume", "put_volume"))
            if c in df.columns
            else np.full(len(df), np.nan)
        )
    frame = apply_symbol_map(frame, symmap)
    dup, dup_reason = duplicate_rejects(
        frame[["date", "symbol"]], line_no, ("date", "symbol")
    )
    checks: list = [((frame["symbol"].astype(str).str.strip() == "").to_numpy(), "empty symbol")]
    for c in _VALUES:
        v = frame[c].to_numpy()
        checks.append((np.nan_to_num(v, nan=0.0) < 0, lambda ix, v=v, c=c: [f"negative {c} {v[i]}" for i in ix]))
    checks.append((dup, dup_reason))
    bad, found = collect_rejects(checks, len(frame))
    rows = frame.loc[~bad].reset_index(drop=True)
    return Parsed("options_daily", rows, rows[["date", "symbol"]].copy(), rejects_frame(found, line_no, lines))
