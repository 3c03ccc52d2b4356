"""Pooled vs per-regime-filtered vs regime-conditional winners, out of sample (walk-forward), on one store.

    .venv/bin/python bench/regime_compare.py studies/regime_conditional.toml [--db output/demo/darkpool.duckdb]
        [--storage sqlite:///...] [--n-trials 20] [--out output]

Writes ``regime_comparison.csv`` into the conditional spec's walk-forward folder (``<out>/walkforward/<study>``),
where ``accumopt report`` / ``build_walkforward_report`` show it as the "Pooled vs regime-filtered vs
regime-conditional" section, and prints the table with the load average. Everything it writes is under the output
root (``--out``, else env ACCUMOPT_OUTPUT, else ``output``, as every command's): that CSV and the default study
storage ``<out>/regime_compare.db``. The run folder is saved as ``save_walkforward`` saves it
(``paths.atomic_folder``): the run's files kept, the CSV whole or not at all, a folder left mid-swap by a killed
save renamed in first.
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd

from optimizer.paths import atomic_folder, output_root
from optimizer.study.spec import load_spec
from optimizer.validate.regime_compare import compare_regimes
from optimizer.validate.walkforward import walkforward_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--db", default="output/demo/darkpool.duckdb")
    ap.add_argument("--storage", default=None)
    ap.add_argument("--n-trials", type=int, default=None)
    ap.add_argument("--out", default=None, help="output root (default: env ACCUMOPT_OUTPUT, else output)")
    a = ap.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec(a.spec)
    root = output_root(a.out)
    storage = a.storage or f"sqlite:///{root.resolve() / 'regime_compare.db'}"
    root.mkdir(parents=True, exist_ok=True)
    table = compare_regimes(spec, a.db, storage, n_trials=a.n_trials)
    d = walkforward_dir(root, spec.run.study_name)
    with atomic_folder(d) as t:  # as save_walkforward: never a half CSV, nor a run lost mid-swap
        table.to_csv(t / "regime_comparison.csv", index=False)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"written: {d / 'regime_comparison.csv'}; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
