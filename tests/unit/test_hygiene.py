"""The suite's end-of-session check (tests/support/hygiene.py) finds what it must."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import hygiene


def test_a_child_process_is_found_until_it_ends() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert proc.pid in hygiene.our_processes("no-such-token")
    finally:
        proc.kill()
        proc.wait()
    assert proc.pid not in hygiene.our_processes("no-such-token")


def test_an_orphan_is_found_by_the_marker_in_its_environment() -> None:
    """A grandchild whose parent exited is re-parented away from us: only the marker names it."""
    token = "hygiene-test-token"
    env = {**os.environ, hygiene.MARKER: token}
    script = (
        "import subprocess, sys; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
        "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(p.pid, flush=True)"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    orphan = int(out.stdout.split()[0])
    try:
        assert orphan in hygiene.our_processes(token)
    finally:
        os.kill(orphan, 9)
    for _ in range(50):
        if orphan not in hygiene.our_processes(token):
            break
        time.sleep(0.1)
    assert orphan not in hygiene.our_processes(token)


def test_new_temp_entries_with_our_prefixes_are_reported() -> None:
    baseline = hygiene.Baseline.take()
    ours = Path(tempfile.mkdtemp(prefix="pausepoint-hygiene-"))
    theirs = Path(tempfile.mkdtemp(prefix="somebody-else-"))
    try:
        found = baseline.new_temp_entries()
        assert str(ours) in found
        assert str(theirs) not in found
        assert any("temp file or directory left" in line for line in baseline.leftovers([], 0))
    finally:
        ours.rmdir()
        theirs.rmdir()
    assert str(ours) not in baseline.new_temp_entries()


def test_a_serving_admin_node_is_reported() -> None:
    baseline = hygiene.Baseline.take()
    lines = baseline.leftovers(["127.0.0.1:5 (PAUSED)"], 0)
    assert "admin node still serving: 127.0.0.1:5 (PAUSED)" in lines
