"""GrpcAdminClient against the test GateServer: calls, every failure reason, deadlines."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from harness.gate_server import GateServer, Release
from pausepoint.admin.client import AdminCallError, Reason
from pausepoint.admin.grpc_client import GrpcAdminClient, to_admin_error
from pausepoint.errors import ConfigError, InternalError
from pausepoint.site import Target, TlsSettings
from tests.support.background import Background, wait_until

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def node() -> Iterator[GateServer]:
    with GateServer() as server:
        yield server


@pytest.fixture
def client() -> Iterator[GrpcAdminClient]:
    with GrpcAdminClient() as c:
        yield c


def _pause(client: GrpcAdminClient, target: Target, wait_ms: int | None = 2000, **kw) -> None:
    kw.setdefault("timeout_s", 5)
    kw.setdefault("wait_outstanding", True)
    client.pause(target, max_pause_wait_ms=wait_ms, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- calls that succeed --------------------------------------------------------------------


def test_client_pause_then_unpause_toggles_check_paused(
    client: GrpcAdminClient, node: GateServer
) -> None:
    assert client.check_paused(node.target, timeout_s=5) is False
    _pause(client, node.target)
    assert client.check_paused(node.target, timeout_s=5) is True
    client.unpause(node.target, timeout_s=5)
    assert client.check_paused(node.target, timeout_s=5) is False


def test_client_pause_without_max_wait_leaves_field_unset(
    client: GrpcAdminClient, node: GateServer
) -> None:
    _pause(client, node.target, wait_ms=None)
    _pause(client, node.target, wait_ms=750, wait_outstanding=False)
    assert [(c.wait_outstanding, c.max_pause_wait_ms) for c in node.pause_calls] == [
        (True, None),
        (False, 750),
    ]


def test_client_pause_while_writer_inflight_returns_after_writer_exits(
    client: GrpcAdminClient, node: GateServer
) -> None:
    node.gate.enter()
    pause = Background(lambda: _pause(client, node.target))
    wait_until(lambda: node.gate.pausing)
    time.sleep(0.05)
    assert not pause.done
    node.gate.exit()
    pause.result()
    assert client.check_paused(node.target, timeout_s=5) is True


def test_client_many_threads_one_target_share_one_channel(
    client: GrpcAdminClient, node: GateServer
) -> None:
    calls = [Background(lambda: client.check_paused(node.target, timeout_s=5)) for _ in range(16)]
    assert [c.result() for c in calls] == [False] * 16
    assert len(client._channels) == 1
    assert node.calls["CheckPaused"] == 16


def test_client_node_restarted_next_call_reconnects_without_backoff(
    client: GrpcAdminClient, node: GateServer
) -> None:
    _pause(client, node.target)
    node.stop()
    with pytest.raises(AdminCallError) as info:
        client.check_paused(node.target, timeout_s=2)
    assert info.value.reason is Reason.UNAVAILABLE
    node.restart_unpaused()
    started = time.monotonic()
    assert client.check_paused(node.target, timeout_s=2) is False
    assert time.monotonic() - started < 1.0


def test_client_unpause_dropped_twice_fails_twice_then_succeeds(
    client: GrpcAdminClient, node: GateServer
) -> None:
    _pause(client, node.target)
    node.drop_unpause_calls = 2
    reasons = []
    for _ in range(2):
        with pytest.raises(AdminCallError) as info:
            client.unpause(node.target, timeout_s=5)
        reasons.append(info.value.reason)
    assert reasons == [Reason.UNAVAILABLE, Reason.UNAVAILABLE]
    assert client.check_paused(node.target, timeout_s=5) is True
    client.unpause(node.target, timeout_s=5)
    assert client.check_paused(node.target, timeout_s=5) is False
    assert node.calls["Unpause"] == 3


def test_client_closed_call_is_an_internal_error(node: GateServer) -> None:
    client = GrpcAdminClient()
    client.close()
    with pytest.raises(InternalError, match="closed"):
        client.check_paused(node.target, timeout_s=5)


def test_client_non_positive_timeout_is_an_internal_error(
    client: GrpcAdminClient, node: GateServer
) -> None:
    with pytest.raises(InternalError, match="timeout_s must be > 0"):
        client.unpause(node.target, timeout_s=0)


# --- every failure reason, as each Ledger release answers it ----------------------------------
# 3.14.0 sends ErrorInfo; 3.12.3 and 3.13.0 a bare status (harness/gate_server.py, FACTS.md s6).

RELEASES = [Release.V3_14_0, Release.V3_13_0, Release.V3_12_3]


def _expect(call, reason: Reason, code: str) -> AdminCallError:
    with pytest.raises(AdminCallError) as info:
        call()
    err = info.value
    assert type(err) is AdminCallError
    assert (err.reason, err.code) == (reason, code)
    assert str(err).startswith(f"{err.method} on {err.target} failed: {reason} ({code}): ")
    return err


@pytest.fixture(params=RELEASES, ids=str)
def release_node(request: pytest.FixtureRequest) -> Iterator[GateServer]:
    with GateServer(release=request.param) as server:
        yield server


def test_client_drain_timeout_raises_timed_out_and_gate_is_open(
    client: GrpcAdminClient, release_node: GateServer
) -> None:
    node = release_node
    node.slow_drain_ms = 1000
    err = _expect(lambda: _pause(client, node.target, 50), Reason.TIMED_OUT, "FAILED_PRECONDITION")
    assert "reopened" in err.detail and "pause.drain_timeout_ms" in err.detail
    assert err.method == "Pause" and err.target == node.target
    assert client.check_paused(node.target, timeout_s=5) is False
    if node.release.legacy:  # new StatusRuntimeException(Status.FAILED_PRECONDITION)
        assert err.detail.startswith("no description; ")


def test_client_drain_timeout_under_earlier_pause_3_14_is_still_paused_and_gate_stays_closed(
    client: GrpcAdminClient,
) -> None:
    with GateServer(release=Release.V3_14_0) as node:
        _pause(client, node.target, wait_outstanding=False)
        node.slow_drain_ms = 1000
        err = _expect(
            lambda: _pause(client, node.target, 50),
            Reason.TIMED_OUT_STILL_PAUSED,
            "FAILED_PRECONDITION",
        )
        assert "stays closed by an earlier pause" in err.detail
        assert client.check_paused(node.target, timeout_s=5) is True
        assert not err.retryable


@pytest.mark.parametrize("release", [Release.V3_13_0, Release.V3_12_3], ids=str)
def test_client_drain_timeout_under_earlier_pause_legacy_reopens_and_reads_timed_out(
    client: GrpcAdminClient, release: Release
) -> None:
    # Before 3.14.0 the server reopens the gate whoever closed it: TIMED_OUT is the truth.
    with GateServer(release=release) as node:
        _pause(client, node.target, wait_outstanding=False)
        node.slow_drain_ms = 1000
        _expect(lambda: _pause(client, node.target, 50), Reason.TIMED_OUT, "FAILED_PRECONDITION")
        assert client.check_paused(node.target, timeout_s=5) is False


def test_client_pause_while_pause_in_progress_3_14_raises_pause_in_progress(
    client: GrpcAdminClient,
) -> None:
    with GateServer(release=Release.V3_14_0) as node:
        node.slow_drain_ms = 5000
        first = Background(lambda: _pause(client, node.target, 10_000, timeout_s=10))
        wait_until(lambda: node.gate.pausing)
        err = _expect(
            lambda: _pause(client, node.target, wait_outstanding=False),
            Reason.PAUSE_IN_PROGRESS,
            "ABORTED",
        )
        assert err.retryable
        client.unpause(node.target, timeout_s=5)
        assert first.error().reason is Reason.GATE_OPEN  # type: ignore[attr-defined]


@pytest.mark.parametrize("release", [Release.V3_13_0, Release.V3_12_3], ids=str)
def test_client_second_pause_during_drain_legacy_succeeds_and_unpause_fails_the_first(
    client: GrpcAdminClient, release: Release
) -> None:
    with GateServer(release=release) as node:
        node.slow_drain_ms = 5000
        first = Background(lambda: _pause(client, node.target, 10_000, timeout_s=10))
        wait_until(lambda: node.gate.pausing)
        _pause(client, node.target, wait_outstanding=False)  # not serialised: it just succeeds
        assert client.check_paused(node.target, timeout_s=5) is True
        client.unpause(node.target, timeout_s=5)  # never blocked by the drain
        err = first.error()
        assert isinstance(err, AdminCallError)
        assert (err.reason, err.code) == (Reason.TIMED_OUT, "FAILED_PRECONDITION")
        assert client.check_paused(node.target, timeout_s=5) is False


def test_client_unpause_during_drain_pause_raises_gate_open_or_timed_out(
    client: GrpcAdminClient, release_node: GateServer
) -> None:
    node = release_node
    node.slow_drain_ms = 5000
    pause = Background(lambda: _pause(client, node.target, 10_000, timeout_s=10))
    wait_until(lambda: node.gate.pausing)
    client.unpause(node.target, timeout_s=5)  # never blocked by the drain
    err = pause.error()
    assert isinstance(err, AdminCallError)
    expected = (
        (Reason.TIMED_OUT, "FAILED_PRECONDITION")
        if node.release.legacy
        else (Reason.GATE_OPEN, "ABORTED")
    )
    assert (err.reason, err.code) == expected
    assert client.check_paused(node.target, timeout_s=5) is False


def test_client_non_positive_max_wait_3_14_raises_invalid_argument(
    client: GrpcAdminClient,
) -> None:
    with GateServer(release=Release.V3_14_0) as node:
        err = _expect(
            lambda: _pause(client, node.target, 0), Reason.INVALID_ARGUMENT, "INVALID_ARGUMENT"
        )
        assert "max_pause_wait_time must be greater than 0 ms, but was 0 ms" in err.detail
        assert client.check_paused(node.target, timeout_s=5) is False


@pytest.mark.parametrize("release", [Release.V3_13_0, Release.V3_12_3], ids=str)
def test_client_zero_max_wait_legacy_means_the_default_wait(
    client: GrpcAdminClient, release: Release
) -> None:
    with GateServer(release=release) as node:
        node.slow_drain_ms = 300  # drains within the 30 s default, not within "0 ms"
        _pause(client, node.target, 0)
        assert client.check_paused(node.target, timeout_s=5) is True
        assert node.pause_calls[-1].max_pause_wait_ms == 0


_REFUSALS = [
    # (refuse_with, code, reason read from a 3.14.0 answer, from a 3.12.3/3.13.0 answer or None
    # when those releases never send it)
    (Reason.PAUSE_IN_PROGRESS, "ABORTED", Reason.PAUSE_IN_PROGRESS, None),
    (Reason.GATE_OPEN, "ABORTED", Reason.GATE_OPEN, None),
    (Reason.TIMED_OUT, "FAILED_PRECONDITION", Reason.TIMED_OUT, Reason.TIMED_OUT),
    (Reason.TIMED_OUT_STILL_PAUSED, "FAILED_PRECONDITION", Reason.TIMED_OUT_STILL_PAUSED, None),
    (Reason.UNAVAILABLE, "UNAVAILABLE", Reason.UNAVAILABLE, Reason.UNAVAILABLE),
    (Reason.DEADLINE, "DEADLINE_EXCEEDED", Reason.DEADLINE, Reason.DEADLINE),
    (Reason.INVALID_ARGUMENT, "INVALID_ARGUMENT", Reason.INVALID_ARGUMENT, Reason.INVALID_ARGUMENT),
    (Reason.OTHER, "INTERNAL", Reason.OTHER, Reason.OTHER),
]


@pytest.mark.parametrize(("refuse", "code", "new_reason", "legacy_reason"), _REFUSALS)
def test_client_refused_pause_maps_every_reason(
    client: GrpcAdminClient,
    release_node: GateServer,
    refuse: Reason,
    code: str,
    new_reason: Reason,
    legacy_reason: Reason | None,
) -> None:
    node = release_node
    expected = legacy_reason if node.release.legacy else new_reason
    if expected is None:
        with pytest.raises(ValueError, match="never answers"):
            node.refuse_with = refuse
        return
    node.refuse_with = refuse
    _expect(lambda: _pause(client, node.target), expected, code)
    assert node.gate.check_paused() is False  # a refusal does not touch the gate
    assert node.calls["Pause"] == 1


# --- unreachable and slow nodes --------------------------------------------------------------


def test_client_nothing_listening_raises_unavailable_well_within_deadline(
    client: GrpcAdminClient,
) -> None:
    target = Target(host="127.0.0.1", port=_free_port())
    started = time.monotonic()
    err = _expect(
        lambda: client.check_paused(target, timeout_s=3), Reason.UNAVAILABLE, "UNAVAILABLE"
    )
    assert time.monotonic() - started < 2.0
    assert "Connection refused" in err.detail and "admin port" in err.detail
    assert err.retryable


def test_client_node_that_never_answers_raises_deadline_at_deadline(
    client: GrpcAdminClient,
) -> None:
    # A socket that accepts connections (kernel backlog) but never speaks HTTP/2.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        target = Target(host="127.0.0.1", port=silent.getsockname()[1])
        started = time.monotonic()
        err = _expect(
            lambda: client.unpause(target, timeout_s=0.3), Reason.DEADLINE, "DEADLINE_EXCEEDED"
        )
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 2.0
    assert "may still take effect" in err.detail


def test_client_slow_drain_past_deadline_raises_deadline_and_node_may_end_paused(
    client: GrpcAdminClient, node: GateServer
) -> None:
    node.slow_drain_ms = 3000
    started = time.monotonic()
    _expect(
        lambda: _pause(client, node.target, 10_000, timeout_s=0.3),
        Reason.DEADLINE,
        "DEADLINE_EXCEEDED",
    )
    assert time.monotonic() - started < 2.0
    # The server keeps draining: the outcome is unknown to the caller, and the gate is closed.
    assert node.gate.pausing
    assert client.check_paused(node.target, timeout_s=5) is True
    client.unpause(node.target, timeout_s=5)
    wait_until(lambda: not node.gate.pausing)


# --- rich status parsing in isolation --------------------------------------------------------


class _FakeCall(grpc.RpcError, grpc.Call):
    """What grpc raises for a failed unary call, with chosen code, description and trailers."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers=()) -> None:
        self._code, self._details, self._trailers = code, details, tuple(trailers)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self):
        return self._trailers

    def initial_metadata(self):
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self):
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback) -> bool:
        return False


