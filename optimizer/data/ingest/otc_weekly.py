"""FINRA OTC Transparency weekly summaries -> ``finra_otc_weekly``.

Input: the weeklySummary records as FINRA publishes them, as CSV (header names case-insensitive) or as a JSON
list of records (or ``{"data": [...]}``), with fields ``issueSymbolIdentifier``, ``tierIdentifier``,
``summaryStartDate`` (the Monday of the week, YYYY-MM-DD), ``totalWeeklyShareQuantity``,
``totalWeeklyTradeCount``, ``summaryTypeCode`` and optionally ``lastUpdateDate``.

* ``summaryTypeCode`` ATS_W_SMBL -> ats_volume / ats_trade_count; OTC_W_SMBL -> non_ats_volume /
  non_ats_trade_count. Firm-level codes (``*_FIRM``, e.g. ATS_W_FIRM, OTC_W_FIRM) are skipped; any other code is
  a rejected row. The ATS and non-ATS records of one (week, symbol) become one row.
* publication_date = the latest ``lastUpdateDate`` of the combined records when present, else FINRA's schedule:
  Tier 1 (T1) weeks are published 2 weeks after the week ends, other tiers 4 weeks: week end (Friday =
  start + 4 days) + 14 / + 28 days, rolled forward to the next Monday (so start + 21 / + 35 days).
* A file holding only one side (ATS or non-ATS) of a stored (week, symbol) row keeps the stored other side;
  publication_date is then the later of the two (the combined row is complete only once both are public).
* Row invariants: quantities >= 0, summaryStartDate is a Monday, one record per (week, symbol, type).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from optimizer.errors import InputFileError
from optimizer.data.symbols import apply_symbol_map
from optimizer.data.ingest._common import Parsed, collect_rejects, duplicate_rejects, parse_dates, parse_numeric, read_csv_text, rejects_frame

__all__ = ["parse_otc_weekly", "scheduled_publication"]

_REQ = (
    "issuesymbolidentifier",
    "tierIdentifier".lower(),
    "summarystartdate",
    "totalweeklysharequantity",
    "totalweeklytradecount",
    "summarytypecode",
)
_OPT = ("lastupdatedate",)
_ATS, _OTC = "ATS_W_SMBL", "OTC_W_SMBL"
_COLS = [
    "week_start_date",
    "symbol",
    "tier",
    "ats_volume",
    "ats_trade_count",
    "non_ats_volume",
    "non_ats_trade_count",
    "publication_date",
]


def scheduled_publication(week_start: pd.Series, tier: pd.Series) -> pd.Series:
    """FINRA's schedule: Friday of the week + 14 days (T1) or + 28 days (others), rolled to the next Monday."""
    ws = pd.to_datetime(week_start)
    lag = np.where(tier.astype(str).str.upper().to_numpy() == "T1", 14, 28)
    friday_plus = ws + pd.to_timedelta(4 + lag, unit="D")
    to_monday = (7 - friday_plus.dt.day_of_week) % 7
    return (friday_plus + pd.to_timedelta(to_monday, unit="D")).astype("datetime64[s]")


