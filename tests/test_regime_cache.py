"""The learned regime's on-disk cache (``<out>/.cache/regime/``): what a CLI command computed, a later process reuses.

* Bit for bit: labels and probabilities read back (a whole market's, or rebuilt from stored fits) equal a fresh
  computation; a CLI command run twice prints the same JSON, the second run fitting nothing.
* Never trusted when damaged: a missing, truncated, corrupt, foreign (another key's content under this name),
  wrong-shape or other-version file is recomputed and overwritten.
* ``ACCUMOPT_CACHE=off`` reads and writes nothing; another value is one error line, exit 2; a library call outside
  ``paths.caching_under`` writes nothing.
* Nothing outside the output root; a read-only or full folder costs a refit; a write is atomic (an interrupted
  writer, two writer processes: never a partial file).
* No lookahead: a cached run on truncated data equals a fresh run on it.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from _cli_helpers import cli, ok, one_line_error
from optimizer import paths
from optimizer.engine import _diskcache, _regime
from optimizer.engine._regime import learned_regime_detail, regime_features
from test_context import _planted_market

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fits(monkeypatch):
    """A clean process memory for the learned regime, and the list of the fits it computes (train rows each)."""
    monkeypatch.setattr(_regime, "_DETAIL_MEMO", {})
    monkeypatch.setattr(_regime, "_FIT_MEMO", {})
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    seen: list[np.ndarray] = []
    real = _regime._fit

    def spy(train, *a):
        seen.append(train.copy())
        return real(train, *a)

    monkeypatch.setattr(_regime, "_fit", spy)
    return seen


def _forget() -> None:
    """What a new process knows: nothing in memory."""
    _regime._DETAIL_MEMO.clear()
    _regime._FIT_MEMO.clear()


def _market(T: int = 200):
    return regime_features(*_planted_market(T=T)[:5])


def _fresh(f):
    """The labels of ``f`` computed with no cache, forgotten again (the fits would stay in the process memory)."""
    out = tuple(np.array(x) for x in _regime._learned_regime_detail(f, 21, 120, 4, 0))
    _forget()
    return out


def _same(a, b) -> None:
    assert a[0].dtype == b[0].dtype == np.int8 and a[1].dtype == b[1].dtype == np.float64
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()  # bit for bit, NaNs included


def _n(T: int) -> int:
    """How many fits the planted market of T rows takes: r0 = 49 + 120 = 169, then every 21 sessions."""
    return len(range(169, T, 21))


def _contents(p: Path) -> dict[str, bytes]:
    with np.load(p) as z:
        return {k: z[k].tobytes() for k in z.files}


def _files(root: Path, prefix: str = "") -> list[Path]:
    d = root / ".cache" / "regime"
    return sorted(p for p in d.glob(f"{prefix}*.npz")) if d.is_dir() else []


@pytest.fixture(scope="module")
def fresh400():
    """The planted market's labels, computed with no cache."""
    f = _market(400)
    return f, _fresh(f)


# ------------------------------------------------------------------------------------------------ bit for bit

def test_labels_and_fits_read_back_equal_a_fresh_computation_bit_for_bit(tmp_path, fits, fresh400):
    f, fresh = fresh400
    refits = _n(400)
    with paths.caching_under(tmp_path):
        _same(learned_regime_detail(f), fresh)
        assert len(fits) == refits
        assert len(_files(tmp_path, "fit-")) == refits and len(_files(tmp_path, "labels-")) == 1
        _forget()
        _same(learned_regime_detail(f), fresh)  # the whole market's labels: no fit, no model
        assert len(fits) == refits
        for p in _files(tmp_path, "labels-"):
            p.unlink()
        _forget()
        _same(learned_regime_detail(f), fresh)  # rebuilt from the stored fits: predict_proba of the same arrays
        assert len(fits) == refits
        assert len(_files(tmp_path, "labels-")) == 1  # and the labels stored again


