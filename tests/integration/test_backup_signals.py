"""`pausepoint backup` signalled in its hold closes the window at once (issue 10, defect 8).

The command runs in a subprocess against the session's Prefect API, pausing the test admin nodes
of this process over gRPC; SIGTERM or SIGINT reaches it (its pid only, as `kill` sends it) while
it holds a 60 s window. It must unpause at once, end its lease, register nothing and exit
non-zero with one line, without a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from pausepoint.catalog import open_catalog
from pausepoint.site import load_site

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
HOLD_S = 60


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_backup_signalled_in_its_hold_unpauses_at_once_and_exits_with_one_line(
    small_site, tmp_path, signum
):
    small_site.edit(lambda d: d["pause"].update(min_hold_ms=HOLD_S * 1000))
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as o, err.open("wb") as e:
        child = subprocess.Popen(
            [sys.executable, "-m", "pausepoint.cli", "backup", "--site", str(small_site.path)],
            cwd=REPO,
            env=env,
            stdout=o,
            stderr=e,
            start_new_session=True,  # its group is ours to kill if the test fails
        )
    try:
        small_site.wait_until_paused(child, err)
        time.sleep(0.5)  # into the hold
        signalled = time.monotonic()
        child.send_signal(signum)
        try:
            code = child.wait(timeout=HOLD_S / 2)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {HOLD_S / 2:.0f} s after the signal (hold {HOLD_S} s)")
        took = time.monotonic() - signalled
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
    stderr = err.read_text()
    name = signal.Signals(signum).name
    assert code == 128 + signum, stderr[-4000:]
    assert took < HOLD_S / 2
    assert "Traceback" not in stderr, stderr[-4000:]
    errors = [line for line in stderr.splitlines() if line.startswith("pausepoint: error:")]
    assert len(errors) == 1, stderr[-4000:]
    assert f"interrupted by {name} during the pause window: every node was unpaused" in errors[0]
    assert "no restore point was registered" in errors[0]
    assert "restore point:" not in out.read_text()
    small_site.assert_nothing_paused_or_registered()
    site = load_site(small_site.path)
    [lease] = open_catalog(site.catalog).list_leases(site.site)
    assert lease.state == "released"