def _records(file: str, text: str) -> tuple[pd.DataFrame, list[str] | None, list[str] | None]:
    if text.lstrip()[:1] in ("[", "{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputFileError(file, exc.lineno, f"invalid JSON ({exc.msg})") from None
        if isinstance(doc, dict):
            doc = doc.get("data", doc.get("results"))
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise InputFileError(file, None, "JSON must be a list of weeklySummary records")
        lowered = [{str(k).lower(): ("" if v is None else str(v)) for k, v in r.items()} for r in doc]
        df = pd.DataFrame(lowered)
        for i, r in enumerate(lowered):
            miss = [c for c in _REQ if c not in r]
            if miss:
                raise InputFileError(file, i + 1, f"record lacks field {miss[0]!r}")
        if not len(df):
            df = pd.DataFrame({c: pd.Series([], dtype=str) for c in _REQ})
        df = df.reindex(columns=list(_REQ) + [c for c in _OPT if c in df.columns]).fillna("")
        df = df.astype(str)
        df["_line"] = np.arange(1, len(df) + 1)
        return df, None, [json.dumps(r) for r in doc]
    df, lines = read_csv_text(file, text, required=_REQ, optional=_OPT)
    return df, lines, None


def parse_otc_weekly(file: str, text: str, symmap: pd.DataFrame) -> Parsed:
    df, lines, raw_fb = _records(file, text)
    code = df["summarytypecode"].str.upper()
    firm = code.str.endswith("_FIRM").to_numpy()
    df, code = df.loc[~firm].reset_index(drop=True), code[~firm].reset_index(drop=True)
    raw_fb = [r for r, f in zip(raw_fb, firm) if not f] if raw_fb is not None else None
    line_no = df["_line"].to_numpy()
    week = parse_dates(file, df, "summarystartdate", label="summaryStartDate")
    qty = parse_numeric(file, df, "totalweeklysharequantity", label="totalWeeklyShareQuantity")
    trades = parse_numeric(file, df, "totalweeklytradecount", label="totalWeeklyTradeCount")
    upd = None
    if "lastupdatedate" in df.columns:
        has = (df["lastupdatedate"] != "").to_numpy()
        upd = pd.Series(pd.NaT, index=df.index, dtype="datetime64[s]")
        if has.any():
            upd[has] = parse_dates(file, df.loc[has].reset_index(drop=True), "lastupdatedate", label="lastUpdateDate").to_numpy()
    frame = pd.DataFrame(
        {"date": week, "symbol": df["issuesymbolidentifier"].to_numpy(), "tier": df["tieridentifier"].replace("", None).to_numpy(),
         "code": code.to_numpy(), "qty": qty, "trades": trades,
         "updated": upd.to_numpy() if upd is not None else pd.Series(pd.NaT, index=df.index, dtype="datetime64[s]")}
    )
    frame = apply_symbol_map(frame, symmap)
    dup, dup_reason = duplicate_rejects(
        frame[["date", "symbol", "code"]], line_no,
        ("summaryStartDate", "symbol", "summaryTypeCode"),
    )
    known = frame["code"].isin([_ATS, _OTC]).to_numpy()
    checks = [
        ((frame["symbol"].astype(str).str.strip() == "").to_numpy(), "empty issueSymbolIdentifier"),
        (~known, lambda ix: [f"unknown summaryTypeCode {frame['code'].iat[i]!r} (expected {_ATS}, {_OTC} or *_FIRM)" for i in ix]),
        ((frame["date"].dt.day_of_week != 0).to_numpy(),
         lambda ix: [f"summaryStartDate {frame['date'].iat[i]:%Y-%m-%d} is not a Monday" for i in ix]),
        (qty < 0, lambda ix: [f"negative totalWeeklyShareQuantity {qty[i]:.0f}" for i in ix]),
        (trades < 0, lambda ix: [f"negative totalWeeklyTradeCount {trades[i]:.0f}" for i in ix]),
        (dup, dup_reason),
    ]
    bad, found = collect_rejects(checks, len(frame))
    rows = _combine(frame.loc[~bad])
    cover = rows[["week_start_date", "symbol"]].reset_index(drop=True)
    return Parsed(
        "finra_otc_weekly",
        rows,
        cover,
        rejects_frame(found, line_no, lines, raw_fb),
        coalesce_existing=("tier", "ats_volume", "ats_trade_count", "non_ats_volume", "non_ats_trade_count"),
        greatest_existing=("publication_date",),
    )


def _combine(frame: pd.DataFrame) -> pd.DataFrame:
    if not len(frame):
        return pd.DataFrame({c: pd.Series([], dtype="float64") for c in _COLS}).astype(
            {"week_start_date": "datetime64[s]", "publication_date": "datetime64[s]", "symbol": str, "tier": object}
        )
    ats = frame[frame["code"] == _ATS].set_index(["date", "symbol"])
    otc = frame[frame["code"] == _OTC].set_index(["date", "symbol"])
    keys = ats.index.union(otc.index)
    out = pd.DataFrame(index=keys)
    out["tier"] = ats["tier"].reindex(keys).combine_first(otc["tier"].reindex(keys))
    out["ats_volume"] = ats["qty"].reindex(keys)
    out["ats_trade_count"] = ats["trades"].reindex(keys)
    out["non_ats_volume"] = otc["qty"].reindex(keys)
    out["non_ats_trade_count"] = otc["trades"].reindex(keys)
    upd = pd.concat([ats["updated"].reindex(keys), otc["updated"].reindex(keys)], axis=1).max(axis=1)
    out = out.reset_index().rename(columns={"date": "week_start_date"})
    sched = scheduled_publication(out["week_start_date"], out["tier"].fillna(""))
    upd = pd.Series(pd.to_datetime(upd.to_numpy()), index=out.index)
    out["publication_date"] = upd.where(upd.notna(), sched).astype("datetime64[s]")
    return out[_COLS]
