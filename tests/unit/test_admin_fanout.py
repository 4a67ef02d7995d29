"""call_all and fan_out: parallel calls, each outcome kept with its time, over real nodes too."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from harness.gate_server import start_gate_cluster
from pausepoint.admin.client import AdminCallError, Reason
from pausepoint.admin.fanout import AdminCall, Result, call_all, fan_out
from pausepoint.admin.grpc_client import GrpcAdminClient
from pausepoint.errors import InternalError
from pausepoint.site import Target
from tests.support.background import Background, wait_until

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


# --- fan_out: admin calls, through GrpcAdminClient.call_many (one event loop) ----------------


def _pause_call(target: Target, timeout_s: float = 5) -> AdminCall:
    kwargs = {"wait_outstanding": True, "max_pause_wait_ms": 5000, "timeout_s": timeout_s}
    return AdminCall("pause", target, kwargs)


def test_fan_out_pause_over_cluster_drains_at_once_one_node_down_reports_that_node_only() -> None:
    with start_gate_cluster(3) as cluster, GrpcAdminClient() as client:
        servers, targets = cluster
        for server in servers:
            server.slow_drain_ms = 200
        servers[1].stop()
        sent: list[tuple[Target, str]] = []

        results = fan_out(
            client,
            targets,
            _pause_call,
            before=lambda t: sent.append((t, threading.current_thread().name)),
        )
        assert list(results) == targets
        assert [r.ok for r in results.values()] == [True, False, True]
        err = results[targets[1]].error
        assert type(err) is AdminCallError and err.reason is Reason.UNAVAILABLE
        assert err.target == targets[1]
        healthy = [results[targets[0]], results[targets[2]]]
        assert max(r.started_mono for r in healthy) < min(r.returned_mono for r in healthy)
        assert all(r.elapsed_s >= 0.2 and r.returned_at.tzinfo is UTC for r in healthy)
        # every call was issued from the client's one event loop, not a thread per call
        assert sorted(str(t) for t, _ in sent) == sorted(str(t) for t in targets)
        assert {name for _, name in sent} == {"pausepoint-admin-loop"}
        checks = fan_out(
            client, targets[::2], lambda t: AdminCall("check_paused", t, {"timeout_s": 5})
        )
        assert [r.value for r in checks.values()] == [True, True]
        unpaused = fan_out(
            client, targets[::2], lambda t: AdminCall("unpause", t, {"timeout_s": 5})
        )
        assert all(r.ok and r.value is None for r in unpaused.values())
        assert not any(s.gate.check_paused() for s in servers[::2])


def test_fan_out_each_call_has_its_own_deadline() -> None:
    with start_gate_cluster(3) as cluster, GrpcAdminClient() as client:
        servers, targets = cluster
        servers[2].slow_check_ms = 3000  # a node that does not answer in time
        results = fan_out(
            client, targets, lambda t: AdminCall("check_paused", t, {"timeout_s": 0.5})
        )
        assert [r.value for r in results.values()][:2] == [False, False]
        slow = results[targets[2]]
        # The fast calls did not wait for the slow one; it ended at its own deadline, not at
        # the node's late answer (which would have been a value, not DEADLINE).
        assert max(results[t].returned_mono for t in targets[:2]) < slow.returned_mono
        assert type(slow.error) is AdminCallError and slow.error.reason is Reason.DEADLINE
        assert slow.elapsed_s >= 0.5


def test_fan_out_a_hundred_calls_are_in_flight_at_the_same_time() -> None:
    # Every Pause must drain at the same time: 100 calls of 300 ms each end in well under the
    # 30 s they would take one after another.
    with start_gate_cluster(100) as cluster, GrpcAdminClient() as client:
        servers, targets = cluster
        for server in servers:
            server.slow_drain_ms = 300
        results = fan_out(client, targets, _pause_call)
        assert [t for t, r in results.items() if not r.ok] == []
        oks = list(results.values())
        assert max(r.started_mono for r in oks) < min(r.returned_mono for r in oks)


def test_fan_out_bad_arguments_are_kept_per_call_and_duplicates_refused() -> None:
    with start_gate_cluster(2) as cluster, GrpcAdminClient() as client:
        _, targets = cluster
        results = fan_out(
            client,
            targets,
            lambda t: AdminCall("check_paused", t, {"timeout_s": 0 if t == targets[0] else 5}),
        )
        assert type(results[targets[0]].error) is InternalError
        assert results[targets[1]].value is False
        with pytest.raises(InternalError, match="one is listed twice"):
            fan_out(client, [targets[0]] * 2, lambda t: AdminCall("unpause", t, {"timeout_s": 5}))
        assert fan_out(client, [], lambda t: AdminCall("unpause", t, {"timeout_s": 5})) == {}


def test_fan_out_client_closed_during_the_calls_fails_them_and_returns() -> None:
    with start_gate_cluster(2) as cluster:
        servers, targets = cluster
        for server in servers:
            server.slow_check_ms = 3000
        client = GrpcAdminClient()
        calls = Background(
            lambda: fan_out(
                client, targets, lambda t: AdminCall("check_paused", t, {"timeout_s": 5})
            )
        )
        wait_until(lambda: all(s.calls.get("CheckPaused") for s in servers))
        client.close()
        results = calls.result()
        # Cancelled by the close, not answered late by the nodes (an answer would be a value).
        assert all(
            isinstance(r.error, AdminCallError) and r.error.code == "CANCELLED"
            for r in results.values()
        )
        with pytest.raises(InternalError, match="closed"):
            fan_out(client, targets, lambda t: AdminCall("check_paused", t, {"timeout_s": 5}))


def test_fan_out_client_without_call_many_gets_call_all() -> None:
    class Plain:
        def check_paused(self, target: Target, *, timeout_s: float) -> bool:
            return str(target).endswith("1")

    targets = [Target.parse("127.0.0.1:1"), Target.parse("127.0.0.1:2")]
    results = fan_out(Plain(), targets, lambda t: AdminCall("check_paused", t, {"timeout_s": 1}))  # type: ignore[arg-type]
    assert [r.value for r in results.values()] == [True, False]
