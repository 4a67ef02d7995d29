"""What a newcomer sees on a first run without a Prefect server (issue 15): the command says once
that it starts a temporary Prefect API and shows progress; the demo keeps the points of earlier
demos and ends with its verdict and the commands to try next. Real subprocesses, each starting a
temporary Prefect API (marker e2e)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pausepoint.catalog import Catalog
from pausepoint.catalog.local import LocalDriver
from pausepoint.cli import TEMPORARY_API
from tests.unit.test_catalog import make_point

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return {**env, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp / "prefect"), **extra}


def test_a_flow_command_says_once_that_it_starts_a_temporary_prefect_api(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: demo\ncatalog: {path: catalog}\nledger:\n  targets: {static: ['127.0.0.1:1']}\n"
        "  stores: [{kind: postgres, name: pg, user: u, database: d}]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pausepoint.cli", "watchdog", "--site", str(site)],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert lines.count(f"pausepoint: {TEMPORARY_API}") == 1
    assert lines[0] == f"pausepoint: {TEMPORARY_API}"
    ready = [x for x in lines if x.startswith("pausepoint: temporary Prefect API ready in ")]
    assert len(ready) == 1 and ready[0].endswith(" s; running the flow")
    # Prefect's own start/stop lines are replaced by ours; nothing follows the command's result.
    assert "temporary server" not in proc.stderr
    assert proc.stdout.splitlines()[-1] == "site demo: 0 orphaned lease(s) closed"


def test_the_demo_keeps_earlier_points_and_ends_with_the_verdict_and_next_commands(servers_dir):
    base = servers_dir / "demo-e2e"
    base.mkdir(mode=0o711)
    earlier = make_point(Catalog(LocalDriver(base / "catalog")))
    proc = subprocess.run(
        [sys.executable, "-m", "demo.run"],
        capture_output=True,
        text=True,
        env=_env(base, PAUSEPOINT_DEMO_DIR=str(base)),
        cwd=ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout.splitlines()
    assert out[1] == (
        f"==> keeping 1 restore point(s) of earlier demos in {base / 'catalog'} "
        f"(`rm -rf {base}` starts afresh)"
    )
    assert proc.stderr.splitlines().count(f"pausepoint: {TEMPORARY_API}") == 1
    verdict = next(i for i, line in enumerate(out) if line.startswith("==> VERDICT: "))
    assert out[verdict].startswith("==> VERDICT: CONSISTENT — restore point ")
    after = out[verdict + 1 :]
    assert after[:2] == ["", "next, from this directory (`make install` puts pausepoint on PATH):"]
    assert any(x.startswith("  pausepoint points list --site ") for x in after)
    assert any(x.startswith("  pausepoint restore --site ") for x in after)
    assert after[-1].startswith("the Prefect UI: `prefect server start`")
    assert "temporary server" not in proc.stderr
    points = Catalog(LocalDriver(base / "catalog")).list_points("demo")
    assert earlier.id in {p.id for p in points} and len(points) == 2
    assert (base / "env").stat().st_mode & 0o077 == 0  # the password variables: owner only
