"""Tests of optimizer.study.inspect on studies built here in a temporary SQLite storage.

* ``maxi``: maximize, MedianPruner(n_startup_trials=3, n_warmup_steps=1) over a designed objective whose three fold
  values are v, v+0.01, v+0.02 with v = buy_threshold/100 + z_window/10000, trials enqueued in a known order, so
  the pruned trials (3, 5, 7, all at fold 1) follow by hand from the running median; trial 8 fails.
* ``mini``: minimize, no pruner, four trials; ``multi``: (maximize, minimize) with a hand-known Pareto front.
* ``planted``: trials added with exact datetimes, intermediate values and pruned_at_fold attributes, for
  hand-computed durations, time saved and prune-fold histogram.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta

import optuna
import pandas as pd
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import FrozenTrial, TrialState

from optimizer.errors import DataError, ParameterError
from optimizer.report.compare import compare_figure, write_compare_html
from optimizer.study.inspect import (
    KEY_METRICS,
    best_trial_json,
    compare_studies,
    delete_study,
    export_study,
    list_studies,
    show_study,
    trials_table,
)
from optimizer.study.space import params_to_config, suggest
from optimizer.study.spec import parse_spec
from optimizer.study import make_storage

SPEC_TEXT = """
[study]
name = "inspect-test"

[space]
variant = {type = "categorical", choices = ["A", "B"]}
z_window = {type = "categorical", choices = [10, 20, 40, 60]}
buy_threshold = {type = "int", low = 60, high = 80, step = 5}
sell_threshold = {type = "int", low = 20, high = 40, step = 5}
exit = {type = "categorical", choices = ["fixed_10d", "first_dist"]}
time_stop = 60
use_stop_loss = {type = "categorical", choices = [true, false]}
stop_loss = {type = "fixed", value = 0.08, when = {use_stop_loss = [true]}}

[data.costs]
commission_bps = 2.0
slippage_bps = 7.5

[pruner]
name = "median"