def test_a_cli_command_run_twice_prints_the_same_and_the_second_run_reads_the_cache_and_off_neither(
        tmp_path, fits, synth_db):
    params = tmp_path / "p.json"
    params.write_text("{}")
    out = tmp_path / "o"
    out.mkdir()
    args = ("signals", "--params", params, "--db", synth_db, "--no-save", "--format", "json", "--out", out)
    first = ok(cli(*args))
    n = len(fits)
    assert n > 0 and _files(out, "labels-") and _files(out, "fit-")
    _forget()  # the second run as a new process would see it
    second = ok(cli(*args))
    assert second.stdout == first.stdout and json.loads(second.stdout)["sheet"]
    assert len(fits) == n  # nothing fitted: the labels came from <out>/.cache/regime/
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in _files(out)}
    _forget()
    third = ok(cli(*args, env={"ACCUMOPT_CACHE": "off"}))
    assert third.stdout == first.stdout and len(fits) == 2 * n  # off: read nothing (fitted again) ...
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in _files(out)} == files  # wrote nothing


# ------------------------------------------------------------------------------------------------ never trusted

def _truncate(p: Path, other: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip(p: Path, other: Path) -> None:
    b = bytearray(p.read_bytes())
    i = b.find(b"prob.npy")  # in the labels member's data, after its 128-byte header: the zip CRC no longer matches
    i = b.find(b"labels.npy") if i < 0 else i
    b[i + 200] ^= 0x01
    p.write_bytes(bytes(b))


def _foreign(p: Path, other: Path) -> None:
    p.write_bytes(other.read_bytes())  # another key's labels (another market of the same length) under this name


def _garbage(p: Path, other: Path) -> None:
    p.write_bytes(b"not a zip at all")


def _plain_npy(p: Path, other: Path) -> None:
    with open(p, "wb") as f:
        np.save(f, np.zeros(3))


def _stamped(name: str, arrays: dict):
    """Rewrite the file with this key's and version's stamp (as the writer would) but other arrays."""
    def damage(p: Path, other: Path) -> None:
        with np.load(p) as z:
            stamp = z["_id"]
        with open(p, "wb") as f:
            np.savez(f, _id=stamp, **arrays)
    damage.__name__ = name
    return damage


@pytest.mark.parametrize("damage", [
    _truncate, _flip, _foreign, _garbage, _plain_npy,
    _stamped("wrong_shape", {"labels": np.zeros(199, np.int8), "prob": np.zeros(199)}),
    _stamped("wrong_dtype", {"labels": np.zeros(200, np.int64), "prob": np.zeros(200)}),
    _stamped("missing_member", {"labels": np.zeros(200, np.int8)}),
    _stamped("extra_member", {"labels": np.zeros(200, np.int8), "prob": np.zeros(200), "x": np.zeros(1)}),
    _stamped("object_array", {"labels": np.zeros(200, np.int8), "prob": np.array([None] * 200, dtype=object)}),
], ids=lambda d: d.__name__)
def test_a_damaged_labels_file_is_recomputed_and_overwritten(tmp_path, fits, damage):
    f, g = _market(), _market() * 1.5  # two markets, two keys, files of the same size
    fresh = _fresh(f)
    with paths.caching_under(tmp_path):
        learned_regime_detail(g)
        other = _files(tmp_path, "labels-")[0]
        learned_regime_detail(f)
        (p,) = [q for q in _files(tmp_path, "labels-") if q != other]
        good = _contents(p)
        for q in _files(tmp_path, "fit-"):
            q.unlink()  # a recomputation must refit
        damage(p, other)
        _forget()
        fits.clear()
        _same(learned_regime_detail(f), fresh)
        assert len(fits) == 2  # recomputed (refits at 169 and 190), not read
        assert _contents(p) == good  # overwritten with the right file


def test_a_damaged_fit_file_is_refitted_and_overwritten(tmp_path, fits):
    f = _market()
    fresh = _fresh(f)
    with paths.caching_under(tmp_path):
        learned_regime_detail(f)
        for q in _files(tmp_path, "labels-"):
            q.unlink()
        a, b = _files(tmp_path, "fit-")
        good = _contents(a)
        a.write_bytes(b.read_bytes())  # the other refit point's model under this one's name
        _forget()
        fits.clear()
        _same(learned_regime_detail(f), fresh)
        assert len(fits) == 1 and _contents(a) == good  # that one refitted and rewritten, the other read


def test_a_file_of_other_library_versions_is_recomputed_and_overwritten(tmp_path, fits, monkeypatch):
    f = _market()
    fresh = _fresh(f)
    real = _regime._versions()
    with paths.caching_under(tmp_path):
        monkeypatch.setattr(_regime, "_versions", lambda: real.replace(b"scikit-learn", b"scikit-learn 0.1"))
        learned_regime_detail(f)
        old = {p: p.read_bytes() for p in _files(tmp_path)}
        monkeypatch.setattr(_regime, "_versions", lambda: real)
        _forget()
        fits.clear()
        _same(learned_regime_detail(f), fresh)
        assert len(fits) == 2  # nothing of the other version's used
        assert sorted(_files(tmp_path)) == sorted(old)  # the same names, overwritten: no second copy
        assert all(p.read_bytes() != b for p, b in old.items())


def test_the_key_holds_the_module_source_and_the_libraries(monkeypatch):
    v = _regime._versions()
    src = __import__("hashlib").sha256(Path(_regime.__file__).read_bytes()).hexdigest()
    import scipy
    import sklearn
    for part in (src, np.__version__, scipy.__version__, sklearn.__version__):
        assert part.encode() in v


# ------------------------------------------------------------------------------------------------ on / off / pure

def test_cache_off_reads_and_writes_nothing(tmp_path, fits, monkeypatch):
    f = _market()
    with paths.caching_under(tmp_path):
        learned_regime_detail(f)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in _files(tmp_path)}
    monkeypatch.setenv(paths.CACHE_ENV, "off")
    _forget()
    fits.clear()
    with paths.caching_under(tmp_path):
        learned_regime_detail(f)
        learned_regime_detail(_market(260))
    assert len(fits) == _n(200) + _n(260)  # read nothing
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in _files(tmp_path)} == before  # wrote nothing


