"""explore23: a new user's path through the seams (ingest -> info -> study A -> B -> best -> backtest ->
walk-forward -> report / signals), on the real files of ../shared/data/real where they matter (skipped when absent).
"""

from __future__ import annotations

import json
import re

import pytest

from optimizer.report.research import build_study_report
from optimizer.study.records import seeded_label
from optimizer.study.run import run_study
from optimizer.study.spec import parse_spec

from _cli_helpers import cli, ok
from test_study import spec_text


# ------------------------------------------------------------------ 1. phase A -> phase B: the seeding is said


@pytest.fixture(scope="module")
def seeded_pair(synth_db, tmp_path_factory):
    """A 3-trial phase A and a phase B seeded with its top 2, in one SQLite storage."""
    tmp = tmp_path_factory.mktemp("e23seed")
    url = f"sqlite:///{tmp / 's.db'}"
    run_study(parse_spec(spec_text("e23-a", sampler="random", sampler_opts="", n_trials=3)), synth_db, url)
    b = spec_text("e23-b", sampler="random", sampler_opts="", n_trials=3) + '[seed_from]\nstudy = "e23-a"\ntop = 2\n'
    spec_b = tmp / "b.toml"
    spec_b.write_text(b)
    return tmp, url, spec_b


def test_a_seeded_study_run_says_what_it_was_seeded_with(seeded_pair, synth_db):
    """A phase B seeded from phase A's top trials said nothing of it (`study run`, its JSON, the report): the user
    could not tell that its first trials were phase A's (explore23: mine_b's trials 0-3 were mine_a's 8, 15, 7, 4,
    and no output said so)."""
    tmp, url, spec_b = seeded_pair
    import optuna

    a = optuna.load_study(study_name="e23-a", storage=url)
    top = sorted((t for t in a.trials if t.value is not None), key=lambda t: -t.value)[:2]
    res = ok(cli("study", "run", spec_b, "--db", synth_db, "--storage", url, "--out", tmp / "out", "--format", "json"))
    d = json.loads(res.stdout)
    want = f"its trials {top[0].number}, {top[1].number}"
    assert d["seeded"].startswith("2 trial(s) of study 'e23-a'") and want in d["seeded"], d["seeded"]
    assert "run here as trials 0, 1" in d["seeded"], d["seeded"]
    table = ok(cli("study", "run", spec_b, "--db", synth_db, "--storage", url, "--out", tmp / "out")).stdout
    assert re.search(r"seeded\s+2 trial\(s\) of study 'e23-a'", table), table
    page = build_study_report(url, "e23-b", tmp / "out" / "reports").read_text()
    assert "seeded from" in page and f"(its trials {top[0].number}, {top[1].number})" in page


def test_the_seeded_label_names_the_narrowed_weight_ranges():
    """weight_radius narrows the weights around the seeds: the label says to which ranges (the study stores them)."""
    import optuna

    from optimizer.study.records import mark_seeded

    study = optuna.create_study()
    mark_seeded(study, "phase-a", 2, [5, 3], {"w_short": [0.45, 0.6], "w_lit": [0.2, 0.35]})
    assert seeded_label(study) == ("2 trial(s) of study 'phase-a' (its trials 5, 3), not run here yet; weight ranges "
                                   "narrowed around them: w_short [0.45, 0.6], w_lit [0.2, 0.35]")


def test_the_seeded_label_counts_the_seeds_still_waiting():
    """Phase B with n_trials = 2 and top = 4 ran two of its seeds: the label said 'run here as trials 0, 1, 2, 3'
    while trials 2 and 3 were still waiting (the run's warning said so)."""
    import optuna

    from optimizer.study.records import mark_seeded

    study = optuna.create_study()
    mark_seeded(study, "phase-a", 3, [7, 2, 5])
    for x in (0.1, 0.2, 0.3):
        study.enqueue_trial({"x": x})
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert seeded_label(study) == "3 trial(s) of study 'phase-a' (its trials 7, 2, 5), run here as trial 0; 2 still waiting"