def _rich(
    code: grpc.StatusCode, reason: str, domain: str = "com.scalar.dl.admin", status_code=None
):
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain))
    status = status_pb2.Status(
        code=code.value[0] if status_code is None else status_code, message="m", details=[detail]
    )
    return [("grpc-status-details-bin", status.SerializeToString())]


T0 = Target(host="127.0.0.1", port=50053)


@pytest.mark.parametrize(
    ("code", "details", "trailers", "reason"),
    [
        # ErrorInfo decides, whatever the code says
        (
            grpc.StatusCode.ABORTED,
            "x",
            _rich(grpc.StatusCode.ABORTED, "GATE_OPEN"),
            Reason.GATE_OPEN,
        ),
        # ScalarDB Cluster's domain carries the same reasons
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "x",
            _rich(
                grpc.StatusCode.FAILED_PRECONDITION,
                "TIMED_OUT_STILL_PAUSED",
                "com.scalar.db.cluster.admin",
            ),
            Reason.TIMED_OUT_STILL_PAUSED,
        ),
        # a foreign domain is ignored: fall back to the code
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "x",
            _rich(grpc.StatusCode.FAILED_PRECONDITION, "TIMED_OUT_STILL_PAUSED", "example.com"),
            Reason.TIMED_OUT,
        ),
        # a rich status whose code disagrees with the call's is not trusted
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "x",
            _rich(grpc.StatusCode.FAILED_PRECONDITION, "TIMED_OUT_STILL_PAUSED", status_code=10),
            Reason.TIMED_OUT,
        ),
        # garbage in the trailer is ignored
        (grpc.StatusCode.ABORTED, "x", [("grpc-status-details-bin", b"\xff\xff")], Reason.OTHER),
        # plain ABORTED without a recognisable description
        (grpc.StatusCode.ABORTED, "transaction conflict", (), Reason.OTHER),
        # plain ABORTED that says what happened (no Ledger release sends it; kept for others)
        (grpc.StatusCode.ABORTED, "another pause is in progress", (), Reason.PAUSE_IN_PROGRESS),
        (grpc.StatusCode.ABORTED, "reopened by a concurrent unpause", (), Reason.GATE_OPEN),
        # 3.12.3 / 3.13.0 on a drain timeout: no description, no detail
        (grpc.StatusCode.FAILED_PRECONDITION, "", (), Reason.TIMED_OUT),
        (grpc.StatusCode.UNIMPLEMENTED, "unknown service rpc.Admin", (), Reason.OTHER),
        (grpc.StatusCode.UNAUTHENTICATED, "no", (), Reason.OTHER),
    ],
    ids=[
        "rich-gate-open",
        "scalardb-cluster-domain",
        "foreign-domain",
        "code-mismatch",
        "garbage-trailer",
        "plain-aborted-other",
        "plain-aborted-in-progress",
        "plain-aborted-gate-open",
        "bare-failed-precondition",
        "unimplemented",
        "unauthenticated",
    ],
)
def test_to_admin_error_status_variants_map_to_reason(
    code: grpc.StatusCode, details: str, trailers, reason: Reason
) -> None:
    err = to_admin_error(T0, "Pause", _FakeCall(code, details, trailers))
    assert type(err) is AdminCallError
    assert (err.reason, err.code) == (reason, code.name)
    assert details in err.detail


