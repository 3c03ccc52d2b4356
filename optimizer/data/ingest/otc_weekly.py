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
* Row invariants (rejected, or fatal under strict): a valid symbol, a known type code, summaryStartDate a
  Monday between 1990-01-02 and today, 0 <= quantities and trade counts <= 1e13, a lastUpdateDate (when given) not before the
  week ends (its Friday: figures cannot be public before the week they describe -- such a row would leak the
  future into daily_metrics) and not in the future, one record per (week, symbol, type).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.errors import InputFileError
from optimizer.data.ingest._common import (
    EARLIEST_DATE,
    MAX_VOLUME,
    Col,
    Ctx,
    Plan,
    Prep,
    Spec,
    Summary,
    csv_header,
    date_rules,
    frame_relation,
    lines_relation,
    load_json,
    rejects_sql,
    repr_sql,
    sql_str,
    unread_warnings,
)
from optimizer.data.ingest._source import Lines, RawFile

__all__ = ["JSON_OK", "prepare", "spec", "plan", "scheduled_publication", "PUBLICATION_LAG_DAYS"]

JSON_OK = True
_REQ = (
    "issuesymbolidentifier",
    "tieridentifier",
    "summarystartdate",
    "totalweeklysharequantity",
    "totalweeklytradecount",
    "summarytypecode",
)
_OPT = ("lastupdatedate",)
# FINRA weeklySummary fields not read, without a warning: descriptive (names, firm ids) or other dates / sums
KNOWN = ("issueName", "tierDescription", "marketParticipantName", "MPID", "firmCRDNumber", "productTypeCode",
         "weekStartDate", "initialPublishedDate", "lastReportedDate", "totalNotionalSum")
_NAMES = {
    "issuesymbolidentifier": "symbol", "tieridentifier": "tier", "summarystartdate": "week",
    "totalweeklysharequantity": "qty", "totalweeklytradecount": "trades", "summarytypecode": "code",
    "lastupdatedate": "updated",
}
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
    "source_file",
]
# Days from the week's Monday to FINRA's scheduled publication: Friday + 14 (T1) / + 28 days, next Monday.
PUBLICATION_LAG_DAYS = {"T1": 21, "other": 35}


def scheduled_publication(week_start: pd.Series, tier: pd.Series) -> pd.Series:
    """FINRA's schedule: Friday of the week + 14 days (T1) or + 28 days (others), rolled to the next Monday."""
    ws = pd.to_datetime(week_start)
    lag = np.where(tier.astype(str).str.upper().to_numpy() == "T1", 14, 28)
    friday_plus = ws + pd.to_timedelta(4 + lag, unit="D")
    to_monday = (7 - friday_plus.dt.day_of_week) % 7
    return (friday_plus + pd.to_timedelta(to_monday, unit="D")).astype("datetime64[s]")


def _json_frame(file: str, text: str) -> tuple[pd.DataFrame, list[str]]:
    doc = load_json(file, text)
    if isinstance(doc, dict):
        doc = doc.get("data", doc.get("results"))
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise InputFileError(file, None, "JSON must be a list of weeklySummary records")
    rows = []
    unread: dict[str, None] = {}
    for i, r in enumerate(doc):
        low = {str(k).lower(): ("" if v is None else str(v)) for k, v in r.items()}
        unread.update((str(k), None) for k in r if str(k).lower() not in _REQ + _OPT)
        miss = [c for c in _REQ if c not in low]
        if miss:
            raise InputFileError(file, i + 1, f"record lacks field {miss[0]!r}")
        rows.append({"line": i + 1, "raw": json.dumps(r), **{f"t_{_NAMES[c]}": low.get(c, "").strip() for c in _REQ + _OPT}})
    cols = ["line", "raw", *[f"t_{_NAMES[c]}" for c in _REQ + _OPT]]
    return pd.DataFrame(rows, columns=cols).astype({c: str for c in cols if c != "line"}), list(unread)


def prepare(ctx: Ctx, raw: RawFile, fid: int, lines: Lines | None, text: str | None) -> Prep:
    if text is not None:
        frame, unread = _json_frame(raw.file, text)
        return Prep(("json", fid), frame=frame, warnings=unread_warnings("otc-weekly", raw.file, unread, KNOWN, "record field"))
    header = lines.first if lines.first_no == 1 else ""
    unread = []
    index, ncols = csv_header(raw.file, header, required=_REQ, optional=_OPT, unread=unread)
    return Prep(("csv", tuple(sorted((_NAMES[k], v) for k, v in index.items())), ncols),
                warnings=unread_warnings("otc-weekly", raw.file, unread, KNOWN))