def test_an_unseeded_study_says_nothing_of_seeds(seeded_pair, synth_db):
    tmp, url, _ = seeded_pair
    import optuna

    assert seeded_label(optuna.load_study(study_name="e23-a", storage=url)) is None
    spec_a = tmp / "a.toml"
    spec_a.write_text(spec_text("e23-a", sampler="random", sampler_opts="", n_trials=3))
    res = ok(cli("study", "run", spec_a, "--db", synth_db, "--storage", url, "--out", tmp / "out", "--format", "json"))
    assert json.loads(res.stdout)["seeded"] is None
    assert "seeded" not in ok(cli("study", "run", spec_a, "--db", synth_db, "--storage", url, "--out",
                                  tmp / "out")).stdout


# ------------------------------------------------------------------ 2. real data: an index is not a name of the table


@pytest.fixture(scope="module")
def real_index_store(tmp_path_factory):
    """Real prices of 2025-09 for BRK-B, V and the indices ^GSPC / ^IXIC (prices_daily_extra), real FINRA CNMS rows
    of 2025-09-10/11 for BRK/B and V: a small store with the real file's traits."""
    import pandas as pd
    from _ingest_helpers import REAL, need

    from optimizer.data.ingest import ingest_paths
    from optimizer.data.metrics import build_daily_metrics
    from optimizer.data.store import connect

    tmp = tmp_path_factory.mktemp("e23real")
    px = pd.read_csv(need(REAL / "prices_daily_extra.csv.gz"), dtype=str, keep_default_na=False)
    px = px[px["symbol"].isin({"BRK-B", "V", "^GSPC", "^IXIC"}) & px["date"].between("2025-08-01", "2025-09-30")]
    px.to_csv(tmp / "prices.csv", index=False)
    fi = pd.read_csv(need(REAL / "finra_short_daily_2025.csv.gz"), dtype=str, keep_default_na=False)
    fi[fi["symbol"].isin({"BRK/B", "V"})].to_csv(tmp / "finra_short_daily_2025_subset.csv", index=False)
    con = connect(tmp / "real.duckdb")
    assert ingest_paths(con, "prices", [tmp / "prices.csv"]).exit_code == 0
    assert ingest_paths(con, "finra-short", [tmp / "finra_short_daily_2025_subset.csv"]).exit_code == 0
    build_daily_metrics(con)
    yield con, tmp
    con.close()


@pytest.mark.realdata
def test_the_daily_table_lists_names_not_the_indices_of_a_prices_file(real_index_store):
    """`accumopt table` on the real files listed ^GSPC and ^IXIC (daily_metrics keeps their price rows) as symbols
    and said 'FINRA short data for 10793 of 10795 symbols (none for ^GSPC, ^IXIC)': market context counted as names
    lacking FINRA data. Every symbol of the day means the names; an index asked for by name is still shown."""
    from optimizer.analytics.tables import daily_table

    con, _ = real_index_store
    t = daily_table(con)
    assert sorted(t["symbol"]) == ["BRK.B", "V"]
    cov = t.attrs["coverage"]
    assert (cov["date"], cov["symbols"], cov["with_finra_short"], cov["without_finra_short"]) == (
        "2025-09-11", 2, 2, [])
    asked = daily_table(con, tickers=["^GSPC", "V"])
    assert sorted(asked["symbol"]) == ["V", "^GSPC"] and asked.attrs["coverage"]["without_finra_short"] == ["^GSPC"]


# ------------------------------------------------------------------ 3. the signal sheet's header names the session


def test_the_sheet_header_names_the_session_of_its_market_regime(synth_db, capsys):
    """`signals` printed 'regime filter ALL, market regime at D RISK_ON': a literal 'D' (the docs' name for the
    sheet's session) on the terminal, not the date."""
    import optimizer.cli.signals as cli_signals
    from optimizer.signals import signal_sheet
    from optimizer.study.paramsfile import ParamsRecord

    sheet = signal_sheet(ParamsRecord({"variant": "B"}), synth_db, date="2023-06-01", universe="tier1")
    cli_signals._render(sheet, False)
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("regime filter")]
    assert len(line) == 1 and re.fullmatch(r"regime filter ALL, market regime on 2023-06-01 [A-Z_]+", line[0]), line


# ------------------------------------------------------------------ 4. walk-forward -> signals: costs are a setting


def _wf_folder(path, settings):
    import pandas as pd

    path.mkdir()
    (path / "result.json").write_text(json.dumps({"settings": settings}))
    for n in ("walk_forward_summary", "parameter_stability"):
        (path / f"{n}.csv").write_text("a\n1\n")
    pd.DataFrame({"x": [1]}).to_parquet(path / "oos_trades.parquet")
    pd.DataFrame({"x": [1]}).to_parquet(path / "oos_equity.parquet")
    return path


