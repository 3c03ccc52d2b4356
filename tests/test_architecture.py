"""The layout keeps its one-way flow and its one-home-per-concept rules (docs/ARCHITECTURE.md).

* The import contracts in pyproject.toml ``[tool.importlinter]`` (layers: a lower layer never imports a higher one;
  acyclic siblings: no package-level cycle) hold on the import graph of optimizer/ and objectives/ (grimp, the graph
  import-linter builds; function-level imports count), and there is no module-level import cycle either. Planted
  violations prove each check can fail.
* No project import hides inside a function (but in a command of the CLI: start-up); every module has ``__all__``;
  every public function is typed.
* Only ``optimizer/study/records.py`` reads or writes Optuna user attributes.
* Importing every module changes no global state (Optuna verbosity, warning filters).
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib
import json
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from importlinter import configuration
from importlinter.application.use_cases import read_user_options
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.layers import LayersContract

from optimizer.cli import COMMAND_MODULES, main

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("optimizer", "objectives")
CONTRACT_TYPES = {"layers": LayersContract, "acyclic_siblings": AcyclicSiblingsContract}


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@functools.cache
def _tree(p: Path) -> ast.Module:
    """The parsed source of ``p``, parsed once for the module's checks (they only read the tree)."""
    return ast.parse(p.read_text())


