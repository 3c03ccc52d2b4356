"""Order and environment independence (explore17): the result of a study must not depend on what a user does not
think of as input, and what the tool calls "the same spec" must compute the same trials.

Audited in /tmp on small stores (the findings table is in the branch's report): ingest order and batching, the
process environment (PYTHONHASHSEED, the working directory, locale, numba / BLAS threads, NUMBA_DISABLE_JIT,
TMPDIR, PYTHONWARNINGS=error, PYTHONOPTIMIZE), the storage (SQLite, in-memory, export -> backtest), the universe's
symbol order and symbols outside it, float round trips. The defects found are pinned here.

* The order of the drawn [space] entries. A trial asks the sampler for its parameters in the order the spec
  declares them (``space.suggest``), and a seeded sampler hands its random draws out in call order, so the same
  entries declared in another order draw other trials (measured: the demo spec with z_window .. exit moved first,
  seed 42: trial 0 variant C / z_window 30 / exit 2x_consec_dist against B / 20 / fixed_10d, every trial and the
  walk-forward's winners different). ``spec_hash`` sorted the keys, so both orders had one hash (f423c177e8faa157):
  ``study validate`` called them the same spec and a study made from one was resumed with the other, its later
  trials drawn in the other order (neither run's trials). The hash now covers that order (fixed values, which
  draw nothing, may move); a study stored with the earlier, unordered hash resumes with its own spec and is
  refused with a reordered one, naming the order.
"""

from __future__ import annotations

import hashlib
import json
import tomllib

import optuna
import pytest
from test_study import spec_text

from optimizer.errors import SpecError
from optimizer.study.registry import build_sampler
from optimizer.study.run import run_study
from optimizer.study.space import suggest
from optimizer.study.spec import parse_spec

optuna.logging.set_verbosity(optuna.logging.ERROR)

_LINES = ('variant = {{ type = "categorical", choices = ["A", "B", "C", "D", "vw_flow", "blended"] }}',
          'exit = {{ type = "categorical", choices = ["fixed_10d", "first_dist", "2x_consec_dist", "hybrid_20d", '
          '"score_decay"] }}')


def _moved_first(text: str, line: str) -> str:
    """``text`` with the [space] entry ``line`` moved to the top of [space] (the same entries, another order)."""
    line = line.format()
    assert text.count(line + "\n") == 1
    return text.replace(line + "\n", "").replace("[space]\n", f"[space]\n{line}\n")


def _draws(spec, n: int = 4) -> list[dict]:
    """The parameters of the first ``n`` trials the spec's seeded sampler draws (no data: the sampler alone)."""
    sampler = build_sampler(spec.sampler.name, spec.sampler.seed, spec.sampler.options)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(suggest(trial, spec))
        study.tell(trial, 0.0)
    return out


def _unordered_hash(text: str) -> str:
    """The hash studies stored before this change (an independent copy of the old rule): the spec's TOML without
    [run], [walkforward], [study] name and description and [data].database, keys sorted (no order at all)."""
    doc = tomllib.loads(text)
    for table, key in (("study", "name"), ("study", "description"), ("data", "database")):
        doc.get(table, {}).pop(key, None)
    doc.pop("run", None)
    doc.pop("walkforward", None)
    for k in ("study", "data"):
        if doc.get(k) == {}:
            del doc[k]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


BASE = spec_text("order", sampler="random", sampler_opts="", n_trials=2)
REORDERED = _moved_first(BASE, _LINES[1])


def test_the_order_of_the_drawn_space_entries_is_part_of_the_spec_hash():
    """Moving ``exit`` to the top of [space] draws other trials from the same seed (the sampler alone, no data),
    so the two specs are not the same spec: other hashes, and ``differences`` names the order (before: one hash,
    nothing named). A fixed value, which draws nothing, moves without changing the hash."""
    base, reordered = parse_spec(BASE), parse_spec(REORDERED)
    assert [p.name for p in reordered.space][0] == "exit"
    assert {p.name for p in base.space} == {p.name for p in reordered.space}
    a, b = _draws(base), _draws(reordered)
    assert a != b and [sorted(x) for x in a] == [sorted(x) for x in b]  # the same parameters, other values
    assert _draws(base) == a  # and each order is reproducible
    assert reordered.spec_hash != base.spec_hash
    assert reordered.differences(base.source).startswith("[space] order variant, w_short, w_lit")
    assert "-> exit, variant, w_short" in reordered.differences(base.source)
    fixed_moved = parse_spec(_moved_first(BASE, "time_stop = 20"))
    assert fixed_moved.spec_hash == base.spec_hash and fixed_moved.differences(base.source) is None
    assert _draws(fixed_moved) == a
    # a second reordering is a third spec
    assert parse_spec(_moved_first(REORDERED, _LINES[0])).spec_hash not in (base.spec_hash, reordered.spec_hash)