[run]
n_trials = 9
"""
SPEC = parse_spec(SPEC_TEXT)
FOLDS = [[0, "2024-01-02", "2024-02-01"], [1, "2024-02-02", "2024-03-01"], [2, "2024-03-04", "2024-04-01"]]

# (buy_threshold, z_window, use_stop_loss) of maxi's trials in order; v = buy/100 + z/10000
MAXI_SEQ = [(70, 10, True), (75, 10, False), (65, 10, True), (60, 10, True), (80, 10, True), (65, 40, True),
            (75, 60, True), (60, 20, True), (60, 60, True)]
# running median of the completed trials' fold-1 values decides: 3 (.601<.701), 5 (.654<.726), 7 (.602<.751)
MAXI_PRUNED = {3, 5, 7}
MAXI_COMPLETE = {0, 1, 2, 4, 6}
MAXI_FAILED = {8}


def _fold_metrics(v: float, fold: int) -> dict[str, float]:
    return {"rank_score": v + 0.01 * fold, "hit_rate": 0.5 + fold / 100, "closed_trades": 10.0 + fold,
            "avg_return": v / 100, "signals_per_month": 3.0}


def _objective(trial: optuna.Trial) -> float:
    """Mirror of TrialObjective: reports a value per fold, writes the metrics / folds attributes."""
    p = suggest(trial, SPEC)
    if p["buy_threshold"] == 60 and p["z_window"] == 60:
        raise ValueError("planted failure")
    v = p["buy_threshold"] / 100 + p["z_window"] / 10000
    folds = []
    for f in range(3):
        m = _fold_metrics(v, f)
        folds.append(m)
        trial.report(m["rank_score"], f)
        if trial.should_prune():
            trial.set_user_attr("folds", folds)
            trial.set_user_attr("metrics", {"pruned_at_fold": f, "pruned_reason": f"fold {f}: pruner median",
                                            "duration_s": 0.001})
            raise optuna.TrialPruned()
    value = sum(m["rank_score"] for m in folds) / 3
    metrics = {k: 0.1 for k in KEY_METRICS} | {"rank_score": value, "hit_rate": v, "closed_trades": 33.0,
                                                "duration_s": 0.002, "pruned_at_fold": None}
    trial.set_user_attr("folds", folds)
    trial.set_user_attr("metrics", metrics)
    return value


def _attrs(study: optuna.Study) -> None:
    for k, v in {"spec_hash": SPEC.spec_hash, "spec_text": SPEC_TEXT, "spec_name": SPEC.name, "objective": "composite_rank",
                 "folds": FOLDS, "n_trials_target": 9, "accumopt_version": "0.1.0", "git_commit": None}.items():
        study.set_user_attr(k, v)


def _enqueue(study: optuna.Study, seq) -> None:
    for b, z, sl in seq:
        study.enqueue_trial({"buy_threshold": b, "z_window": z, "use_stop_loss": sl, "sell_threshold": 30,
                             "variant": "A", "exit": "first_dist"})


def _planted(storage) -> None:
    """complete 10 s, 20 s, 30 s (mean 20); pruned 5 s (fold 1 by attr), 25 s (fold 0 by last step, no attr),
    2 s (fold 1 by attr although it reported only fold 0: min_trades pruning)."""
    st = optuna.create_study(study_name="planted", storage=storage, direction="maximize")
    st.set_user_attr("folds", FOLDS)
    dist = {"buy_threshold": IntDistribution(60, 80, step=5)}
    t0 = datetime(2024, 5, 1, 9, 0, 0)
    spec = [  # (state, duration s, value, intermediate, metrics attr)
        (TrialState.COMPLETE, 10, 0.5, {0: 0.5, 1: 0.5, 2: 0.5}, {"duration_s": 9.0}),
        (TrialState.PRUNED, 5, None, {0: 0.1, 1: 0.1}, {"pruned_at_fold": 1}),
        (TrialState.COMPLETE, 20, 0.4, {0: 0.4, 1: 0.4, 2: 0.4}, {}),
        (TrialState.PRUNED, 25, None, {0: 0.2}, None),
        (TrialState.COMPLETE, 30, 0.9, {0: 0.9, 1: 0.9, 2: 0.9}, {}),
        (TrialState.PRUNED, 2, None, {0: 0.3}, {"pruned_at_fold": 1, "pruned_reason": "min_trades"}),
    ]
    t = t0
    for i, (state, d, val, inter, m) in enumerate(spec):
        st.add_trial(FrozenTrial(number=i, state=state, value=val, datetime_start=t, datetime_complete=t + timedelta(seconds=d),
                                 params={"buy_threshold": 60 + 5 * (i % 5)}, distributions=dist,
                                 user_attrs={} if m is None else {"metrics": m}, system_attrs={},
                                 intermediate_values=inter, trial_id=0))
        t = t + timedelta(seconds=d + 1)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('studies') / 'studies.db'}"
    storage = make_storage(url, heartbeat=False)  # WAL: a commit is one fsync, keeps the fixture fast
    maxi = optuna.create_study(study_name="maxi", storage=storage, direction="maximize",
                               sampler=optuna.samplers.RandomSampler(seed=0),
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    _attrs(maxi)
    _enqueue(maxi, MAXI_SEQ)
    maxi.optimize(_objective, n_trials=len(MAXI_SEQ), catch=(ValueError,))

    mini = optuna.create_study(study_name="mini", storage=storage, direction="minimize",
                               sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.NopPruner())
    _attrs(mini)
    _enqueue(mini, [(70, 10, True), (75, 10, True), (65, 10, True), (80, 10, True)])
    mini.optimize(_objective, n_trials=4)

    multi = optuna.create_study(study_name="multi", storage=storage, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        multi.set_metric_names(["avg_return", "signals_per_month"])
    _attrs(multi)
    # (v, s): A (.701, 5), B (.801, 8), C (.601, 6) dominated by A, D (.751, 4) dominates A -> front {B, D}
    for b, sell in ((70, 25), (80, 40), (60, 30), (75, 20)):
        multi.enqueue_trial({"buy_threshold": b, "sell_threshold": sell, "z_window": 10, "variant": "A",
                             "exit": "first_dist", "use_stop_loss": False})

    def two(trial):
        p = suggest(trial, SPEC)
        trial.set_user_attr("metrics", {"avg_return": p["buy_threshold"] / 100, "duration_s": 0.001})
        return p["buy_threshold"] / 100 + p["z_window"] / 10000, p["sell_threshold"] / 5

    multi.optimize(two, n_trials=4)
    _planted(storage)
    return url


def _maxi(store):
    return optuna.load_study(study_name="maxi", storage=store)


def test_designed_pruning_happened_as_computed_by_hand(store):
    states = {t.number: t.state for t in _maxi(store).trials}
    assert {n for n, s in states.items() if s == TrialState.PRUNED} == MAXI_PRUNED
    assert {n for n, s in states.items() if s == TrialState.COMPLETE} == MAXI_COMPLETE
    assert {n for n, s in states.items() if s == TrialState.FAIL} == MAXI_FAILED


def test_list_studies_counts_best_and_attrs(store):
    df = list_studies(store).set_index("name")
    assert list(df.index) == ["maxi", "mini", "multi", "planted"]
    assert df.loc["maxi", ["complete", "pruned", "failed", "running"]].tolist() == [5, 3, 1, 0]
    assert df.loc["maxi", "best_value"] == pytest.approx(0.801 + 0.01)
    assert df.loc["mini", "best_value"] == pytest.approx(0.651 + 0.01)
    assert df.loc["multi", "directions"] == "maximize,minimize"
    assert math.isnan(df.loc["multi", "best_value"]) and df.loc["multi", "pareto_size"] == 2
    assert df.loc["maxi", "spec_name"] == "inspect-test" and df.loc["maxi", "n_trials_target"] == 9
    assert df.loc["planted", "created"].tz_localize(None) == pd.Timestamp("2024-05-01 09:00:00")  # local, with offset


class _CountingStorage(optuna.storages.InMemoryStorage):
    """Records the study id of every read of a study's trials."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[int] = []

    def get_all_trials(self, study_id, deepcopy=True, states=None):
        self.reads.append(study_id)
        return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)