@pytest.mark.parametrize("value", ["maybe", "0", "true", "offf"])
def test_a_cache_setting_other_than_on_or_off_is_one_line_and_exit_2(tmp_path, value):
    res = cli("study", "list", "--out", tmp_path, env={"ACCUMOPT_CACHE": value})
    one_line_error(res, "ACCUMOPT_CACHE must be on or off", repr(value))
    assert not (tmp_path / ".cache").exists()


@pytest.mark.parametrize("value", ["on", "OFF", " off ", ""])
def test_on_and_off_in_any_case_are_accepted(tmp_path, value, synth_db):
    ok(cli("data", "info", "--db", synth_db, "--out", tmp_path, env={"ACCUMOPT_CACHE": value}))


def test_a_library_call_outside_a_command_writes_no_cache(tmp_path, fits, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "output").mkdir()
    (tmp_path / "env-out").mkdir()
    monkeypatch.setenv(paths.OUTPUT_ENV, str(tmp_path / "env-out"))
    learned_regime_detail(_market())
    assert len(fits) == 2
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    assert paths.cache_dir("regime") is None


def test_a_notebook_opts_in_with_caching_under(tmp_path, fits, monkeypatch):
    monkeypatch.setenv(paths.OUTPUT_ENV, str(tmp_path))
    with paths.caching_under(None):  # the output root of a command: out, else ACCUMOPT_OUTPUT, else output
        learned_regime_detail(_market())
    assert len(_files(tmp_path)) == _n(200) + 1
    assert paths.cache_dir("regime") is None  # the block is over


