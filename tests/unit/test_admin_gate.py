"""The test-only Gate and GateServer behave like a ScalarDL 3.14.0 node (FACTS.md section 1).

The tests of 3.14.0-only behaviour name the release; 3.12.3 / 3.13.0 are in
test_admin_gate_releases.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.gate_server import (
    Gate,
    GateServer,
    PauseCall,
    PauseOutcome,
    Release,
    start_gate_cluster,
)
from pausepoint.admin.grpc_client import GrpcAdminClient
from tests.support.background import Background, wait_until

pytestmark = pytest.mark.timeout(30)


# --- Gate ------------------------------------------------------------------------------------


def test_gate_enter_while_paused_is_held_until_unpause() -> None:
    gate = Gate()
    assert gate.pause(wait_outstanding=True, max_wait_ms=1000) is PauseOutcome.PAUSED
    writer = Background(lambda: gate.enter())
    wait_until(lambda: gate.held == 1)
    assert not writer.done and gate.inflight == 0
    gate.unpause()
    writer.result()
    assert gate.inflight == 1 and gate.held == 0


def test_gate_enter_with_timeout_while_paused_raises_timeout_error() -> None:
    gate = Gate()
    gate.pause(wait_outstanding=False)
    with pytest.raises(TimeoutError, match="gate stayed closed"):
        gate.enter(timeout_s=0.05)
    assert gate.held == 0 and gate.inflight == 0


def test_gate_pause_waits_for_inflight_request_then_pauses() -> None:
    gate = Gate()
    gate.enter()
    pause = Background(lambda: gate.pause(wait_outstanding=True, max_wait_ms=5000))
    wait_until(lambda: gate.check_paused())
    assert not pause.done
    gate.exit()
    assert pause.result() is PauseOutcome.PAUSED
    assert gate.check_paused()


def test_gate_drain_timeout_on_open_gate_reopens_and_reports_timed_out() -> None:
    gate = Gate()
    gate.enter()
    assert gate.pause(wait_outstanding=True, max_wait_ms=50) is PauseOutcome.TIMED_OUT
    assert not gate.check_paused()


def test_gate_drain_timeout_under_earlier_pause_stays_closed_and_reports_still_paused() -> None:
    gate = Gate(Release.V3_14_0)
    gate.enter()
    assert gate.pause(wait_outstanding=False) is PauseOutcome.PAUSED
    outcome = gate.pause(wait_outstanding=True, max_wait_ms=50)
    assert outcome is PauseOutcome.TIMED_OUT_STILL_PAUSED
    assert gate.check_paused()


def test_gate_min_drain_ms_longer_than_wait_reports_timed_out() -> None:
    gate = Gate()
    outcome = gate.pause(wait_outstanding=True, max_wait_ms=50, min_drain_ms=500)
    assert outcome is PauseOutcome.TIMED_OUT
    assert not gate.check_paused()


def test_gate_pause_without_wait_during_pause_in_progress_reports_pause_in_progress() -> None:
    gate = Gate(Release.V3_14_0)
    first = Background(lambda: gate.pause(True, 5000, min_drain_ms=5000))
    wait_until(lambda: gate.pausing)
    assert gate.pause(wait_outstanding=False) is PauseOutcome.PAUSE_IN_PROGRESS
    gate.unpause()
    assert first.result() is PauseOutcome.GATE_OPEN


def test_gate_waiting_pause_behind_pause_in_progress_gives_up_at_its_own_limit() -> None:
    gate = Gate(Release.V3_14_0)
    first = Background(lambda: gate.pause(True, 5000, min_drain_ms=5000))
    wait_until(lambda: gate.pausing)
    assert gate.pause(True, max_wait_ms=50) is PauseOutcome.PAUSE_IN_PROGRESS
    gate.unpause()
    first.result()


def test_gate_waiting_pause_behind_pause_in_progress_pauses_once_it_finishes() -> None:
    gate = Gate(Release.V3_14_0)
    first = Background(lambda: gate.pause(True, 5000, min_drain_ms=100))
    wait_until(lambda: gate.pausing)
    assert gate.pause(True, max_wait_ms=5000) is PauseOutcome.PAUSED
    assert first.result() is PauseOutcome.PAUSED


def test_gate_unpause_during_drain_opens_and_pause_reports_gate_open() -> None:
    gate = Gate(Release.V3_14_0)
    gate.enter()
    pause = Background(lambda: gate.pause(wait_outstanding=True, max_wait_ms=5000))
    wait_until(lambda: gate.pausing)
    gate.unpause()
    assert pause.result() is PauseOutcome.GATE_OPEN
    assert not gate.check_paused()


def test_gate_non_positive_wait_with_wait_outstanding_raises_value_error() -> None:
    with pytest.raises(ValueError, match="must be > 0 ms, got 0 ms"):
        Gate(Release.V3_14_0).pause(wait_outstanding=True, max_wait_ms=0)


def test_gate_reset_opens_and_forgets_inflight() -> None:
    gate = Gate()
    gate.enter()
    gate.pause(wait_outstanding=False)
    gate.reset()
    assert not gate.check_paused() and gate.inflight == 0
    gate.exit()  # a request from before the restart reporting in late
    assert gate.inflight == 0


# --- GateServer ------------------------------------------------------------------------------


@pytest.fixture
def client() -> Any:
    with GrpcAdminClient() as c:
        yield c


def test_gate_server_counts_calls_and_records_pause_requests(client: GrpcAdminClient) -> None:
    with GateServer() as node:
        client.check_paused(node.target, timeout_s=5)
        client.pause(node.target, wait_outstanding=True, max_pause_wait_ms=1234, timeout_s=5)
        client.pause(node.target, wait_outstanding=False, max_pause_wait_ms=None, timeout_s=5)
        client.unpause(node.target, timeout_s=5)
        assert node.calls == {"CheckPaused": 1, "Pause": 2, "Unpause": 1}
        assert node.pause_calls == [PauseCall(True, 1234), PauseCall(False, None)]


def test_gate_server_restart_unpaused_keeps_port_and_opens_gate(client: GrpcAdminClient) -> None:
    with GateServer() as node:
        port = node.port
        client.pause(node.target, wait_outstanding=True, max_pause_wait_ms=1000, timeout_s=5)
        node.restart_unpaused()
        assert node.port == port and node.restarts == 1
        assert client.check_paused(node.target, timeout_s=5) is False


def test_gate_server_stop_then_start_keeps_gate_state(client: GrpcAdminClient) -> None:
    with GateServer() as node:
        client.pause(node.target, wait_outstanding=True, max_pause_wait_ms=1000, timeout_s=5)
        node.stop()
        assert not node.running
        node.start()
        assert client.check_paused(node.target, timeout_s=5) is True


def test_start_gate_cluster_three_nodes_distinct_ports_and_independent_gates(
    client: GrpcAdminClient,
) -> None:
    with start_gate_cluster(3) as cluster:
        servers, targets = cluster
        assert len({t.port for t in targets}) == 3
        assert targets == [s.target for s in servers]
        client.pause(targets[0], wait_outstanding=False, max_pause_wait_ms=None, timeout_s=5)
        paused = [client.check_paused(t, timeout_s=5) for t in targets]
        assert paused == [True, False, False]
