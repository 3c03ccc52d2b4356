"""Network fetchers (stdlib ``urllib`` only). They download raw files into a cache directory; ``accumopt ingest``
(``optimizer.data.ingest.ingest_paths``) stores them. Nothing here writes to the database.

* ``fetch_finra_short``: FINRA Reg SHO daily files ``{FINRA_CDN_URL}/{FAMILY}shvol{YYYYMMDD}.txt`` for every NYSE
  session; a cached FINRA file is not downloaded again (published files do not change). HTTP 404 means no
  file that day: skipped and listed in ``.missing`` (as "not published yet" for a session whose file is not due,
  ``calendar.tonight_session``). Every fetcher refuses an ``end`` after today in New York. An answer that is not a
  FINRA file (an HTML error page sent with status 200) is a FetchError and is not cached; such a file cached before
  is downloaded again.
* ``fetch_finra_api``: the FINRA Query API dataset otcMarket/regShoDaily (OAuth2 client credentials). Rows of
  one (date, symbol) reported under several ``marketCode`` values are summed into one row with
  ``facility = 'API'`` and ``market`` = the sorted codes joined by ','; the consolidated view uses API rows only
  where no CNMS or per-facility row exists. The result is also written as a tidy CSV that the ``finra-short``
  ingest accepts. A record whose short or total quantity is not a number (null, text) is a FetchError, never a 0.
* ``fetch_polygon_prices``: Polygon daily aggregates (``adjusted=true``), saved as one JSON per ticker that the
  ``prices`` ingest accepts (an index such as ``^VIX`` is requested as Polygon's ``I:VIX``, saved with volume 0).
  Downloaded again by default (adjusted history changes after splits); ``use_cache=True`` reuses a saved file.

An answer is read in chunks up to ``Settings.max_decompressed_mb`` MiB (MAX_DECOMPRESSED_MB) and refused beyond: memory
stays bounded whatever a server sends.
Retries: HTTP 5xx / 429, timeouts, connection errors and bodies cut short (``IncompleteRead``) are retried ``max_retries`` times with exponential
backoff ``base_delay * 2**attempt`` seconds. Secrets (API keys, the client secret, the bearer token) never
appear in file names, logs or messages: every error text passes through :func:`redact`.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from optimizer.data.calendar import (
    FINRA_PUBLISHED_BY, DateLike, as_date, market_today, nyse_sessions, tonight_session,
)
from optimizer.settings import Settings
from optimizer.errors import AccumoptError, ParameterError, quoted
from optimizer.paths import atomic_write
from optimizer.data.ingest.finra_short import FAMILIES
from optimizer.data.symbols import canonical_or_none, canonical_symbol
from optimizer.data.universe import refuse_repeats

__all__ = [
    "FetchError",
    "FetchedFiles",
    "redact",
    "http_request",
    "fetch_finra_short",
    "fetch_finra_api",
    "fetch_polygon_prices",
    "REGSHO_API_PATH",
]

REGSHO_API_PATH = "/data/group/otcMarket/name/regShoDaily"
_API_COLUMNS = {
    "tradeReportDate": "date",
    "securitiesInformationProcessorSymbolIdentifier": "symbol",
    "shortParQuantity": "short_volume",
    "shortExemptParQuantity": "short_exempt_volume",
    "totalParQuantity": "total_volume",
    "marketCode": "market",
}


class FetchError(AccumoptError):
    """A download failed for good (after retries, or a non-retryable HTTP status). The text holds no secret."""


class FetchedFiles(list):
    """The fetched file paths (a plain ``list[Path]``), plus ``.missing`` [(name, reason)], ``.downloaded`` and
    ``.cached`` (paths)."""

    def __init__(self, files: Iterable[Path] = (), missing: Iterable[tuple[str, str]] = (),
                 downloaded: Iterable[Path] = (), cached: Iterable[Path] = ()) -> None:
        super().__init__(files)
        self.missing: list[tuple[str, str]] = list(missing)
        self.downloaded: list[Path] = list(downloaded)
        self.cached: list[Path] = list(cached)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret (and its URL-quoted form) replaced by ``***``."""
    out = str(text)
    for s in secrets:
        if not s:
            continue
        for form in {s, urllib.parse.quote(s, safe=""), urllib.parse.quote_plus(s)}:
            out = out.replace(form, "***")
    return out


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    return isinstance(exc, (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError,
                            http.client.HTTPException))


