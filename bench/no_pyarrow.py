"""A Python process as the default install has it, no pyarrow, run from an environment
that has the ``arrow`` extra installed (issue 15 goal 3).

pandas imports pyarrow whenever it can, and pyarrow's libraries cost every process ~60 MB.
pyproject.toml keeps pyarrow out of the default install, so the default install has to be
measured (bench/plan_bench.py ``--whole-first-sync``) and tested
(tests/test_without_pyarrow.py) without it. The development environment has the extra,
so a child process is started with :func:`env`: a ``sitecustomize.py`` on its
``PYTHONPATH`` puts a finder first on ``sys.meta_path`` that refuses ``pyarrow`` and the
ADBC driver, as if they were not installed (``ModuleNotFoundError``, which pandas and
``crm/arrow_read.py`` take as "not installed"). At exit the child writes what it refused
and which of those modules it holds (none) into ``NO_PYARROW_REPORT_DIR``, when set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: The top-level packages the default install does not have (pyproject.toml's ``arrow`` extra).
REFUSED = ("pyarrow", "adbc_driver_postgresql", "adbc_driver_manager")
REPORT_DIR = "NO_PYARROW_REPORT_DIR"

SITECUSTOMIZE = f'''"""Written by bench/no_pyarrow.py: this process runs as if pyarrow were not installed."""
import atexit
import json
import os
import sys

_REFUSED = {REFUSED!r}
_asked = []


class _Refuse:
    """Finds nothing for the refused packages, and says so as a missing module does."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in _REFUSED:
            _asked.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}} (bench/no_pyarrow.py: the "
                                      "default install has no pyarrow)", name=name)
        return None


sys.meta_path.insert(0, _Refuse())


def _report():
    folder = os.environ.get({REPORT_DIR!r})
    if not folder:
        return
    compat = sys.modules.get("pandas.compat")
    report = {{
        "pid": os.getpid(),
        "argv": sys.argv,
        "refused": sorted(set(_asked)),
        "loaded": sorted(m for m in sys.modules if m.partition(".")[0] in _REFUSED),
        "pandas_imported": "pandas" in sys.modules,
        "pandas_has_pyarrow": None if compat is None else bool(compat.HAS_PYARROW),
    }}
    with open(os.path.join(folder, f"no-pyarrow-{{os.getpid()}}.json"), "w") as out:
        json.dump(report, out)


atexit.register(_report)
'''


def folder(into: Path) -> Path:
    """``into`` with the refusing ``sitecustomize.py`` written in it."""
    into.mkdir(parents=True, exist_ok=True)
    (into / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    return into


def env(into: Path, base: dict[str, str] | None = None, report: Path | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) for a child without pyarrow: the
    refusing folder first on ``PYTHONPATH``, the report folder when given."""
    out = dict(os.environ if base is None else base)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder(into)), out.get("PYTHONPATH", "")) if p)
    if report is not None:
        report.mkdir(parents=True, exist_ok=True)
        out[REPORT_DIR] = str(report)
    return out


def reports(report: Path) -> list[dict[str, Any]]:
    """What each child that ran with ``report`` wrote at its exit."""
    return [json.loads(p.read_text()) for p in sorted(report.glob("no-pyarrow-*.json"))]
