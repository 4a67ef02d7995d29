"""Interop with the real scalar-admin 2.2.1 (issue 12, item 5; FACTS.md section 6).

Both directions of the wire contract, with the library's own Java code on one side:
- its ``AdminCommand`` CLI pauses, checks and unpauses the project's test admin server
  (harness/gate_server.py) in each Ledger release mode, over plaintext, TLS with a CA file (and an
  authority override) and SRV discovery through a loopback DNS server;
- pausepoint's own gRPC client (and its pause window) drives ``EchoAdminServer``, a node built on
  the library's generated ``AdminGrpc.AdminImplBase`` (harness/admin_cli/src), TLS included, and
  reads the Java server's status encoding (bare status, ErrorInfo) as the Python one's.

Needs Java and ``make scalar-admin`` (scripts/fetch-scalar-admin.sh); skipped without them locally,
a failure in CI.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import admin_cli
from harness.admin_cli import Command, EchoAdminNode, run_admin_command
from harness.gate_server import GateServer, PauseCall, Release, start_gate_cluster
from pausepoint.admin.client import AdminCallError, Reason
from pausepoint.admin.grpc_client import GrpcAdminClient
from pausepoint.errors import PauseError, PauseStillPausedError
from pausepoint.site import PauseSettings, Target, TlsSettings
from pausepoint.window import PauseSession
from tests.support.dns_server import TinyDnsServer
from tests.support.tls import Pki, make_pki

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

RELEASES = [Release.V3_12_3, Release.V3_13_0, Release.V3_14_0]
AUTHORITY = "ledger-admin.pausepoint.test"  # only the name a certificate carries; never resolved


@pytest.fixture(scope="module", autouse=True)
def scalar_admin() -> str:
    try:
        return admin_cli.class_path()
    except admin_cli.AdminCliUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI must run every test: `make test` runs make scalar-admin)")
        pytest.skip(str(exc))


def _addr(target: Target) -> str:
    return f"{target.host}:{target.port}"


# --- the real CLI against the test admin server ----------------------------------------------


@pytest.mark.parametrize("release", RELEASES, ids=str)
def test_cli_pauses_checks_and_unpauses_every_node(release: Release) -> None:
    with start_gate_cluster(2, release=release) as cluster:
        addresses = cluster.targets
        before = run_admin_command(Command.CHECK_PAUSED, addresses=addresses).check()
        assert before.paused == {_addr(t): False for t in addresses}

        run_admin_command(Command.PAUSE, addresses=addresses, max_wait_ms=5000).check()
        assert [s.gate.check_paused() for s in cluster.servers] == [True, True]
        assert [s.pause_calls for s in cluster.servers] == [[PauseCall(True, 5000)]] * 2
        during = run_admin_command(Command.CHECK_PAUSED, addresses=addresses).check()
        assert during.paused == {_addr(t): True for t in addresses}

        run_admin_command(Command.UNPAUSE, addresses=addresses).check()
        assert [s.gate.check_paused() for s in cluster.servers] == [False, False]
        after = run_admin_command(Command.CHECK_PAUSED, addresses=addresses).check()
        assert after.paused == {_addr(t): False for t in addresses}


def test_cli_no_wait_sends_wait_outstanding_false_and_leaves_the_wait_unset() -> None:
    with GateServer(release=Release.V3_14_0) as node:
        run_admin_command(Command.PAUSE, addresses=[node.target], no_wait=True).check()
        assert node.pause_calls == [PauseCall(False, None)]
        assert node.gate.check_paused()


@pytest.mark.parametrize("release", RELEASES, ids=str)
def test_cli_drain_timeout_fails_with_failed_precondition_and_the_gate_reopened(
    release: Release,
) -> None:
    with GateServer(release=release) as node:
        node.slow_drain_ms = 3000
        result = run_admin_command(Command.PAUSE, addresses=[node.target], max_wait_ms=100)
        assert not result.ok and result.returncode == 1
        assert result.status_code == "FAILED_PRECONDITION"
        if release.legacy:
            assert not result.status_detail  # a bare status: no description
        else:
            assert "gate has been reopened" in (result.status_detail or "")
        assert node.gate.check_paused() is False


@pytest.mark.parametrize(
    ("release", "ok"),
    [(Release.V3_12_3, True), (Release.V3_13_0, True), (Release.V3_14_0, False)],
    ids=str,
)
def test_cli_zero_max_wait_is_the_default_before_3_14_and_refused_since(
    release: Release, ok: bool
) -> None:
    with GateServer(release=release) as node:
        result = run_admin_command(Command.PAUSE, addresses=[node.target], max_wait_ms=0)
        assert result.ok is ok
        assert node.pause_calls == [PauseCall(True, 0)]
        if not ok:
            assert result.status_code == "INVALID_ARGUMENT"
        assert node.gate.check_paused() is ok


def test_cli_has_no_deadline_and_the_wrapper_kills_it_at_its_timeout() -> None:
    # A socket that accepts connections but never speaks HTTP/2: the CLI would wait for ever.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        target = Target(host="127.0.0.1", port=silent.getsockname()[1])
        result = run_admin_command(Command.CHECK_PAUSED, addresses=[target], timeout_s=8)
    assert result.timed_out and result.returncode is None and not result.ok
    with pytest.raises(RuntimeError, match="CHECK_PAUSED timed out"):
        result.check()


def test_cli_unreachable_node_fails_with_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_admin_command(Command.CHECK_PAUSED, addresses=[f"127.0.0.1:{port}"])
    assert result.returncode == 1 and result.status_code == "UNAVAILABLE"


@pytest.fixture(scope="module")
def loopback_pki() -> Pki:
    return make_pki(dns_names=["localhost"], ip_addresses=["127.0.0.1"])


@pytest.fixture(scope="module")
def named_pki() -> Pki:
    return make_pki(dns_names=[AUTHORITY], ip_addresses=[])


def test_cli_over_tls_with_a_ca_file(tmp_path: Path, loopback_pki: Pki) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(loopback_pki.ca_pem)
    with GateServer(tls=loopback_pki.server) as node:
        tls = {"tls": True, "ca_root_cert_path": ca}
        run_admin_command(Command.PAUSE, addresses=[node.target], max_wait_ms=2000, **tls).check()
        assert node.gate.check_paused()
        checked = run_admin_command(Command.CHECK_PAUSED, addresses=[node.target], **tls).check()
        assert checked.paused == {_addr(node.target): True}
        run_admin_command(Command.UNPAUSE, addresses=[node.target], **tls).check()
        assert not node.gate.check_paused()


def test_cli_over_tls_with_an_authority_override(tmp_path: Path, named_pki: Pki) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(named_pki.ca_pem)
    with GateServer(tls=named_pki.server) as node:
        tls = {"tls": True, "ca_root_cert_path": ca}
        refused = run_admin_command(Command.CHECK_PAUSED, addresses=[node.target], **tls)
        assert refused.returncode == 1 and refused.status_code == "UNAVAILABLE"
        checked = run_admin_command(
            Command.CHECK_PAUSED, addresses=[node.target], override_authority=AUTHORITY, **tls
        ).check()
        assert checked.paused == {_addr(node.target): False}


def test_cli_over_tls_refuses_a_node_signed_by_another_ca(
    tmp_path: Path, loopback_pki: Pki
) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(make_pki().ca_pem)
    with GateServer(tls=loopback_pki.server) as node:
        result = run_admin_command(
            Command.PAUSE, addresses=[node.target], tls=True, ca_root_cert_path=other
        )
        assert result.returncode == 1 and result.status_code == "UNAVAILABLE"
        assert node.calls.get("Pause", 0) == 0 and not node.gate.check_paused()


def test_cli_finds_the_nodes_through_an_srv_record() -> None:
    name = "_scalardl-admin._tcp.ledger.pausepoint.test."
    with start_gate_cluster(2) as cluster:
        records = [f"0 0 {t.port} localhost." for t in cluster.targets]
        with TinyDnsServer({name: records}) as dns:
            srv = {"srv": name.rstrip("."), "dns_server": dns.address}
            run_admin_command(Command.PAUSE, max_wait_ms=2000, **srv).check()
            assert [s.gate.check_paused() for s in cluster.servers] == [True, True]
            checked = run_admin_command(Command.CHECK_PAUSED, **srv).check()
            assert checked.paused is not None and sorted(checked.paused.values()) == [True, True]
            run_admin_command(Command.UNPAUSE, **srv).check()
            assert [s.gate.check_paused() for s in cluster.servers] == [False, False]
            assert name in dns.queries


# --- pausepoint's client against the real server stub ----------------------------------------

DRAIN_MS = 400  # EchoAdminServer's stand-in request: in flight this long after each Pause starts


@pytest.fixture(scope="module", params=RELEASES, ids=str)
def echo(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[EchoAdminNode]:
    workdir = tmp_path_factory.mktemp(f"echo-{request.param}")
    with EchoAdminNode(workdir, release=request.param, drain_ms=DRAIN_MS) as node:
        yield node


@pytest.fixture
def client() -> Iterator[GrpcAdminClient]:
    with GrpcAdminClient() as c:
        yield c


def _pause(client: GrpcAdminClient, target: Target, wait_ms: int | None, **kw) -> None:
    kw.setdefault("wait_outstanding", True)
    client.pause(target, max_pause_wait_ms=wait_ms, timeout_s=15, **kw)


def test_client_pauses_checks_and_unpauses_the_java_node(
    client: GrpcAdminClient, echo: EchoAdminNode
) -> None:
    assert client.check_paused(echo.target, timeout_s=10) is False
    _pause(client, echo.target, 5000)  # drains the stand-in request first
    assert client.check_paused(echo.target, timeout_s=10) is True
    client.unpause(echo.target, timeout_s=10)
    assert client.check_paused(echo.target, timeout_s=10) is False


def test_client_reads_the_java_drain_timeout_per_release(
    client: GrpcAdminClient, echo: EchoAdminNode
) -> None:
    with pytest.raises(AdminCallError) as info:
        _pause(client, echo.target, 50)
    err = info.value
    assert (err.reason, err.code) == (Reason.TIMED_OUT, "FAILED_PRECONDITION")
    if echo.release == "3.14.0":
        assert "gate reopened" in err.detail  # the description that came with the ErrorInfo
    else:
        assert err.detail.startswith("no description; ")
    assert client.check_paused(echo.target, timeout_s=10) is False


def test_client_reads_the_java_drain_timeout_under_an_earlier_pause(
    client: GrpcAdminClient, echo: EchoAdminNode
) -> None:
    _pause(client, echo.target, None, wait_outstanding=False)
    try:
        with pytest.raises(AdminCallError) as info:
            _pause(client, echo.target, 50)
        if echo.release == "3.14.0":  # ErrorInfo says so: the earlier pause is kept
            assert info.value.reason is Reason.TIMED_OUT_STILL_PAUSED
            assert client.check_paused(echo.target, timeout_s=10) is True
        else:  # a bare status, and the gate reopened whoever closed it
            assert info.value.reason is Reason.TIMED_OUT
            assert client.check_paused(echo.target, timeout_s=10) is False
    finally:
        client.unpause(echo.target, timeout_s=10)


def test_client_zero_wait_on_the_java_node(client: GrpcAdminClient, echo: EchoAdminNode) -> None:
    try:
        if echo.release == "3.14.0":
            with pytest.raises(AdminCallError) as info:
                _pause(client, echo.target, 0)
            assert info.value.reason is Reason.INVALID_ARGUMENT
            assert "must be greater than 0 ms" in info.value.detail
            assert client.check_paused(echo.target, timeout_s=10) is False
        else:
            _pause(client, echo.target, 0)  # the 30 s default: drains the stand-in request
            assert client.check_paused(echo.target, timeout_s=10) is True
    finally:
        client.unpause(echo.target, timeout_s=10)


def test_pause_window_drives_two_java_nodes(tmp_path: Path) -> None:
    settings = PauseSettings(drain_timeout_ms=5000, call_timeout_ms=10_000, unpause_backoff_ms=1)
    with (
        EchoAdminNode(tmp_path / "a", drain_ms=DRAIN_MS) as a,
        EchoAdminNode(tmp_path / "b", drain_ms=DRAIN_MS) as b,
        GrpcAdminClient() as client,
    ):
        session = PauseSession("demo", {"ledger": [a.target, b.target]}, client, settings)
        session.preflight()
        session.pause_all()
        session.verify()
        assert session.unpause_all()
        assert session.unpaused_everything
        assert [client.check_paused(n.target, timeout_s=10) for n in (a, b)] == [False, False]

        # A foreign pause on b after our preflight, and a drain longer than we wait: 3.14.0's
        # ErrorInfo keeps that pause, and the window must not revoke it.
        short = PauseSettings(drain_timeout_ms=50, call_timeout_ms=10_000, unpause_backoff_ms=1)
        again = PauseSession("demo", {"ledger": [a.target, b.target]}, client, short)
        again.preflight()
        client.pause(b.target, wait_outstanding=False, max_pause_wait_ms=None, timeout_s=10)
        with pytest.raises(PauseStillPausedError):
            again.pause_all()
        again.unpause_all()
        assert client.check_paused(b.target, timeout_s=10) is True
        client.unpause(b.target, timeout_s=10)


@pytest.mark.parametrize("release", [Release.V3_12_3, Release.V3_13_0], ids=str)
def test_pause_window_on_a_legacy_java_node_times_out_as_a_plain_pause_error(
    tmp_path: Path, release: Release
) -> None:
    short = PauseSettings(drain_timeout_ms=50, call_timeout_ms=10_000, unpause_backoff_ms=1)
    with (
        EchoAdminNode(tmp_path / "n", release=release, drain_ms=DRAIN_MS) as node,
        GrpcAdminClient() as client,
    ):
        session = PauseSession("demo", {"ledger": [node.target]}, client, short)
        session.preflight()
        with pytest.raises(PauseError) as info:
            session.pause_all()
        assert type(info.value) is PauseError
        session.unpause_all()
        assert client.check_paused(node.target, timeout_s=10) is False


def test_client_over_tls_to_the_java_node(tmp_path: Path, named_pki: Pki) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(named_pki.ca_pem)
    server = named_pki.server
    with EchoAdminNode(
        tmp_path / "tls", cert_pem=server.cert_chain_pem, key_pem=server.private_key_pem
    ) as node:
        with GrpcAdminClient(TlsSettings(ca_cert=ca, authority=AUTHORITY)) as client:
            _pause(client, node.target, 5000)
            assert client.check_paused(node.target, timeout_s=10) is True
            client.unpause(node.target, timeout_s=10)
            assert client.check_paused(node.target, timeout_s=10) is False
        with GrpcAdminClient(TlsSettings(ca_cert=ca)) as client:  # the cert does not name 127.0.0.1
            with pytest.raises(AdminCallError) as info:
                client.check_paused(node.target, timeout_s=10)
            assert info.value.reason is Reason.UNAVAILABLE
