"""Settings read from the environment, using the existing darkpool pipeline's variable names.

Nothing here is global mutable state: ``Settings.from_env()`` returns a frozen snapshot that callers pass on.
API keys are held only in memory; ``Settings.public()`` is the redacted view for logs and study attributes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

__all__ = ["Settings", "default_db_path", "DEFAULT_STORAGE"]

DEFAULT_DB = "output/darkpool.duckdb"
DEFAULT_STORAGE = "sqlite:///output/studies.db"

_SECRET = {"polygon_api_key", "finra_api_key", "finra_api_secret"}


def default_db_path() -> Path:
    """``$ACCUMOPT_DB`` or ``output/darkpool.duckdb``."""
    return Path(os.environ.get("ACCUMOPT_DB", DEFAULT_DB))


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
    min_lit_volume: int = 10_000
    market_tz: str = "America/New_York"
    rth_start: str = "09:30"
    rth_end: str = "16:15"

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
            elif f.name == "min_lit_volume":
                try:
                    kw[f.name] = int(raw)
                except ValueError:
                    from optimizer.errors import ParameterError

                    raise ParameterError(f"MIN_LIT_VOLUME must be an integer, got MIN_LIT_VOLUME={raw!r}") from None
            else:
                kw[f.name] = raw
        return cls(**kw)  # type: ignore[arg-type]

    def public(self) -> dict[str, object]:
        """Every setting with secrets redacted: safe for logs, the database and study attributes."""
        out: dict[str, object] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = ("***" if v else None) if f.name in _SECRET else v
        return out
