"""Overfitting and robustness statistics for walk-forward studies: pure numpy/scipy functions, no I/O.

* Sharpe: :func:`probabilistic_sharpe_ratio` (Bailey & López de Prado 2012), :func:`expected_max_sharpe`,
  :func:`deflated_sharpe_ratio`, :func:`deflated_sharpe_from_study` (Bailey & López de Prado 2014),
  :func:`sharpe_stats`, :func:`excess_t_stat`.
* Overfitting: :func:`probability_of_backtest_overfitting` (CSCV; Bailey, Borwein, López de Prado & Zhu 2017),
  :func:`cpcv_pbo` (the same over combinatorial purged CV splits, with the stitched out-of-sample paths).
* Dependence-aware inference on overlapping trades (``_inference``): :func:`daily_excess` (the daily excess series
  of stitched trades), :func:`hac_mean` (Newey-West), :func:`block_bootstrap_mean` (stationary bootstrap),
  :func:`daily_psr`, :func:`minimum_detectable_effect`, and :func:`dependent_inference` (all of them at once).
* Reality check across a search: :func:`spa_test` (Hansen's SPA over every distinct configuration tried).
* Robustness: of a portfolio, :func:`equity_bootstrap` (block bootstrap of its daily returns, with the drawdown
  distribution; its point estimates are :func:`equity_point`'s); :func:`cost_stress`, :func:`flag_fragile`,
  :func:`cost_stress_wording`; :func:`rule_validation` (Mann–Whitney U + Benjamini–Hochberg) of
  :func:`rule_conditions` on the :func:`closed_trade_events` (:func:`validate_rules`); of a trade list taken one
  at a time, :func:`bootstrap_ci`.
* Decision: :func:`verdict`.

The implementations live in ``optimizer/validate/_*.py`` and ``verdict.py``; import them from here.
"""

from __future__ import annotations

from optimizer.validate._inference import (  # noqa: F401 (re-exports, see __all__)
    MDE,
    TRADING_DAYS,
    BootstrapMean,
    DailyExcess,
    DependentInference,
    HACResult,
    block_bootstrap_mean,
    daily_excess,
    daily_psr,
    dependent_inference,
    hac_mean,
    minimum_detectable_effect,
    newey_west_lags,
    politis_white_block,
)
from optimizer.validate._pbo import (  # noqa: F401
    CPCVResult,
    PBOResult,
    cpcv_pbo,
    probability_of_backtest_overfitting,
)
from optimizer.validate._reality import RealityCheck, distinct_columns, spa_test  # noqa: F401
from optimizer.validate._robust import (  # noqa: F401
    BOOTSTRAP_STATS,
    CI,
    EquityBootstrap,
    bootstrap_ci,
    cost_stress,
    closed_trade_events,
    cost_stress_wording,
    equity_bootstrap,
    equity_point,
    flag_fragile,
    max_drawdown,
    rule_conditions,
    rule_validation,
    total_return,
    validate_rules,
)
from optimizer.validate._sharpe import (  # noqa: F401
    DSRResult,
    deflated_sharpe_from_study,
    deflated_sharpe_ratio,
    excess_t_stat,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    sharpe_stats,
)
from optimizer.validate.verdict import Verdict, verdict  # noqa: F401

from optimizer.validate import _inference, _pbo, _reality, _robust, _sharpe, verdict as _verdict  # noqa: E402

__all__ = [*_sharpe.__all__, *_pbo.__all__, *_robust.__all__, *_inference.__all__, *_reality.__all__,
           *_verdict.__all__]
