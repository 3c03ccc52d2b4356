"""Where the tool reads and writes: the output root, the default store and study storage, and safe file names.

The ONE home of output paths. Every file the tool writes lands under an output root (``--out``, env
``ACCUMOPT_OUTPUT``, default ``output``) in a per-study or per-run folder named through ONE helper, :func:`safe_name`,
so no symbol, study or file name (``../../../PWN``, a NUL, an empty string) can make a path escape the root;
:func:`under` also checks the joined path resolves inside the root.

One precedence for the store and the study storage, the same for every command and for the library:

    command-line flag  >  environment variable  >  the spec's value  >  the default under the output root

* the DuckDB store: ``--db``, env ``ACCUMOPT_DB``, ``[data].database``, ``<out>/darkpool.duckdb``;
* the Optuna storage: ``--storage``, env ``ACCUMOPT_STORAGE``, ``[run].storage``, ``sqlite:///<out>/studies.db``.

A relative path in a spec is relative to the current directory, like a flag's.

On-disk caches (results a later process may reuse, keyed by the content they were computed from) live in
``<out>/.cache/<kind>/`` of the output root of the command that runs (:func:`caching_under`, set by the CLI around a
command; a library call outside a command writes no cache). Env ``ACCUMOPT_CACHE=off`` turns them off.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import secrets
import shutil
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

from optimizer.errors import DataError, ParameterError

__all__ = [
    "OUTPUT_ENV", "DB_ENV", "STORAGE_ENV", "DEFAULT_OUTPUT", "output_root", "default_db", "default_storage",
    "resolve_db", "resolve_storage", "safe_name", "under", "storage_path", "run_label", "file_label", "content_label",
    "existing_store",
    "atomic_write", "atomic_write_many", "atomic_folder", "recover_folder", "check_out_writable", "not_utf8",
    "shown_name", "CACHE_ENV", "cache_enabled", "caching_under",
    "cache_dir",
]

OUTPUT_ENV = "ACCUMOPT_OUTPUT"
DB_ENV = "ACCUMOPT_DB"
STORAGE_ENV = "ACCUMOPT_STORAGE"
CACHE_ENV = "ACCUMOPT_CACHE"
DEFAULT_OUTPUT = "output"
_MAX_NAME = 96
_SAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


def _env(name: str, env: Mapping[str, str] | None) -> str | None:
    v = (os.environ if env is None else env).get(name)
    return v if v else None


def output_root(out: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The output root: ``out``, else env ``ACCUMOPT_OUTPUT``, else ``output`` (relative to the current directory).
    A root that is, or lies under, an existing file is a ParameterError (nothing could be written in it)."""
    root = Path(out if out not in (None, "") else (_env(OUTPUT_ENV, env) or DEFAULT_OUTPUT))
    for p in (root, *root.parents):
        if p.exists() and not p.is_dir():
            raise ParameterError(f"the output root must be a folder, got {str(root)!r} ({str(p)!r} is a file)")
    return root


