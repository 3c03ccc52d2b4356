"""explore22: the documents tell the truth about the command line and its defaults.

Each test keeps one CLASS of claims true mechanically, reading the claims out of README.md, docs/*.md and the
``--help`` texts and comparing them with the click tree, the settings and the parameter registry:

* the README's command table names every command (the leaves of the click tree, ``walkforward worker`` included)
  and nothing else;
* every command takes the three shared options the README promises (``--out``, ``--db``, ``--storage``);
* the README's two lists of the commands that take ``--wait SECONDS`` are exactly the commands that have it;
* a default written by hand in a ``--help`` text (``(env VAR, default N)``, ``[env VAR; N]``, ``the
  configuration's, N``) is the code's default;
* the default column of docs/SCANNER.md's settings table, and the defaults README.md and docs/DATA.md state for
  the ingest, metrics and heartbeat variables and for the commands' waits, are the code's.

Fast: nothing here runs a command beyond ``--help``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click
import pytest

from optimizer import paths
from optimizer.cli import main
from optimizer.params import PARAMS
from optimizer.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _leaves(cmd: click.Command, path: tuple[str, ...] = ()):
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _leaves(sub, (*path, name))
    else:
        yield " ".join(path), cmd
        worker = getattr(cmd, "worker", None)  # `walkforward worker` is dispatched by the walkforward command
        if isinstance(worker, click.Command):
            yield " ".join((*path, worker.name)), worker


LEAVES: dict[str, click.Command] = dict(_leaves(main))


def _option(cmd: click.Command, flag: str) -> click.Option | None:
    return next((p for p in cmd.params if isinstance(p, click.Option) and flag in (*p.opts, *p.secondary_opts)), None)


# ------------------------------------------------------------------------------------------------ the command table

def command_words(cell: str) -> list[str]:
    """The commands one first cell of the README's command table names: ``study run / worker / validate`` ->
    study run, study worker, study validate; ``symbols show / map add`` -> symbols show, symbols map add;
    ``walkforward SPEC`` -> walkforward; ``scan``, ``table`` -> scan, table. Arguments (upper case) and flags end a
    name."""
    names = []
    for tok in re.findall(r"`([^`]+)`", cell):
        prefix: list[str] = []
        for i, part in enumerate(tok.split(" / ")):
            words = []
            for w in part.split():
                if w.startswith("-") or not re.fullmatch(r"[a-z][a-z0-9-]*", w):
                    break
                words.append(w)
            if i == 0:
                prefix = words[:1]
                names.append(" ".join(words))
            else:
                names.append(" ".join(prefix + words))
    return names


def readme_command_table() -> list[str]:
    block = README[README.index("| command | what it does |"):]
    block = block[:block.index("\n\n")]
    names = []
    for line in block.splitlines()[2:]:
        names += command_words(line.split(" | ", 1)[0][2:])
    return names


def test_command_words_reads_the_tables_spellings():
    assert command_words("`study run / worker / validate`") == ["study run", "study worker", "study validate"]
    assert command_words("`symbols show / map add / map remove`") == ["symbols show", "symbols map add",
                                                                       "symbols map remove"]
    assert command_words("`walkforward SPEC`, `walkforward worker SPEC`") == ["walkforward", "walkforward worker"]
    assert command_words("`signals --params FILE`") == ["signals"]
    assert command_words("`scan`, `table`") == ["scan", "table"]


def test_the_readme_command_table_names_every_command_and_only_those():
    """`walkforward worker` was in no row of the table (documented only under "Walk-forward on many machines")."""
    documented = readme_command_table()
    assert len(documented) == len(set(documented)), sorted(n for n in documented if documented.count(n) > 1)
    assert set(documented) == set(LEAVES), (sorted(set(LEAVES) - set(documented)), sorted(set(documented) - set(LEAVES)))


def test_every_command_takes_help_and_the_three_shared_options():
    """README: "Every command takes `--help` and the three shared options"."""
    missing = {name: [f for f in ("--out", "--db", "--storage", "--help") if _option(cmd, f) is None
                      and not (f == "--help" and cmd.get_help_option(click.Context(cmd)) is not None)]
               for name, cmd in LEAVES.items()}
    assert not {k: v for k, v in missing.items() if v}, missing


# ------------------------------------------------------------------------------------------------ --wait

def _expand(names: str) -> set[str]:
    """``ingest``, ``symbols map add|remove``, ``fetch`` -> {ingest, symbols map add, symbols map remove, fetch
    finra-short, fetch finra-api, fetch prices}."""
    out = set()
    for tok in re.findall(r"`([^`]+)`", names):
        *head, last = tok.split()
        out |= {" ".join((*head, alt)) for alt in last.split("|")}
    # a group (`fetch`) names each of its commands
    return {leaf for name in out for leaf in ([name] if name in LEAVES else LEAVES) if leaf == name
            or leaf.startswith(name + " ")}


def test_the_readme_lists_of_commands_with_wait_are_the_commands_that_have_it():
    m = re.search(r"A command that writes the store \((.*?)\) or reads it \((.*?)\) takes `--wait SECONDS`",
                  README, re.S)
    assert m, "the README's --wait sentence moved: update this test"
    writers, readers = _expand(m.group(1)), _expand(m.group(2))
    assert not writers & readers, writers & readers
    have = {name for name, cmd in LEAVES.items() if _option(cmd, "--wait") is not None}
    have.discard("walkforward worker")  # its --wait is its coordinator's (the README says so); --store-wait the store's
    assert writers | readers == have, (sorted(have - writers - readers), sorted((writers | readers) - have))
    assert "`walkforward worker`'s `--wait` is the time it waits for its coordinator" in " ".join(README.split())
    assert _option(LEAVES["walkforward worker"], "--store-wait") is not None


# ------------------------------------------------------------------------------------------------ --help defaults

SETTINGS = {f.name.upper(): f.default for f in dataclasses.fields(Settings)
            if f.default is not dataclasses.MISSING} | {paths.OUTPUT_ENV: paths.DEFAULT_OUTPUT}


def _same(text: str, value) -> bool:
    text = text.strip().replace(",", "")
    if isinstance(value, bool):
        return text.lower() in (("on", "true", "yes", "1") if value else ("off", "false", "no", "0"))
    if isinstance(value, (int, float)):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return text == str(value)


def _helps():
    for name, cmd in LEAVES.items():
        for p in cmd.params:
            if isinstance(p, click.Option) and p.help:
                yield name, p, " ".join(p.help.split())


def test_help_texts_state_the_defaults_the_code_uses():
    """Every default a --help text writes by hand: ``(env VAR, default N)`` and ``[env VAR; N]`` against the
    Settings default of VAR; ``(default: the configuration's, N)`` against the engine parameter's default."""
    checked, wrong = 0, []
    config_param = {"--z-window": "z_window", "--buy": "buy_threshold", "--sell": "sell_threshold"}
    for name, p, text in _helps():
        for var, val in re.findall(r"\(env ([A-Z_]+), default ([^)]+)\)", text) + \
                re.findall(r"\[env ([A-Z_]+); ([^\]]+)\]", text):
            checked += 1
            if var not in SETTINGS or not _same(val, SETTINGS[var]):
                wrong.append((name, p.opts[0], var, val, SETTINGS.get(var)))
        for val in re.findall(r"the configuration's, ([0-9.]+)\)", text):
            checked += 1
            param = config_param.get(p.opts[0])
            if param is None or not _same(val, PARAMS[param].default):
                wrong.append((name, p.opts[0], param, val, param and PARAMS[param].default))
    assert not wrong, wrong
    assert checked >= 12, checked  # ingest's 2, scan's 7, sandbox's 3 at least


def test_help_defaults_the_help_writes_by_hand_are_caught(monkeypatch):
    """The check above can fail: a help text with another number than the Settings default is reported."""
    cmd = LEAVES["ingest"]
    opt = _option(cmd, "--max-expansion")
    monkeypatch.setattr(opt, "help", opt.help.replace("default 100", "default 50"))
    with pytest.raises(AssertionError, match="MAX_EXPANSION_RATIO"):
        test_help_texts_state_the_defaults_the_code_uses()


# ------------------------------------------------------------------------------------------------ documents' defaults

def test_the_scanner_settings_table_states_the_settings_defaults():
    text = (ROOT / "docs" / "SCANNER.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (SCANNER_[A-Z_]+) \| [^|]* \| ([^|]*) \|", text, re.M)
    assert len(rows) == sum(1 for v in SETTINGS if v.startswith("SCANNER_")), rows
    wrong = [(var, val) for var, val in rows if var != "SCANNER_DB_PATH" and not _same(val, SETTINGS[var])]
    assert not wrong, wrong


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_defaults_readme_and_data_md_state_are_the_codes(monkeypatch):
    monkeypatch.delenv("ACCUMOPT_HEARTBEAT_GRACE", raising=False)
    from optimizer.data.metrics import DEFAULT_MIN_LIT_VOLUME, DEFAULT_Z_WINDOW
    from optimizer.study.spec import CVSpec, DataSpec, RunSpec, WalkForwardSpec
    from optimizer.study.storage import stale_grace

    readme, data = _flat(README), _flat((ROOT / "docs" / "DATA.md").read_text(encoding="utf-8"))
    m = re.search(r"`ACCUMOPT_HEARTBEAT_GRACE` \| seconds \(integer >= 2, default (\d+)\)", readme)
    assert m and int(m.group(1)) == stale_grace(), m
    m = re.search(r"`evening` waits up to (\d+) s by default", readme)
    assert m and float(m.group(1)) == _option(LEAVES["evening"], "--wait").default
    m = re.search(r"its coordinator \(default (\d+) s\), so its wait for the store is `--store-wait SECONDS` "
                  r"\(default (\d+)\)", readme)
    worker = LEAVES["walkforward worker"]
    assert m and (float(m.group(1)), float(m.group(2))) == (_option(worker, "--wait").default,
                                                             _option(worker, "--store-wait").default)
    m = re.search(r"`--port` 1-65535, default (\d+)", readme)
    assert m and int(m.group(1)) == _option(LEAVES["dashboard"], "--port").default
    m = re.search(r"`n_groups`, `n_test_groups` \(cpcv only; defaults (\d+) and (\d+)\)", readme)
    assert m and (int(m.group(1)), int(m.group(2))) == (CVSpec.n_groups, CVSpec.n_test_groups)
    m = re.search(r"inner purged CV, default (\d+),.*?`embargo` \(that CV's embargo, default (\d+)", readme)
    assert m and (int(m.group(1)), int(m.group(2))) == (WalkForwardSpec.n_splits, WalkForwardSpec.embargo)
    m = re.search(r"`MAX_DECOMPRESSED_MB` MiB of content \(default (\d+)\).*?`MAX_EXPANSION_RATIO` times the "
                  r"compressed bytes read \(default (\d+)\)", data)
    assert m and (int(m.group(1)), float(m.group(2))) == (Settings.max_decompressed_mb, Settings.max_expansion_ratio)
    m = re.search(r"MIN_LIT_VOLUME \(default ([\d,]+);", data)
    assert m and int(m.group(1).replace(",", "")) == DEFAULT_MIN_LIT_VOLUME
    m = re.search(r"`MARKET_TZ` \(an IANA zone, default ([A-Za-z_/]+)\).*?default (\d\d:\d\d)\.\.(\d\d:\d\d)", data)
    assert m and m.groups() == (Settings.market_tz, Settings.rth_start, Settings.rth_end)
    m = re.search(r"z_window, z_min_periods \| window settings used for the stored z columns \(defaults (\d+) and "
                  r"(\d+) for a new table", data)
    assert m and int(m.group(1)) == int(m.group(2)) == DEFAULT_Z_WINDOW
    engine = _flat((ROOT / "docs" / "ENGINE.md").read_text(encoding="utf-8"))
    costs = (DataSpec.commission_bps, DataSpec.slippage_bps)
    assert costs == (PARAMS["commission_bps"].default, PARAMS["slippage_bps"].default)
    m = re.search(r"\(defaults ([\d.]+) \+ ([\d.]+) bps\)", engine)
    assert m and (float(m.group(1)), float(m.group(2))) == costs
    m = re.search(r"`slippage_bps` \(finite, >= 0; defaults (\d+) \+ (\d+) bp per side\)", readme)
    assert m and (float(m.group(1)), float(m.group(2))) == costs
    m = re.search(r"The final reserve \(last (\d+)% of sessions by default\)", readme)
    assert m and int(m.group(1)) / 100 == DataSpec.reserve_fraction
    m = re.search(r"`n_trials` \(total, default (\d+);", readme)
    assert m and int(m.group(1)) == RunSpec.n_trials


# ------------------------------------------------------------------------------------------------ ingest's exit codes

def _ingest(tmp_path, name: str, text: str, *flags: str):
    from click.testing import CliRunner

    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return CliRunner().invoke(main, ["ingest", "splits", str(f), "--db", str(tmp_path / "s.duckdb"),
                                     "--out", str(tmp_path / "o"), *flags])


def test_ingest_exit_codes_and_its_json_report_are_the_documented_ones(tmp_path):
    """`ingest --help` said "Exit code 1 when anything was rejected" and the README that a failing command under
    --format json leaves stdout empty; an ingest whose file failed exits 2 and prints its report (JSON too). The
    help and the README now say both codes; the codes are checked here."""
    import json

    bad = _ingest(tmp_path, "bad.csv", "symbol,date,ratio\nAAPL,2023-03-01,10000\nAAPL,2023-06-01,10000\n",
                  "--format", "json")
    assert bad.exit_code == 2
    assert json.loads(bad.stdout)["totals"]["failed"] == 1  # the report, one JSON document
    rejected = _ingest(tmp_path, "rej.csv", "symbol,date,ratio\nMSFT,2023-03-01,2\nMSFT,2023-06-01,100000\n")
    assert rejected.exit_code == 1, rejected.output
    ok = _ingest(tmp_path, "ok.csv", "symbol,date,ratio\nNVDA,2023-03-01,4\n")
    assert ok.exit_code == 0, ok.output
    help_text = " ".join(LEAVES["ingest"].help.split())
    assert "Exit code 2 when a file failed, else 1 when rows were rejected" in help_text
    assert "`ingest` prints its report (its JSON too) and exits 2 when a file failed, 1 when rows were rejected" \
        in " ".join(README.split())


# ------------------------------------------------------------------------------------------------ one rule, every doc

def _paragraphs_naming(text: str, pattern: str) -> list[str]:
    """The paragraphs / list items / table rows of ``text`` that match ``pattern``, whitespace flattened."""
    parts = re.split(r"\n\s*\n|\n(?=\* )|\n(?=\| )", text)
    return [" ".join(p.split()) for p in parts if re.search(pattern, " ".join(p.split()))]


def test_every_document_defining_universe_all_says_a_study_decides_it_before_the_reserve():
    """Since b95d523 a study's universe ``all`` is the symbols priced before its final reserve; README's [data] row
    said so, docs/DATA.md's definition ("every symbol of the store with a price (a close) in the span") did not."""
    defining = r"all\"?`? is every symbol of the store with a price"
    found = {}
    for path in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        for para in _paragraphs_naming(path.read_text(encoding="utf-8"), defining):
            found.setdefault(path.name, []).append(bool(re.search(r"reserve", para)))
    assert {"README.md", "DATA.md"} <= set(found), found
    assert all(all(v) for v in found.values()), found


def test_docs_data_md_names_every_schema_version():
    """docs/DATA.md's schema history stopped at v4; the store is at v7 (signal_sheet v5, reserve_ledger v6, splits
    again v7). Every migration after the first is named there."""
    from optimizer.data.store import SCHEMA_VERSION

    text = (ROOT / "docs" / "DATA.md").read_text(encoding="utf-8")
    section = _flat(text[text.index("## Raw tables"):text.index("## Ingest")])
    missing = [n for n in range(2, SCHEMA_VERSION + 1) if not re.search(rf"\bv{n}\b", section)]
    assert SCHEMA_VERSION >= 7 and not missing, missing


def test_the_stats_md_gate_table_is_the_walkforward_verdicts_gates():
    """docs/STATS.md's table "The verdict, gate by gate" names exactly the gates a walk-forward's verdict has, with
    their comparisons and thresholds (walkforward._decide, on a stand-in set of statistics)."""
    import optimizer.validate.walkforward as wf

    text = (ROOT / "docs" / "STATS.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_]+)` \| .* \| (>=|<=|>|<) ([0-9.]+) \|\s*$", text, re.M)
    inference = {"mean_per_trade": 0.01, "mde_per_trade": 0.005, "mde_per_year": 0.1, "alpha": 0.0228, "power": 0.8,
                 "n_trades": 40, "n_days": 200, "n_eff": 60.0, "t": 2.5}
    v = wf._decide({"inference": inference, "dsr": 0.5, "spa": {"p": 0.2}, "n_trials_tried": 10, "n_configs": 9,
                    "psr": 0.97, "pbo": 0.3})
    gates = [(g.name, g.comparison, float(g.threshold)) for g in v.gates]
    assert [(n, op, float(t)) for n, op, t in rows] == gates, (rows, gates)