def test_signals_say_the_walkforward_run_traded_at_other_costs(synth_db, tmp_path):
    """`signals --walkforward DIR` of a run at 20 + 8 bp per side, for a sheet at 2 + 8: the warning named the
    universe it differed in and not the costs, so the out-of-sample hit rates and excess returns (net of the run's
    costs) were shown for a configuration trading at a tenth of them without a word."""
    from optimizer.signals import signal_sheet, walkforward_warning
    from optimizer.study.paramsfile import ParamsRecord

    base = {"universe": "tier1", "regime": "ALL", "min_periods": None}
    rec = ParamsRecord({"variant": "B", "commission_bps": 2, "slippage_bps": 8})
    other = signal_sheet(rec, synth_db, date="2023-06-01", universe="tier1", walkforward=_wf_folder(
        tmp_path / "a", base | {"costs": {"commission_bps": 20.0, "slippage_bps": 8.0}}))
    assert other.walkforward_mismatch == ("costs 20 + 8 -> 2 + 8 bp per side",)
    assert "costs 20 + 8 -> 2 + 8 bp per side" in walkforward_warning(other)
    same = signal_sheet(rec, synth_db, date="2023-06-01", universe="tier1", walkforward=_wf_folder(
        tmp_path / "b", base | {"costs": {"commission_bps": 2, "slippage_bps": 8.0}}))
    assert same.walkforward_mismatch == () and walkforward_warning(same) is None


# ------------------------------------------------------------------ 5. the signal sheet's header fits 80 columns


def test_the_sheet_header_fits_80_columns_with_a_listed_universe(synth_db, monkeypatch):
    """`signals` on a listed universe printed 'universe AAPL,MSFT,NVDA,SPY,QQQ,JPM,META,AVGO,TSLA (9 symbols),
    positions replayed from 2022-03-10' (98 characters) with click.echo: the header lines ran past 80 columns."""
    import io

    from rich.console import Console

    import optimizer.cli.signals as cli_signals
    from optimizer.data.universe import TIER1
    from optimizer.signals import signal_sheet
    from optimizer.study.paramsfile import ParamsRecord

    sheet = signal_sheet(ParamsRecord({"variant": "B"}), synth_db, date="2023-06-01", universe=",".join(TIER1))
    buf = io.StringIO()
    monkeypatch.setattr(cli_signals, "console", Console(file=buf, width=80, color_system=None))
    cli_signals._render(sheet, False)
    text = buf.getvalue()
    assert text.startswith("signal sheet 2023-06-01 close") and "universe SPY,QQQ" in text, text
    assert max(len(x) for x in text.splitlines()) <= 80, text
    assert "".join(text.split()).count(",".join(TIER1)) == 1  # wrapped, never cut


# ------------------------------------------------------------------ 6. report NAME: neither a study nor a run


def test_report_of_an_unknown_name_says_where_runs_were_looked_for(tmp_path):
    """`accumopt report nope` said 'no study named 'nope' in ...; studies: ...' though `report` also takes a
    walk-forward run's name: the line did not say that no run of that name was found under <out>/walkforward/, nor
    which runs are there (mine_wf, mine_wf2: the name the user may have meant)."""
    import optuna

    from _cli_helpers import one_line_error

    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="phase-a", storage=url)
    for run in ("mine_wf", "mine_wf2"):
        (tmp_path / "out" / "walkforward" / run).mkdir(parents=True)
        (tmp_path / "out" / "walkforward" / run / "result.json").write_text("{}")
    (tmp_path / "out" / "walkforward" / "not-a-run").mkdir()
    line = one_line_error(cli("report", "mine-wf", "--storage", url, "--out", tmp_path / "out"),
                          "no study named 'mine-wf'", "studies: phase-a")
    assert line.endswith(f"; nor a walk-forward run {tmp_path / 'out' / 'walkforward' / 'mine-wf'} "
                         "(runs there: mine_wf, mine_wf2)"), line


# ------------------------------------------------------------------ 7. data info fits 80 columns on gappy data


