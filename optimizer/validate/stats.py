"""Overfitting and robustness statistics for walk-forward studies: pure numpy/scipy functions, no I/O.

* Sharpe: :func:`probabilistic_sharpe_ratio` (Bailey & López de Prado 2012), :func:`expected_max_sharpe`,
  :func:`deflated_sharpe_ratio`, :func:`deflated_sharpe_from_study` (Bailey & López de Prado 2014),
  :func:`sharpe_stats`, :func:`excess_t_stat`.
* Overfitting: :func:`probability_of_backtest_overfitting` (CSCV; Bailey, Borwein, López de Prado & Zhu 2017).
* Robustness of a trade list: :func:`bootstrap_ci`, :func:`trade_order_shuffle`, :func:`cost_stress`,
  :func:`flag_fragile`, :func:`rule_validation` (Mann–Whitney U + Benjamini–Hochberg).
* Decision: :func:`verdict`.

The implementations live in ``optimizer/validate/_*.py`` and ``verdict.py``; import them from here.
"""

from __future__ import annotations

from optimizer.validate._pbo import PBOResult, probability_of_backtest_overfitting  # noqa: F401 (re-exports, see __all__)
from optimizer.validate._robust import (  # noqa: F401
    BOOTSTRAP_STATS,
    CI,
    ShuffleResult,
    bootstrap_ci,
    cost_stress,
    flag_fragile,
    max_drawdown,
    rule_validation,
    total_return,
    trade_order_shuffle,
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

from optimizer.validate import _pbo, _robust, _sharpe, verdict as _verdict  # noqa: E402

__all__ = [*_sharpe.__all__, *_pbo.__all__, *_robust.__all__, *_verdict.__all__]
