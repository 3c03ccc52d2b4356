"""Lead, stop 38: `study export` carries the exact fold metrics once (``fold<i>_<key>``), not also the dashboard's
rounded display copies (``records.fold_key``, mend19); no module reads another package's private name."""

from __future__ import annotations

import ast
from pathlib import Path

import optuna

from optimizer.study.inspect import trials_table
from optimizer.study.records import FOLDS, fold_key, shown_fold


def test_export_has_the_exact_folds_and_not_their_rounded_display_copies(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    exact = [{"rank_score": 0.0314088517302807}, {"rank_score": -0.123456789012}]
    t = study.ask()
    t.set_user_attr(FOLDS, exact)
    for i, m in enumerate(exact):
        t.set_user_attr(fold_key(i), shown_fold(m))
    study.tell(t, 1.0)
    df = trials_table(url, "s")
    assert df["fold0_rank_score"].iloc[0] == 0.0314088517302807  # exact, not 0.0314089
    assert df["fold1_rank_score"].iloc[0] == -0.123456789012
    assert not [c for c in df.columns if c.startswith("user_attrs_fold_")], list(df.columns)


def test_no_module_reads_another_packages_private_name():
    """A private name (``_x``, not a private module) is imported only inside its own package: a rule one package
    needs from another has a public home (before: ``metrics`` imported ingest's ``_tag_rules``)."""
    root = Path(__file__).resolve().parents[1]
    pkg = root / "optimizer"
    bad = []
    for f in sorted(pkg.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("optimizer")):
                continue
            mod = root.joinpath(*node.module.split("."))
            home = mod if mod.is_dir() else mod.parent
            for a in node.names:
                private = a.name.startswith("_") and not a.name.startswith("__")
                module = (mod / f"{a.name}.py").exists() or (mod / a.name).is_dir()
                if private and not module and f.parent != home and home not in f.parents:
                    bad.append(f"{f.relative_to(root)}:{node.lineno}: {node.module}.{a.name}")
    assert not bad, bad


_WF = """
[data]
universe = "tier1"
[space]
exit = "fixed_10d"
[walkforward]
train = 120
test = 60
unit = "sessions"
"""


def test_walkforward_says_the_cv_keys_its_windows_do_not_read():
    """A walk-forward window's inner CV is [walkforward] n_splits / embargo; a spec's [cv] n_splits, test_size and
    embargo (study run's) were skipped without a word (README says so; the run did not). Said now, naming each key
    the spec writes with its value; nothing said when the spec writes none of them (a default is not the user's)."""
    from optimizer.study.spec import parse_spec
    from optimizer.validate.walkforward import _unused_notes

    plain = parse_spec(_WF, "wf.toml")
    assert not [m for m in _unused_notes(plain, 2) if "[cv]" in m]
    spec = parse_spec(_WF + "n_splits = 3\n[cv]\nn_splits = 5\nembargo = 7\n", "wf.toml")
    notes = [m for m in _unused_notes(spec, 2) if "[cv]" in m]
    assert notes == ["[cv] n_splits = 5, embargo = 7 are not used by walk-forward windows: each window's study scores "
                     "[walkforward] n_splits = 3 inner folds with [walkforward] embargo = 0 (set those to change a "
                     "window's folds)"]
    one = parse_spec(_WF + "[cv]\ntest_size = 40\nmin_train_size = 10\n", "wf.toml")  # min_train_size IS read
    assert [m for m in _unused_notes(one, 2) if "[cv]" in m][0].startswith("[cv] test_size = 40 is not used by")


def test_no_cv_note_when_the_windows_use_the_same_value():
    """[cv] n_splits = 2 and embargo = 0 are what the windows use by default: nothing to say (the note is for a
    value that does not take effect)."""
    from optimizer.study.spec import parse_spec
    from optimizer.validate.walkforward import _unused_notes

    same = parse_spec(_WF + "[cv]\nn_splits = 2\nembargo = 0\n", "wf.toml")
    assert not [m for m in _unused_notes(same, 2) if "[cv]" in m]