@pytest.fixture(scope="module")
def options():
    configuration.configure()  # import-linter's own settings (what `lint-imports` does first)
    return read_user_options(str(ROOT / "pyproject.toml"))


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def _broken(options, graph) -> dict[str, object]:
    """{contract id: what breaks it} for every contract of pyproject.toml checked on ``graph``."""
    out: dict[str, object] = {}
    for c in options.contracts_options:
        contract = CONTRACT_TYPES[c["type"]](name=c["name"], session_options=options.session_options, contract_options=c)
        check = contract.check(copy.deepcopy(graph), verbose=False)
        if not check.kept:
            if c["type"] == "layers":
                out[c["id"]] = sorted((d["importer"], d["imported"]) for d in check.metadata["invalid_dependencies"])
            else:
                out[c["id"]] = {k: sorted(v) for k, v in check.metadata["cycle_breakers_by_package"].items()}
    return out


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(adj):
        if root in index:
            continue
        work = [(root, iter(adj[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(adj[w])))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


# ------------------------------------------------------------------------------------------------ import graph


def test_import_contracts_hold(options, graph):
    assert {c["id"] for c in options.contracts_options} == {"layers", "acyclic"}
    assert _broken(options, graph) == {}


def test_no_module_level_import_cycle(graph):
    assert _cycles(graph) == []


def test_the_checks_catch_planted_violations(options, graph):
    g = copy.deepcopy(graph)
    g.add_import(importer="optimizer.data.store", imported="optimizer.cli.data")  # a lower layer imports the CLI
    g.add_import(importer="optimizer.study.spec", imported="optimizer.study.run")  # run imports spec: a cycle
    broken = _broken(options, g)
    assert broken["layers"] == [("optimizer.data", "optimizer.cli")]
    assert ("optimizer.study.spec", "optimizer.study.run") in broken["acyclic"]["optimizer.study"]
    assert any({"optimizer.study.spec", "optimizer.study.run"} <= set(c) for c in _cycles(g))


def test_every_module_is_in_a_layer(options, graph):
    """A new top-level module or package must be placed in the layers (else the contract would not see it)."""
    layers = next(c for c in options.contracts_options if c["type"] == "layers")["layers"]
    named = {m.strip() for layer in layers for m in layer.split("|")}
    tops = {".".join(m.split(".")[:2]) if m.startswith("optimizer.") else m.split(".")[0] for m in graph.modules}
    assert tops - named == {"optimizer"}  # the root package itself (__version__ and the lazy API names)


# ------------------------------------------------------------------------------------------------ source rules


def _function_level_imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(fn):
                mods = ([n.module or ""] if isinstance(n, ast.ImportFrom) and n.level == 0 else
                        [a.name for a in n.names] if isinstance(n, ast.Import) else [])
                found += [(n.lineno, m) for m in mods if m.split(".")[0] in PACKAGES]
    return found


def test_no_project_import_inside_a_function():
    """Except in optimizer/cli/: a command imports the library it calls where it calls it, so every other command
    of its module starts without it (``study list`` without the engine and numba; tests/test_startup.py). grimp
    sees those imports too: the layer and cycle checks above cover them."""
    bad = [f"{p.relative_to(ROOT)}:{ln} {m}" for p in _sources() if p.parent.name != "cli" or p.parent.parent.name != "optimizer"
           for ln, m in _function_level_imports(_tree(p))]
    assert bad == []
    assert _function_level_imports(ast.parse("def f():\n    from optimizer.study.run import run_study")) == [
        (2, "optimizer.study.run")]  # the check itself can fail


def test_every_module_declares___all__():
    def has_all(tree: ast.Module) -> bool:
        return any(isinstance(n, (ast.Assign, ast.AnnAssign))
                   and any(getattr(t, "id", None) == "__all__" for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))
                   for n in tree.body)

    missing = [str(p.relative_to(ROOT)) for p in _sources() if p.name != "__main__.py" and not has_all(_tree(p))]
    assert missing == []


def _untyped(tree: ast.Module) -> list[str]:
    """Public functions and methods (of public classes) with an unannotated parameter or return. Exempt: numba
    kernels (``*_nb``: numpy arrays and scalars by contract) and click commands (typed by their options)."""
    out = []

    def visit(node: ast.AST, owner: str = "") -> None:
        for n in ast.iter_child_nodes(node):
            if isinstance(n, ast.ClassDef) and not n.name.startswith("_"):
                visit(n, n.name + ".")
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                public = not n.name.startswith("_") or n.name in ("__init__", "__call__")
                decos = " ".join(ast.unparse(d) for d in n.decorator_list)
                if not public or n.name.endswith("_nb") or "command(" in decos or "group(" in decos:
                    continue
                args = [a for a in (*n.args.posonlyargs, *n.args.args, *n.args.kwonlyargs) if a.arg not in ("self", "cls")]
                args += [a for a in (n.args.vararg, n.args.kwarg) if a is not None]
                bad = [a.arg for a in args if a.annotation is None]
                if n.returns is None and n.name != "__init__":
                    bad.append("return")
                if bad:
                    out.append(f"{owner}{n.name}({', '.join(bad)})")

    visit(tree)
    return out


def test_every_public_function_is_typed():
    bad = {str(p.relative_to(ROOT)): u for p in _sources() if (u := _untyped(_tree(p)))}
    assert bad == {}


def test_the_type_check_can_fail():
    assert _untyped(ast.parse("def f(x, y: int): pass\nclass C:\n    def m(self) -> None: pass\n    def n(self, z): pass")) == [
        "f(x, return)", "C.n(z, return)"]


# the only places outside records.py that touch user attributes, and why
_USER_ATTR_EXCEPTIONS = {
    ("optimizer/study/run.py", "user_attrs"),  # _optimize_mirrored copies a finished trial verbatim to the storage
    ("optimizer/study/storage.py", "set_trial_user_attr"),  # the storage override that batches the write
    ("optimizer/study/storage.py", "user_attrs"),  # write_finished_trial stores a finished trial verbatim
    ("optimizer/study/run.py", "set_trial_user_attr"),  # (same copy as above)
}


def test_only_records_touches_user_attributes():
    """Nothing reads or writes a study's or trial's user attributes by string except optimizer/study/records.py."""
    hits = set()
    for p in _sources():
        rel = str(p.relative_to(ROOT))
        if rel == "optimizer/study/records.py":
            continue
        for n in ast.walk(_tree(p)):
            name = n.attr if isinstance(n, ast.Attribute) else None
            if name in ("user_attrs", "set_user_attr", "set_trial_user_attr"):
                hits.add((rel, name))
    assert hits <= _USER_ATTR_EXCEPTIONS, sorted(hits - _USER_ATTR_EXCEPTIONS)


# ------------------------------------------------------------------------------------------------ import side effects


def _third_party_imports() -> list[str]:
    """Every non-project module the sources import (``from a.b import c`` gives a.b and a.b.c)."""
    names: set[str] = set()
    for p in _sources():
        for n in ast.walk(_tree(p)):
            if isinstance(n, ast.Import):
                names.update(a.name for a in n.names)
            elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
                names.add(n.module)
                names.update(f"{n.module}.{a.name}" for a in n.names)
    return sorted(m for m in names if m.split(".")[0] not in (*PACKAGES, "__future__"))


@pytest.mark.slow  # a subprocess importing every module and library: seconds
def test_importing_every_module_changes_no_global_state():
    """Optuna's verbosity and the warning filters are the same before and after importing every project module
    (the CLI sets Optuna's verbosity when it runs, not when it is imported). The libraries are imported first:
    what they do at import is theirs."""
    modules = sorted({".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                      for p in _sources() if p.name != "__main__.py"})
    code = (
        "import json, warnings, importlib\n"
        f"for m in {_third_party_imports()!r}:\n"
        "    try:\n        importlib.import_module(m)\n"
        "    except ImportError:\n        pass  # a name imported from a module, not a module\n"
        "import optuna\n"
        "before = (optuna.logging.get_verbosity(), [repr(f) for f in warnings.filters])\n"
        f"for m in {modules!r}:\n    importlib.import_module(m)\n"
        "after = (optuna.logging.get_verbosity(), [repr(f) for f in warnings.filters])\n"
        "print(json.dumps([before, after]))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    before, after = json.loads(res.stdout.strip().splitlines()[-1])
    assert after == before


def test_every_cli_command_is_registered_with_its_module():
    """The CLI loads a command group's module when one of its commands is used: the name -> module map must list
    exactly the commands each module defines (else a command would be unreachable)."""
    import importlib

    from optimizer.cli import COMMAND_MODULES, main

    defined = {c.name: m for m in set(COMMAND_MODULES.values())
               for c in importlib.import_module(f"optimizer.cli.{m}").COMMANDS}
    assert defined == COMMAND_MODULES
    assert sorted(main.commands) == sorted(COMMAND_MODULES) and main.commands["study"].name == "study"