def test_looking_at_one_study_reads_no_other_study_s_trials():
    """show / best / detail on one study, and a run opening its study, read that study's trials only: Optuna's
    study summaries read every trial of every study (``study show`` on 3,600 stored trials took 9 s, now 3 s)."""
    from optimizer.study.inspect import trial_detail

    st = _CountingStorage()
    ids = {}
    for name in ("a", "big", "c"):
        study = optuna.create_study(study_name=name, storage=st, direction="maximize")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3 if name != "big" else 20)
        ids[name] = study._study_id
    st.reads.clear()
    show_study(st, "a")
    best_trial_json(st, "a")
    trial_detail(st, "a", 0)
    assert st.reads and set(st.reads) == {ids["a"]}
    st.reads.clear()
    df = list_studies(st)
    assert df["name"].tolist() == ["a", "big", "c"] and df["complete"].tolist() == [3, 20, 3]
    assert sorted(set(st.reads)) == sorted(ids.values()) and st.reads.count(ids["big"]) <= 2


def test_show_study_top_ordering_maximize_and_minimize(store):
    top = show_study(store, "maxi", top=3)
    assert top["number"].tolist() == [4, 6, 1]  # .811, .766, .761
    assert top["value"].tolist() == pytest.approx([0.811, 0.766, 0.761])
    assert top["param_buy_threshold"].tolist() == [80, 75, 75]
    assert top["param_z_window"].tolist() == [10, 60, 10]
    assert top["hit_rate"].tolist() == pytest.approx([0.801, 0.756, 0.751])  # lifted from the metrics attr
    assert set(KEY_METRICS) <= set(top.columns)
    assert show_study(store, "mini")["number"].tolist() == [2, 0, 1, 3]  # .661 < .711 < .761 < .811


def test_show_study_multi_objective_is_the_pareto_front(store):
    df = show_study(store, "multi")
    assert df["number"].tolist() == [1, 3]  # B (.801, 8) then D (.751, 4): first objective descending
    assert df["values_avg_return"].tolist() == pytest.approx([0.801, 0.751])
    assert df["values_signals_per_month"].tolist() == pytest.approx([8.0, 4.0])


def test_best_trial_json_adds_fixed_params_and_round_trips(store):
    doc = best_trial_json(store, "maxi")
    assert doc["study"] == "maxi" and doc["number"] == 4 and doc["value"] == pytest.approx(0.811)
    trial = _maxi(store).trials[4]
    # exactly the trial params + the unconditional fixed time_stop + stop_loss (active: use_stop_loss is true)
    assert doc["params"] == trial.params | {"time_stop": 60, "stop_loss": 0.08}
    assert doc["metrics"]["rank_score"] == pytest.approx(0.811)
    assert doc["costs"] == {"commission_bps": 2.0, "slippage_bps": 7.5}
    back = json.loads(json.dumps(doc))
    cfg = params_to_config(back["params"], SPEC)
    # nothing is left for the spec to fill in except the costs, which the document carries separately
    assert cfg == params_to_config(back["params"] | back["costs"])
    assert cfg != params_to_config(back["params"])  # (the planted non-default costs do matter)
    assert cfg.exit.time_stop == 60 and cfg.exit.stop_loss == 0.08 and cfg.thresholds.buy == 80.0
    # trial 1 has use_stop_loss = false: the conditional fixed stop_loss is inactive and must not appear
    doc1 = best_trial_json(store, "maxi", number=1)
    assert doc1["params"] == _maxi(store).trials[1].params | {"time_stop": 60}
    assert params_to_config(doc1["params"]).exit.stop_loss is None


