"""Tests at the seams: bugs that sit where two modules meet, which the unit tests of either module cannot see.

1. A lookahead through the learned regime: VIX missing in the MIDDLE of the series must be forward-filled from the
   past, never back-filled from tomorrow (``engine/_regime.regime_features``), and the learned regime built on it
   must not change when the future is removed.
2. The Deflated Sharpe's trial count at its call site: the walk-forward deflates each window's in-sample winner by
   every configuration the window's study tried, pruned and failed ones included, not only the completed ones.
3. The z-score warm-up in fold placement: a study's first fold starts only once the longest z-window of its space
   has filled, so no fold has sessions without a z-score (and therefore without signals) biasing the objective.
4. A trial's configuration record saved on its own as a parameters file is read as that record (``backtest
   --params`` runs the trial's span, regime filter and min_periods), not as a loose file.
5. A loose parameters file's span end and min_periods take effect in ``backtest``, ``sandbox`` and ``signals``
   (they were read and dropped), and its span start reaches the sandbox as it reaches the backtest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

import optimizer.validate.walkforward as wfmod
from optimizer.engine._regime import regime_features
from optimizer.engine.context import compute_context
from optimizer.engine.features import FeatureCache
from optimizer.engine.panel import Panel
from optimizer.engine.score import ScoreParams, display_score
from optimizer.study import load_study_data, prepare_data
from optimizer.study.spec import load_spec
from optimizer.validate.walkforward import run_walkforward

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "studies").glob("*.toml"))


# ---- 1. VIX gaps in the middle of the series ------------------------------------------------------------------

def _market_panel(T: int = 200, seed: int = 4) -> Panel:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2023-01-02", periods=T).to_numpy().astype("datetime64[D]")
    c = 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, (T, 2)), axis=0))
    fields = {"open": c, "close": c, "high": c * 1.01, "low": c * 0.99, "volume": rng.uniform(1e6, 2e6, (T, 2))}
    spy = 400 * np.exp(np.cumsum(rng.normal(0.0004, 0.012, T)))
    vix = 18 + 6 * np.sin(np.arange(T) / 9.0) + rng.normal(0, 1.5, T)
    vix[130:134] = np.nan  # four sessions without VIX, well after the start
    vix[171:173] = np.nan
    market = {"spy_close": spy, "spy_open": spy, "spy_high": spy * 1.006, "spy_low": spy * 0.994,
              "spy_volume": rng.uniform(5e7, 1e8, T), "vix": vix}
    return Panel(dates=dates, symbols=("AAA", "BBB"), fields=fields, market=market, sectors=("XLK", None))


def test_vix_gap_in_the_middle_is_filled_from_the_past_only():
    p = _market_panel()
    m = p.market
    iv = regime_features(m["spy_close"], m["spy_high"], m["spy_low"], m["spy_volume"], m["vix"])["iv"].to_numpy()
    # forward fill: every missing day carries the last VIX before the gap
    np.testing.assert_array_equal(iv[130:134], np.full(4, m["vix"][129]))
    np.testing.assert_array_equal(iv[171:173], np.full(2, m["vix"][170]))
    for t in (130, 131, 133, 171, 172):
        mk = {k: v[: t + 1] for k, v in m.items()}
        cut = regime_features(mk["spy_close"], mk["spy_high"], mk["spy_low"], mk["spy_volume"], mk["vix"])
        np.testing.assert_array_equal(cut["iv"].to_numpy(), iv[: t + 1], err_msg=f"iv changed at t={t}")


@pytest.mark.slow
def test_learned_regime_does_not_see_tomorrows_vix():
    p = _market_panel()
    kw = {"min_train": 60, "refit_every": 10}
    full = compute_context(p, kw)
    assert (full["learned_regime"][130:175] != -1).all()  # the labels exist where the gaps are: not vacuous
    for t in (129, 130, 131, 132, 133, 170, 171, 172):
        cut = compute_context(p.slice(0, t + 1), kw)
        for k in ("learned_regime", "regime", "regime_vix"):
            np.testing.assert_array_equal(cut[k], full[k][: t + 1], err_msg=f"{k} changed at t={t}")


# ---- 2. the Deflated Sharpe counts every configuration tried --------------------------------------------------

@pytest.mark.slow
def test_walkforward_deflates_by_every_trial_tried_not_only_completed(tmp_path, monkeypatch, null_db):
    spec = load_spec(ROOT / "studies" / "demo.toml")
    calls: list[dict] = []
    real = wfmod.deflated_sharpe_from_study

    def spy(returns, trial_sharpes, n_trials, *a, **k):
        calls.append({"n_trials": int(n_trials), "n_sharpes": len(trial_sharpes)})
        return real(returns, trial_sharpes, n_trials, *a, **k)

    monkeypatch.setattr(wfmod, "deflated_sharpe_from_study", spy)
    storage = f"journal:{tmp_path / 'studies.log'}"
    # min_trades 12 prunes the configurations that trade little on a fold, so every window has pruned trials
    spec = spec.__class__(**{**spec.__dict__, "objective": spec.objective.__class__(
        **{**spec.objective.__dict__, "min_trades": 12})})
    res = run_walkforward(spec, null_db, storage, n_trials=12, out_dir=tmp_path / "out")
    st = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "studies.log")))
    checked = 0
    for w, call in zip((w for w in res.windows if np.isfinite(w.dsr_in_sample)), calls):
        trials = optuna.load_study(study_name=w.study_name, storage=st).get_trials(deepcopy=False)
        completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        distinct = {tuple(sorted(t.params.items())) for t in trials}
        assert len(distinct) <= call["n_trials"] <= len(trials), (w.study_name, call, len(distinct), len(trials))
        if len(trials) > len(completed):
            assert call["n_trials"] > len(completed)  # pruned / failed configurations are counted
            checked += 1
    assert calls and checked >= 1  # at least one window had pruned trials and a DSR: the check is not vacuous


# ---- 3. the first fold starts after the z-score warm-up -------------------------------------------------------

@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_first_fold_starts_after_the_longest_z_window_filled(path, synth_db):
    spec = load_spec(path)
    panel, reserve = load_study_data(spec, synth_db)
    data = prepare_data(spec, panel, 0, reserve)
    w = spec.max_z_window()
    first = data.folds[0].test_start
    assert first >= w  # a full window of history before the first scored session
    disp = display_score(FeatureCache(data.panel, min_periods=spec.data.min_periods),
                         ScoreParams(variant="B", z_window=w))
    assert np.isfinite(disp[first]).mean() > 0.8, f"{path.stem}: fold 0 starts before the z-scores exist"


# ---- 4. a configuration record as a parameters file -----------------------------------------------------------

def test_a_bare_configuration_record_as_params_file_is_read_as_the_record(synth_db, tmp_path):
    """A trial's configuration record on its own (``study best``'s ``config``, the ``user_attrs_config`` column of
    ``study export``) saved as the parameters file is that record: ``backtest --params`` runs its panel start, span,
    regime filter and min_periods. Before, it was read as a loose file: the span start became the panel start and
    min_periods and the data end were dropped, so the run was not the trial's."""
    import dataclasses
    import json

    from _cli_helpers import cli, ok

    from optimizer.backtest import backtest
    from optimizer.study.paramsfile import load_params_record

    params = {"variant": "B", "z_window": 15, "buy_threshold": 65, "sell_threshold": 35, "exit": "first_dist",
              "time_stop": 20}
    base = backtest(params, synth_db, "tier1+3", start="2023-02-01", regime="RISK_ON", save=False)
    rec = dataclasses.replace(base.record, signal_start="2023-04-03", min_periods=12)
    bare = tmp_path / "config.json"
    bare.write_text(json.dumps(rec.to_dict()), encoding="utf-8")
    assert load_params_record(bare).record == rec
    want = backtest(rec.params, synth_db, record=rec, save=False).metrics
    got = json.loads(ok(cli("backtest", "--params", bare, "--db", synth_db, "--no-save", "--format", "json")).stdout)
    assert got["start"] == "2023-04-03" and got["config"]["min_periods"] == 12
    assert {k: got[k] for k in want} == pytest.approx(want, rel=0, abs=0, nan_ok=True)