def spec(ctx: Ctx, sig: tuple, fids: list[int], preps: dict) -> Spec:
    if sig[0] == "json":
        rel, ncols, count_error = frame_relation(ctx, sig[1], preps[sig[1]].frame, 7), 7, "expected %d fields, found %d"
    else:
        index, ncols = dict(sig[1]), sig[2]
        rel = lines_relation(index, ",", fids)
        count_error = "expected %d comma-separated fields, found %d"
        if "updated" not in index:
            rel = f"(SELECT *, '' AS t_updated FROM {rel})"
    cols = [
        Col("week", "date", "summaryStartDate"), Col("symbol", "symbol", "issueSymbolIdentifier"),
        Col("tier", "text", required=False), Col("qty", "number", "totalWeeklyShareQuantity"),
        Col("trades", "number", "totalWeeklyTradeCount"), Col("code", "upper", required=False),
        Col("updated", "date", "lastUpdateDate", required=False),
    ]
    code = "coalesce(\"code\", '')"
    week_end = '("week" + 4)'
    rejects = [
        (f"{code} NOT IN ('{_ATS}', '{_OTC}')",
         f"printf('unknown summaryTypeCode %s (expected {_ATS}, {_OTC} or *_FIRM)', {repr_sql(code)})"),
        ('isodow("week") <> 1', "printf('summaryStartDate %s is not a Monday', strftime(\"week\", '%Y-%m-%d'))"),
        *date_rules(ctx, '"week"', "summaryStartDate", EARLIEST_DATE, session=False),
        ('"qty" < 0', "printf('negative totalWeeklyShareQuantity %.0f', \"qty\")"),
        ('"trades" < 0', "printf('negative totalWeeklyTradeCount %.0f', \"trades\")"),
        (f'"qty" > {MAX_VOLUME:g}', f"printf('totalWeeklyShareQuantity %g is above the maximum {MAX_VOLUME:g}', \"qty\")"),
        (f'"trades" > {MAX_VOLUME:g}', f"printf('totalWeeklyTradeCount %g is above the maximum {MAX_VOLUME:g}', \"trades\")"),
        (f'"updated" < {week_end}',
         "printf('lastUpdateDate %s is before the week ends (%s): figures cannot be published before the week they "
         f"describe', strftime(\"updated\", '%Y-%m-%d'), strftime({week_end}, '%Y-%m-%d'))"),
        (f"\"updated\" > DATE '{ctx.today}'",
         f"printf('lastUpdateDate %s is in the future (today in New York is {ctx.today})', strftime(\"updated\", '%Y-%m-%d'))"),
    ]
    # firm-level records (ATS_W_FIRM, OTC_W_FIRM, ...) are not symbol data: skipped before any check. A row too
    # short to hold the type code (NULL) is kept, so the field-count check fails its file (it was dropped silently)
    return Spec(rel, cols, ncols, count_error, "week", ("week", "symbol", "code"),
                ("summaryStartDate", "symbol", "summaryTypeCode"), rejects=rejects,
                where="NOT coalesce(ends_with(upper(\"t_code\"), '_FIRM'), false)", raw_in_rows=sig[0] == "json")


def plan(ctx: Ctx, sig: tuple, sp: Spec, table: str, fid: int, prep: Prep, s: Summary, file: str) -> Plan:
    """ATS and non-ATS records of a (week, symbol) become one row; one side in the file keeps the stored other
    side; the publication date is the later of the stored and the new one."""
    lag_t1, lag_other = PUBLICATION_LAG_DAYS["T1"], PUBLICATION_LAG_DAYS["other"]
    combine = f"""
CREATE OR REPLACE TEMP TABLE _ing_otc AS
WITH c AS (
    SELECT "week" AS week_start_date, "symbol" AS symbol,
           coalesce(max("tier") FILTER (WHERE "code" = '{_ATS}'), max("tier") FILTER (WHERE "code" = '{_OTC}')) AS tier,
           CAST(max("qty") FILTER (WHERE "code" = '{_ATS}') AS BIGINT) AS ats_volume,
           CAST(max("trades") FILTER (WHERE "code" = '{_ATS}') AS BIGINT) AS ats_trade_count,
           CAST(max("qty") FILTER (WHERE "code" = '{_OTC}') AS BIGINT) AS non_ats_volume,
           CAST(max("trades") FILTER (WHERE "code" = '{_OTC}') AS BIGINT) AS non_ats_trade_count,
           max("updated") AS updated
    FROM {table} WHERE _fid = {int(fid)} AND _reason IS NULL GROUP BY 1, 2
), n AS (
    SELECT *, coalesce(updated, CAST(week_start_date + CASE WHEN upper(coalesce(tier, '')) = 'T1' THEN {lag_t1} ELSE {lag_other} END AS DATE))
              AS publication_date
    FROM c
)
SELECT n.week_start_date, n.symbol, coalesce(n.tier, o.tier) AS tier,
       coalesce(n.ats_volume, o.ats_volume) AS ats_volume, coalesce(n.ats_trade_count, o.ats_trade_count) AS ats_trade_count,
       coalesce(n.non_ats_volume, o.non_ats_volume) AS non_ats_volume,
       coalesce(n.non_ats_trade_count, o.non_ats_trade_count) AS non_ats_trade_count,
       CASE WHEN o.publication_date IS NULL THEN n.publication_date ELSE greatest(n.publication_date, o.publication_date) END
           AS publication_date
FROM n LEFT JOIN finra_otc_weekly o ON o.week_start_date = n.week_start_date AND o.symbol = n.symbol
"""
    n_rows = int(ctx.con.execute(
        f'SELECT count(*) FROM (SELECT DISTINCT "week", "symbol" FROM {table} WHERE _fid = {int(fid)} AND _reason IS NULL)'
    ).fetchone()[0])
    p = Plan(
        "finra_otc_weekly", _COLS,
        f"SELECT *, {sql_str(Path(file).name)} FROM _ing_otc ORDER BY week_start_date, symbol",
        "DELETE FROM finra_otc_weekly AS t USING _ing_otc AS k WHERE t.week_start_date = k.week_start_date AND t.symbol = k.symbol",
        n_rows, s.n_rejects, s.first_reject, rejects_sql(sp, table, fid),
    )
    p.before_write.append(combine)
    return p