def test_a_study_stored_with_the_unordered_hash_resumes_only_with_its_own_order():
    """A study stored before this change holds the unordered hash of its spec text: the same text resumes it
    (and a text that differs only where the hash does not look, e.g. [run]); a reordered one does not, though its
    unordered hash is the same. A record without a readable text falls back to the spec's own earlier hashes."""
    base, reordered = parse_spec(BASE), parse_spec(REORDERED)
    old = _unordered_hash(BASE)
    assert old == _unordered_hash(REORDERED) and old != base.spec_hash
    assert base.matches_stored(old, BASE)
    assert parse_spec(BASE.replace("n_trials = 2", "n_trials = 9")).matches_stored(old, BASE)
    assert not reordered.matches_stored(old, BASE)
    assert not base.matches_stored(old, REORDERED)
    assert base.matches_stored(old) and base.matches_stored(old, "[broken")  # no readable text: its own text
    assert not reordered.matches_stored(base.spec_hash, BASE) and not base.matches_stored(reordered.spec_hash)


def test_a_study_is_not_resumed_with_its_space_declared_in_another_order(synth_db, tmp_path):
    """End to end: a study run from one order and resumed with the other was accepted (one hash) and ran its
    next trials in the other order; it is refused now, naming the order, and nothing is added to the study."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    first = run_study(parse_spec(BASE), synth_db, url, n_trials=1)
    assert first.counts["complete"] + first.counts["pruned"] == 1
    with pytest.raises(SpecError, match=r"study 'order' was created from a different spec \(hash \w+, this spec \w+: "
                                        r"\[space\] order variant, .* -> exit, variant, .*\); refusing to resume it"):
        run_study(parse_spec(REORDERED), synth_db, url, n_trials=2)
    assert len(optuna.load_study(study_name="order", storage=url).trials) == 1
    again = run_study(parse_spec(BASE), synth_db, url, n_trials=2)  # its own order resumes it
    assert again.counts["complete"] + again.counts["pruned"] == 2


# ------------------------------------------------------------------------------------------------ float round trips
def test_the_signal_sheet_csv_holds_the_numbers_of_its_json_and_table(synth_db, tmp_path):
    """The signal sheet's CSV (``signals --format csv`` and ``sheet.csv``) wrote every number with 10 significant
    digits (``float_format="%.10g"``) while sheet.json and the store's signal_sheet table hold it whole (measured on
    a 33-symbol synthetic store: 36 of 111 numbers differed, score 52.594169571826455 written 52.59416957; a score
    just under a buy threshold of 60 could read 60 in the CSV beside a decision that is not ENTER). Every number of
    the CSV now reads back as the JSON's and the table's, bit for bit."""
    import shutil

    import duckdb
    import pandas as pd
    from _cli_helpers import cli, ok

    db = tmp_path / "store.duckdb"
    shutil.copy(synth_db, db)  # the sheet is stored: a copy of the shared (read-only) store
    p = tmp_path / "best.json"
    p.write_text(json.dumps({"params": {"variant": "D", "buy_threshold": 65, "sell_threshold": 30, "exit": "fixed_10d",
                                        "stop_loss": 0.03, "take_profit": 0.06, "slippage_bps": 3.3}}))
    out = tmp_path / "out"
    csv_out = ok(cli("signals", "--params", p, "--db", db, "--out", out, "--format", "csv")).stdout
    csv_lines = [ln for ln in csv_out.splitlines() if not ln.startswith(("csv:", "json:", "html:"))]
    import io
    from_stdout = pd.read_csv(io.StringIO("\n".join(csv_lines)))
    sheet_dir = next(out.glob("signals/*"))
    from_file = pd.read_csv(sheet_dir / "sheet.csv")
    rows = json.loads((sheet_dir / "sheet.json").read_text())["rows"]
    with duckdb.connect(str(db), read_only=True) as con:
        table = con.execute("SELECT * FROM signal_sheet").df()
    assert len(rows) == len(from_file) == len(from_stdout) == len(table) == 33
    table = table.set_index("symbol")
    checked = 0
    for i, r in enumerate(rows):
        for k, v in r.items():
            if isinstance(v, float):
                checked += 1
                assert from_file.loc[i, k] == v and from_stdout.loc[i, k] == v, (k, r["symbol"], v, from_file.loc[i, k])
                assert table.loc[r["symbol"], k] == v, (k, r["symbol"], v, table.loc[r["symbol"], k])
    assert checked > 60


# ------------------------------------------------------------------------------------------------ the environment
def test_data_synth_builds_daily_metrics_with_the_min_lit_volume_metrics_build_uses(tmp_path, monkeypatch):
    """MIN_LIT_VOLUME (the pipeline's variable: below it a day's lit imbalance is NULL, docs/DATA.md) is read by
    ``metrics build`` and ``evening``, but ``data synth --db`` (``synth_to_db``: ``make demo``, ``ao.synth``) built
    daily_metrics with the default 10,000 whatever the environment said: with MIN_LIT_VOLUME=2000000 the same raw
    files gave 2,000 lit imbalances through ``data synth --db`` and 1,893 through ``metrics build`` (8 symbols x 250
    sessions). Both now read it: the synthetic store's daily_metrics are those ``metrics build`` writes."""
    import shutil

    import duckdb
    import pandas as pd
    from _cli_helpers import cli, ok

    from optimizer.data.synth import SynthConfig, synth_to_db

    cfg = SynthConfig(seed=5, start="2023-01-03", end="2023-06-30", universe="tier1", n_symbols=4)
    monkeypatch.setenv("MIN_LIT_VOLUME", "2000000")
    db = tmp_path / "synth.duckdb"
    synth_to_db(cfg, tmp_path / "raw", db)
    rebuilt = tmp_path / "rebuilt.duckdb"
    shutil.copy(db, rebuilt)
    ok(cli("metrics", "build", "--db", rebuilt, "--format", "json", env={"MIN_LIT_VOLUME": "2000000"}))
    default = tmp_path / "default.duckdb"
    shutil.copy(db, default)
    # the default floor named: a build naming none keeps the stored one (2,000,000 here; tests/test_lead36_metrics_window)
    ok(cli("metrics", "build", "--db", default, "--min-lit-volume", "10000", "--format", "json",
           env={"MIN_LIT_VOLUME": None}))

    def metrics(path):
        with duckdb.connect(str(path), read_only=True) as con:
            return con.execute("SELECT * FROM daily_metrics ORDER BY symbol, date").df()

    synth, env_built, default_built = metrics(db), metrics(rebuilt), metrics(default)
    n = lambda df: int(df["lit_flow_imbalance"].notna().sum())  # noqa: E731
    assert n(env_built) < n(default_built) == len(default_built)  # the threshold bites on this market
    pd.testing.assert_frame_equal(synth, env_built, check_exact=True)