def test_data_info_coverage_fits_80_columns_and_keeps_its_symbol_column(tmp_path):
    """On the real files `data info` printed 'finra_short  2020-01-02..2025-09-11  8/1,431 sessions (0.6%), 1 gap,
    largest 2020-01-10..2025-09-09 (1,423)' (106 columns), and a share class longer than 6 characters (CMS.PRB) pushed
    its row of the worst symbols out of the column the others keep."""
    from _ingest_helpers import PRICES_HEAD, write

    from optimizer.data.ingest import ingest_paths
    from optimizer.data.store import connect

    bar = "{d},{s},10,11,9,10.5,1000\n"
    rows = [bar.format(d=d, s=s) for d in ("2024-01-02", "2024-01-03", "2024-01-04", "2025-06-02")
            for s in ("AAA", "AB", "CMS.PRB")
            if not (s != "AAA" and d in ("2024-01-03", "2024-01-04")) and not (s == "AB" and d == "2025-06-02")]
    rows.append(bar.format(d="2024-01-05", s="AB"))
    db = tmp_path / "g.duckdb"
    con = connect(db)
    assert ingest_paths(con, "prices", [write(tmp_path / "p.csv", PRICES_HEAD + "".join(rows))]).exit_code == 0
    con.close()
    out = ok(cli("data", "info", "--db", db)).stdout
    cov = out.split("coverage of the NYSE")[1].splitlines()
    assert max(len(x) for x in cov) <= 80, out
    assert "  prices       2024-01-02..2025-06-02  5/355 sessions (1.4%)" in cov, out
    assert "               1 gap, largest 2024-01-08..2025-05-30 (350)" in cov, out
    worst = [x for x in cov if " of " in x and "largest" in x and "symbols" not in x]
    assert [x.split()[0] for x in worst] == ["CMS.PRB", "AB", "AAA"], out
    assert len({x.index(" of ") for x in worst}) == 1, out  # one column


# ------------------------------------------------------------------ 8. a refused [seed_from] leaves no study behind


def test_a_refused_seeding_leaves_no_study_so_the_fixed_spec_runs(seeded_pair, synth_db):
    """Phase B with other [data.costs] than phase A's seeds was refused ('[seed_from] trial 8 of 'mine_a' has
    commission_bps=2.0, but this spec's [data.costs] gives commission_bps=1.0 (... fix it to that value)'), without
    the spec's file, and left study 'mine_b2' created with no trial: the spec fixed as told was then refused as 'study
    'mine_b2' was created from a different spec ([data.costs.commission_bps] 1 -> 2)'."""
    from _cli_helpers import one_line_error

    tmp, url, _ = seeded_pair
    b = spec_text("e23-b2", sampler="random", sampler_opts="", n_trials=2) + '[seed_from]\nstudy = "e23-a"\ntop = 2\n'
    bad = tmp / "b2.toml"
    bad.write_text(b.replace("[space]", "[data.costs]\ncommission_bps = 3\n[space]"))
    one_line_error(cli("study", "run", bad, "--db", synth_db, "--storage", url, "--out", tmp / "out"),
                   f"error: {bad}: [seed_from] trial ", "commission_bps=1.0, but this spec's [data.costs] gives "
                   "commission_bps=3.0")
    fixed = tmp / "b2-fixed.toml"
    fixed.write_text(b)
    d = json.loads(ok(cli("study", "run", fixed, "--db", synth_db, "--storage", url, "--out", tmp / "out",
                          "--format", "json")).stdout)
    assert d["study"] == "e23-b2" and d["complete"] + d["pruned"] == 2 and d["seeded"].startswith("2 trial(s)")


# ------------------------------------------------------------------ 9. a listed universe the store lacks, from a spec


def test_a_spec_universe_the_store_lacks_is_named_by_file_and_key(synth_db, tmp_path):
    """'error: universe lists 1 symbol that daily_metrics of ... does not hold: XOM (...)': from a spec the line
    named neither the file nor [data.universe], which every other refusal of a spec does."""
    from _cli_helpers import one_line_error

    spec = tmp_path / "s.toml"
    spec.write_text(spec_text("e23-u", n_trials=2).replace('universe = "tier1+3"', 'universe = ["SPY", "XOM"]'))
    url = f"sqlite:///{tmp_path / 's.db'}"
    for cmd in (("study", "run"), ("walkforward",)):
        one_line_error(cli(*cmd, spec, "--db", synth_db, "--storage", url, "--out", tmp_path / "out"),
                       f"error: {spec}: [data.universe] lists 1 symbol that daily_metrics of ", "does not hold: XOM (")
