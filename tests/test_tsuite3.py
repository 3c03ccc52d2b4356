"""tsuite3: product hot spots every test and user pays for, made cheaper without changing an answer.

Each shortcut is checked against the slow path it replaces (the oracle) and where it could go wrong (a stale answer,
a lookup that disturbs the caller's transaction or open result)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from optimizer.data.store import connect, table_exists
from test_tspeed18 import _Spy  # a connection that keeps the SQL it is given (its `table`: no SQL)


def _catalog_answer(con, name: str) -> bool:
    """The reference: information_schema.tables, schema main, exact name."""
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND "
                            "table_schema = 'main'", [name]).fetchall()[0][0])


def test_table_exists_finds_the_stores_tables_and_views_without_a_statement():
    """Every table and view of a new store (finra_short_daily is a view) is found by the binder lookup: no SQL runs
    (before: two catalog queries for a view, one for a table); names not there still are not found, a plain one
    with one statement. (A table of another attached database: tests/test_tspeed18.py.)"""
    con = connect(":memory:")
    try:
        names = [n for (n,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                           "'main'").fetchall()]
        assert "finra_short_daily" in names and "daily_metrics" not in names and len(names) >= 12
        spy = _Spy(con)
        assert all(table_exists(spy, n) for n in names)
        assert spy.sql == []
        for n in ("daily_metrics", "main", "finra_short", "duckdb_tables", "sqlite_master", "pragma_database_list",
                  "Prices_Daily", "prices daily", "o'hare"):
            spy.sql.clear()
            assert table_exists(spy, n) is _catalog_answer(con, n) is False, n
            # a plain name not found, no other database attached: one read of the attached databases (before:
            # the two catalog functions); DuckDB's own view names and names that are no plain identifier: those two
            plain = n in ("daily_metrics", "main", "finra_short")
            assert len(spy.sql) == (1 if plain else 2) and ("duckdb_databases" in spy.sql[0]) is plain, (n, spy.sql)
    finally:
        con.close()


def test_table_exists_follows_the_catalog_as_it_changes_in_a_transaction():
    """No answer is kept: a table created (or a view dropped) in the caller's transaction is seen at once, a rolled
    back one is gone; a name not found does not abort the transaction (its later statements commit)."""
    con = connect(":memory:")
    try:
        con.execute("BEGIN TRANSACTION")
        assert not table_exists(con, "scratch")
        con.execute("CREATE TABLE scratch (x INTEGER)")
        assert table_exists(con, "scratch")
        con.execute("INSERT INTO scratch VALUES (1)")
        con.execute("ROLLBACK")
        assert not table_exists(con, "scratch")
        con.execute("BEGIN TRANSACTION")
        assert not table_exists(con, "nothing_here")
        con.execute("CREATE TABLE kept (x INTEGER)")
        con.execute("INSERT INTO kept VALUES (7)")
        con.execute("DROP VIEW finra_short_daily")
        assert not table_exists(con, "finra_short_daily")
        con.execute("COMMIT")
        assert con.execute("SELECT x FROM kept").fetchall() == [(7,)]
        assert table_exists(con, "kept") and not table_exists(con, "finra_short_daily")
    finally:
        con.close()


def test_table_exists_leaves_an_open_result_and_ignores_python_data_frames():
    """A result the caller has not read to its end is still whole after the lookup; a data frame named like a
    missing table in the caller's frame (DuckDB's replacement scan) is not taken for it."""
    con = connect(":memory:")
    try:
        cur = con.execute("SELECT * FROM range(3000)")
        assert table_exists(con, "prices_daily")
        assert len(cur.fetchall()) == 3000
        daily_metrics = pd.DataFrame({"symbol": ["AAA"], "close": [1.0]})  # noqa: F841 (the replacement scan's bait)
        assert not table_exists(con, "daily_metrics")
        con.register("daily_metrics_df", daily_metrics)  # a registered frame is a view of the connection's temp
        assert table_exists(con, "daily_metrics_df") is _catalog_answer(con, "daily_metrics_df")
    finally:
        con.close()


def test_table_exists_sees_a_table_another_connection_created(tmp_path):
    """Two connections to one file (one DuckDB instance): a table the other one commits is seen by the next call."""
    db = tmp_path / "s.duckdb"
    a = connect(db)
    try:
        b = a.cursor()
        assert not table_exists(a, "late")
        b.execute("CREATE TABLE late (x INTEGER)")
        assert table_exists(a, "late")
        b.close()
    finally:
        a.close()


# ---- the panels a process loaded (study.data._PanelCache) ----

def _counting_loads(monkeypatch) -> list:
    """Count the loads from the store (engine.panel.load_panel as study.data calls it)."""
    import optimizer.study.data as sd

    calls: list = []
    real = sd.load_panel

    def counted(*a, **k):
        calls.append(a[1:])
        return real(*a, **k)

    monkeypatch.setattr(sd, "load_panel", counted)
    return calls


def _close(db, symbol: str):
    con = connect(db, read_only=True)
    try:
        return con.execute("SELECT date, close FROM daily_metrics WHERE symbol = ? ORDER BY date DESC LIMIT 1",
                           [symbol]).fetchall()[0]
    finally:
        con.close()


def test_a_panel_loaded_again_from_the_same_store_is_a_copy_of_the_first(synth_db, monkeypatch):
    """The same store, universe and span: loaded from the store once (before: every time), the same panel (same
    fingerprint, coverage, market), and the caller's changes to its matrices never reach the next caller."""
    from optimizer.study.data import _PANELS, load_universe_panel

    _PANELS.clear()
    calls = _counting_loads(monkeypatch)
    a = load_universe_panel(synth_db, "tier1", "2023-03-01", "2024-02-29")
    fp = a.fingerprint()
    writable = [m for m in (a["close"], a.market["spy_close"], a.dates) if m.flags.writeable]
    assert len(writable) >= 2  # the matrices (pandas' market columns are read-only, kept read-only)
    for m in writable:
        m[:] = m[-1]
    b = load_universe_panel(synth_db, "tier1", "2023-03-01", "2024-02-29")
    assert len(calls) == 1
    assert b.fingerprint() == fp and b.coverage == a.coverage and b.symbols == a.symbols
    assert [m.flags.writeable for m in (b["close"], b.market["spy_close"], b.dates)] == [
        m.flags.writeable for m in (a["close"], a.market["spy_close"], a.dates)]
    load_universe_panel(synth_db, ["SPY", "QQQ"], "2023-03-01", "2024-02-29")  # another universe, another span:
    load_universe_panel(synth_db, "tier1", "2023-03-02", "2024-02-29")  # loaded from the store
    assert len(calls) == 3
    monkeypatch.setenv("ACCUMOPT_CACHE", "off")
    c = load_universe_panel(synth_db, "tier1", "2023-03-01", "2024-02-29")
    assert len(calls) == 4 and c.fingerprint() == fp
    monkeypatch.delenv("ACCUMOPT_CACHE")
    monkeypatch.setenv("MUTANT_UNDER_TEST", "stats")  # mutation testing: every load from the store
    load_universe_panel(synth_db, "tier1", "2023-03-01", "2024-02-29")
    assert len(calls) == 5


