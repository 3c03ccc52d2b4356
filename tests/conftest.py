"""Session-scoped fixtures shared by the whole test suite: small synthetic DuckDB stores, built ONCE per session.

Building a store runs the real path (``synth_to_db``: generate -> write real-format raw files -> ingest -> build
``daily_metrics``) and takes ~20-30 s, mostly the FINRA ingest, so each store is built at most once per pytest
session, lazily (only when a test asks for it), in a session temp directory.

Fixtures
--------
``synth_db`` -> ``pathlib.Path`` of the PLANTED store (``PLANTED_SYNTH``: seed 11, NYSE sessions 2023-01-03 ..
    2024-06-28 = 374 sessions, universe ``tier1+3`` = 33 symbols, ``effect=2.0``, family ``ratio``). The effect is
    carried by the short-buy share of total volume: score variants B, C, D and blended see it, A (raw short
    volume) and vw_flow do not. The raw files and the ground truth sit next to it, in ``synth_db.parent / "raw"``
    (``truth/README.json``, ``truth/episodes.csv``, ``finra/``, ``prices_daily.csv``, ...).
``null_db`` -> ``pathlib.Path`` of the NULL store (``NULL_SYNTH``: the same config with ``effect=0.0``: the very same
    flows, bumps included, but no price drift, so nothing is predictable from the flows).
``synth_truth`` / ``null_truth`` -> the ``truth/README.json`` dict of each store.

Both stores are SHARED by every test of the session: treat them as read-only (``connect(path, read_only=True)``,
``accumopt backtest --no-save``, study storages elsewhere). A test that must write builds its own store. Each test
process holds both open read-only for the session (``_held_open``: every later open in the process is ~0.03 ms
instead of ~17 ms of CPU), so a writable open of one fails there, and in a process it starts.

Under pytest-xdist (``make test``: ``-n 2``) each store is built ONCE for all workers: the first worker that needs
it builds it in the session's shared temp folder under a file lock, the others wait, and every worker then reads
its own copy of the DuckDB file (a DuckDB file is locked per process), with the raw files linked, not copied.
"""

from __future__ import annotations

import gc

# Python's cyclic garbage collector ran a young collection every 700 net container allocations and a full one every
# 100 young ones; a test process holds a large heap (pandas, optuna, sklearn, plotly, numba ... imported) and the
# tests allocate fast (frames, trials, figures), so the collector took ~6 % of the tests' CPU (4.3 s of 72 s over six
# files, full collections 3.2 s of it). A young collection every 10,000 allocations (a full one still every 100 young
# ones): 2.1 s, peak memory +2.5 %. Only the test processes (a command a test starts keeps Python's default); the
# same garbage is found, later. Set before the imports below (hypothesis, the package: ~0.4 s of collections).
gc.set_threshold(10_000, 10, 10)

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: each worker builds its own stores
    fcntl = None  # type: ignore[assignment]

import pytest
from hypothesis import HealthCheck, settings

# pytest rewrites the asserts of every test module when it imports it (~10 s of CPU per process for this suite) and
# keeps the result beside the module (tests/__pycache__/*-pytest-*.pyc) for the next session, but only where Python
# may write bytecode: a host that sets PYTHONDONTWRITEBYTECODE (as the dev host does) paid the rewriting again in
# every xdist worker of every session. The test processes write it (this conftest is imported before the modules).
sys.dont_write_bytecode = False

from optimizer.data.synth import SynthConfig, synth_to_db

# Hypothesis profiles: few examples in the edit loop (make test-fast), more in CI. No deadline: numba compiles on
# first use and the machine is shared. Select with HYPOTHESIS_PROFILE; CI=true selects "ci".
# CI keeps its 40 examples: they cost little. Measured (2026-12-05, `-n 0`, each test's CPU with its waited children,
# the two files holding @given: test_properties.py, test_rolling_kernels.py): 12.0 s under "ci", 9.1 s under
# "default" (25), so dropping CI to 25 would save ~3 CPU s of the suite's ~565 (the bar to drop them was 15 s).
# test_properties' round-trip test keeps its own count (a study per example: default // 5, i.e. ci 8).
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("fast", max_examples=8, deadline=None, suppress_health_check=_HEALTH)
settings.register_profile("default", max_examples=25, deadline=None, suppress_health_check=_HEALTH)
settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=_HEALTH, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default"))

PLANTED_SYNTH = SynthConfig(seed=11, start="2023-01-03", end="2024-06-28", universe="tier1+3", effect=2.0)
NULL_SYNTH = SynthConfig(seed=11, start="2023-01-03", end="2024-06-28", universe="tier1+3", effect=0.0)