def test_best_trial_json_multi_and_bad_trial_numbers(store):
    doc = best_trial_json(store, "multi")
    assert doc["number"] == 1 and doc["values"] == pytest.approx([0.801, 8.0]) and "value" not in doc
    with pytest.raises(DataError, match=r"trial 3 is PRUNED"):
        best_trial_json(store, "maxi", number=3)
    with pytest.raises(DataError, match=r"trial 99 does not exist"):
        best_trial_json(store, "maxi", number=99)


def test_compare_planted_durations_time_saved_and_histogram(store):
    res = compare_studies(store, ["planted"])
    s = res.summary.set_index("study").loc["planted"]
    assert (s["complete"], s["pruned"], s["failed"]) == (3, 3, 0)
    assert s["mean_complete_s"] == pytest.approx(20.0)  # wall time, not the metrics attr duration_s = 9
    assert s["mean_pruned_s"] == pytest.approx(32 / 3)
    assert s["total_trial_s"] == pytest.approx(92.0)
    assert s["time_saved_s"] == pytest.approx(15.0 + 0.0 + 18.0)  # the 25 s trial saved nothing (not -5)
    assert s["best_value"] == pytest.approx(0.9) and s["best_number"] == 4
    assert s["elapsed_s"] == pytest.approx(92.0)  # the time trials ran: the five 1 s gaps between them are not (mend16)
    assert res.prune_fold_hist[["fold", "n_pruned"]].to_numpy().tolist() == [[0, 1], [1, 2], [2, 0]]
    b = res.best_so_far
    assert b["number"].tolist() == [0, 1, 2, 3, 4, 5]
    assert b["best_value"].tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5, 0.9, 0.9])
    assert b["elapsed_s"].tolist() == pytest.approx([10, 15, 35, 60, 90, 92])


