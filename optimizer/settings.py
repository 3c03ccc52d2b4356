"""Settings read from the environment, using the existing darkpool pipeline's variable names.

Nothing here is global mutable state: ``Settings.from_env()`` returns a frozen snapshot that callers pass on.
API keys are held only in memory; ``Settings.public()`` is the redacted view for logs and study attributes.
The scanner's defaults come from the pipeline's SCANNER_* variables (SCANNER_DB_PATH, SCANNER_LOOKBACK_DAYS,
SCANNER_TREND_DAYS, SCANNER_TOP_N, SCANNER_OUTLIER_Z, SCANNER_VOLUME_Z, SCANNER_RATIO_Z, SCANNER_EXPORT_FULL,
SCANNER_INFERENCE_VERSION); a flag on ``accumopt scan`` wins over the variable, the variable over the default.
A value that breaks its rule is refused with the variable's name: ``SCANNER_TOP_N must be an integer >= 1``.
POLYGON_BASE_URL, FINRA_TOKEN_URL, FINRA_API_URL and FINRA_CDN_URL (where the fetch commands send their requests:
test servers, mirrors) must be http:// or https:// URLs with a host.
MARKET_TZ must be an IANA time zone (``America/New_York``); RTH_START / RTH_END (the lit-trades session window) must
be times HH:MM in 00:00..24:00 with RTH_START before RTH_END: a value the ingest could not read, or a window that
keeps no trade, is refused by name when the settings are read, not blamed on the file being ingested.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import zoneinfo
from dataclasses import dataclass, field, fields

from optimizer.errors import ParameterError

__all__ = ["Settings"]

_SECRET = {"polygon_api_key", "finra_api_key", "finra_api_secret"}


@dataclass(frozen=True)
class Settings:
    polygon_api_key: str | None = None
    polygon_base_url: str = "https://api.polygon.io"
    finra_api_key: str | None = None
    finra_api_secret: str | None = None
    finra_token_url: str = "https://ews.fip.finra.org/fip/rest/ews/oauth2/access_token?grant_type=client_credentials"
    finra_api_url: str = "https://api.finra.org"
    finra_cdn_url: str = "https://cdn.finra.org/equity/regsho/daily"
    tickers: tuple[str, ...] = field(default_factory=tuple)
    min_lit_volume: int | None = None  # MIN_LIT_VOLUME; None (unset): a metrics build keeps the stored floor
    market_tz: str = "America/New_York"
    rth_start: str = "09:30"
    rth_end: str = "16:15"
    scanner_db_path: str | None = None
    scanner_lookback_days: int = 90
    scanner_trend_days: int = 3
    scanner_top_n: int = 50
    scanner_outlier_z: float = 2.0
    scanner_volume_z: float = 2.0
    scanner_ratio_z: float = 2.0
    scanner_export_full: bool = True
    scanner_inference_version: str = "Scanner_v1"
    max_decompressed_mb: int = 2048      # ingest: a file may expand to at most this many MiB
    max_expansion_ratio: float = 100.0   # ingest: a gzip may expand at most this many times (decompression bombs)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        kw: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None or raw == "":
                continue
            if f.name == "tickers":
                kw[f.name] = tuple(t.strip().upper() for t in raw.replace(";", ",").split(",") if t.strip())
            elif f.name in _CONVERT:
                kw[f.name] = _CONVERT[f.name](f.name.upper(), raw)
            else:
                kw[f.name] = raw
        start, end = kw.get("rth_start", cls.rth_start), kw.get("rth_end", cls.rth_end)
        if _minutes(str(start)) >= _minutes(str(end)):
            raise ParameterError(f"RTH_START must be before RTH_END (the lit-trades session window would keep no "
                                 f"trade), got RTH_START={start!r}, RTH_END={end!r}")
        return cls(**kw)  # type: ignore[arg-type]

    def public(self) -> dict[str, object]:
        """Every setting with secrets redacted: safe for logs, the database and study attributes."""
        out: dict[str, object] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = ("***" if v else None) if f.name in _SECRET else v
        return out


def _refuse(var: str, rule: str, raw: str) -> None:
    raise ParameterError(f"{var} must be {rule}, got {var}={raw!r}")


def _int(lo: int):
    def conv(var: str, raw: str) -> int:
        try:
            v = int(raw.strip())
        except ValueError:
            v = None
        if v is None or v < lo:
            _refuse(var, f"an integer >= {lo}", raw)
        return v  # type: ignore[return-value]
    return conv


def _positive_float(var: str, raw: str) -> float:
    try:
        v = float(raw.strip())
    except ValueError:
        v = float("nan")
    if not (v > 0 and v != float("inf")):
        _refuse(var, "a finite number > 0", raw)
    return v


def _float_at_least(lo: float):
    def conv(var: str, raw: str) -> float:
        try:
            v = float(raw.strip())
        except ValueError:
            v = float("nan")
        if not (v >= lo and v != float("inf")):
            _refuse(var, f"a finite number >= {lo:g}", raw)
        return v
    return conv


def _bool(var: str, raw: str) -> bool:
    key = raw.strip().lower()
    if key in ("1", "true", "yes", "on"):
        return True
    if key in ("0", "false", "no", "off"):
        return False
    _refuse(var, "true or false (1/0, yes/no, on/off)", raw)
    return False


# The fewest values the scanner's z-scores may use: a population z over 2 values is always +-1 (or NULL), so a
# lookback / min_periods of 2 would give every symbol the same few scores and rank them by rounding noise.
SCANNER_MIN_SESSIONS = 3

_HHMM = re.compile(r"(\d{2}):(\d{2})")


def _minutes(hhmm: str) -> int:
    h, m = _HHMM.fullmatch(hhmm).groups()  # type: ignore[union-attr]
    return int(h) * 60 + int(m)


def _clock(var: str, raw: str) -> str:
    """A time of day HH:MM in 00:00..24:00 (the lit ingest reads it as ``pd.Timedelta(HH:MM:00)``)."""
    v = raw.strip()
    m = _HHMM.fullmatch(v)
    if m is None or int(m.group(2)) > 59 or _minutes(v) > 24 * 60:
        _refuse(var, "a time HH:MM between 00:00 and 24:00", raw)
    return v


def _url(var: str, raw: str) -> str:
    """A base URL the fetch commands request: http:// or https:// with a host (``urllib`` raised a traceback on
    ``notaurl`` and retried an ``ftp://`` URL five times)."""
    v = raw.strip()
    parts = urllib.parse.urlsplit(v)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        _refuse(var, "an http:// or https:// URL with a host", raw)
    return v


def _time_zone(var: str, raw: str) -> str:
    v = raw.strip()
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        _refuse(var, "an IANA time zone such as America/New_York", raw)
    return v


_CONVERT = {
    "polygon_base_url": _url,
    "finra_token_url": _url,
    "finra_api_url": _url,
    "finra_cdn_url": _url,
    "market_tz": _time_zone,
    "rth_start": _clock,
    "rth_end": _clock,
    "min_lit_volume": _int(0),
    "max_decompressed_mb": _int(1),
    "max_expansion_ratio": _float_at_least(1.0),
    "scanner_lookback_days": _int(SCANNER_MIN_SESSIONS),
    "scanner_trend_days": _int(2),
    "scanner_top_n": _int(1),
    "scanner_outlier_z": _positive_float,
    "scanner_volume_z": _positive_float,
    "scanner_ratio_z": _positive_float,
    "scanner_export_full": _bool,
}