# ------------------------------------------------------------------------------------------------ where, and how

def test_the_cache_never_creates_the_output_root_nor_writes_outside_it(tmp_path, fits):
    f = _market()
    with paths.caching_under(tmp_path / "none-yet"):
        learned_regime_detail(f)
    assert not (tmp_path / "none-yet").exists()
    root, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / ".cache").symlink_to(elsewhere)  # a link pointing out of the root
    _forget()
    with paths.caching_under(root):
        learned_regime_detail(f)
    assert not list(elsewhere.rglob("*")) and len(fits) == 2 * _n(200)


def _refuse_writes_in(monkeypatch, folder: Path, err: int) -> None:
    """Writes in ``folder`` fail with ``err`` (the tests run as root, whom a mode 0555 does not stop)."""
    real_open, real_mkdir = os.open, Path.mkdir

    def fake_open(path, flags, *a, **k):
        if Path(path).parent == folder and flags & os.O_CREAT:
            raise OSError(err, os.strerror(err), str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(paths.os, "open", fake_open)
    monkeypatch.setattr(_diskcache.os, "utime", lambda *a, **k: (_ for _ in ()).throw(OSError(err, "no")))


@pytest.mark.parametrize("err", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_a_read_only_or_full_cache_folder_costs_only_a_refit(tmp_path, fits, monkeypatch, err):
    f = _market()
    fresh = _fresh(f)
    fits.clear()
    d = tmp_path / ".cache" / "regime"
    d.mkdir(parents=True)
    d.chmod(0o555)
    _refuse_writes_in(monkeypatch, d, err)
    with paths.caching_under(tmp_path):
        _same(learned_regime_detail(f), fresh)
        _forget()
        _same(learned_regime_detail(f), fresh)
    assert len(fits) == 2 * _n(200) and not list(d.iterdir())
    d.chmod(0o755)


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary_one(tmp_path, fits, monkeypatch):
    f = _market()
    with paths.caching_under(tmp_path):
        learned_regime_detail(f)
        (p,) = _files(tmp_path, "labels-")
        good = p.read_bytes()

        def killed(file, **arrays):
            file.write(b"PK\x03\x04 half a file")
            raise KeyboardInterrupt

        monkeypatch.setattr(_diskcache.np, "savez", killed)
        key = repr((21, 120, 4, 0)).encode() + _regime._digest(f)  # this market's labels, written again
        with pytest.raises(KeyboardInterrupt):
            _diskcache.save("regime", "labels", key, _regime._versions, {"labels": np.zeros(3)}, 99)
    assert p.read_bytes() == good
    left = sorted(q.name for q in (tmp_path / ".cache" / "regime").iterdir())
    assert left == sorted(q.name for q in _files(tmp_path))  # no temporary file left


def test_two_writer_processes_never_leave_a_partial_file(tmp_path):
    """Two processes rewrite one key 60 times each (a 2 MB entry) while this one reads the file whenever it exists:
    every read is the whole entry (a writer that wrote in place showed readers a partial file), and the folder ends
    with the one file."""
    script = textwrap.dedent(f"""
        import numpy as np
        from optimizer import paths
        from optimizer.engine import _diskcache
        a = np.arange(250_000, dtype=np.float64)
        with paths.caching_under({str(tmp_path)!r}):
            for _ in range(60):
                _diskcache.save("regime", "labels", b"k", lambda: b"v", {{"a": a}}, 10)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT) for _ in range(2)]
    want = np.arange(250_000, dtype=np.float64)
    name = _diskcache._name("labels", b"k")
    path = _diskcache._path(tmp_path / ".cache" / "regime", "labels", name)
    stamp = _diskcache._stamp(name, b"v")
    reads = 0
    while any(p.poll() is None for p in procs):
        try:
            got = _diskcache._read(path, stamp, {"a": ((250_000,), np.float64)})
        except FileNotFoundError:
            continue
        assert got is not None and got["a"].tobytes() == want.tobytes()
        reads += 1
    assert [p.wait() for p in procs] == [0, 0]
    files = list((tmp_path / ".cache" / "regime").iterdir())
    assert [f.name for f in files] == [path.name]
    assert _diskcache._read(path, stamp, {"a": ((250_000,), np.float64)}) is not None


def test_least_recently_used_files_are_removed_beyond_the_limit(tmp_path, monkeypatch):
    with paths.caching_under(tmp_path):
        for i in range(4):
            _diskcache.save("regime", "fit", bytes([i]), lambda: b"v", {"a": np.full(2, i)}, 4)
        d = tmp_path / ".cache" / "regime"
        names = {i: _diskcache._path(d, "fit", _diskcache._name("fit", bytes([i]))) for i in range(4)}
        for i, p in names.items():
            os.utime(p, ns=(10**18 + i, 10**18 + i))  # written in the order 0, 1, 2, 3
        assert _diskcache.load("regime", "fit", bytes([0]), lambda: b"v", {"a": ((2,), np.int64)}) is not None
        _diskcache.save("regime", "fit", bytes([9]), lambda: b"v", {"a": np.full(2, 9)}, 4)
        assert not names[1].exists()  # the least recently used; 0 was read since
        assert all(names[i].exists() for i in (0, 2, 3)) and len(list(d.iterdir())) == 4


# ------------------------------------------------------------------------------------------------ no lookahead

def test_a_cached_run_on_truncated_data_equals_a_fresh_run_on_it(tmp_path, fits, fresh400):
    f, full = fresh400
    with paths.caching_under(tmp_path):
        learned_regime_detail(f)  # the longer history's fits and labels are on disk
        for t in (168, 169, 189, 190, 260, 398):
            cut = f.iloc[: t + 1].reset_index(drop=True)
            fresh = _fresh(cut)
            _forget()
            fits.clear()
            got = learned_regime_detail(cut)
            _same(got, fresh)
            _same((got[0], got[1]), (full[0][: t + 1], full[1][: t + 1]))
            assert not fits  # the truncated market's refit points read only rows before them: the same fits
        # the same fits, not the longer history's labels: a planted change after t shows in a truncated run
        wild = f.copy()
        wild.iloc[280:, :] = wild.iloc[280:, :] * 3.0
        _forget()
        fits.clear()
        _same(learned_regime_detail(wild.iloc[:301]), _fresh(wild.iloc[:301]))
        assert len(fits) == 1  # the refit at 295 trains on wild rows; those before it read; labels computed


# ------------------------------------------------------------------------------------------------ start-up

def test_a_process_that_finds_the_labels_on_disk_never_imports_scikit_learn(tmp_path, fits, fresh400):
    """scikit-learn's mixture module is ~0.7 s of CPU to import in a command's process (after the engine): a process
    whose market's labels are in the cache needs no model, so it must not load it (a fit read back does)."""
    f, fresh = fresh400
    with paths.caching_under(tmp_path):
        learned_regime_detail(f)
    np.save(tmp_path / "f.npy", f.to_numpy())
    probe = textwrap.dedent(f"""
        import json, sys
        import numpy as np, pandas as pd
        from optimizer import paths
        from optimizer.engine._regime import REGIME_FEATURES, learned_regime_detail
        f = pd.DataFrame(np.load({str(tmp_path / "f.npy")!r}), columns=list(REGIME_FEATURES))
        with paths.caching_under({str(tmp_path)!r}):
            lab, prob = learned_regime_detail(f)
        print(json.dumps([lab.tobytes().hex(), prob.tobytes().hex(), "sklearn" in sys.modules]))
    """)
    res = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    lab, prob, sklearn_loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert bytes.fromhex(lab) == fresh[0].tobytes() and bytes.fromhex(prob) == fresh[1].tobytes()
    assert sklearn_loaded is False