# ------------------------------------------------------------------------------------------------ figures vs decisions
def test_a_verdict_never_shows_a_figure_that_reads_as_the_other_outcome():
    """The verdict line, its reasons and the report's gate table rounded each value to a fixed number of decimals,
    so a value next to its threshold was shown as the threshold itself beside the opposite outcome: PSR 0.9496
    (fails >= 0.95) read "PSR 0.95 < 0.95", PBO 0.4996 (passes < 0.50) "PBO 0.50 < 0.50", a HAC t of 1.96 (fails
    > 2) "HAC t=2.0 <= 2", an excess of +0.004% (passes > 0) "+0.00%", while result.json holds the exact numbers.
    A figure now carries the decimals it needs for its comparison with the threshold to read as decided; a value
    away from its threshold is shown as before."""
    from optimizer.validate.verdict import verdict

    v = verdict(0.00004, 1.96, 0.9496, 0.4996, 79, sharpe="psr", t_kind="hac", spa_p=0.0996, spa_max=0.1)
    g = {x.name: x for x in v.gates}
    assert not v.supported and [x.name for x in v.gates if not x.passed] == ["excess_t", "psr"]
    for x in v.gates:
        for shown in (x.text, x.detail_text):
            num = float(shown.rstrip("%")) / (100 if shown.endswith("%") else 1)
            assert (num > x.threshold if x.comparison == ">" else num >= x.threshold if x.comparison == ">="
                    else num < x.threshold) == x.passed, (x.name, shown, x.passed)
    assert "PSR 0.9496 < 0.95" in v.line and "PBO 0.4996 < 0.50" in v.line and "HAC t=1.96" in v.line
    assert "OOS excess +0.004%/trade" in v.line and "SPA p 0.0996 < 0.10" in v.line
    assert "HAC t=1.96 <= 2" in " ".join(v.reasons) and "0.9496 < 0.95" in " ".join(v.reasons)
    assert g["psr"].detail_text == "0.9496" and g["pbo"].detail_text == "0.4996"  # the report's table (3 decimals)
    far = verdict(0.0092, 0.78, 0.78, 0.135, 79, sharpe="psr", t_kind="hac")  # away from every threshold: as before
    assert "OOS excess +0.92%/trade (HAC t=0.8, n=79), PSR 0.78 < 0.95, PBO 0.14 < 0.50" in far.line
    assert {x.name: x.detail_text for x in far.gates}["psr"] == "0.780"