def default_db(out: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """``<output root>/darkpool.duckdb``."""
    return output_root(out, env) / "darkpool.duckdb"


def default_storage(out: str | Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """``sqlite:///<output root>/studies.db``."""
    return f"sqlite:///{output_root(out, env) / 'studies.db'}"


def resolve_db(db: str | Path | None = None, spec_db: str | None = None, out: str | Path | None = None,
               env: Mapping[str, str] | None = None) -> Path:
    """The DuckDB store: ``db`` (the flag) > env ``ACCUMOPT_DB`` > ``spec_db`` ([data].database) > the default."""
    for v in (db, _env(DB_ENV, env), spec_db):
        if v not in (None, ""):
            return Path(v)
    return default_db(out, env)


def resolve_storage(storage: str | None = None, spec_storage: str | None = None, out: str | Path | None = None,
                    env: Mapping[str, str] | None = None) -> str:
    """The Optuna storage URL: ``storage`` (the flag) > env ``ACCUMOPT_STORAGE`` > ``spec_storage``
    ([run].storage) > the default."""
    for v in (storage, _env(STORAGE_ENV, env), spec_storage):
        if v not in (None, ""):
            return str(v)
    return default_storage(out, env)


def existing_store(db: str | Path) -> Path:
    """``db`` when the DuckDB store exists; a DataError saying how to create it otherwise (commands that read,
    or that only add derived tables, never create an empty store)."""
    p = Path(db)
    if str(db) != ":memory:" and not p.exists():
        raise DataError(f"database {p} does not exist; run `accumopt data synth --db {p}` or `accumopt ingest ... "
                        f"--db {p}` first (or pass --db / set {DB_ENV})")
    return p


def storage_path(url: str) -> Path | None:
    """The file behind a file-backed storage URL (``sqlite:///PATH``, ``journal:PATH``); None for others.

    An SQLite URL's path is read as SQLAlchemy reads it (the file Optuna opens): up to a ``?`` (its query), then
    percent-decoded (``dir%2541`` is ``dir%41``; ``%41`` is ``A``). A journal's path is the rest of the URL, as is
    (Optuna's journal file is no URL)."""
    if url.startswith("sqlite:///"):
        path = unquote(url[len("sqlite:///"):].split("?", 1)[0])
        return Path(path) if path and path != ":memory:" else None
    if url.startswith("journal:"):
        path = url[len("journal:"):]
        return Path(path) if path else None
    return None


def safe_name(name: object) -> str:
    """``name`` as one safe path component: letters, digits and ``. _ + = -`` kept, every other run of characters
    (``/``, ``\\``, NUL, spaces, control characters) one ``_``, no leading dot or dash, at most 96 characters. A name
    that had to change gets ``-<8 hex of sha256 of the original>`` so two different names never share a file:
    ``AAPL`` -> ``AAPL``, ``../../../PWN`` -> ``PWN-<hash>``, ``""`` -> ``_-<hash>``."""
    raw = str(name)
    s = _SAFE.sub("_", unicodedata.normalize("NFKC", raw)).lstrip(".-_")
    s = s[:_MAX_NAME]
    if s != raw or not s:
        s = f"{s or '_'}-{hashlib.sha256(raw.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return s


_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")


def file_label(path: str | Path) -> str:
    """A data file's name without its format and compression suffixes, for a run label:
    ``prices_daily.csv.gz`` -> ``prices_daily`` (``Path.stem`` keeps ``prices_daily.csv``)."""
    name = Path(path).name
    for suffix in _COMPRESSED:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return Path(name).stem or name


def content_label(path: str | Path) -> str:
    """An input file's :func:`file_label` and the first 8 hex digits of the SHA-256 of its bytes, for a run label
    whose output depends on what the file says: ``a/best.json`` and ``b/best.json`` with different contents get
    different names (the stem alone gave both one file, the second run overwriting the first's), the same content
    the same name wherever it lies. ``best.json`` -> ``best-1a2b3c4d``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{file_label(path)}-{h.hexdigest()[:8]}"


def run_label(*parts: object) -> str:
    """One safe file stem from the parts that tell one run from another (None and "" parts left out):
    ``run_label("SPY", "weekly", "2024-01-02", None)`` -> ``SPY_weekly_2024-01-02``."""
    kept = [str(p) for p in parts if p not in (None, "")]
    if not kept:
        raise ParameterError("run_label needs at least one part, got none")
    raw = "_".join(kept)
    label = "_".join(safe_name(p) for p in kept)
    if len(label) > _MAX_NAME:
        label = f"{label[:_MAX_NAME - 9]}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"
    return label


def under(root: str | Path, *parts: object, suffix: str = "") -> Path:
    """``root / part / ... / last + suffix``, each part through :func:`safe_name`; the result must resolve inside
    ``root`` (a ParameterError otherwise: nothing is ever written outside the output root)."""
    if not parts:
        raise ParameterError("under needs at least one path part, got none")
    names = [safe_name(p) for p in parts]
    names[-1] += suffix
    p = Path(root).joinpath(*names)
    base = Path(root).resolve()
    if not p.resolve().is_relative_to(base):
        raise ParameterError(f"path {p} must stay inside the output root {root}, got parts={list(map(str, parts))!r}")
    return p


def not_utf8(name: str) -> bool:
    """``name`` (a path, a URL) holds bytes that are no UTF-8 (``os.fsdecode``'s surrogate escapes of a Latin-1
    name, say): DuckDB, SQLite URLs, Parquet and the store's text columns take none, so it is refused by name."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def shown_name(name: str) -> str:
    """``name`` printable: each byte that is no UTF-8 (a :func:`not_utf8` name) shown as U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def check_out_writable(root: str | Path) -> None:
    """For a command that writes its files at the end of its work (``backtest``, ``signals``): an output root it
    could not write in is refused before the work, and before the store is written, as the OSError a write would
    meet, naming the place (the CLI prints it in one line): a name longer than the file system allows, or a nearest
    existing folder on a read-only file system or without write permission. The root is not created here. (A
    full disk is met by the write itself: files are written whole, the store's rows stay.)"""
    root = Path(root)
    folder = next((p for p in (root, *root.parents) if p.exists()), Path("."))
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    for name in root.parts:
        if len(os.fsencode(name)) > longest:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(root))
    if not os.access(folder, os.W_OK | os.X_OK):
        readonly = bool(os.statvfs(folder).f_flag & os.ST_RDONLY) if hasattr(os, "statvfs") else False
        code = errno.EROFS if readonly else errno.EACCES
        raise OSError(code, os.strerror(code), str(folder))


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path``: an interrupted or failed write
    leaves the previous file (or none), never a half-written one that a later command would read. The file gets
    the mode a plain write gives (0666 less the umask; ``tempfile.mkstemp`` would make it 0600)."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask's mode, as a plain write gives
    except OSError as e:
        _raise_naming(e, tmp, path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # a full disk or a limit met by the write: the error names the file meant
            _raise_naming(e, tmp, path)
        raise


def atomic_write_many(paths: Sequence[str | Path], write: Callable[[list[Path]], object]) -> None:
    """:func:`atomic_write` for files one call writes together (kaleido exports several figures in one browser
    session): ``write(tmps)`` writes a temporary file beside each path (same suffix, so a writer that reads the
    format from the name still does), then each is renamed to its path. A failure (a full disk at the third image,
    a Ctrl-C) leaves every previous file as it was and no temporary file."""
    finals = [Path(p) for p in paths]
    tmps = [p.parent / f".{p.stem}.{secrets.token_hex(6)}.tmp{p.suffix}" for p in finals]
    made: list[Path] = []
    try:
        for tmp, path in zip(tmps, finals):
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except OSError as e:
                _raise_naming(e, tmp, path)
            made.append(tmp)
        write(list(tmps))
        for tmp, path in zip(tmps, finals):
            os.replace(tmp, path)
    except BaseException as e:
        for tmp in made:
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is not None:
            for tmp, path in zip(tmps, finals):
                if e.filename in (str(tmp), tmp):
                    _raise_naming(e, tmp, path)
        raise


def _raise_naming(e: OSError, tmp: Path, path: Path) -> None:
    """Raise ``e`` naming ``path`` (the file being written) when it named no file or the temporary one, else ``e``
    itself."""
    if e.errno is None or e.filename not in (None, str(tmp), tmp):
        raise e
    raise OSError(e.errno, e.strerror or str(e), str(path)) from e


# The states of a folder written whole (:func:`atomic_folder`), as siblings of ``<folder>`` (a run folder's own name
# never starts with a dot: :func:`safe_name`): ``.<folder>.part-<hex>`` being written (incomplete), ``.<folder>.new-
# <hex>`` written whole and about to be renamed in, ``.<folder>.old-<hex>`` the previous folder renamed aside.
_FOLDER_STATES = ("part", "new", "old")


def _siblings(folder: Path, state: str) -> list[Path]:
    try:
        return sorted(folder.parent.glob(f".{glob.escape(folder.name)}.{state}-*"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return []


def recover_folder(folder: str | Path, clean: bool = False) -> Path:
    """Finish what a crash (a kill, a power cut) between the two renames of :func:`atomic_folder` left: when
    ``folder`` is missing, the newest ``.<folder>.new-*`` (written whole) is renamed in, else the newest
    ``.<folder>.old-*`` (the previous folder) is renamed back. ``clean`` (the next save does it, a reader does not:
    a save running now owns its siblings) also removes the leftovers beside an existing folder: a folder being
    written when it stopped (``.part-*``), one written whole but not renamed in (``.new-*``: the save did not
    finish, the folder in place stays), the previous folder renamed aside (``.old-*``). Returns ``folder``."""
    folder = Path(folder)
    if not folder.exists():
        for state in ("new", "old"):
            found = _siblings(folder, state)
            if found:
                try:
                    os.rename(found[-1], folder)
                except OSError:  # a reader on a read-only place, or another process did it first
                    pass
                break
    if clean and folder.exists():
        for state in _FOLDER_STATES:
            for p in _siblings(folder, state):
                shutil.rmtree(p, ignore_errors=True)
    return folder


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # no bytes copied, no room needed for them
    except OSError:
        shutil.copy2(src, dst)


@contextmanager
def atomic_folder(folder: str | Path, drop: Iterable[str] = ()) -> Iterator[Path]:
    """Write a folder of files all-or-nothing: the block writes the new files into the yielded temporary folder
    (a sibling, so on the same file system), and only when it ends without an error is that folder put in place of
    ``folder``: the old folder renamed aside, the new one renamed in, the old one removed. An error, a Ctrl-C or a
    full disk while writing leaves ``folder`` as it was (the temporary folder removed; an OSError names the file
    meant, in ``folder``). A kill between the two renames leaves ``folder`` missing and the new one beside it:
    :func:`recover_folder` (called by the next save, and by a reader) renames it in.

    The entries of the old folder that the block did not write are kept (hard-linked, else copied, into the new one
    before the swap: files another command put there, a sub-folder), except the names in ``drop`` (the writer's own
    files that the new content has none of). A symbolic link ``folder`` is followed (the folder it points to is
    replaced)."""
    folder = Path(folder)
    if folder.is_symlink() or folder.name in ("", ".", ".."):  # a link's folder; ``.``: the folder it names
        folder = Path(os.path.realpath(folder))
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists() and not folder.is_dir():  # a file by that name is the user's: never replaced by a folder
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    recover_folder(folder, clean=True)
    token = secrets.token_hex(6)
    part = folder.parent / f".{folder.name}.part-{token}"
    aside = folder.parent / f".{folder.name}.old-{token}"
    try:
        os.mkdir(part)
    except OSError as e:
        _raise_naming(e, part, folder)
    try:
        try:
            yield part
            old = set(os.listdir(folder)) if folder.is_dir() else set()
            if folder.is_dir():
                shutil.copymode(folder, part)
            for name in sorted(old - set(os.listdir(part)) - set(drop)):
                src, dst = folder / name, part / name
                if src.is_dir() and not src.is_symlink():
                    shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
                elif src.is_symlink():
                    os.symlink(os.readlink(src), dst)
                else:
                    _link_or_copy(str(src), str(dst))
            new = folder.parent / f".{folder.name}.new-{token}"
            os.rename(part, new)
            part = new
        except OSError as e:  # a full disk met in the temporary folder: name the file meant, in ``folder``
            name = os.fspath(e.filename) if e.filename is not None else ""
            if isinstance(name, str) and name.startswith(str(part)):
                raise OSError(e.errno, e.strerror or str(e), str(folder) + name[len(str(part)):]) from e
            raise
        if folder.exists():
            os.rename(folder, aside)
        os.rename(part, folder)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        if aside.exists() and not folder.exists():  # the second rename failed: the old folder goes back
            os.rename(aside, folder)
        raise
    shutil.rmtree(aside, ignore_errors=True)


# the ``out`` of the commands running in this process (innermost last): where their on-disk caches live
_CACHING: list[str | Path | None] = []


def cache_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Env ``ACCUMOPT_CACHE``: ``on`` (or unset, or empty) True, ``off`` False (either in any case); any other value
    is a ParameterError naming the variable and the rule."""
    raw = _env(CACHE_ENV, env)
    v = (raw or "on").strip().lower()
    if v not in ("on", "off"):
        raise ParameterError(f"{CACHE_ENV} must be on or off, got {CACHE_ENV}={raw!r}")
    return v == "on"


@contextmanager
def caching_under(out: str | Path | None, env: Mapping[str, str] | None = None) -> Iterator[None]:
    """While the block runs, :func:`cache_dir` is under ``output_root(out)`` (``out``, else env ``ACCUMOPT_OUTPUT``,
    else ``output``). The CLI runs every command that takes ``--out`` in one; a notebook opts in the same way
    (``with optimizer.paths.caching_under("output"): ...``), a library call outside one writes no cache. A bad
    ``ACCUMOPT_CACHE`` is refused here, before the block runs."""
    cache_enabled(env)
    _CACHING.append(out)
    try:
        yield
    finally:
        _CACHING.pop()


def cache_dir(kind: str, env: Mapping[str, str] | None = None) -> Path | None:
    """``<output root>/.cache/<kind>`` of the running :func:`caching_under` block, or None: outside a block, with
    env ``ACCUMOPT_CACHE=off``, when the output root is not an existing folder (a cache never creates the root: a
    command that writes nothing else leaves no folder behind), or when the folder would resolve outside the root
    (a ``.cache`` link pointing elsewhere: nothing is written outside the output root)."""
    if not _CACHING or not cache_enabled(env):
        return None
    root = output_root(_CACHING[-1], env)
    if not root.is_dir():
        return None
    d = root / ".cache" / safe_name(kind)
    try:
        if not d.resolve().is_relative_to(root.resolve()):
            return None
    except (OSError, RuntimeError):  # a link loop
        return None
    return d