def test_compare_leaves_repeats_out_of_durations_and_time_saved(tmp_path):
    """Complete 10 s and 30 s, pruned 5 s, then a repeat of each (0.01 s, ``repeat_of``): the repeats ran nothing,
    so a complete trial costs 20 s, a pruned one 5 s and pruning saved 15 s; the repeats still count by state."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    st = optuna.create_study(study_name="repeats", storage=make_storage(url, heartbeat=False), direction="maximize")
    st.set_user_attr("folds", FOLDS)
    dist = {"buy_threshold": IntDistribution(60, 80, step=5)}
    t = datetime(2024, 5, 1, 9, 0, 0)
    for i, (state, d, val, of) in enumerate([(TrialState.COMPLETE, 10, 0.5, None), (TrialState.COMPLETE, 30, 0.9, None),
                                             (TrialState.PRUNED, 5, None, None), (TrialState.COMPLETE, 0.01, 0.5, 0),
                                             (TrialState.PRUNED, 0.01, None, 2), (TrialState.PRUNED, 0.01, None, 2)]):
        attrs = {"metrics": {"pruned_at_fold": 1}} if state == TrialState.PRUNED else {}
        st.add_trial(FrozenTrial(number=i, state=state, value=val, datetime_start=t,
                                 datetime_complete=t + timedelta(seconds=d), params={"buy_threshold": 60 + 5 * (i % 3)},
                                 distributions=dist, user_attrs=attrs | ({} if of is None else {"repeat_of": of}),
                                 system_attrs={}, intermediate_values={0: 0.1}, trial_id=0))
        t = t + timedelta(seconds=d + 1)
    s = compare_studies(url, ["repeats"]).summary.iloc[0]
    assert (s["complete"], s["pruned"]) == (3, 3)
    assert s["mean_complete_s"] == pytest.approx(20.0) and s["mean_pruned_s"] == pytest.approx(5.0)
    assert s["time_saved_s"] == pytest.approx(15.0)
    assert s["total_trial_s"] == pytest.approx(45.03)  # every trial's wall time, the repeats' included


def test_compare_optuna_studies(store):
    res = compare_studies(store, ["maxi", "mini"])
    hist = res.prune_fold_hist
    mx = hist[hist["study"] == "maxi"].set_index("fold")["n_pruned"].to_dict()
    assert mx == {0: 0, 1: 3, 2: 0}
    assert hist[hist["study"] == "mini"]["n_pruned"].sum() == 0
    for name, sign in (("maxi", 1), ("mini", -1)):
        b = res.best_so_far[res.best_so_far["study"] == name]
        vals = b["best_value"].dropna().to_numpy() * sign
        assert (vals[1:] >= vals[:-1]).all() and len(vals) == len(b)
        assert (b["elapsed_s"].diff().dropna() >= 0).all()
    assert res.best_so_far[res.best_so_far["study"] == "maxi"]["best_value"].iloc[-1] == pytest.approx(0.811)
    assert (res.summary["time_saved_s"] >= 0).all()
    inter = res.intermediate[res.intermediate["study"] == "maxi"]
    assert set(inter[inter["state"] == "PRUNED"].groupby("trial")["step"].max()) == {1}
    assert set(inter[inter["state"] == "PRUNED"]["trial"]) == MAXI_PRUNED
    assert len(inter[inter["state"] == "COMPLETE"]) == 3 * len(MAXI_COMPLETE)


def _plotly_traces(html: str) -> list[dict]:
    """Decode the trace list of the Plotly.newPlot call embedded in the page."""
    i = html.index("Plotly.newPlot(")
    start = html.index("[", i)
    traces, _ = json.JSONDecoder().raw_decode(html[start:])
    return traces


def test_compare_figure_and_html(store, tmp_path):
    res = compare_studies(store, ["maxi", "planted"])
    fig = compare_figure(res)
    names = {t.name for t in fig.data}
    assert {"maxi best", "maxi complete", "maxi pruned", "maxi pruned at fold", "planted best (time)"} <= names
    bar = next(t for t in fig.data if t.name == "planted pruned at fold")
    assert list(bar.y) == [1, 2, 0]
    out = write_compare_html(res, tmp_path / "sub" / "cmp.html")
    text = out.read_text(encoding="utf-8")
    traces = _plotly_traces(text)
    by_name = {t["name"]: t for t in traces}
    assert by_name["maxi pruned"]["line"]["color"] == "rgba(214,39,40,0.45)"
    pruned_steps = [x for x in by_name["maxi pruned"]["x"] if x is not None]
    assert len(pruned_steps) == 2 * len(MAXI_PRUNED)  # folds 0 and 1 of each pruned trial
    assert len(text) > 1_000_000  # plotly.js inlined: the page works offline
    assert re.search(r"<td>planted</td>", text) and "time_saved_s" in text


def test_export_round_trip_csv_and_parquet(store, tmp_path):
    for fmt in ("csv", "parquet"):
        p = export_study(store, "maxi", tmp_path / f"maxi.{fmt}", fmt=fmt)
        df = pd.read_csv(p) if fmt == "csv" else pd.read_parquet(p)
        assert len(df) == len(MAXI_SEQ)
        assert {"metric_hit_rate", "metric_pruned_at_fold", "fold0_rank_score", "params_buy_threshold"} <= set(df.columns)
        pruned = df[df["state"] == "PRUNED"]
        assert sorted(pruned["number"]) == sorted(MAXI_PRUNED) and (pruned["metric_pruned_at_fold"] == 1).all()
        assert pruned["fold2_rank_score"].isna().all()  # pruned at fold 1: no fold 2 metrics
        assert df.loc[df["number"] == 4, "metric_hit_rate"].iloc[0] == pytest.approx(0.801)
    assert not any(c.startswith("user_attrs_metrics") for c in trials_table(store, "maxi").columns)
    with pytest.raises(ParameterError, match="fmt must be csv or parquet, got fmt='xlsx'"):
        export_study(store, "maxi", tmp_path / "x.xlsx", fmt="xlsx")


def test_unknown_name_lists_studies(store):
    for call in (lambda: show_study(store, "nope"), lambda: best_trial_json(store, "nope"),
                 lambda: compare_studies(store, ["maxi", "nope"]), lambda: delete_study(store, "nope")):
        with pytest.raises(DataError) as e:
            call()
        assert str(e.value) == f"no study named 'nope' in {store}; studies: maxi, mini, multi, planted"


def test_missing_sqlite_file_is_not_created(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    with pytest.raises(DataError, match="does not exist"):
        list_studies(url)
    assert not (tmp_path / "none.db").exists()


def test_delete_then_list(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    storage = make_storage(url, heartbeat=False)
    for n in ("a", "b"):
        optuna.create_study(study_name=n, storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    delete_study(url, "a")
    assert list_studies(url)["name"].tolist() == ["b"]
    doc = best_trial_json(url, "b")  # made without a spec: bare trial params, no costs
    assert set(doc) == {"study", "number", "value", "params", "metrics"} and list(doc["params"]) == ["x"]
    with pytest.raises(DataError, match=r"studies: b$"):
        best_trial_json(url, "a")


def test_terminal_table_formats_cells(store):
    from rich.console import Console

    from optimizer.report.terminal import print_frame

    con = Console(record=True, width=250)
    print_frame(show_study(store, "maxi", top=2)[["number", "value", "param_buy_threshold"]], con, title="maxi top")
    out = con.export_text()
    assert "maxi top" in out and "param_buy_threshold" in out
    assert re.search(r"^\s+4\s+0\.811\s+80\s*$", out, re.M)  # floats to 4 significant digits
    con2 = Console(record=True, width=250)
    print_frame(pd.DataFrame({"a": [1.0, math.nan], "b": ["x", None]}), con2)
    lines = [ln.rstrip() for ln in con2.export_text().splitlines()]
    assert "nan" not in " ".join(lines) and lines[-2:] == ["1  x", "-  -"]  # missing values as "-"


def test_unknown_name_on_the_command_line_names_the_storage_as_given(store):
    """The read-only commands open the storage themselves (SQLite ``mode=ro``): the error names the URL the user
    gave, not the internal ``sqlite:///file%3A...?mode=ro&uri=true`` one."""
    from _cli_helpers import cli, one_line_error

    for args in (("study", "show", "nope"), ("study", "best", "nope"), ("study", "compare", "nope")):
        line = one_line_error(cli(*args, "--storage", store), f"no study named 'nope' in {store}; studies: maxi")
        assert "mode=ro" not in line


