"""Issue 10 point 5: every key of the README's spec reference takes effect or is refused.

The keys are read from the README's "Study specs" table (so a key documented there without a test here fails). For
each key the test changes its value in a small spec and shows that something the run computes from it changes
(the study's name and record, the panel, the folds, the sampled configurations, the trial values, the pruning
decisions, the trial count, the walk-forward windows, the seeds), or that the change is refused with a SpecError
naming the key. ``[space]`` is walked over every entry key (type, choices, low, high, step, log, value, when) and
every registry parameter. Also: ``[objective].options`` reach the objective's constructor, and ``[data].database``
follows the one precedence (flag > env > spec > default).
"""

from __future__ import annotations

import copy
import json
import re
import textwrap
import tomllib
import warnings
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState, create_trial

import optimizer.validate.walkforward as wfmod
from optimizer.cli import main
from optimizer.errors import DataError, SpecError
from optimizer.params import PARAMS, SPACE_ONLY
from optimizer.study.data import load_study_data, prepare_data
from optimizer.study.records import read_study
from optimizer.study.registry import build_pruner
from optimizer.study.run import _sampler, open_study, run_study
from optimizer.study.seed import seed_from_study
from optimizer.study.space import params_to_config, suggest
from optimizer.study.spec import parse_spec
from optimizer.study.trial import TrialObjective

optuna.logging.set_verbosity(optuna.logging.WARNING)

ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "study": {"name": "keys", "description": "base"},
    "data": {"universe": "tier1+3", "start": "2023-01-03", "end": "2024-06-28", "regime": "ALL",
             "reserve_fraction": 0.2, "min_periods": 10, "costs": {"commission_bps": 1.0, "slippage_bps": 5.0}},
    "space": {"variant": {"type": "categorical", "choices": ["B", "C"]},
              "w_short": {"type": "float", "low": 0.4, "high": 0.7, "step": 0.05},
              "z_window": 20, "exit": "first_dist"},
    "cv": {"mode": "expanding", "n_splits": 3, "test_size": 40, "purge": 10, "embargo": 5, "min_train_size": 30},
    "objective": {"name": "composite_rank", "direction": "maximize", "aggregate": "mean_minus_std", "k": 1.0, "min_trades": 0,
                  "options": {}},
    "sampler": {"name": "tpe", "seed": 1, "n_startup_trials": 3},
    "pruner": {"name": "median", "n_startup_trials": 1},
    "run": {"n_trials": 3, "timeout": 600, "study_name": "keys"},
    "walkforward": {"train": 6, "test": 2, "step": 2, "unit": "months", "purge": 5, "anchored": False,
                    "select": "best", "n_trials": 3, "n_splits": 2, "embargo": 0},
    "seed_from": {"study": "src", "top": 2, "weight_radius": 0.05},
}


# ------------------------------------------------------------------------------------------------ TOML

def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def to_toml(doc: dict) -> str:
    """A small TOML writer: top-level tables of scalars, lists and inline tables; one nested level ([a.b])."""
    out = []
    for sec, body in doc.items():
        out.append(f"[{sec}]")
        subs = []
        for k, v in body.items():
            if isinstance(v, dict) and sec != "space" and k != "options":
                subs.append((k, v))
            else:
                out.append(f"{k} = {_value(v)}")
        for k, v in subs:
            out.append(f"[{sec}.{k}]")
            out.extend(f"{kk} = {_value(vv)}" for kk, vv in v.items())
    return "\n".join(out) + "\n"


def spec_of(doc: dict, path: str | None = None):
    return parse_spec(to_toml(doc), path)


def changed(section: str, key: str, value=None, *, drop: bool = False) -> dict:
    doc = copy.deepcopy(BASE)
    parts = section.split(".")
    target = doc
    for p in parts:
        target = target.setdefault(p, {})
    if drop:
        target.pop(key)
    else:
        target[key] = value
    return doc


def test_the_toml_writer_round_trips_the_base_spec():
    assert tomllib.loads(to_toml(BASE)) == BASE
    spec_of(BASE)  # and the base spec is valid