def _is_finra_file(head: bytes) -> bool:
    """Whether the first bytes of a download are a FINRA daily file (its header, or gzip, which the ingest reads)
    and not, say, an HTML error page answered with status 200."""
    return head[:2] == b"\x1f\x8b" or head.lstrip(b"\xef\xbb\xbf").lower().startswith(b"date|symbol|")


def _first_line(body: bytes) -> str:
    line = body.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    return quoted(line)


def http_request(
    url: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    max_retries: int = 4,
    base_delay: float = 1.0,
    secrets: Sequence[str | None] = (),
    sleep: Callable[[float], None] = time.sleep,
    allow_404: bool = False,
    max_bytes: int | None = None,
) -> bytes | None:
    """One HTTP request with retries (see the module doc). Returns the body, or None on 404 when ``allow_404``.
    ``max_bytes``: the body is read in chunks and refused (a FetchError, not retried) once it is larger."""
    if max_retries < 0:
        raise ParameterError(f"max_retries must be >= 0, got max_retries={max_retries!r}")
    if base_delay < 0:
        raise ParameterError(f"base_delay must be >= 0, got base_delay={base_delay!r}")
    safe_url = redact(url.split("?", 1)[0], secrets)
    last = ""
    for attempt in range(max_retries + 1):
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.read() if max_bytes is None else _read_capped(resp, max_bytes, f"{method} {safe_url}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and allow_404:
                return None
            last = f"HTTP {exc.code} {exc.reason}"
            if not _retryable(exc):
                raise FetchError(redact(f"{method} {safe_url} failed: {last}", secrets)) from None
        except http.client.IncompleteRead as exc:  # the connection dropped inside the body: retried
            last = f"IncompleteRead: the body ended after {len(exc.partial)} bytes, {exc.expected} more expected"
        except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < max_retries:
            sleep(base_delay * (2**attempt))
    raise FetchError(redact(f"{method} {safe_url} failed after {max_retries + 1} attempts: {last}", secrets))


def _read_capped(resp, max_bytes: int, what: str) -> bytes:
    """The body of ``resp`` read in 1 MiB chunks, refused once larger than ``max_bytes`` (memory stays bounded
    whatever the server sends); a body cut short is an IncompleteRead counting every byte read."""
    parts: list[bytes] = []
    n = 0
    try:
        while chunk := resp.read(1 << 20):
            n += len(chunk)
            if n > max_bytes:
                raise FetchError(f"{what}: the answer is larger than {max_bytes >> 20} MiB: refused (set "
                                 "MAX_DECOMPRESSED_MB to allow more)")
            parts.append(chunk)
    except http.client.IncompleteRead as exc:
        raise http.client.IncompleteRead(b"".join(parts) + exc.partial, exc.expected) from None
    left = getattr(resp, "length", None)  # read(n) returns what came when the connection closes early: not raised
    if left:
        raise http.client.IncompleteRead(b"".join(parts), left)
    return b"".join(parts)


def _cap(settings: Settings) -> int:
    """The largest answer a fetcher reads: MAX_DECOMPRESSED_MB, the limit every input file has."""
    return int(settings.max_decompressed_mb) << 20


def _span(start: DateLike, end: DateLike) -> tuple:
    """(start, end) as dates; ParameterError naming the option when one is not a date, end < start, or end is
    after today in New York (no source has a later day; a FINRA fetch would ask for every future session)."""
    d0, d1 = as_date(start, "start"), as_date(end, "end")
    if d1 < d0:
        raise ParameterError(f"end must be >= start, got start={d0}, end={d1}")
    today = market_today()
    if d1 > today:
        raise ParameterError(f"end must be on or before today in New York ({today}), got end={end!r}")
    return d0, d1


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(64)


def _write_atomic(dest: Path, body: bytes) -> None:
    """``body`` to ``dest`` whole: a write that fails (a full disk) leaves neither a torn file, which a later fetch
    would take from the cache, nor a temporary one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, lambda t: t.write_bytes(body))


def fetch_finra_short(
    start: DateLike,
    end: DateLike,
    out_dir: str | Path,
    settings: Settings,
    families: Sequence[str] = ("CNMS",),
    *,
    max_retries: int = 4,
    base_delay: float = 1.0,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchedFiles:
    """Download (or reuse from ``out_dir``) the FINRA daily files of every session in [start, end]."""
    fams = [str(f).upper() for f in families]
    bad = [f for f in fams if f not in FAMILIES]
    if bad:
        raise ParameterError(f"families must be among {', '.join(FAMILIES)}, got families={bad!r}")
    d0, d1 = _span(start, end)
    out = Path(out_dir)
    base = settings.finra_cdn_url.rstrip("/")
    result = FetchedFiles()
    due = tonight_session()  # the latest session whose files are due by now
    for day in nyse_sessions(d0, d1):
        for fam in fams:
            name = f"{fam}shvol{day:%Y%m%d}.txt"
            dest = out / name
            if dest.is_file() and dest.stat().st_size > 0 and _is_finra_file(_head(dest)):
                result.append(dest)
                result.cached.append(dest)
                continue
            body = http_request(
                f"{base}/{name}", timeout=timeout, max_retries=max_retries, base_delay=base_delay, sleep=sleep, allow_404=True,
                max_bytes=_cap(settings),
            )
            if body is None:
                result.missing.append((name, "HTTP 404: no file published for this session" if day.date() <= due else
                                       f"HTTP 404: not published yet (FINRA posts a session's file by "
                                       f"{FINRA_PUBLISHED_BY:%H:%M} New York time)"))
                continue
            if not body:
                result.missing.append((name, "empty response"))
                continue
            if not _is_finra_file(body[:64]):
                raise FetchError(f"GET {base}/{name} returned no FINRA file: its first line is {_first_line(body)} "
                                 "(an error page?); nothing cached")
            _write_atomic(dest, body)
            result.append(dest)
            result.downloaded.append(dest)
    return result


def _finra_token(settings: Settings, *, timeout: float, max_retries: int, base_delay: float, sleep) -> str:
    key, secret = settings.finra_api_key, settings.finra_api_secret
    if not key or not secret:
        raise ParameterError("FINRA_API_KEY and FINRA_API_SECRET must both be set to use the FINRA API")
    basic = base64.b64encode(f"{key}:{secret}".encode()).decode()
    secrets = (key, secret, basic)
    body = http_request(
        settings.finra_token_url,
        method="POST",
        data=b"",
        headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
        timeout=timeout,
        max_retries=max_retries,
        base_delay=base_delay,
        secrets=secrets,
        sleep=sleep,
        max_bytes=_cap(settings),
    )
    try:
        token = json.loads(body or b"{}").get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not token:
        raise FetchError("FINRA token response holds no access_token")
    return str(token)


def fetch_finra_api(
    start: DateLike,
    end: DateLike,
    settings: Settings,
    symbols: Sequence[str] | None = None,
    *,
    out_dir: str | Path | None = "output/raw/finra_api",
    page_size: int = 5000,
    max_pages: int = 10_000,
    max_retries: int = 4,
    base_delay: float = 1.0,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """FINRA regShoDaily rows for [start, end] (optionally only ``symbols``) as a tidy frame
    (date, symbol, short_volume, short_exempt_volume, total_volume, market, facility='API').

    ``symbols`` are read in their canonical form (``BRK/B`` -> ``BRK.B``, an invalid one is a ParameterError) and
    asked for as written and, for a share class, as FINRA writes it (``BRK/B``); those no row came back for are
    listed in ``df.attrs['missing']``.
    Also written to ``out_dir/finra_api_regsho_<start>_<end>.csv`` (path in ``df.attrs['path']``) unless
    ``out_dir`` is None; a run limited to ``symbols`` adds ``_sym<digest of the symbols>`` to the name, so runs
    for other symbols keep their own file.
    """
    if page_size < 1:
        raise ParameterError(f"page_size must be >= 1, got page_size={page_size!r}")
    if symbols is not None:  # one spelling per security (BRK/B, brk.b -> BRK.B); an invalid one is refused by name
        written = [str(s).strip() for s in symbols]
        symbols = [canonical_symbol(s, "symbols") for s in symbols]
        refuse_repeats(",".join(written), written, symbols, "symbols")  # a security listed twice: universe's rule
        if not symbols:
            raise ParameterError("symbols must name at least one symbol (or be None for every symbol), got symbols=[]")
    d0, d1 = _span(start, end)
    kw = dict(timeout=timeout, max_retries=max_retries, base_delay=base_delay, sleep=sleep)
    token = _finra_token(settings, **kw)
    secrets = (settings.finra_api_key, settings.finra_api_secret, token)
    url = settings.finra_api_url.rstrip("/") + REGSHO_API_PATH
    body: dict[str, object] = {
        "limit": page_size,
        "dateRangeFilters": [{"fieldName": "tradeReportDate", "startDate": str(d0), "endDate": str(d1)}],
    }
    if symbols:
        body["domainFilters"] = [
            {"fieldName": "securitiesInformationProcessorSymbolIdentifier", "values": _api_spellings(symbols)}
        ]
    records: list[dict] = []
    for page in range(max_pages):
        body["offset"] = page * page_size
        raw = http_request(
            url,
            method="POST",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json", "Content-Type": "application/json"},
            secrets=secrets,
            max_bytes=_cap(settings),
            **kw,
        )
        try:
            chunk = json.loads(raw or b"[]")
        except ValueError:
            raise FetchError(f"POST {url} returned invalid JSON on page {page + 1}") from None
        if not isinstance(chunk, list):
            raise FetchError(f"POST {url} returned {type(chunk).__name__}, expected a JSON list of records")
        records.extend(chunk)
        if len(chunk) < page_size:
            break
    else:
        raise FetchError(f"POST {url} still had data after max_pages={max_pages} pages of {page_size}")
    df = _tidy_api(records)
    if symbols:  # asked for, yet no row came back (e.g. a symbol FINRA spells otherwise, or none that span)
        got = {canonical_or_none(x) for x in df["symbol"].unique()}
        df.attrs["missing"] = [x for x in symbols if x not in got]
    if out_dir is not None:
        path = Path(out_dir) / f"finra_api_regsho_{d0:%Y%m%d}_{d1:%Y%m%d}{_symbols_tag(symbols)}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = df.assign(date=df["date"].dt.strftime("%Y-%m-%d"))
        atomic_write(path, lambda t: rows.to_csv(t, index=False))
        df.attrs["path"] = str(path)
    return df


def _api_spellings(symbols: Sequence[str]) -> list[str]:
    """The values the API's symbol filter is given for canonical ``symbols``: each as written (``BRK.B``, the CQS
    form) and, for a share class, as FINRA's Reg SHO files write it (``BRK/B``); for a preferred, right or
    when-issued security also in the CQS suffix convention FINRA's Reg SHO files use (``ABR.PRD`` -> ``ABRpD``,
    ``ALL.PRA.CL`` -> ``ALLpA/CL``, ``RIV.RTWI`` -> ``RIVrw``: :func:`_cqs_spelling`). The rows come back in any of
    them and the ingest stores each under the canonical symbol."""
    out: dict[str, None] = {}
    for x in symbols:
        out[x] = None
        if "." in x:
            out[x.replace(".", "/")] = None
            cqs = _cqs_spelling(x)
            if cqs is not None:
                out[cqs] = None
    return list(out)


_CQS_CODES = {"PR": "p", "RT": "r", "WI": "w"}
_CQS_SUFFIX = re.compile(r"((?:PR|RT|WI)+)([A-Z0-9]*)")


def _cqs_spelling(symbol: str) -> str | None:
    """The CQS spelling of a canonical symbol whose first suffix starts with the CMS codes PR / RT / WI (the inverse of
    ``optimizer.data.symbols``' reading of ``ABRpD`` as ``ABR.PRD``), further parts joined by ``/`` as FINRA writes
    them; None for any other symbol, or when the spelling would not read back as ``symbol``."""
    root, _, rest = symbol.partition(".")
    first, *more = rest.split(".") if rest else ("",)
    m = _CQS_SUFFIX.fullmatch(first)
    if not root or m is None:
        return None
    marks = "".join(_CQS_CODES[c] for c in re.findall("PR|RT|WI", m.group(1)))
    cand = root + marks + m.group(2) + "".join("/" + p for p in more)
    return cand if canonical_or_none(cand) == symbol else None


def _symbols_tag(symbols: Sequence[str] | None) -> str:
    """The cache-name suffix of a run limited to ``symbols`` ('' for every symbol): such a file holds only those
    symbols, so runs for other symbols must not overwrite it. A digest of the sorted, upper-cased set in base32
    (letters and the digits 2-7: it can never read as a date in the file name)."""
    if not symbols:
        return ""
    key = ",".join(sorted({str(x).strip().upper() for x in symbols}))
    return "_sym" + base64.b32encode(hashlib.sha256(key.encode()).digest()).decode()[:12].lower()


def _tidy_api(records: list[dict]) -> pd.DataFrame:
    cols = ["date", "symbol", "short_volume", "short_exempt_volume", "total_volume", "market", "facility"]
    if not records:
        return pd.DataFrame({c: pd.Series([], dtype="datetime64[s]" if c == "date" else object) for c in cols})
    raw = pd.DataFrame(records)
    missing = [k for k in _API_COLUMNS if k not in raw.columns and k != "shortExemptParQuantity" and k != "marketCode"]
    if missing:
        raise FetchError(f"FINRA regShoDaily records lack field {missing[0]!r}")
    df = raw.reindex(columns=list(_API_COLUMNS)).rename(columns=_API_COLUMNS)
    for field, c in (("shortParQuantity", "short_volume"), ("shortExemptParQuantity", "short_exempt_volume"),
                     ("totalParQuantity", "total_volume")):
        num = pd.to_numeric(df[c], errors="coerce")
        # a quantity that is not a number is refused, never summed as 0 (a null short volume read as a day without
        # short selling); only the exempt volume may be absent
        bad = num.isna() & ~(df[c].isna() if c == "short_exempt_volume" else False)
        if bad.any():
            i = int(bad.to_numpy().argmax())
            v = df[c].iat[i]
            shown = "None" if v is None or (isinstance(v, float) and v != v) else quoted(v) if isinstance(v, str) else repr(v)
            raise FetchError(f"FINRA regShoDaily record {i + 1} ({str(df['date'].iat[i])[:10]}, {df['symbol'].iat[i]}) "
                             f"has {field} {shown}, not a number: nothing written")
        df[c] = num
    df["date"] = pd.to_datetime(df["date"].astype(str).str[:10], format="%Y-%m-%d")
    df["market"] = df["market"].astype(object).where(df["market"].notna(), "")
    g = df.groupby(["date", "symbol"], sort=True)
    out = g.agg(
        short_volume=("short_volume", "sum"),
        short_exempt_volume=("short_exempt_volume", lambda s: s.sum(min_count=1)),
        total_volume=("total_volume", "sum"),
        market=("market", lambda s: ",".join(sorted({str(m) for m in s if str(m)}))),
    ).reset_index()
    out["facility"] = "API"
    return out[cols]


_SAFE = re.compile(r"[^A-Za-z0-9.\-]")
_MAX_PAGES = 10_000  # Polygon pages of one ticker's aggregates (50,000 bars each: one page holds 190 years of days)


def fetch_polygon_prices(
    symbols: Sequence[str],
    start: DateLike,
    end: DateLike,
    out_dir: str | Path,
    settings: Settings,
    *,
    use_cache: bool = False,
    max_retries: int = 4,
    base_delay: float = 1.0,
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchedFiles:
    """Daily adjusted bars per ticker, saved as ``out_dir/<TICKER>_<start>_<end>.json`` ({"ticker", "results"}).
    An index (``^VIX``) is requested under Polygon's name (``I:VIX``) and saved under its own with volume 0 (index
    bars carry none)."""
    key = settings.polygon_api_key
    if not key:
        raise ParameterError("POLYGON_API_KEY must be set to fetch Polygon prices")
    d0, d1 = _span(start, end)
    base = settings.polygon_base_url.rstrip("/")
    out = Path(out_dir)
    result = FetchedFiles()
    for sym in symbols:
        t = str(sym).strip().upper()
        index = t.startswith("^")  # Polygon names an index I:VIX, and its bars carry no volume
        dest = out / f"{_SAFE.sub('_', t)}_{d0}_{d1}.json"
        if use_cache and dest.is_file() and dest.stat().st_size > 0:
            result.append(dest)
            result.cached.append(dest)
            continue
        url = (
            f"{base}/v2/aggs/ticker/{urllib.parse.quote('I:' + t[1:] if index else t, safe='')}/range/1/day/{d0}/{d1}"
            f"?adjusted=true&sort=asc&limit=50000&apiKey={urllib.parse.quote(key, safe='')}"
        )
        results: list[dict] = []
        seen: set[str] = set()  # the pages read (next_url without the key): a server repeating one is a loop
        while url:
            raw = http_request(
                url, timeout=timeout, max_retries=max_retries, base_delay=base_delay, sleep=sleep, secrets=(key,), allow_404=True,
                max_bytes=_cap(settings),
            )
            if raw is None:
                break
            try:
                doc = json.loads(raw)
            except ValueError:
                raise FetchError(f"Polygon returned invalid JSON for {t}") from None
            if not isinstance(doc, dict):
                raise FetchError(f"Polygon returned {type(doc).__name__}, expected a JSON object for {t}")
            if not isinstance(doc.get("results") or [], list):
                raise FetchError(f"Polygon's 'results' is {type(doc['results']).__name__}, expected a list of bars "
                                 f"for {t}")
            if str(doc.get("status", "OK")).upper() in ("ERROR", "NOT_AUTHORIZED"):
                raise FetchError(redact(f"Polygon refused {t}: {doc.get('error') or doc.get('message') or doc.get('status')}", (key,)))
            results.extend(({"v": 0, **r} if index and isinstance(r, dict) else r) for r in (doc.get("results") or []))
            nxt = doc.get("next_url")
            if nxt and (str(nxt) in seen or len(seen) >= _MAX_PAGES):
                why = "repeats a page already read (a paging loop)" if str(nxt) in seen else f"goes past {_MAX_PAGES} pages"
                raise FetchError(redact(f"Polygon's next_url for {t} {why}: {str(nxt).split('?', 1)[0]}", (key,)))
            if nxt:
                seen.add(str(nxt))
            url = f"{nxt}{'&' if '?' in nxt else '?'}apiKey={urllib.parse.quote(key, safe='')}" if nxt else ""
        if not results:
            result.missing.append((t, "no bars returned"))
            continue
        _write_atomic(dest, json.dumps({"ticker": t, "results": results}).encode())
        result.append(dest)
        result.downloaded.append(dest)
    return result
