"""Benchmark: ``accumopt study list`` on a storage of many trials (optimizer.study.inspect.list_studies).

Builds a temporary SQLite storage (default 12 studies x 300 trials = 3,600: complete, pruned, failed and running
trials, each with a metrics attribute and parameters like a real trial's), then times ``list_studies`` (one SQL
query per single-objective study, ``storage.trial_summary``) against the ORM path it replaced (every trial read
through Optuna, ``inspect._list_row_orm``), best of 3 each, and checks both give the same table. Prints a rich
table, or with ``--json`` one JSON object: {"studies", "trials", "orm_seconds", "sql_seconds", "speedup",
"identical", "build_seconds", "machine"}.

    .venv/bin/python bench/study_list.py [--studies 12] [--trials 300] [--json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine  # noqa: E402

__all__ = ["build", "run"]


def build(url: str, n_studies: int, n_trials: int) -> None:
    """``n_studies`` single-objective studies of ``n_trials`` trials each (70% complete, 20% pruned, the rest failed
    and one running), each trial with five parameters and a metrics attribute."""
    import numpy as np
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    from optimizer.study.storage import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = make_storage(url, heartbeat=False)
    rng = np.random.default_rng(5)
    dist = {"variant": CategoricalDistribution(["A", "B", "C", "D"]), "z_window": IntDistribution(10, 60),
            "buy_threshold": FloatDistribution(50, 90), "sell_threshold": FloatDistribution(10, 50),
            "hold_days": IntDistribution(2, 30)}
    for s in range(n_studies):
        study = optuna.create_study(study_name=f"study_{s:02d}", storage=st, direction="maximize")
        trials = []
        for i in range(n_trials):
            u = rng.random()
            state = (TrialState.RUNNING if i == n_trials - 1 else TrialState.COMPLETE if u < 0.7
                     else TrialState.PRUNED if u < 0.9 else TrialState.FAIL)
            params = {"variant": "ABCD"[i % 4], "z_window": int(rng.integers(10, 61)),
                      "buy_threshold": float(rng.uniform(50, 90)), "sell_threshold": float(rng.uniform(10, 50)),
                      "hold_days": int(rng.integers(2, 31))}
            metrics = {k: float(rng.normal()) for k in ("hit_rate", "avg_return", "sharpe", "rank_score",
                                                        "avg_excess_return", "max_drawdown", "total_trades")}
            trials.append(create_trial(state=state, value=float(rng.normal()) if state == TrialState.COMPLETE else None,
                                       params=params, distributions=dist, user_attrs={"metrics": metrics}))
        study.add_trials(trials)


def _best_of(n: int, fn):
    best, out = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(n_studies: int = 12, n_trials: int = 300) -> dict:
    import pandas as pd

    from optimizer.study.inspect import _list_row_orm, list_studies, open_storage

    with tempfile.TemporaryDirectory(prefix="accumopt-bench-list-") as d:
        url = f"sqlite:///{Path(d) / 's.db'}"
        t0 = time.perf_counter()
        build(url, n_studies, n_trials)
        build_s = time.perf_counter() - t0

        def orm() -> pd.DataFrame:
            st, _ = open_storage(url)
            rows = [_list_row_orm(st, s) for s in sorted(st.get_all_studies(), key=lambda s: s.study_name)]
            df = pd.DataFrame(rows)
            df["pareto_size"] = df["pareto_size"].astype("Int64")
            df["n_trials_target"] = pd.array(df["n_trials_target"].tolist(), dtype="Int64")
            return df

        orm_s, old = _best_of(3, orm)
        sql_s, new = _best_of(3, lambda: list_studies(url))
        try:
            pd.testing.assert_frame_equal(new, old[new.columns])
            same = True
        except AssertionError:
            same = False
    return {"studies": n_studies, "trials": n_studies * n_trials, "orm_seconds": round(orm_s, 3),
            "sql_seconds": round(sql_s, 3), "speedup": round(orm_s / sql_s, 1), "identical": same,
            "build_seconds": round(build_s, 1), "machine": machine()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=12)
    ap.add_argument("--trials", type=int, default=300, help="trials per study")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = run(a.studies, a.trials)
    emit(r, a.json, f"study list: {r['studies']} studies, {r['trials']} trials (best of 3)", [
        ("ORM path (every trial read), s", r["orm_seconds"]),
        ("one SQL query per study, s", r["sql_seconds"]),
        ("speed-up", r["speedup"]),
        ("same table", r["identical"], "True", r["identical"]),
    ], [f"load average {r['machine']['loadavg_1m']} on {r['machine']['cpus']} cpus; build {r['build_seconds']} s"])


if __name__ == "__main__":
    main()