# ------------------------------------------------------------------------------------------------ the README keys

def readme_keys() -> set[tuple[str, str]]:
    """(section, key) of every key the README's "Study specs" table names (parenthesized notes skipped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index("## Study specs"):text.index("### Parameters")]
    keys = set()
    for line in block.splitlines():
        m = re.match(r"\| `\[([a-z_.]+)\]` \| (.*) \|\s*$", line)
        if not m:
            continue
        section, cell = m.group(1), m.group(2)
        while True:
            stripped = re.sub(r"\([^()]*\)", "", cell)
            if stripped == cell:
                break
            cell = stripped
        for tok in re.findall(r"`([^`]+)`", cell):
            if re.fullmatch(r"\[[a-z_.]+\]", tok):
                section = tok[1:-1]
            elif re.fullmatch(r"[a-z][a-z0-9_]*", tok):
                keys.add((section, tok))
    return keys


SPACE_ENTRY_KEYS = ("type", "choices", "low", "high", "step", "log", "value", "when")


def test_the_readme_documents_exactly_the_keys_the_spec_accepts():
    documented = readme_keys()
    assert ("data.costs", "commission_bps") in documented and ("seed_from", "weight_radius") in documented
    accepted = set()
    for sec, body in BASE.items():
        for k, v in body.items():
            if isinstance(v, dict) and sec not in ("space",) and k != "options":
                accepted |= {(f"{sec}.{k}", kk) for kk in v}
            elif sec != "space":
                accepted.add((sec, k))
    accepted.discard(("sampler", "n_startup_trials"))  # an option of the sampler ("any option"), walked below
    accepted.discard(("pruner", "n_startup_trials"))
    accepted |= {("objective", "directions"), ("data", "database"), ("run", "storage"),  # walked apart from BASE
                 ("cv", "max_train_size"), ("cv", "n_groups"), ("cv", "n_test_groups"),
                 ("walkforward", "top_k")}  # select = robust only: BASE selects best
    assert documented == accepted, (sorted(documented - accepted), sorted(accepted - documented))
    assert set(MUTATIONS) == documented, sorted(documented ^ set(MUTATIONS))


# ------------------------------------------------------------------------------------------------ probes
# Each probe returns what a run computes from one part of the spec; a key takes effect when its probe changes.

_PANELS: dict = {}


def _data(spec, db):
    key = (str(db), json.dumps(spec.data.universe), spec.data.start, spec.data.end)
    if key not in _PANELS:
        _PANELS[key] = load_study_data(spec, db)
    panel, _ = _PANELS[key]
    from optimizer.study.splits import reserve_cutoff
    return prepare_data(spec, panel, 0, reserve_cutoff(len(panel.dates), spec.data.reserve_fraction))


def probe_study(spec, db):
    data = _data(spec, db)
    st = open_study(spec, optuna.storages.InMemoryStorage(), data)
    rec = read_study(st)
    return st.study_name, rec.spec().description, rec.spec_name


def probe_data(spec, db):
    data = _data(spec, db)
    cfg = params_to_config({"variant": "B", "w_short": 0.55}, spec)
    disp = data.evaluator.display(cfg)
    import numpy as np
    return (data.panel.symbols, str(data.panel.dates[0]), str(data.panel.dates[-1]), data.hi, data.reserve_start,
            None if data.entry_ok is None else int(np.asarray(data.entry_ok).sum()), data.fingerprint,
            int(np.isfinite(disp).sum()), (cfg.costs.commission_bps, cfg.costs.slippage_bps),
            data.evaluator.run(cfg).metrics["avg_return"])


def probe_folds(spec, db):
    """The folds a trial is scored on and the splits the window PBO runs (cpcv: its combinatorial splits)."""
    data = _data(spec, db)
    splits = data.cv.get_n_splits() if data.cv is not None else None
    return [(f.test_start, f.test_end, f.data_end) for f in data.folds], data.cv_embargo, splits


def probe_space(spec, db=None):
    st = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(6):
        t = st.ask()
        out.append(params_to_config(suggest(t, spec), spec).to_params())
        st.tell(t, 0.0)
    return out


def probe_objective(spec, db):
    data = _data(spec, db)
    obj = TrialObjective(data)
    res = obj.evaluate({"variant": "B", "w_short": 0.55})
    trial = optuna.trial.FixedTrial({"variant": "B", "w_short": 0.55})
    try:
        obj(trial)
        pruned = False
    except optuna.TrialPruned:
        pruned = True
    st = open_study(spec, optuna.storages.InMemoryStorage(), data)
    return tuple(res["values"]), pruned, [d.name for d in st.directions]


def probe_sampler(spec, db=None):
    st = optuna.create_study(sampler=_sampler(spec), directions=list(spec.objective.directions))
    out = []
    for i in range(14):  # past TPE's 10 random startup trials
        t = st.ask()
        out.append(suggest(t, spec))
        st.tell(t, float(i % 3) if len(spec.objective.directions) == 1 else [float(i % 3)] * len(spec.objective.directions))
    return out


def probe_pruner(spec, db=None):
    """The pruner's decision at each step for a trial worse than the completed ones."""
    st = optuna.create_study(pruner=build_pruner(spec.pruner.name, spec.pruner.options), direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for v in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        st.add_trial(create_trial(state=TrialState.COMPLETE, value=v, params={"x": 0.5}, distributions=dist,
                                  intermediate_values={s: v for s in range(6)}))
    t = st.ask({"x": dist["x"]})
    out = []
    for s in range(6):
        t.report(3.0, s)  # below the median (3.5) of the completed trials, above their 10th percentile
        out.append(bool(t.should_prune()))
    return out


def probe_run(spec, db, tmp_path):
    before = set(tmp_path.rglob("*.db"))
    res = run_study(spec, db, None, data=_data(spec, db))
    files = sorted(p.name for p in set(tmp_path.rglob("*.db")) - before)
    return {"name": res.study_name, "trials": res.counts["complete"] + res.counts["pruned"], "storage": res.storage,
            "created": files}


class _Stop(Exception):
    pass


def probe_walkforward(spec, db, monkeypatch):
    """Windows, per-window trials, the inner folds and the selection arguments of a walk-forward run, without
    running its studies."""
    seen: dict = {"windows": [], "prepare": [], "select": []}
    real_run_window = wfmod._run_window

    def record_window(ctx, w):
        seen["windows"].append((w.train_start, w.train_end, w.test_start, w.test_end, ctx.n_trials, ctx.purge))
        if len(seen["windows"]) == 1:
            try:
                real_run_window(ctx, w)
            except _Stop:
                pass
        return None

    real_prepare = wfmod.prepare_data

    def record_prepare(spec_, panel, lo, hi, n_splits=None, embargo=None):
        d = real_prepare(spec_, panel, lo, hi, n_splits, embargo)
        seen["prepare"].append([(f.test_start, f.test_end) for f in d.folds])
        return d

    class _Run:
        interrupted = False  # (a StudyRunResult's: the window's study ran its trials)

        def __init__(self):
            st = optuna.create_study()
            for v in (0.1, 0.5, 0.2, 0.4, 0.45):
                st.add_trial(create_trial(value=v, params={"variant": "B"},
                                          distributions={"variant": optuna.distributions.CategoricalDistribution(["B", "C"])}))
            self.study = st

    def fake_run_study(*a, **k):
        seen["n_trials"] = k.get("n_trials")
        return _Run()

    def record_select(study, how="best", top_k=5):
        seen["select"].append((how, top_k))
        raise _Stop

    monkeypatch.setattr(wfmod, "_run_window", record_window)
    monkeypatch.setattr(wfmod, "_assemble", lambda ctx, results, final, msgs: None)
    monkeypatch.setattr(wfmod, "prepare_data", record_prepare)
    monkeypatch.setattr(wfmod, "run_study", fake_run_study)
    monkeypatch.setattr(wfmod, "select_params", record_select)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # [seed_from] is not used by windows: said, and tested elsewhere
        wfmod.run_walkforward(spec, db, "sqlite:///:memory:", out_dir=None)
    monkeypatch.undo()
    return seen


def probe_seed(spec, db):
    """What phase B enqueues and narrows from a phase A study 'src' in the same storage."""
    storage = optuna.storages.InMemoryStorage()
    a_doc = copy.deepcopy(BASE)
    a_doc["study"]["name"] = a_doc["run"]["study_name"] = "src"
    del a_doc["seed_from"]
    a_doc["space"]["w_short"] = {"type": "categorical", "choices": [0.45, 0.5, 0.6]}
    a_doc["space"]["variant"] = {"type": "categorical", "choices": ["B", "C"]}
    spec_a = spec_of(a_doc)
    data = _data(spec_a, db)
    a = open_study(spec_a, storage, data)
    for params in ({"variant": "B", "w_short": 0.6}, {"variant": "C", "w_short": 0.45}, {"variant": "B", "w_short": 0.5}):
        a.enqueue_trial(params)
    a.optimize(TrialObjective(data), n_trials=3)
    b = open_study(spec, storage, _data(spec, db))
    searched = seed_from_study(b, spec, storage)
    enq = [t.params for t in b.get_trials(states=(TrialState.WAITING,))]
    return enq, [(p.name, p.low, p.high) for p in searched.space]


# ------------------------------------------------------------------------------------------------ the walk

REFUSED = "refused"
MUTATIONS: dict[tuple[str, str], tuple] = {
    ("study", "name"): (probe_study, "other"),
    ("study", "description"): (probe_study, "another description"),
    ("data", "database"): ("database", None),
    ("data", "universe"): (probe_data, "tier1"),
    ("data", "start"): (probe_data, "2023-03-01"),
    ("data", "end"): (probe_data, "2024-03-28"),
    ("data", "regime"): (probe_data, "RISK_ON"),
    ("data", "reserve_fraction"): (probe_data, 0.3),
    ("data", "min_periods"): (probe_data, 19),
    ("data.costs", "commission_bps"): (probe_data, 20.0),
    ("data.costs", "slippage_bps"): (probe_data, 30.0),
    ("cv", "mode"): (REFUSED, "rolling"),  # rolling would score the same folds: refused, saying why
    ("cv", "n_splits"): (probe_folds, 4),
    ("cv", "test_size"): (probe_folds, 30),
    ("cv", "purge"): (probe_folds, 25),
    ("cv", "embargo"): (probe_folds, 12),
    ("cv", "min_train_size"): ("min_train", 100),
    ("cv", "max_train_size"): (REFUSED, 60),  # likewise
    ("cv", "n_groups"): ("cpcv", 5),
    ("cv", "n_test_groups"): ("cpcv", 1),
    ("objective", "name"): (probe_objective, "hit_rate"),
    ("objective", "direction"): (probe_objective, "minimize"),
    ("objective", "directions"): (REFUSED, ["maximize"]),  # both direction and directions: refused
    ("objective", "aggregate"): ("aggregate", "mean"),
    ("objective", "k"): ("k", None),
    ("objective", "min_trades"): (probe_objective, 100000),
    ("objective", "options"): (REFUSED, {"totally_bogus": 123}),
    ("sampler", "name"): ("sampler_name", "random"),
    ("sampler", "seed"): (probe_sampler, 2),
    ("pruner", "name"): ("pruner_name", "percentile"),
    ("run", "n_trials"): ("run", 2),
    ("run", "timeout"): ("run", 1e-9),
    ("run", "storage"): ("run", "STORAGE"),
    ("run", "study_name"): ("run", "renamed"),
    ("walkforward", "train"): ("wf", 5),
    ("walkforward", "test"): ("wf", 1),
    ("walkforward", "step"): ("wf", 3),  # above test = 2: a step below it is refused (tests/test_spec.py)
    ("walkforward", "unit"): ("wf_sessions", "sessions"),
    ("walkforward", "purge"): ("wf", 20),
    ("walkforward", "anchored"): ("wf", True),
    ("walkforward", "select"): ("wf", "robust"),
    ("walkforward", "top_k"): ("wf_topk", 2),
    ("walkforward", "n_trials"): ("wf", 7),
    ("walkforward", "n_splits"): ("wf", 3),
    ("walkforward", "embargo"): ("wf", 9),
    ("seed_from", "study"): ("seed", "nope"),
    ("seed_from", "top"): ("seed", 1),
    ("seed_from", "weight_radius"): ("seed", 0.0),
}


@pytest.mark.parametrize("key", sorted(MUTATIONS), ids=[".".join(k) for k in sorted(MUTATIONS)])
def test_every_spec_key_takes_effect_or_is_refused(key, synth_db, tmp_path, monkeypatch):
    section, name = key
    how, value = MUTATIONS[key]
    monkeypatch.chdir(tmp_path)
    base = copy.deepcopy(BASE)
    if how == REFUSED:
        with pytest.raises(SpecError) as e:
            spec_of(changed(section, name, value))
        assert e.value.key.startswith(f"{section}.{name}") or e.value.key.startswith(section), str(e.value)
        return
    if how == "database":  # the spec's store is read when neither --db nor ACCUMOPT_DB says otherwise
        monkeypatch.delenv("ACCUMOPT_DB", raising=False)
        spec = spec_of(changed("data", "database", str(synth_db)))
        panel, _ = load_study_data(spec, None)
        assert len(panel.symbols) == 33
        with pytest.raises(DataError, match="nowhere.duckdb does not exist"):
            load_study_data(spec_of(changed("data", "database", str(tmp_path / "nowhere.duckdb"))), None)
        return
    if how in ("sampler_name", "pruner_name"):  # the base's options belong to its class: drop them first
        sec = how.split("_")[0]
        base[sec] = {"name": base[sec]["name"]} | ({"seed": 1} if sec == "sampler" else {})
        alt = copy.deepcopy(base)
        alt[sec]["name"] = value
        if sec == "pruner":
            alt[sec]["percentile"] = 90.0  # Optuna keeps the top 90%: 3.0 survives, the median prunes it
        probe = probe_sampler if sec == "sampler" else probe_pruner
        assert probe(spec_of(base), synth_db) != probe(spec_of(alt), synth_db)
        # the base's options with the other class: refused, naming the section (random takes no n_startup_trials;
        # percentile needs its percentile)
        with pytest.raises(SpecError, match=rf"\[{sec}[.\]]"):
            spec_of(changed(section, name, value))
        return
    if how == "cpcv":  # the combinatorial purged CV's groups are the folds
        base["cv"] = {"mode": "cpcv", "purge": 10, "embargo": 5}
        base["walkforward"].pop("n_splits")  # the windows score the cpcv groups
        alt = copy.deepcopy(base)
        alt["cv"][name] = value
        assert probe_folds(spec_of(base), synth_db) != probe_folds(spec_of(alt), synth_db)
        with pytest.raises(SpecError, match=rf"\[cv.{name}\] applies to mode = cpcv only"):
            spec_of(changed("cv", name, value))  # and refused with the expanding folds of the base
        return
    if how == "min_train":  # with test_size given the blocks sit at the span's end: min_train_size sizes them
        base["cv"].pop("test_size")
        alt = copy.deepcopy(base)
        alt["cv"]["min_train_size"] = value
        assert probe_folds(spec_of(base), synth_db) != probe_folds(spec_of(alt), synth_db)
        return
    if how == "k":  # k only weighs the std of mean_minus_std; with another aggregate it is refused
        b = copy.deepcopy(base)
        b["objective"]["k"] = 3.0
        assert probe_objective(spec_of(base), synth_db) != probe_objective(spec_of(b), synth_db)
        with pytest.raises(SpecError, match=r"\[objective\.k\].*ignored"):
            spec_of(changed("objective", "aggregate", "median"))
        return
    if how == "aggregate":  # k belongs to mean_minus_std: both sides without it
        base["objective"].pop("k")
        alt = copy.deepcopy(base)
        alt["objective"]["aggregate"] = value
        assert probe_objective(spec_of(base), synth_db) != probe_objective(spec_of(alt), synth_db)
        return
    if how == "run":  # each run in a storage of its own (the spec's [run].storage)
        base.pop("seed_from")
        base["data"]["database"] = str(synth_db)
        base["run"]["storage"] = f"sqlite:///{tmp_path / 'base.db'}"
        alt = copy.deepcopy(base)
        alt["run"]["storage"] = f"sqlite:///{tmp_path / 'other.db'}"
        if value != "STORAGE":
            alt["run"][name] = value
        b0 = probe_run(spec_of(base), synth_db, tmp_path)
        b1 = probe_run(spec_of(alt), synth_db, tmp_path)
        field = {"n_trials": "trials", "timeout": "trials", "storage": "created", "study_name": "name"}[name]
        assert b0[field] != b1[field], (b0, b1)
        if name == "storage":
            assert (b0["created"], b1["created"]) == (["base.db"], ["other.db"])
        return
    if how in ("wf", "wf_sessions", "wf_topk"):
        if how == "wf_sessions":
            base["walkforward"].update(train=120, test=40, step=40)
            alt = copy.deepcopy(base)
            alt["walkforward"].update(unit="sessions")
            base["walkforward"].update(train=6, test=2, step=2)
        else:
            alt = changed(section, name, value)
        if how == "wf_topk":  # top_k chooses among the top trials of the robust selection (default 5 in base)
            with pytest.raises(SpecError, match=r"\[walkforward\.top_k\] is read by select = \"robust\" only"):
                spec_of(alt)  # with BASE's select = best it would be ignored: refused
            base["walkforward"]["select"] = alt["walkforward"]["select"] = "robust"
        s0 = probe_walkforward(spec_of(base), synth_db, monkeypatch)
        s1 = probe_walkforward(spec_of(alt), synth_db, monkeypatch)
        assert s0 != s1, (s0, s1)
        return
    if how == "seed":
        e0 = probe_seed(spec_of(base), synth_db)
        alt = changed(section, name, value)
        if value == "nope":
            with pytest.raises(SpecError, match="no study named 'nope'"):
                probe_seed(spec_of(alt), synth_db)
            return
        e1 = probe_seed(spec_of(alt), synth_db)
        assert e0 != e1, (e0, e1)
        return
    probe = how
    v0 = probe(spec_of(base), synth_db)
    v1 = probe(spec_of(changed(section, name, value)), synth_db)
    assert v0 != v1, (key, v0, v1)


# ------------------------------------------------------------------------------------------------ [space]

def _space_change(name: str):
    """(space entry, value) that changes parameter ``name`` from its default."""
    p = PARAMS.get(name) or SPACE_ONLY[name]
    alt = {"variant": "D", "w_short": 0.2, "w_lit": 0.6, "w_price": 0.4, "z_window": 33, "intensity_lo": 0.5,
           "intensity_hi": 1.6, "buy_threshold": 66, "sell_threshold": 22, "exit": "fixed_20d", "hold_days": 7,
           "max_days": 9, "stop_loss": 0.04, "take_profit": 0.2, "time_stop": 11, "commission_bps": 3.0,
           "slippage_bps": 9.0, "max_positions": 4, "max_per_sector": 2, "sizing": "atr", "weights": "lit_heavy",
           "use_stop_loss": False, "use_take_profit": False, "atr_stop": 2.0, "trail_stop": 0.05,
           "risk_fraction": 0.01, "max_weight": 0.5, "kelly_fraction": 0.25, "kelly_window": 20,
           "regime_sizing": True, "dd_breaker": 0.1, "dd_cooloff": 5, "corr_cap": 0.7, "corr_window": 30,
           "options_boost": 0.5, **{f"{w}_{r}": 0.3 for w in ("w_short", "w_lit", "w_price")
                                    for r in ("risk_on", "risk_off", "transitional")},
           **{f"buy_threshold_{r}": 75.0 for r in ("risk_on", "risk_off", "transitional")}}[name]
    assert alt != p.default
    return alt


@pytest.mark.parametrize("name", [*PARAMS, *SPACE_ONLY])
def test_every_space_parameter_takes_effect(name):
    doc = copy.deepcopy(BASE)
    doc.pop("seed_from")
    base_space = {"variant": "B", "z_window": 20}
    # a parameter read only under a setting is declared with that setting on (without it the spec refuses it)
    base_space |= {"risk_fraction": {"sizing": "fixed_fractional"}, "max_weight": {"sizing": "fixed_fractional"},
                   "kelly_fraction": {"sizing": "kelly"}, "kelly_window": {"sizing": "kelly"},
                   "dd_cooloff": {"dd_breaker": 0.2}, "corr_window": {"corr_cap": 0.5}}.get(name, {})
    doc["space"] = dict(base_space)
    v0 = probe_space(spec_of(doc))
    doc["space"][name] = _space_change(name)
    doc["data"]["costs"].pop(name, None)  # a cost is declared in one place: [space] here (BASE's value is the default)
    if name == "exit":
        doc["space"]["exit"] = "fixed"
        doc["space"]["hold_days"] = 7
    if name == "hold_days":
        doc["space"]["exit"] = "fixed"
        doc2 = copy.deepcopy(doc)
        doc2["space"]["hold_days"] = 3
        assert probe_space(spec_of(doc)) != probe_space(spec_of(doc2))
        return
    if name == "max_days":
        doc["space"]["exit"] = "hybrid"
        doc2 = copy.deepcopy(doc)
        doc2["space"]["max_days"] = 3
        assert probe_space(spec_of(doc)) != probe_space(spec_of(doc2))
        return
    if name in ("use_stop_loss", "use_take_profit"):  # a false switch drops the parameter it gates
        gated = {"use_stop_loss": "stop_loss", "use_take_profit": "take_profit"}[name]
        doc["space"] = {**base_space, name: {"type": "categorical", "choices": [False, True]},
                        gated: {"type": "float", "low": 0.05, "high": 0.06, "when": {name: True}}}
        v_switch = probe_space(spec_of(doc))
        assert {c[gated] is None for c in v_switch} == {True, False}
        return
    if name == "w_short":  # all three weights change the normalized score only together with the others
        doc["space"].update(w_lit=0.3, w_price=0.15)
    v1 = probe_space(spec_of(doc))
    assert v0 != v1, name


@pytest.mark.parametrize("entry_key", SPACE_ENTRY_KEYS)
def test_every_space_entry_key_takes_effect(entry_key):
    doc = copy.deepcopy(BASE)
    doc.pop("seed_from")
    doc["space"] = {"variant": {"type": "categorical", "choices": ["B", "C"]},
                    "buy_threshold": {"type": "int", "low": 60, "high": 80, "step": 5},
                    "stop_loss": {"type": "float", "low": 0.02, "high": 0.08}}
    alt = copy.deepcopy(doc)
    sp = alt["space"]
    if entry_key == "type":
        sp["buy_threshold"] = {"type": "categorical", "choices": [61, 79]}
    elif entry_key == "choices":
        sp["variant"]["choices"] = ["A", "D"]
    elif entry_key == "low":
        sp["buy_threshold"]["low"] = 75
    elif entry_key == "high":
        sp["buy_threshold"]["high"] = 65
    elif entry_key == "step":
        sp["buy_threshold"]["step"] = 10
    elif entry_key == "log":
        sp["stop_loss"]["log"] = True
    elif entry_key == "value":
        sp["buy_threshold"] = {"type": "fixed", "value": 77}
    elif entry_key == "when":
        sp["stop_loss"]["when"] = {"variant": "C"}
    assert probe_space(spec_of(doc)) != probe_space(spec_of(alt)), entry_key


# ------------------------------------------------------------------------------------------------ options, database

OBJ_MODULE = '''
from objectives import Objective


class Scaled(Objective):
    """The rank score times a factor: an objective with a constructor option."""

    name = "scaled"
    metrics = ("rank_score",)

    def __init__(self, factor: float = 1.0):
        if factor <= 0:
            raise ValueError(f"factor must be > 0, got factor={factor}")
        self.factor = factor

    def fold_values(self, m):
        return (self.factor * m["rank_score"],)
'''


def test_objective_options_reach_the_constructor_and_are_checked(synth_db, tmp_path, monkeypatch):
    (tmp_path / "my_objectives.py").write_text(textwrap.dedent(OBJ_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    doc = changed("objective", "name", "my_objectives:Scaled")
    v1 = probe_objective(spec_of(doc), synth_db)
    doc["objective"]["options"] = {"factor": 3.0}
    v3 = probe_objective(spec_of(doc), synth_db)
    assert v3[0][0] == pytest.approx(3.0 * v1[0][0]) and v1[0][0] != 0
    for opts, frag in (({"facto": 2.0}, "is not an option of objective 'my_objectives:Scaled'; valid: factor"),
                       ({"factor": -1.0}, "factor must be > 0")):
        doc["objective"]["options"] = opts
        with pytest.raises(SpecError, match=frag):
            spec_of(doc)
    with pytest.raises(SpecError, match=r"\[objective.options.totally_bogus\] is not an option of objective 'composite_rank'; valid: none"):
        spec_of(changed("objective", "options", {"totally_bogus": 123}))


def test_database_precedence_flag_env_spec_default(synth_db, null_db, tmp_path, monkeypatch):
    """study run with [data].database: the spec's store when neither --db nor ACCUMOPT_DB is given; the env
    variable over the spec; the flag over both."""
    monkeypatch.chdir(tmp_path)
    doc = copy.deepcopy(BASE)
    doc.pop("seed_from")
    doc["data"]["database"] = str(synth_db)
    doc["run"]["n_trials"] = 1
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(to_toml(doc))
    env = {"ACCUMOPT_DB": None, "ACCUMOPT_STORAGE": None, "ACCUMOPT_OUTPUT": None}

    def fingerprint(*args, env_=None):
        url = f"sqlite:///{tmp_path / (str(len(list(tmp_path.glob('*.db')))) + '.db')}"
        r = CliRunner().invoke(main, ["study", "run", str(spec_path), "--storage", url, "--format", "json", *args],
                               env=env | (env_ or {}))
        assert r.exit_code == 0, r.output
        st = optuna.load_study(study_name="keys", storage=url)
        return read_study(st).data_fingerprint

    from_spec = fingerprint()
    assert not (tmp_path / "output").exists()  # the spec's store was read, no default store was created
    from_env = fingerprint(env_={"ACCUMOPT_DB": str(null_db)})
    from_flag = fingerprint("--db", str(synth_db), env_={"ACCUMOPT_DB": str(null_db)})
    assert from_spec == from_flag != from_env
    doc["data"]["database"] = str(tmp_path / "missing.duckdb")
    spec_path.write_text(to_toml(doc))
    r = CliRunner().invoke(main, ["study", "run", str(spec_path), "--format", "json"], env=env)
    assert r.exit_code == 2 and "missing.duckdb" in r.stderr and "Traceback" not in r.output


@pytest.mark.parametrize("direction, sign", [("maximize", -1.0), ("minimize", 1.0)])
def test_mean_minus_std_counts_the_fold_spread_against_the_study_direction(direction, sign, synth_db):
    """``aggregate = "mean_minus_std"`` is a pessimistic value: the folds' spread moves the mean k stds towards the
    worse side of the study's direction (mean - k*std maximizing, mean + k*std minimizing). Before, a minimizing
    study got mean - k*std too, which rewarded the spread it is meant to penalise. Both trial paths (a new trial,
    ``study replay``'s evaluate) give the same value."""
    import numpy as np

    doc = changed("objective", "direction", direction)
    doc["objective"]["k"] = 0.5
    spec = spec_of(doc)
    data = _data(spec, synth_db)
    obj = TrialObjective(data)
    p = {"variant": "B", "w_short": 0.55}
    res = obj.evaluate(p)
    fold = np.array([m["rank_score"] for m in res["folds"]])
    assert fold.std() > 0  # the folds differ: the sign of the spread term is visible
    want = fold.mean() + sign * 0.5 * fold.std()
    assert res["values"] == pytest.approx((want,), rel=1e-12)
    assert obj(optuna.trial.FixedTrial(p)) == pytest.approx(want, rel=1e-12)