# ---- 5. a loose parameters file's span end and min_periods ----------------------------------------------------

def test_a_loose_params_files_span_end_and_min_periods_take_effect(synth_db, tmp_path, monkeypatch):
    """A hand-written parameters file (no trial record) stating ``span: [start, end]`` and ``min_periods``: backtest
    runs that span with that min_periods, and the sandbox draws the trades that backtest reports for the symbol
    (signals counted from the file's start). Before, ``end`` and ``min_periods`` were read and dropped (backtest
    ran to the reserve) and the sandbox counted signals from the first session."""
    import json

    from _cli_helpers import cli, ok

    import optimizer.cli.research as research
    from optimizer.backtest import backtest
    from optimizer.signals import signal_sheet
    from optimizer.study.paramsfile import load_params_record

    params = {"variant": "B", "z_window": 15, "buy_threshold": 60, "sell_threshold": 40, "exit": "first_dist",
              "time_stop": 15}
    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps({"params": params, "universe": "tier1+3", "span": ["2023-03-01", "2023-12-29"],
                                 "min_periods": 12}), encoding="utf-8")
    rec = load_params_record(loose)
    assert (rec.record, rec.start, rec.end, rec.min_periods) == (None, "2023-03-01", "2023-12-29", 12)
    want = backtest(params, synth_db, "tier1+3", start="2023-03-01", end="2023-12-29", save=False, min_periods=12)
    other = backtest(params, synth_db, "tier1+3", start="2023-03-01", save=False)  # neither stated
    assert want.metrics != other.metrics  # the two settings change the run: the test can fail
    got = json.loads(ok(cli("backtest", "--params", loose, "--db", synth_db, "--no-save", "--format", "json")).stdout)
    assert (got["start"], got["end"]) == ("2023-03-01", "2023-12-29")
    assert {k: got[k] for k in want.metrics} == pytest.approx(want.metrics, rel=0, abs=0, nan_ok=True)

    trades = want.result.trades.to_frame(want.panel)
    sym = trades["symbol"].value_counts().index[0]  # the symbol with the most trades
    drawn: list = []
    real = research.sandbox_figure
    monkeypatch.setattr(research, "sandbox_figure", lambda *a, **k: drawn.append(k["trades"]) or real(*a, **k))
    ok(cli("sandbox", sym, "--params", loose, "--db", synth_db, "--out", tmp_path / "out", "--no-png"))
    mine = trades[trades["symbol"] == sym].reset_index(drop=True)
    assert len(drawn) == 1 and len(mine) > 0
    assert drawn[0]["entry_date"].astype(str).str[:10].tolist() == mine["entry_date"].astype(str).str[:10].tolist()
    np.testing.assert_array_equal(drawn[0]["net_ret"].to_numpy(), mine["net_ret"].to_numpy())

    # the signal sheet computes its z-scores with the file's min_periods: on the store's 13th session the file's 12
    # give scores, while the default (the 15-session window) gives none and the sheet is refused
    from optimizer.errors import DataError

    day = "2023-01-20"
    a = signal_sheet(load_params_record(_write(tmp_path / "a.json", {"params": params, "min_periods": 12})),
                     synth_db, date=day).rows["score"]
    assert a.notna().sum() > 0
    with pytest.raises(DataError, match="no symbol has a score on 2023-01-20"):
        signal_sheet(load_params_record(_write(tmp_path / "b.json", {"params": params})), synth_db, date=day)


def _write(path: Path, doc: dict) -> Path:
    import json

    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.mark.parametrize("doc, message", [
    ({"end": "2024-13-01"}, r"^end \(in .*p\.json\) must be a date \(YYYY-MM-DD\), got end \(in .*\)='2024-13-01'$"),
    ({"span": ["2024-03-01", "2024-02-01"]}, r"^end \(in .*\) must be on or after start=2024-03-01, got .*'2024-02-01'$"),
    ({"start": "someday"}, r"^start \(in .*\) must be a date \(YYYY-MM-DD\), got .*'someday'$"),
    ({"min_periods": 1}, r"^min_periods \(in .*\) must be an integer >= 2, got min_periods \(in .*\)=1$"),
    ({"min_periods": 12.5}, r"^min_periods \(in .*\) must be an integer >= 2, got .*=12\.5$"),
])
def test_a_loose_params_files_span_and_min_periods_are_checked(tmp_path, doc, message):
    from optimizer.errors import ParameterError
    from optimizer.study.paramsfile import load_params_record

    with pytest.raises(ParameterError, match=message):
        load_params_record(_write(tmp_path / "p.json", {"params": {"z_window": 20}, **doc}))
