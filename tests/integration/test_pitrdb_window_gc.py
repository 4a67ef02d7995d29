"""The backup flow holds Python's garbage collector from before the first Pause until every
Unpause is confirmed: a full collection stops every thread of the process (the admin client's
event loop too), and in bench.pitr_stall one of 241 ms inside a drain was a whole write-stall
spike (BENCHMARKS.md, "Point-in-time stall"). The test admin nodes run in this process, so each
call they handle sees the collector's state as the flow left it."""

from __future__ import annotations

import gc
import threading

import pytest

from flows.backup import backup
from harness.gate_server import GateServer
from pausepoint.requests import BackupRequest

pytestmark = [pytest.mark.integration]


def test_no_garbage_collection_from_the_first_pause_to_the_last_unpause(small_site, monkeypatch):
    seen: list[tuple[str, bool]] = []
    lock = threading.Lock()
    record = GateServer._record

    def recording(self, method, pause_call=None):
        with lock:
            seen.append((method, gc.isenabled()))
        record(self, method, pause_call)

    monkeypatch.setattr(GateServer, "_record", recording)
    assert gc.isenabled()
    backup(BackupRequest(site_file=str(small_site.path)))

    pauses = [on for m, on in seen if m == "Pause"]
    unpauses = [on for m, on in seen if m == "Unpause"]
    assert len(pauses) == len(unpauses) == len(small_site.servers)
    assert not any(pauses), f"the collector was on while nodes were being paused: {seen}"
    assert not any(unpauses), f"the collector was on while nodes were being unpaused: {seen}"
    # Only the window: the preflight's CheckPaused ran with it on, and it is on again after.
    assert seen[0] == ("CheckPaused", True), seen
    assert gc.isenabled()
