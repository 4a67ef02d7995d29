"""call_all: parallel calls, each outcome kept with its time; and a fan-out over real nodes."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from harness.gate_server import start_gate_cluster
from pausepoint.admin.client import AdminCallError, Reason
from pausepoint.admin.fanout import Result, call_all
from pausepoint.admin.grpc_client import GrpcAdminClient
from pausepoint.errors import InternalError

pytestmark = pytest.mark.timeout(30)


def test_call_all_every_call_succeeds_results_in_input_order_with_utc_times() -> None:
    before = datetime.now(UTC)
    results = call_all(["c", "a", "b"], str.upper)
    assert list(results) == ["c", "a", "b"]
    assert [r.value for r in results.values()] == ["C", "A", "B"]
    for r in results.values():
        assert type(r) is Result and r.ok and r.error is None
        assert r.returned_at.tzinfo is UTC and before <= r.started_at <= r.returned_at
        assert r.started_mono <= r.returned_mono and r.elapsed_s >= 0


def test_call_all_one_call_raises_error_kept_and_others_unaffected() -> None:
    def fn(key: int) -> int:
        if key == 2:
            raise KeyError("boom")
        return key * 10

    results = call_all([1, 2, 3], fn)
    assert results[1].value == 10 and results[3].value == 30
    failed = results[2]
    assert not failed.ok and failed.value is None
    assert type(failed.error) is KeyError
    with pytest.raises(KeyError, match="boom"):
        failed.unwrap()
    assert results[1].unwrap() == 10


def test_call_all_slow_calls_run_in_parallel() -> None:
    barrier = threading.Barrier(4, timeout=5)  # all four must be running at the same time

    def fn(key: int) -> int:
        barrier.wait()
        return key

    results = call_all(range(4), fn)
    assert all(r.ok for r in results.values())


def test_call_all_a_hundred_nodes_are_all_called_at_the_same_time() -> None:
    # Pause drains on every node at once: a node whose call waits for a free thread starts its
    # drain only after another node's drain ended, and the write stall grows by whole drains.
    barrier = threading.Barrier(100, timeout=5)

    def fn(key: int) -> int:
        barrier.wait()
        return key

    results = call_all(range(100), fn)
    assert [k for k, r in results.items() if not r.ok] == []


def test_call_all_max_workers_one_runs_calls_one_at_a_time() -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def fn(key: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return key

    call_all(range(5), fn, max_workers=1)
    assert peak[0] == 1


def test_call_all_no_targets_returns_empty_dict() -> None:
    assert call_all([], str.upper) == {}


def test_call_all_duplicate_target_is_an_internal_error() -> None:
    with pytest.raises(InternalError, match="one is listed twice"):
        call_all(["a", "a"], str.upper)


def test_call_all_zero_workers_is_an_internal_error() -> None:
    with pytest.raises(InternalError, match="max_workers must be >= 1, got 0"):
        call_all(["a"], str.upper, max_workers=0)


def test_call_all_pause_over_cluster_with_one_node_down_reports_that_node_only() -> None:
    with start_gate_cluster(3) as cluster, GrpcAdminClient() as client:
        servers, targets = cluster
        for server in servers:
            server.slow_drain_ms = 200  # every pause drains for 200 ms
        servers[1].stop()

        results = call_all(
            targets,
            lambda t: client.pause(t, wait_outstanding=True, max_pause_wait_ms=5000, timeout_s=5),
        )
        assert [r.ok for r in results.values()] == [True, False, True]
        err = results[targets[1]].error
        assert type(err) is AdminCallError and err.reason is Reason.UNAVAILABLE
        assert err.target == targets[1]
        healthy = [results[targets[0]], results[targets[2]]]
        # the two drains overlapped: each started before the other returned
        assert max(r.started_mono for r in healthy) < min(r.returned_mono for r in healthy)
        assert all(r.elapsed_s >= 0.2 for r in healthy)
        paused = call_all(targets[::2], lambda t: client.check_paused(t, timeout_s=5))
        assert [r.value for r in paused.values()] == [True, True]