def test_an_unknown_name_lists_the_studies_study_list_shows():
    """The "no study named" line lists the user's studies, as `study list` does: not the walk-forward's hidden
    claim study."""
    from optimizer.study.records import WF_RUN

    st = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="mine", storage=st)
    optuna.create_study(study_name="demo-wf-claims", storage=st).set_user_attr(WF_RUN, {"spec_hash": "x"})
    assert list_studies(st)["name"].tolist() == ["mine"]
    with pytest.raises(DataError) as e:
        show_study(st, "nope")
    assert str(e.value).endswith("; studies: mine")
    assert show_study(st, "mine").empty  # the marker stays hidden, the user's study opens


def test_study_show_of_a_study_without_completed_trials_says_so(tmp_path):
    """Every trial pruned (e.g. min_trades above what any configuration trades): `study show` printed an empty
    table, the title wrapped around a lone 'number' header. It says there is no completed trial, with the counts
    `study best` gives; --format json stays an empty list."""
    from _cli_helpers import cli, ok

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    s = optuna.create_study(study_name="allpruned", storage=url)
    dist = {"x": IntDistribution(0, 3)}
    for i in range(3):
        s.add_trial(optuna.trial.create_trial(params={"x": i}, distributions=dist, state=TrialState.PRUNED))
    out = ok(cli("study", "show", "allpruned", "--storage", url)).output
    assert out.strip() == "study allpruned: no completed trial (pruned 3, failed 0, running 0)"
    assert json.loads(ok(cli("study", "show", "allpruned", "--storage", url, "--format", "json")).output) == []


def test_show_top_true_and_a_study_compared_with_itself_are_refused(store):
    """``top=True`` was shown as the best 1 trial (a bool is an int to Python); ``compare(["maxi", "maxi"])``
    listed one study twice in its summary, curves and report file name."""
    with pytest.raises(ParameterError, match=r"top must be an integer >= 1, got top=True"):
        show_study(store, "maxi", top=True)
    with pytest.raises(ParameterError, match=r"names must be each study named once \(repeated: maxi\)"):
        compare_studies(store, ["maxi", "mini", "maxi"])
    assert compare_studies(store, ["maxi", "mini"]).summary.shape[0] == 2