def test_a_write_to_the_store_is_seen_by_the_next_load(synth_db, null_db, tmp_path, monkeypatch):
    """Any write (here UPDATEs of one close, the file's size unchanged; then the whole file overwritten in place by
    another store) changes the store's state: the next load reads the store again and sees the new values."""
    import shutil

    from optimizer.study.data import _PANELS, load_universe_panel

    _PANELS.clear()
    db = tmp_path / "s.duckdb"
    shutil.copyfile(synth_db, db)
    day, close = _close(db, "SPY")
    p0 = load_universe_panel(db, "tier1")
    i, j = p0.index_of(day), p0.symbols.index("SPY")
    assert p0["close"][i, j] == close
    for k, new in enumerate((close * 2, close * 3)):
        con = connect(db)
        try:
            con.execute("UPDATE daily_metrics SET close = ? WHERE symbol = 'SPY' AND date = ?", [new, day])
        finally:
            con.close()
        p = load_universe_panel(db, "tier1")
        assert p["close"][i, j] == new, k
    null = load_universe_panel(null_db, "tier1")
    shutil.copyfile(null_db, db)  # the same file (inode), another store's bytes
    assert load_universe_panel(db, "tier1").fingerprint() == null.fingerprint() != p0.fingerprint()


def test_a_panel_larger_than_the_cache_takes_is_not_kept(synth_db, monkeypatch):
    """A panel over ``LARGEST`` bytes (a full-universe load) is loaded every time; past ``BUDGET`` the least recently
    used panel goes."""
    from optimizer.study.data import _PANELS, load_universe_panel

    _PANELS.clear()
    calls = _counting_loads(monkeypatch)
    monkeypatch.setattr(_PANELS, "LARGEST", 1000)
    load_universe_panel(synth_db, "tier1", "2023-03-01")
    load_universe_panel(synth_db, "tier1", "2023-03-01")
    assert len(calls) == 2
    monkeypatch.setattr(_PANELS, "LARGEST", 2**30)
    one = load_universe_panel(synth_db, "tier1", "2023-03-01")
    size = one.dates.nbytes + sum(v.nbytes for v in one.fields.values()) + sum(v.nbytes for v in one.market.values())
    monkeypatch.setattr(_PANELS, "BUDGET", size)  # room for one: the second evicts the first
    load_universe_panel(synth_db, "tier1", "2023-03-02")
    load_universe_panel(synth_db, "tier1", "2023-03-02")
    assert len(calls) == 4
    load_universe_panel(synth_db, "tier1", "2023-03-01")
    assert len(calls) == 5
    _PANELS.clear()


