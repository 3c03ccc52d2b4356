"""``study compare`` excludes compilation: ``warm_kernels`` compiles (or loads from numba's cache) every kernel a trial
uses before the first timed trial, ``study run`` records how long that took on the study, and the comparison table
and page say so.

The oracle of "every kernel": numba's own dispatcher signatures. In a fresh process, after ``warm_kernels`` the
signatures of every ``*_nb`` dispatcher must stay the same through real trials on the planted store (any
compilation inside a trial would add one), with and without position caps and ATR sizing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from optimizer.report.compare import warmup_note, write_compare_html
from optimizer.study.inspect import compare_studies
from optimizer.study.records import read_study

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys
from optimizer.engine import _kernels as K
from optimizer.engine.warmup import warm_kernels, kernels_warm
from optimizer.engine.evaluate import Config, Evaluator
from optimizer.study.data import load_universe_panel

def sigs():
    return {n: [str(s) for s in getattr(K, n).signatures] for n in K.__all__ if hasattr(getattr(K, n), "signatures")}

before = sigs()
part = warm_kernels(parts=("serial",))  # one part of the split the test suite primes numba's cache with
partial = kernels_warm()
first = warm_kernels()
again = warm_kernels()
warm = sigs()
panel = load_universe_panel(sys.argv[1], "tier1+3")
ev = Evaluator(panel)
for p in ({}, {"variant": "D", "z_window": 30, "exit": "fixed_10d", "stop_loss": 0.05, "take_profit": 0.1},
          {"max_positions": 3, "max_per_sector": 1}, {"sizing": "atr", "exit": "hybrid_30d"}):
    ev.run(Config.from_params(p))
print(json.dumps({"before": before, "warm": warm, "after": sigs(), "first": first, "again": again,
                  "is_warm": kernels_warm(), "part": part, "partial": partial}))
"""


@pytest.mark.slow
def test_warm_kernels_leaves_nothing_to_compile_for_a_trial(synth_db):
    out = subprocess.run([sys.executable, "-c", PROBE, str(synth_db)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    d = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(not v for v in d["before"].values())  # a fresh process: nothing compiled yet
    assert sum(map(len, d["warm"].values())) >= 2, d["warm"]  # the warm-up compiled (or loaded) the kernels
    assert d["after"] == d["warm"]  # and the evaluations, the path of every trial, compiled nothing more
    assert d["first"] > 0 and d["again"] == 0.0 and d["is_warm"]
    assert d["part"] > 0 and not d["partial"]  # warm only once every part ran; the rest ran after the first part


def test_warm_kernels_refuses_an_unknown_part():
    from optimizer.engine.warmup import PARTS, warm_kernels

    with pytest.raises(ValueError, match=r"parts must be among \('serial', 'capped', 'parallel'\), got 'fused'"):
        warm_kernels(parts=("fused",))
    assert PARTS == ("serial", "capped", "parallel")


def test_study_records_the_warmup_and_compare_says_so(synth_db, tmp_path):
    from optimizer.study.run import run_study
    from optimizer.study.spec import parse_spec

    spec = parse_spec("""
[study]
name = "warm"
[data]
universe = "tier1"
[space]
variant = { type = "categorical", choices = ["B", "D"] }
buy_threshold = { type = "int", low = 60, high = 75, step = 5 }
[cv]
n_splits = 2
[objective]
name = "composite_rank_excess"
min_trades = 1
[sampler]
name = "random"
seed = 1
[run]
n_trials = 4
""")
    url = f"sqlite:///{tmp_path / 's.db'}"
    res = run_study(spec, synth_db, url)
    w = read_study(res.study).kernel_warmup_s
    assert w is not None and w >= 0.0
    cmp = compare_studies(url, ["warm"])
    assert cmp.summary.loc[0, "kernel_warmup_s"] == w
    note = warmup_note(cmp.summary)
    assert note.startswith("Trial times exclude numba compilation") and f"warm {w:.1f} s" in note
    page = write_compare_html(cmp, tmp_path / "cmp.html").read_text(encoding="utf-8")
    assert "Trial times exclude numba compilation" in page
    # a study made before the warm-up existed is named as such
    old = cmp.summary.assign(kernel_warmup_s=float("nan"))
    assert "warm: made before kernels were warmed first" in warmup_note(old)
