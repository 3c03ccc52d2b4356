"""Lead, stop 38: `study export` carries the exact fold metrics once (``fold<i>_<key>``), not also the dashboard's
rounded display copies (``records.fold_key``, mend19)."""

from __future__ import annotations

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
