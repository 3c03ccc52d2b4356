"""Start-up cost of a process: what a command or an import loads that it does not use.

Every ``accumopt`` process (and every worker, notebook and script) pays for the libraries its imports load: pandas
~0.6 s of CPU, numba ~0.4 s, Optuna + SQLAlchemy ~0.4 s. These tests pin, in ONE fresh interpreter (a subprocess:
the test process has loaded everything), that
* ``accumopt --version`` loads no data library (``optimizer.cli`` and its shared helpers import them where used);
* ``import optimizer.study`` loads none of its modules, and its ``make_storage`` (what reads a study storage)
  comes without the engine, numba or the objectives (the package's names load their module on first use, PEP 562);
* the module of the ``study`` commands (what ``accumopt study list / show / best / export`` load) comes without the
  engine, numba, scipy and plotly: the stored records and the spec read engine names when a function runs
  (``optimizer.engine`` loads a module on first use), run / worker / replay import the runner, compare the plots;
* ``optimizer.analytics.scanner`` (what the evening imports) comes without the plots, the tables and the engine,
  and so does the module of the evening commands (``accumopt scan``; table / plot / chart import theirs);
* the module of the research commands (what ``accumopt sandbox`` loads) comes without the walk-forward, the research
  report and scipy.stats (walkforward and report import theirs);
* the statistics (``optimizer.validate``) and the research report come without scipy.stats (~0.7 s of CPU): the
  functions that use it import it, so ``accumopt --help`` (which loads every command's module) does not pay it;
and that the lazy names are the very objects of their home modules.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PROBE = r"""
import importlib, json, sys
HEAVY = ("pandas", "numpy", "duckdb", "pyarrow", "optuna", "sqlalchemy", "numba", "scipy", "sklearn", "plotly",
         "objectives", "optimizer.engine.evaluate", "optimizer.analytics.plots", "optimizer.analytics.tables",
         "optimizer.study.run", "optimizer.study.spec")
loaded = lambda: sorted(m for m in HEAVY if m in sys.modules)
out = {}
from optimizer.cli import main
try:
    main(["--version"])
except SystemExit as e:
    out["version_exit"] = e.code
out["version"] = loaded()
import optimizer.study
out["study_package"] = loaded()
optimizer.study.make_storage
out["make_storage"] = loaded()
import optimizer.cli.study
out["study_commands"] = loaded()
import optimizer.analytics.scanner
out["scanner"] = loaded()
import optimizer.cli.analytics
out["analytics_commands"] = loaded()
import optimizer.cli.research
out["research_commands"] = sorted(m for m in ("scipy.stats", "optimizer.validate.walkforward",
                                              "optimizer.report.research") if m in sys.modules)
import optimizer.validate.stats, optimizer.validate.verdict, optimizer.report.research
out["validate_modules"] = "scipy.stats" in sys.modules
# the engine names the records, the search space and the spec read when a function runs (first use: engine.<module>)
from optimizer.study.records import ConfigRecord
from optimizer.study.space import params_to_config
from optimizer.study.spec import load_spec
spec = load_spec("studies/demo.toml")  # checks the objective's metrics against engine.metrics.METRIC_KEYS
cfg = params_to_config({"variant": "B", "buy_threshold": 65}, spec)
out["config"] = [type(cfg).__module__, type(cfg).__name__, cfg.costs.commission_bps == spec.data.commission_bps,
                 type(ConfigRecord(params=cfg.to_params()).config()).__name__]
print(json.dumps(out))
"""


def test_a_command_or_an_import_loads_only_what_it_uses():
    res = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["version_exit"] == 0 and "accumopt, version" in res.stdout
    assert out["version"] == []
    assert out["study_package"] == []
    engine = {"numba", "scipy", "sklearn", "objectives", "optimizer.engine.evaluate", "optimizer.study.run",
              "optimizer.study.spec", "optimizer.analytics.plots", "optimizer.analytics.tables"}
    assert "optuna" in out["make_storage"] and not engine & set(out["make_storage"]), out["make_storage"]
    assert not (engine - {"objectives", "optimizer.study.spec"} | {"plotly"}) & set(out["study_commands"]), \
        out["study_commands"]  # the spec (and the objectives it names) is how a stored study is read back
    assert not engine & (set(out["scanner"]) - set(out["study_commands"])), out["scanner"]  # what the scanner added
    assert not engine & (set(out["analytics_commands"]) - set(out["study_commands"])), out["analytics_commands"]
    assert out["research_commands"] == []
    assert out["validate_modules"] is False
    assert out["config"] == ["optimizer.engine.evaluate", "Config", True, "Config"]  # the lazily read names work


def test_the_lazy_names_are_their_home_modules_objects():
    import importlib

    import optimizer.analytics
    import optimizer.study

    for pkg in (optimizer.study, optimizer.analytics):
        assert sorted(pkg._EXPORTS) == sorted(pkg.__all__)  # every public name has a home, and only those
        for name in pkg.__all__:
            home = importlib.import_module(pkg._EXPORTS[name])
            assert getattr(pkg, name) is getattr(home, name), name
        assert set(pkg.__all__) <= set(dir(pkg))
        try:
            pkg.no_such_name  # noqa: B018 - an unknown name is an AttributeError, as without the lazy loading
        except AttributeError as e:
            assert "no_such_name" in str(e)
        else:
            raise AssertionError(f"{pkg.__name__}.no_such_name resolved")
    from optimizer.study import run as run_mod  # a submodule of the same name space still imports as one

    assert run_mod.__name__ == "optimizer.study.run" and run_mod.run_study is optimizer.study.run_study
