"""Dependencies point down: flows -> tasks -> pausepoint. The core imports no Prefect."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pausepoint


def core_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(pausepoint.__path__, "pausepoint.")]
    # cli.py is the presentation layer on top of flows/ (it imports them lazily).
    return [n for n in names if n != "pausepoint.cli"]


def test_core_modules_import_no_prefect():
    modules = core_modules()
    assert "pausepoint.window" in modules and "pausepoint.stores.base" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "print(bad[:5]); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, f"core pulled in Prefect: {proc.stdout} {proc.stderr[-2000:]}"


def test_cli_imports_flows_only_lazily():
    code = "import sys, pausepoint.cli; sys.exit(1 if 'prefect' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