# ---- bootstrap replicates' statistics a block of replicates at a time (validate._inference.bootstrap_rows) ----

def test_bootstrap_rows_equals_arch_apply_bit_for_bit_in_blocks(monkeypatch):
    """The reference: arch's ``apply`` (one call per replicate, as equity_bootstrap and block_bootstrap_mean ran
    before). Same seed, same resamples: every replicate's figures equal to the last bit, whether a block holds all
    the replicates, several blocks or a block and a remainder; a constant series too;
    the statistics are computed once per block (before: once per replicate)."""
    from arch.bootstrap import StationaryBootstrap

    from optimizer.validate import _inference, _robust

    rng = np.random.default_rng(3)
    calls = []

    def stats(x):
        calls.append(x.shape)
        return _robust._equity_stats(x, 252.0)

    for n, reps, cells in ((40, 150, 1 << 20), (40, 150, 40 * 16), (23, 101, 23 * 10), (12, 100, 1 << 20)):
        r = rng.normal(0.0004, 0.012, n) if n != 12 else np.full(n, 0.001)
        monkeypatch.setattr(_inference, "_BOOT_BLOCK_CELLS", cells)

        def boot():
            return StationaryBootstrap(3.0, r, seed=np.random.default_rng(7))

        ref = boot().apply(lambda x: _robust._equity_stats(x, 252.0), reps=reps)
        calls.clear()
        got = _inference.bootstrap_rows(boot(), reps, stats, 4)
        assert got.tobytes() == ref.tobytes(), (n, reps, cells)
        assert len(calls) == -(-reps // max(1, cells // n)) and sum(c[0] for c in calls) == reps
        mean_ref = boot().apply(lambda a: np.array([a.mean()]), reps=reps)
        assert _inference.bootstrap_rows(boot(), reps, lambda a: a.mean(axis=-1)[:, None], 1).tobytes() == \
            mean_ref.tobytes()


def test_equity_bootstrap_and_block_bootstrap_mean_are_unchanged():
    """Both public bootstraps against their figures from arch's apply on the same resamples (seeded)."""
    from arch.bootstrap import StationaryBootstrap

    from optimizer.validate._inference import block_bootstrap_mean, politis_white_block
    from optimizer.validate._robust import _equity_stats, equity_bootstrap

    x = np.random.default_rng(11).normal(0.0005, 0.01, 260)
    eb = equity_bootstrap(x, reps=300, seed=4)
    ref = StationaryBootstrap(politis_white_block(x), x, seed=np.random.default_rng(4)).apply(
        lambda a: _equity_stats(a, 252.0), reps=300)
    lo, hi = np.nanquantile(ref, [0.025, 0.975], axis=0)
    assert eb.max_drawdowns.tobytes() == ref[:, 2].tobytes()
    assert (eb.total_return.lo, eb.total_return.hi, eb.sharpe.lo, eb.sharpe.hi) == (lo[0], hi[0], lo[3], hi[3])
    bm = block_bootstrap_mean(x, reps=300, seed=4)
    means = StationaryBootstrap(politis_white_block(x), x, seed=np.random.default_rng(4)).apply(
        lambda a: np.array([a.mean()]), reps=300)[:, 0]
    a = (1.0 - 0.95) / 2.0  # block_bootstrap_mean's interval, as it computes it
    assert bm.means.tobytes() == means.tobytes() and (bm.lo, bm.hi) == tuple(np.quantile(means, [a, 1.0 - a]))


# ---- the learned regime's blocks (engine._regime._block_labels) ----

def test_a_block_labelled_again_with_the_same_fit_is_not_predicted_again(monkeypatch):
    """The market cut at an earlier session, then grown again (a sheet per session): the blocks whose rows and fit
    are unchanged are not predicted again (before: every row of every block each time); labels and probabilities
    equal those of a fresh labelling bit for bit; a changed row, and a fit made again (another model object, as a
    new process or the disk cache gives), are predicted afresh."""
    from sklearn.mixture import GaussianMixture

    from optimizer.engine import _regime

    rng = np.random.default_rng(8)
    T = 260
    c = 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, T)))
    f = _regime.regime_features(c, c * 1.01, c * 0.99, rng.uniform(1e6, 2e6, T), 15 + rng.normal(0, 2, T))
    rows = []
    real = GaussianMixture.predict_proba
    monkeypatch.setattr(GaussianMixture, "predict_proba", lambda self, X: rows.append(len(X)) or real(self, X))

    def fresh(feats):
        monkeypatch.setattr(_regime, "_FIT_MEMO", {})
        monkeypatch.setattr(_regime, "_BLOCK_MEMO", {})
        out = _regime._learned_regime_detail(feats, 21, 60, 4, 0)
        monkeypatch.setattr(_regime, "_FIT_MEMO", {})
        monkeypatch.setattr(_regime, "_BLOCK_MEMO", {})
        return out

    want_cut, want_full = fresh(f.iloc[:200]), fresh(f)
    rows.clear()
    cut = _regime._learned_regime_detail(f.iloc[:200], 21, 60, 4, 0)
    n_cut = len(rows)
    full = _regime._learned_regime_detail(f, 21, 60, 4, 0)
    labelled = int((want_full[0] != _regime.LEARNED_UNKNOWN).sum())
    assert labelled > 150 and n_cut > 80
    # only the cut's last (partial) block and the blocks after row 200 are predicted again
    assert len(rows) - n_cut <= labelled - n_cut + 21
    for got, want in ((cut, want_cut), (full, want_full)):
        assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes()
    rows.clear()
    again = _regime._learned_regime_detail(f, 21, 60, 4, 0)
    assert rows == [] and again[1].tobytes() == want_full[1].tobytes()
    g = f.copy()
    g.iloc[250, g.columns.get_loc("rv20")] *= 1.5  # one row near the end changed
    changed = _regime._learned_regime_detail(g, 21, 60, 4, 0)
    assert 0 < len(rows) <= 2 * 21  # its block, and the block after (refitted on rows that include it)
    want_g = fresh(g)
    assert changed[1].tobytes() == want_g[1].tobytes() and changed[0].tobytes() == want_g[0].tobytes()
    rows.clear()
    monkeypatch.setattr(_regime, "_FIT_MEMO", {})  # fits made again: new model objects
    again = _regime._learned_regime_detail(f, 21, 60, 4, 0)
    assert len(rows) == labelled and again[1].tobytes() == want_full[1].tobytes()
