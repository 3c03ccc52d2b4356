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