# The checkout's output/ folder holds the user's own results (`make demo`, studies, backtests): no test may write
# there (a CLI call without --out / --no-save wrote backtest_runs.csv rows and reports into it). The session fails,
# naming the new files, when the tests left any (checked once, by the controller or the only process).
_CHECKOUT_OUTPUT = Path(__file__).resolve().parents[1] / "output"


def _checkout_output_files() -> set[str]:
    if not _CHECKOUT_OUTPUT.is_dir():
        return set()
    return {p.relative_to(_CHECKOUT_OUTPUT).as_posix() for p in _CHECKOUT_OUTPUT.rglob("*") if not p.is_dir()}


def pytest_sessionstart(session: pytest.Session) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        session.config.stash[_OUTPUT_BEFORE] = _checkout_output_files()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_OUTPUT_BEFORE, None)
    if before is None:
        return
    new = sorted(_checkout_output_files() - before)
    if new:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nFAILED: the tests wrote {len(new)} file(s) into the checkout's output/ folder (a test writes under its "
              f"tmp_path: give the command --out / --no-save): {', '.join(new[:8])}", file=sys.stderr)


_OUTPUT_BEFORE = pytest.StashKey[set]()


# Scheduling under pytest-xdist (``make test``: ``--dist loadfile --no-loadscope-reorder``): files run in collection
# order, and the files that wait on other processes (worker processes, a PostgreSQL server, the demo, a notebook
# kernel) come first, so the many short CPU-bound files fill the cores around them and the run does not end on one
# long file (xdist's own order, most tests first, ran the one-test demo file last, alone). The two longest CPU-bound
# files that sort late come next: test_store_over_time (~31 s) and test_signals (~28 s) ran from 422 s and 401 s of a
# 460 s run (load 4), so the run ended on them; the short files now fill the end.
LONG_FIRST = ("test_demo_readme.py", "test_study_workers.py", "test_walkforward_distributed.py", "test_postgres.py",
              "test_jobs_pool.py", "test_notebook.py", "test_walkforward.py", "test_store_over_time.py",
              "test_signals.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: collection order within a rank


@pytest.fixture(autouse=True)
def _sigint_handler_kept() -> Iterator[None]:
    """A test must leave SIGINT's handler as it found it: a handler left behind (a forked process's body run
    in-process installs one) turns a later test's Ctrl-C into a flag set instead of a KeyboardInterrupt, and that
    test fails only when xdist happens to put it after this one in the same process. Put back, then failed here."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is not before:
        signal.signal(signal.SIGINT, before)
        pytest.fail(f"the test left SIGINT's handler changed ({before!r} -> {after!r}); restore it")


@pytest.fixture(scope="session", autouse=True)
def _numba_cache_primed(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Compile the engine's kernels into numba's on-disk cache once per session, in processes of their own, before
    any test runs: on a fresh clone the cache is empty, and the first tests start processes (the demo, study
    workers) that would each compile every kernel (~20 s CPU each) at the same time. Two processes side by side
    compile the two halves of the warm-up (``_PRIME_PARTS``: about 10 s CPU each, so ~half the wall time on two
    cores); under xdist the first worker starts them and the other waits on the lock; every process after that
    loads the kernels from the cache."""
    if _kernel_cache_fresh() or os.environ.get("NUMBA_DISABLE_JIT") or os.environ.get("MUTANT_UNDER_TEST"):
        return  # warm already; or no JIT at all; or a mutation run (mutmut forks from a warm process)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None or fcntl is None:
        _prime_numba_cache()
        return
    shared = tmp_path_factory.getbasetemp().parent / "numba_primed"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not shared.exists():
            _prime_numba_cache()
            shared.write_text(worker, encoding="utf-8")


# The warm-up's parts (optimizer.engine.warmup.PARTS) in two groups of about the same compile time that share few
# kernels: the plain and parallel paths; position caps and ATR sizing.
_PRIME_PARTS = (("serial", "parallel"), ("capped",))


def _prime_numba_cache() -> None:
    procs = [subprocess.Popen([sys.executable, "-c", "from optimizer.engine.warmup import warm_kernels; "
                               f"warm_kernels(parts={parts!r})"]) for parts in _PRIME_PARTS]
    failed = [p.args for p in procs if p.wait(timeout=600) != 0]
    assert not failed, f"priming numba's cache failed: {failed}"


def _kernel_cache_fresh() -> bool:
    """Whether numba's cache beside the kernels' source (its default place) is newer than the source."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return False
    src = Path(__file__).resolve().parents[1] / "optimizer" / "engine" / "_kernels.py"
    index = list((src.parent / "__pycache__").glob("_kernels.*.nbi"))
    return bool(index) and max(p.stat().st_mtime for p in index) >= src.stat().st_mtime


def _build(tmp_path_factory: pytest.TempPathFactory, name: str, cfg: SynthConfig) -> Path:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None or fcntl is None:
        root = tmp_path_factory.mktemp(name)
        db = root / "store.duckdb"
        synth_to_db(cfg, root / "raw", db)
        return db
    shared = tmp_path_factory.getbasetemp().parent / f"shared_{name}"  # the session folder all workers see
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (shared / "done").exists():
            shutil.rmtree(shared, ignore_errors=True)
            synth_to_db(cfg, shared / "raw", shared / "store.duckdb")
            (shared / "done").write_text(worker, encoding="utf-8")
    root = tmp_path_factory.mktemp(name)
    shutil.copy(shared / "store.duckdb", root / "store.duckdb")
    (root / "raw").symlink_to(shared / "raw", target_is_directory=True)
    return root / "store.duckdb"


def _built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build) -> Path:
    """The folder ``build(folder)`` filled, run once per session: under pytest-xdist once for every worker (the first
    worker to ask builds it in the session's shared temp folder under a file lock, the others wait); the folder is
    shared, so a test copies what it writes to."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None or fcntl is None:
        root = tmp_path_factory.mktemp(name)
        build(root)
        return root
    shared = tmp_path_factory.getbasetemp().parent / f"shared_{name}"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (shared / "done").exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            build(shared)
            (shared / "done").write_text(worker, encoding="utf-8")
    return shared


# The small store of the command tests (tests/test_cli.py, tests/test_terminal.py): tier1 (15 ETFs) x 2024 H1 (124
# sessions), the default seed and effect, built through ``data synth`` itself. Both files built the very same store
# (~1.2 s of CPU each); now built once per session.
TIER1_H1_ARGS = ("--start", "2024-01-02", "--end", "2024-06-28", "--universe", "tier1")


@pytest.fixture(scope="session")
def tier1_h1_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(folder, summary): the folder holds ``store.duckdb`` and the raw files under ``raw/`` as ``accumopt data synth
    --out FOLDER/raw --db FOLDER/store.duckdb`` (TIER1_H1_ARGS) wrote them; the summary is the command's JSON. SHARED
    by the session: a module copies ``store.duckdb`` into its own folder (``shutil.copy``) and reads ``raw/``."""
    def build(root: Path) -> None:
        from _cli_helpers import cli

        settings_env = {"MIN_LIT_VOLUME": None, "TICKERS": None, **{k: None for k in os.environ if k.startswith("SCANNER_")}}
        res = cli("data", "synth", "--out", root / "raw", "--db", root / "store.duckdb", *TIER1_H1_ARGS,
                  "--format", "json", env=settings_env)  # a developer's shell settings cannot change the store
        assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
        (root / "summary.json").write_text(res.stdout, encoding="utf-8")

    root = _built_once(tmp_path_factory, "tier1_h1", build)
    return root, json.loads((root / "summary.json").read_text(encoding="utf-8"))


def _held_open(db: Path) -> Iterator[Path]:
    """``db``, held open read-only by this test process for the session: DuckDB builds a database instance for each
    connection to a file no other connection of the process holds (~15-20 ms of CPU, schema and catalogue), and
    hands a new connection to a file already open in the same mode the open instance (~0.03 ms). The session
    stores are read many hundreds of times (each panel load, backtest, reserve check opens them); a writable open
    of one in a test process is refused (``optimizer.data.store.connect``: open in this process read-only), as
    writing to them is (module docstring)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        yield db
    finally:
        con.close()


@pytest.fixture(scope="session")
def synth_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Planted synthetic store (effect 2.0, family ratio); see the module docstring."""
    yield from _held_open(_build(tmp_path_factory, "synth_planted", PLANTED_SYNTH))


@pytest.fixture(scope="session")
def null_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Null synthetic store (effect 0.0: same flows, no drift); see the module docstring."""
    yield from _held_open(_build(tmp_path_factory, "synth_null", NULL_SYNTH))


@pytest.fixture(scope="session")
def synth_truth(synth_db: Path) -> dict:
    """Ground truth (truth/README.json) of ``synth_db``."""
    return json.loads((synth_db.parent / "raw" / "truth" / "README.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def null_truth(null_db: Path) -> dict:
    """Ground truth (truth/README.json) of ``null_db``."""
    return json.loads((null_db.parent / "raw" / "truth" / "README.json").read_text(encoding="utf-8"))


@pytest.fixture
def tokyo(monkeypatch):
    """The machine's time zone set to Asia/Tokyo (UTC+09:00, no daylight saving), restored afterwards."""
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