def test_to_admin_error_unknown_rich_reason_is_other_and_names_it() -> None:
    call = _FakeCall(grpc.StatusCode.ABORTED, "m", _rich(grpc.StatusCode.ABORTED, "NEW_THING"))
    err = to_admin_error(T0, "Pause", call)
    assert err.reason is Reason.OTHER
    assert "server reason NEW_THING" in err.detail


# --- construction ----------------------------------------------------------------------------


def test_for_components_same_tls_everywhere_uses_it_as_default(tmp_path: Path) -> None:
    tls = TlsSettings(ca_cert=tmp_path / "ca.pem")
    client = GrpcAdminClient.for_components({"ledger": tls, "auditor": tls})
    assert client._default_tls == tls
    assert GrpcAdminClient.for_components({"ledger": None})._default_tls is None


def test_for_components_different_tls_without_nodes_raises_config_error(tmp_path: Path) -> None:
    tls = TlsSettings(ca_cert=tmp_path / "ca.pem")
    with pytest.raises(ConfigError, match=r"different admin TLS settings \(auditor, ledger\)"):
        GrpcAdminClient.for_components({"ledger": tls, "auditor": None})


def test_for_components_different_tls_with_nodes_sets_tls_per_target(tmp_path: Path) -> None:
    tls = TlsSettings(ca_cert=tmp_path / "ca.pem")
    ledger, auditor = Target(host="10.0.0.1", port=50053), Target(host="10.0.0.2", port=40053)
    client = GrpcAdminClient.for_components(
        {"ledger": tls, "auditor": None}, nodes={"ledger": [ledger], "auditor": [auditor]}
    )
    assert client._tls == {ledger: tls, auditor: None}


def test_client_close_cancels_a_call_in_flight_and_ends_its_loop_thread(node: GateServer) -> None:
    client = GrpcAdminClient()
    assert client.check_paused(node.target, timeout_s=5) is False
    loop_thread = client._loop_thread
    assert loop_thread is not None and loop_thread.is_alive()
    node.slow_check_ms = 3000
    call = Background(lambda: client.check_paused(node.target, timeout_s=10))
    wait_until(lambda: node.calls["CheckPaused"] == 2)
    client.close()
    err = call.error()
    # CANCELLED by the close: the node's late answer would have been a value.
    assert type(err) is AdminCallError and err.code == "CANCELLED"
    assert not loop_thread.is_alive()
