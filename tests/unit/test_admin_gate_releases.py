"""The test admin node's release modes (harness/gate_server.py, FACTS.md section 6), over real gRPC.

3.12.3 and 3.13.0: unserialised pauses, ``max_pause_wait_time`` 0 = the 30 s default, a drain
timeout reopens the gate whoever closed it and answers a bare FAILED_PRECONDITION. 3.14.0:
serialised pauses, ErrorInfo on every failed pause, INVALID_ARGUMENT for a non-positive wait.
And pausepoint's pause window does the right thing with each.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import empty_pb2
from google.rpc import error_details_pb2, status_pb2

from harness.gate_server import (
    ERROR_DOMAIN,
    Gate,
    GateServer,
    PauseOutcome,
    Release,
    start_gate_cluster,
)
from pausepoint.admin._generated import scalar_admin_pb2, scalar_admin_pb2_grpc
from pausepoint.admin.client import Reason
from pausepoint.admin.grpc_client import GrpcAdminClient
from pausepoint.errors import PauseError, PauseStillPausedError
from pausepoint.site import PauseSettings
from pausepoint.window import PauseSession
from tests.support.background import Background, wait_until

pytestmark = pytest.mark.timeout(60)

LEGACY = [Release.V3_12_3, Release.V3_13_0]


# --- Gate: 3.12.3 / 3.13.0 ---------------------------------------------------------------------


@pytest.mark.parametrize("release", LEGACY, ids=str)
def test_legacy_gate_drain_timeout_reopens_and_reports_timed_out(release: Release) -> None:
    gate = Gate(release)
    gate.enter()
    assert gate.pause(wait_outstanding=True, max_wait_ms=50) is PauseOutcome.TIMED_OUT
    assert not gate.check_paused()


@pytest.mark.parametrize("release", LEGACY, ids=str)
def test_legacy_gate_drain_timeout_under_earlier_pause_reopens_it_too(release: Release) -> None:
    gate = Gate(release)
    gate.enter()
    assert gate.pause(wait_outstanding=False) is PauseOutcome.PAUSED
    # 3.14.0 would keep the earlier pause (TIMED_OUT_STILL_PAUSED); these releases revoke it.
    assert gate.pause(wait_outstanding=True, max_wait_ms=50) is PauseOutcome.TIMED_OUT
    assert not gate.check_paused()


@pytest.mark.parametrize("release", LEGACY, ids=str)
def test_legacy_gate_pauses_are_not_serialised(release: Release) -> None:
    gate = Gate(release)
    gate.enter()
    first = Background(lambda: gate.pause(True, 5000))
    wait_until(lambda: gate.pausing)
    second = Background(lambda: gate.pause(True, 5000))
    # Both drain at once (3.14.0 would have the second wait for the first's turn); the second
    # pause on the closed gate succeeds as soon as the request is done.
    assert gate.pause(wait_outstanding=False) is PauseOutcome.PAUSED
    gate.exit()
    assert first.result() is PauseOutcome.PAUSED
    assert second.result() is PauseOutcome.PAUSED
    assert gate.check_paused()


@pytest.mark.parametrize("release", LEGACY, ids=str)
@pytest.mark.parametrize("wait_ms", [0, None], ids=["zero", "unset"])
def test_legacy_gate_zero_or_unset_wait_is_the_default_wait(
    release: Release, wait_ms: int | None
) -> None:
    gate = Gate(release)
    gate.enter()
    pause = Background(lambda: gate.pause(True, wait_ms))
    wait_until(lambda: gate.pausing)
    gate.exit()  # finishes well within 30 s: "0 ms" would have timed out already
    assert pause.result() is PauseOutcome.PAUSED
    assert gate.check_paused()


@pytest.mark.parametrize("release", LEGACY, ids=str)
def test_legacy_gate_negative_wait_checks_once_without_waiting(release: Release) -> None:
    gate = Gate(release)
    assert gate.pause(True, -1) is PauseOutcome.PAUSED  # nothing in flight
    gate.unpause()
    gate.enter()
    assert gate.pause(True, -1) is PauseOutcome.TIMED_OUT
    assert not gate.check_paused()


@pytest.mark.parametrize("release", LEGACY, ids=str)
def test_legacy_gate_unpause_during_drain_reports_timed_out(release: Release) -> None:
    gate = Gate(release)
    gate.enter()
    pause = Background(lambda: gate.pause(True, 5000))
    wait_until(lambda: gate.pausing)
    gate.unpause()
    assert pause.result() is PauseOutcome.TIMED_OUT  # no GATE_OPEN before 3.14.0
    assert not gate.check_paused()


# --- GateServer: what goes on the wire -------------------------------------------------------


def _raw_pause(node: GateServer, max_ms: int) -> grpc.RpcError:
    with grpc.insecure_channel(str(node.target)) as channel:
        stub = scalar_admin_pb2_grpc.AdminStub(channel)
        request = scalar_admin_pb2.PauseRequest(wait_outstanding=True, max_pause_wait_time=max_ms)
        with pytest.raises(grpc.RpcError) as info:
            stub.Pause(request, timeout=10)
        stub.CheckPaused(empty_pb2.Empty(), timeout=10)
    return info.value


@pytest.mark.parametrize("release", LEGACY, ids=str)
def test_legacy_server_drain_timeout_is_a_bare_failed_precondition(release: Release) -> None:
    with GateServer(release=release) as node:
        node.slow_drain_ms = 1000
        err = _raw_pause(node, 50)
        assert err.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
        assert err.details() in ("", None)  # type: ignore[attr-defined]
        keys = [k for k, _ in err.trailing_metadata() or ()]  # type: ignore[attr-defined]
        assert "grpc-status-details-bin" not in keys
        assert node.gate.check_paused() is False


@pytest.mark.parametrize(
    ("earlier_pause", "reason"), [(False, "TIMED_OUT"), (True, "TIMED_OUT_STILL_PAUSED")]
)
def test_3_14_server_drain_timeout_carries_error_info(earlier_pause: bool, reason: str) -> None:
    with GateServer(release=Release.V3_14_0) as node:
        if earlier_pause:
            node.gate.pause(wait_outstanding=False)
        node.slow_drain_ms = 1000
        err = _raw_pause(node, 50)
        assert err.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
        trailers = dict(err.trailing_metadata() or ())  # type: ignore[attr-defined]
        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info)
        assert (info.domain, info.reason) == (ERROR_DOMAIN, reason)
        assert node.gate.check_paused() is earlier_pause


@pytest.mark.parametrize("release", LEGACY, ids=str)
def test_legacy_server_zero_wait_is_not_refused(release: Release) -> None:
    with GateServer(release=release) as node, GrpcAdminClient() as client:
        client.pause(node.target, wait_outstanding=True, max_pause_wait_ms=0, timeout_s=10)
        assert client.check_paused(node.target, timeout_s=5) is True


def test_server_release_must_match_its_gate_and_knobs_its_release() -> None:
    with pytest.raises(ValueError, match=r"release 3\.14\.0 given for a gate of release 3\.12\.3"):
        GateServer(gate=Gate("3.12.3"), release="3.14.0", autostart=False)
    node = GateServer(release="3.13.0", autostart=False)
    assert node.release is Release.V3_13_0
    for reason in (Reason.PAUSE_IN_PROGRESS, Reason.GATE_OPEN, Reason.TIMED_OUT_STILL_PAUSED):
        with pytest.raises(ValueError, match="never answers"):
            node.refuse_with = reason
        with pytest.raises(ValueError, match="never answers"):
            node.late_pause_error = reason
    node.refuse_with = Reason.TIMED_OUT
    node.late_pause_error = Reason.UNAVAILABLE
    assert (node.refuse_with, node.late_pause_error) == (Reason.TIMED_OUT, Reason.UNAVAILABLE)


# --- pausepoint's pause window against each release ------------------------------------------

SETTINGS = PauseSettings(drain_timeout_ms=200, call_timeout_ms=5000, unpause_backoff_ms=1)


@pytest.fixture
def client() -> Iterator[GrpcAdminClient]:
    with GrpcAdminClient() as c:
        yield c


@pytest.mark.parametrize("release", [*LEGACY, Release.V3_14_0], ids=str)
def test_window_drain_timeout_fails_the_pause_and_leaves_every_node_open(
    client: GrpcAdminClient, release: Release
) -> None:
    with start_gate_cluster(2, release=release) as cluster:
        slow, fast = cluster.servers
        slow.slow_drain_ms = 5000
        session = PauseSession("demo", {"ledger": cluster.targets}, client, SETTINGS)
        session.preflight()
        with pytest.raises(PauseError) as info:
            session.pause_all()
        assert type(info.value) is PauseError  # the server reopened its gate: nothing to keep
        assert "TIMED_OUT (FAILED_PRECONDITION)" in str(info.value)
        session.unpause_all()
        assert [s.gate.check_paused() for s in (slow, fast)] == [False, False]
        assert fast.calls["Unpause"] == 1 and slow.calls.get("Unpause", 0) == 0


def test_window_3_14_drain_timeout_under_a_foreign_pause_keeps_that_pause(
    client: GrpcAdminClient,
) -> None:
    with start_gate_cluster(2, release=Release.V3_14_0) as cluster:
        foreign, other = cluster.servers
        session = PauseSession("demo", {"ledger": cluster.targets}, client, SETTINGS)
        session.preflight()
        foreign.gate.pause(wait_outstanding=False)  # someone else, after our preflight
        foreign.slow_drain_ms = 5000
        with pytest.raises(PauseStillPausedError):
            session.pause_all()
        session.unpause_all()
        assert foreign.gate.check_paused() is True  # not ours to unpause
        assert foreign.calls.get("Unpause", 0) == 0
        assert other.gate.check_paused() is False


@pytest.mark.parametrize("release", LEGACY, ids=str)
def test_window_legacy_drain_timeout_under_a_foreign_pause_is_a_plain_pause_error(
    client: GrpcAdminClient, release: Release
) -> None:
    # The bare FAILED_PRECONDITION is read as TIMED_OUT, which is what these releases did: they
    # reopened the gate, foreign pause or not. Reading it as "still paused" would be wrong here.
    with start_gate_cluster(2, release=release) as cluster:
        foreign, other = cluster.servers
        session = PauseSession("demo", {"ledger": cluster.targets}, client, SETTINGS)
        session.preflight()
        foreign.gate.pause(wait_outstanding=False)
        foreign.slow_drain_ms = 5000
        with pytest.raises(PauseError) as info:
            session.pause_all()
        assert type(info.value) is PauseError
        session.unpause_all()
        assert foreign.gate.check_paused() is False  # the node itself reopened it
        assert other.gate.check_paused() is False
