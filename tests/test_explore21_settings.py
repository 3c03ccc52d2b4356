"""Every flag takes effect or is refused with its name (explore21's sweep of the command tree, the spec keys and the
environment variables).

The sweep walked the click tree (33 commands, 325 parameters), the spec parser's keys and every variable the code
reads; the settings below were accepted and then silently did nothing. The parametrized tests walk the click tree
themselves, so a command added later with the same options is checked too. Most refusals come before any store or
storage is opened, so these tests need none.
"""

from __future__ import annotations

import click
import pytest

from optimizer.cli import main
from tests._cli_helpers import cli, one_line_error


def _commands(group: click.Group = main, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every leaf command of the click tree with its path (``walkforward worker`` included)."""
    ctx = click.Context(group)
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*path, name))
        else:
            out.append(((*path, name), cmd))
            worker = getattr(cmd, "worker", None)
            if worker is not None:
                out.append(((*path, name, "worker"), worker))
    return out


def _args(cmd: click.Command) -> list[str]:
    """Placeholder values for the command's required arguments (the refusals come before any is read)."""
    args = []
    for p in cmd.params:
        if isinstance(p, click.Argument) and p.required:
            args += ["x"] * (1 if p.nargs in (1, -1) else p.nargs)
    return args


def _param(cmd: click.Command, name: str) -> click.Parameter | None:
    return next((p for p in cmd.params if p.name == name), None)


_TABLE_CMDS = [(path, cmd) for path, cmd in _commands() if _param(cmd, "columns") is not None]


def test_the_sweep_finds_the_table_commands():
    """The walk over the click tree sees the commands that print a terminal table (a walk that found none would
    make the parametrized test below vacuous)."""
    names = {" ".join(p) for p, _ in _TABLE_CMDS}
    assert {"scan", "table", "study list", "study show", "study compare", "walkforward"} <= names


@pytest.mark.parametrize("flag", [("--columns", "symbol"), ("--wide",)], ids=["columns", "wide"])
@pytest.mark.parametrize("path,cmd", _TABLE_CMDS, ids=[" ".join(p) for p, _ in _TABLE_CMDS])
def test_table_shaping_flags_are_refused_with_a_machine_format(tmp_path, path, cmd, flag):
    """--columns and --wide choose what the terminal table shows; with --format json (or csv) they were accepted
    and ignored: `scan --format json --columns symbol` printed the whole document. Now each is refused naming
    itself and the format, for every command (and format) that has them."""
    fmt = _param(cmd, "fmt")
    assert fmt is not None and isinstance(fmt.type, click.Choice)
    others = [c for c in fmt.type.choices if c != "table"]
    assert others, path
    for choice in others:
        res = cli(*path, *_args(cmd), *flag, "--format", choice, "--out", tmp_path / "out")
        one_line_error(res, flag[0], f"--format {choice}")
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("flags", [("--top", "3"), ("--top", "10"), ("--columns", "number"), ("--wide",)],
                         ids=["top", "top-default-value", "columns", "wide"])
def test_study_show_trial_refuses_the_top_table_flags(tmp_path, flags):
    """`study show NAME --trial N` shows one trial vertically: --top, --columns and --wide (which shape the table
    of the top trials) were accepted and ignored. --top given even at its default value is refused."""
    res = cli("study", "show", "s", "--trial", "1", *flags, "--out", tmp_path)
    one_line_error(res, flags[0], "--trial 1")


# ------------------------------------------------------------------------------------------ signals / evening
@pytest.fixture()
def params(tmp_path):
    p = tmp_path / "p.json"
    p.write_text("{}", encoding="utf-8")
    return p


@pytest.mark.parametrize("other", ["--ingest", "--no-fetch"])
def test_evening_refuses_through_without_a_fetch(tmp_path, params, other):
    """`evening --through D` bounds the fetch; with --ingest DIR or --no-fetch nothing is fetched and --through was
    accepted and ignored (the evening ran on whatever the folder or the store held). Refused naming both, before
    the store is created."""
    (tmp_path / "in").mkdir()
    extra = ["--ingest", tmp_path / "in"] if other == "--ingest" else ["--no-fetch"]
    res = cli("evening", "--params", params, "--db", tmp_path / "s.duckdb", "--out", tmp_path / "out",
              "--through", "2024-01-02", *extra)
    one_line_error(res, "--through", other)
    assert not (tmp_path / "s.duckdb").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_signals_refuses_all_with_a_machine_format(tmp_path, params, fmt):
    """`signals --all` adds every symbol to the terminal tables; --format json / csv hold every symbol's row
    anyway and --all was accepted and ignored. Refused naming both."""
    res = cli("signals", "--params", params, "--db", tmp_path / "s.duckdb", "--out", tmp_path / "out", "--all",
              "--format", fmt)
    one_line_error(res, "--all", f"--format {fmt}")


# ------------------------------------------------------------------------------------------ fetch / data synth
@pytest.mark.parametrize("kind", ["finra-short", "finra-api", "prices"])
@pytest.mark.parametrize("flag", [("--db", "s.duckdb"), ("--wait", "5")], ids=["db", "wait"])
def test_fetch_no_ingest_refuses_the_store_flags(tmp_path, kind, flag):
    """`fetch KIND --no-ingest` only downloads: --db (the store the files go into) and --wait (how long to wait
    for it) were accepted and ignored, as `study list --db` would be refused. Refused naming both, before any
    request (no server here: a request would fail on the network instead)."""
    value = tmp_path / flag[1] if flag[0] == "--db" else flag[1]
    res = cli("fetch", kind, "--start", "2024-01-02", "--end", "2024-01-03", "--cache", tmp_path / "c",
              "--no-ingest", flag[0], value, env={"POLYGON_BASE_URL": "http://127.0.0.1:9", "FINRA_CDN_URL":
                                                  "http://127.0.0.1:9", "FINRA_TOKEN_URL": "http://127.0.0.1:9"})
    one_line_error(res, flag[0], "--no-ingest")
    assert not (tmp_path / "c").exists() and not (tmp_path / "s.duckdb").exists()


def test_data_synth_refuses_wait_without_a_store(tmp_path):
    """`data synth --wait S` waits for the store the files are ingested into; without --db (or ACCUMOPT_DB) the
    files are only written and --wait was ignored. Refused naming it; with a store named it is accepted (checked
    by the value rule, not refused)."""
    res = cli("data", "synth", "--out", tmp_path / "out", "--wait", "5", "--universe", "SPY", "--start", "2024-01-02",
              "--end", "2024-01-31")
    one_line_error(res, "--wait", "--db")
    assert not (tmp_path / "out").exists()
    bad = cli("data", "synth", "--out", tmp_path / "out", "--wait", "-1", "--db", tmp_path / "s.duckdb")
    one_line_error(bad, "--wait")  # with a store, --wait is read (its rule refuses -1)


# ------------------------------------------------------------------------------------------ [objective] aggregate
_SPEC = """
[data]
universe = "tier1"
[space]
variant = { type = "categorical", choices = ["A", "B"] }
exit = "fixed_10d"
[cv]
{cv}
[objective]
aggregate = "{agg}"
[sampler]
name = "random"
[pruner]
name = "none"
[run]
n_trials = 4
"""


def test_median_of_two_folds_is_their_mean():
    """The premise: a study's value is ``aggregate`` of its fold values, and the median of two values is their
    mean (of one value, that value; its std is 0), bit for bit: aggregate = "median" over 2 folds ranks every trial
    exactly as "mean" does (measured on a 4-trial study: identical trial values)."""
    from objectives import aggregate

    for vals in ([0.013, -0.2071], [1e-9, 3.5], [7.25]):
        assert aggregate(vals, "median") == aggregate(vals, "mean")
    assert aggregate([7.25], "mean_minus_std", k=3.0) == 7.25
    assert aggregate([0.0, 1.0, 5.0], "median") != aggregate([0.0, 1.0, 5.0], "mean")  # 3 folds: it acts


@pytest.mark.parametrize("cv,agg,refused", [
    ("n_splits = 2", "median", True), ("n_splits = 1", "median", True), ("n_splits = 1", "mean_minus_std", True),
    ("n_splits = 3", "median", False), ("n_splits = 2", "mean_minus_std", False), ("n_splits = 2", "mean", False),
    ('mode = "cpcv"', "median", False),
])
def test_spec_refuses_an_aggregate_its_folds_cannot_change(cv, agg, refused):
    """[objective] aggregate = "median" with [cv] n_splits = 2 (or 1), and "mean_minus_std" with 1 fold, were
    accepted and computed the mean; now refused naming the key, the folds and the fix. cpcv scores n_groups >= 3
    groups as folds."""
    from optimizer.errors import SpecError
    from optimizer.study.spec import parse_spec

    text = _SPEC.replace("{cv}", cv).replace("{agg}", agg)
    if not refused:
        parse_spec(text, "s.toml")
        return
    with pytest.raises(SpecError) as e:
        parse_spec(text, "s.toml")
    assert "objective.aggregate" in str(e.value) and cv.replace(" ", "") in str(e.value).replace(" ", "")


def test_walkforward_refuses_median_over_two_inner_folds(tmp_path):
    """Each walk-forward window's study scores [walkforward] n_splits inner folds (default 2): with aggregate =
    "median" every window ranked its trials by their mean. Refused naming both keys, before the store is read
    (a store that does not exist: the refusal comes first)."""
    import optimizer as ao
    from optimizer.errors import SpecError
    from optimizer.study.spec import parse_spec

    spec = parse_spec(_SPEC.replace("{cv}", "n_splits = 4").replace("{agg}", "median"), "s.toml")
    with pytest.raises(SpecError) as e:
        ao.walk_forward(spec, tmp_path / "none.duckdb", "sqlite:///:memory:")
    assert "objective.aggregate" in str(e.value) and "[walkforward] n_splits = 2" in str(e.value)
    assert not (tmp_path / "none.duckdb").exists()


# ------------------------------------------------------------------------------------------ symbols map --from
@pytest.mark.parametrize("cmd", [("add", "FOO", "BAR"), ("remove", "FOO")], ids=["add", "remove"])
def test_symbols_map_names_from_and_creates_no_store(tmp_path, cmd):
    """`symbols map add OLD NEW --from 2024-13-01` created an empty store at --db and then failed naming
    'effective_date', a name the user never wrote; `map remove` named it too. Now the date is checked first and
    the error names --from."""
    res = cli("symbols", "map", *cmd, "--db", tmp_path / "s.duckdb", "--from", "2024-13-01")
    one_line_error(res, "--from must be a date", "2024-13-01")
    assert not (tmp_path / "s.duckdb").exists()


# ------------------------------------------------------------------------------------------ environment variables
def _settings_fields() -> list[str]:
    from dataclasses import fields

    from optimizer.settings import Settings

    return [f.name for f in fields(Settings)]


# the variables whose value is free text: keys, a symbol list, a path, a label (every other one has a rule)
_FREE_TEXT = {"polygon_api_key", "finra_api_key", "finra_api_secret", "tickers", "scanner_db_path",
              "scanner_inference_version"}


@pytest.mark.parametrize("name", [n for n in _settings_fields() if n not in _FREE_TEXT])
def test_every_ruled_variable_refuses_a_bad_value_by_name(name):
    """Each variable with a rule refuses a value no rule accepts, naming the variable, when the settings are read.
    POLYGON_BASE_URL / FINRA_CDN_URL = 'notaurl' were accepted and the fetch ended in urllib's traceback ('unknown
    url type', exit 1); FINRA_TOKEN_URL = ftp://x was requested five times. The list comes from the Settings
    dataclass: a variable added later is checked too, or must be named free text above."""
    from optimizer.errors import ParameterError
    from optimizer.settings import Settings

    var = name.upper()
    with pytest.raises(ParameterError) as e:
        Settings.from_env({var: "notaurl @@"})
    assert str(e.value).startswith(f"{var} must be ") and f"{var}='notaurl @@'" in str(e.value)


@pytest.mark.parametrize("var,value", [("POLYGON_BASE_URL", "ftp://x"), ("FINRA_API_URL", "https://"),
                                       ("FINRA_TOKEN_URL", "127.0.0.1:9/token")])
def test_urls_need_http_and_a_host(var, value):
    from optimizer.errors import ParameterError
    from optimizer.settings import Settings

    with pytest.raises(ParameterError, match=f"{var} must be an http:// or https:// URL"):
        Settings.from_env({var: value})
    assert getattr(Settings.from_env({var: " http://127.0.0.1:9/x "}), var.lower()) == "http://127.0.0.1:9/x"


def test_fetch_with_a_bad_url_is_one_line(tmp_path):
    """The command's view of the same refusal: one line, exit 2, no request and no cache folder."""
    res = cli("fetch", "finra-short", "--start", "2024-01-02", "--end", "2024-01-02", "--cache", tmp_path / "c",
              "--no-ingest", env={"FINRA_CDN_URL": "notaurl"})
    one_line_error(res, "FINRA_CDN_URL must be an http:// or https:// URL")
    assert not (tmp_path / "c").exists()


def test_every_variable_the_code_reads_is_documented():
    """Each variable the code reads (the Settings fields, the path and cache variables, the heartbeat grace, CI) is
    named in the README: TICKERS, POLYGON_BASE_URL and the FINRA URL variables were in no document."""
    from pathlib import Path

    from optimizer import paths

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    names = [n.upper() for n in _settings_fields()] + [paths.OUTPUT_ENV, paths.DB_ENV, paths.STORAGE_ENV,
                                                        paths.CACHE_ENV, "ACCUMOPT_HEARTBEAT_GRACE"]
    missing = [n for n in names if f"`{n}`" not in readme]
    assert not missing, missing


@pytest.mark.parametrize("sampler,seed", [("random", -1), ("tpe", -1), ("nsga2", 2**32), ("qmc", 2**40)])
def test_sampler_seed_out_of_range_names_the_key(sampler, seed):
    """[sampler] seed = -1 was refused as "[sampler] 'tpe' rejected its options {'n_startup_trials': 3}: Seed must
    be between 0 and 2**32 - 1": no key named, and options the user never wrote (the stand-in run's). Now
    [sampler.seed] and its range; the range's ends are accepted."""
    from optimizer.errors import SpecError
    from optimizer.study.spec import parse_spec

    text = _SPEC.replace("{cv}", "n_splits = 3").replace("{agg}", "mean").replace(
        'name = "random"', f'name = "{sampler}"\nseed = {seed}')
    with pytest.raises(SpecError) as e:
        parse_spec(text, "s.toml")
    assert "[sampler.seed] must be an integer in [0, 2**32 - 1]" in str(e.value) and f"seed={seed}" in str(e.value)
    for ok_seed in (0, 2**32 - 1):
        parse_spec(text.replace(f"seed = {seed}", f"seed = {ok_seed}"), "s.toml")


# ------------------------------------------------------------------------------------------ walk-forward messages
_WF_SPEC = """
[data]
universe = "tier1"
end = 2023-12-29
reserve_fraction = 0.1
[space]
variant = { type = "categorical", choices = ["A", "B"] }
exit = "fixed_10d"
[sampler]
name = "random"
seed = 3
[pruner]
name = "none"
[run]
n_trials = 2
timeout = 30
[walkforward]
train = 120
test = 60
unit = "sessions"
"""


def test_walkforward_says_what_it_does_not_use_and_every_run_warning(synth_db, tmp_path, monkeypatch):
    """A walk-forward ignored [run] timeout without a word (each window runs exactly its trials), and its table
    output printed only the run warnings holding 'reserve' or 'seed_from': an unrecorded split in the data (planted
    here: the split check's lines replaced) was in --format json's warnings and missing from the terminal. Both are
    now said on stderr."""
    monkeypatch.setattr("optimizer.validate.walkforward.panel_split_lines",
                        lambda panel: ["splits: SPY: 2023-06-01 (x10: a 10:1 split?) planted"])
    spec = tmp_path / "wf.toml"
    spec.write_text(_WF_SPEC, encoding="utf-8")
    res = cli("walkforward", spec, "--db", synth_db, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert "splits: SPY: 2023-06-01 (x10: a 10:1 split?) planted" in res.stderr
    assert "[run] timeout = 30 is not used by walk-forward windows: each runs exactly its 2 trials" in res.stderr


# ------------------------------------------------------------------------------------------ --jobs and the seed
_SMALL = """
[data]
universe = "tier1"
end = 2023-09-29
[space]
variant = { type = "categorical", choices = ["A", "B"] }
exit = "fixed_10d"
[cv]
n_splits = 2
[objective]
min_trades = 0
[sampler]
name = "random"
seed = 5
[pruner]
name = "none"
[run]
n_trials = 2
"""


def test_a_seed_that_cannot_make_the_run_reproducible_is_said(synth_db, tmp_path):
    """`study run --jobs 2` (trials finishing in any order) and `study worker` (its seed plus its process id) ran a
    spec's [sampler] seed without a word that their trials are not reproducible (README, Storage and workers).
    Now each says so on stderr and in the JSON warnings; `study run` (--jobs 1) says nothing: it is reproducible."""
    import json

    spec = tmp_path / "small.toml"
    spec.write_text(_SMALL, encoding="utf-8")
    common = ("--db", synth_db, "--storage", f"sqlite:///{tmp_path / 'st.db'}", "--format", "json")
    one = cli("study", "run", spec, *common)
    assert one.exit_code == 0, one.output
    assert "seed" not in one.stderr and not any("seed" in w for w in json.loads(one.stdout)["warnings"])
    for args, says in ((("study", "run", spec, "--name", "j2", "--jobs", "2"), "--jobs 2: 2 trials run at once"),
                       (("study", "worker", spec, "--name", "wk"), "a study worker draws with its seed plus")):
        res = cli(*args, *common)
        assert res.exit_code == 0, res.output
        note = next(w for w in json.loads(res.stdout)["warnings"] if says in w)
        assert "[sampler] seed = 5 does not make the trials reproducible" in note and f"warning: {note}" in res.stderr


def test_sandbox_refuses_a_universe_nothing_reads(synth_db, tmp_path):
    """`sandbox SYM --params best.json --universe U`: with a trial's record and no position caps the universe is
    read by nothing (the symbol's trades depend on no other; the record sets the span and reserve), yet it was
    accepted (only the file name changed: ..._u-tier1.html). Refused naming it; a configuration with caps takes it."""
    spec = tmp_path / "small.toml"
    spec.write_text(_SMALL, encoding="utf-8")
    storage = f"sqlite:///{tmp_path / 'st.db'}"
    assert cli("study", "run", spec, "--db", synth_db, "--storage", storage, "--format", "json").exit_code == 0
    best = cli("study", "best", "small", "--storage", storage)
    assert best.exit_code == 0, best.output
    (tmp_path / "best.json").write_text(best.stdout, encoding="utf-8")
    res = cli("sandbox", "SPY", "--params", tmp_path / "best.json", "--universe", "tier1", "--db", synth_db,
              "--out", tmp_path / "out", "--no-png")
    one_line_error(res, "--universe has no effect", "no position caps", "got 'tier1'")
    assert not (tmp_path / "out").exists()
    ok = cli("sandbox", "SPY", "--params", tmp_path / "best.json", "--db", synth_db, "--out", tmp_path / "out",
             "--no-png")
    assert ok.exit_code == 0, ok.output


def test_report_storage_is_read_or_refused(tmp_path):
    """`report RUN_FOLDER --storage URL` read no storage and said nothing; `report NAME --storage URL` with a file
    that does not exist took it as 'no study of that name' and reported a walk-forward run of the name instead (or
    failed on something else). Now --storage with a run folder is refused naming it, and a missing storage given
    by the flag is an error naming the file, as for every reading command."""
    run = tmp_path / "out" / "walkforward" / "w"
    run.mkdir(parents=True)
    (run / "result.json").write_text("{}", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'none.db'}"
    one_line_error(cli("report", run, "--storage", url, "--out", tmp_path / "out"), "--storage is not read",
                   "walk-forward run folder")
    one_line_error(cli("report", "w", "--storage", url, "--out", tmp_path / "out"), "none.db", "does not exist")
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "out" / "reports").exists()


@pytest.mark.parametrize("weights,refused", [
    ('w_short = 0.6', True), ('weights = "balanced"', True), ("", True),
    ('w_short = { type = "float", low = 0.4, high = 0.7, step = 0.05 }', False),
    ('w_lit = { type = "categorical", choices = [0.2, 0.3] }', False),
])
def test_seed_from_weight_radius_needs_a_searched_weight(weights, refused):
    """[seed_from] weight_radius narrows the searched weights around the seeds; with no weight searched (fixed, a
    preset, left out) it was accepted and narrowed nothing (seed.narrow_space skips them). Refused naming it; a
    searched weight (range or choices) takes it, and a [seed_from] without weight_radius is unchanged."""
    from optimizer.errors import SpecError
    from optimizer.study.spec import parse_spec

    text = _SPEC.replace("{cv}", "n_splits = 3").replace("{agg}", "mean").replace(
        'exit = "fixed_10d"', f'exit = "fixed_10d"\n{weights}') + '[seed_from]\nstudy = "a"\n'
    parse_spec(text, "s.toml")  # no weight_radius: nothing to refuse
    text += "weight_radius = 0.1\n"
    if not refused:
        assert parse_spec(text, "s.toml").seed_from.weight_radius == 0.1
        return
    with pytest.raises(SpecError, match=r"\[seed_from.weight_radius\] has no effect.*weight_radius=0.1"):
        parse_spec(text, "s.toml")


def test_seed_from_top_beyond_the_source_or_the_budget_is_said(synth_db, tmp_path):
    """[seed_from] top = 5 from a study of 2 trials took 2 seeds without a word, and with n_trials = 1 the second
    seed waited in the storage for good ('waiting': 1 in the counts, nothing said). Both are now said in the
    run's warnings."""
    import json

    src, dst = tmp_path / "small.toml", tmp_path / "seeded.toml"
    src.write_text(_SMALL, encoding="utf-8")
    dst.write_text(_SMALL.replace("n_trials = 2", "n_trials = 1") + '[seed_from]\nstudy = "small"\ntop = 5\n',
                   encoding="utf-8")
    common = ("--db", synth_db, "--storage", f"sqlite:///{tmp_path / 'st.db'}", "--format", "json")
    assert cli("study", "run", src, *common).exit_code == 0
    res = cli("study", "run", dst, *common)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["complete"] + doc["pruned"] == 1 and doc["waiting"] == 1
    warns = " | ".join(doc["warnings"])
    assert "[seed_from] top = 5: study 'small' has 2 completed trial(s), so 2 seed(s) were taken" in warns
    assert "1 seed(s) of [seed_from] 'small' still wait: its n_trials = 1 were done before them" in warns


def test_evening_refuses_fetch_with_ingest(tmp_path, params):
    """`evening --ingest DIR --fetch`: --ingest replaces the fetch, so the explicit --fetch was ignored. Refused
    naming both; --ingest alone (fetch left to its default) is not refused by this rule."""
    (tmp_path / "in").mkdir()
    base = ("evening", "--params", params, "--db", tmp_path / "s.duckdb", "--out", tmp_path / "out", "--ingest",
            tmp_path / "in")
    one_line_error(cli(*base, "--fetch"), "--fetch", "--ingest")
    alone = cli(*base)
    assert "--fetch" not in alone.stderr, alone.stderr
