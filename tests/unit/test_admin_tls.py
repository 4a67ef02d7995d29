"""GrpcAdminClient over TLS, with a CA generated per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.gate_server import GateServer
from pausepoint.admin.client import AdminCallError, Reason
from pausepoint.admin.grpc_client import GrpcAdminClient
from pausepoint.errors import ConfigError
from pausepoint.site import Target, TlsSettings
from tests.support.tls import Pki, make_pki

pytestmark = pytest.mark.timeout(30)

AUTHORITY = "ledger-admin.pausepoint.test"  # never resolved: only the name the cert carries


@pytest.fixture(scope="module")
def loopback_pki() -> Pki:
    return make_pki(dns_names=["localhost"], ip_addresses=["127.0.0.1"])


@pytest.fixture(scope="module")
def named_pki() -> Pki:
    # A certificate for a DNS name only: reaching 127.0.0.1 needs the authority override.
    return make_pki(dns_names=[AUTHORITY], ip_addresses=[])


def _write(tmp_path: Path, pem: bytes, name: str = "ca.pem") -> Path:
    path = tmp_path / name
    path.write_bytes(pem)
    return path


@pytest.fixture
def loopback_node(loopback_pki: Pki) -> Iterator[GateServer]:
    with GateServer(tls=loopback_pki.server) as node:
        yield node


@pytest.fixture
def named_node(named_pki: Pki) -> Iterator[GateServer]:
    with GateServer(tls=named_pki.server) as node:
        yield node


def _roundtrip(client: GrpcAdminClient, target: Target) -> list[bool]:
    seen = [client.check_paused(target, timeout_s=5)]
    client.pause(target, wait_outstanding=True, max_pause_wait_ms=1000, timeout_s=5)
    seen.append(client.check_paused(target, timeout_s=5))
    client.unpause(target, timeout_s=5)
    return seen


def test_tls_client_with_node_ca_pauses_and_unpauses(
    tmp_path: Path, loopback_pki: Pki, loopback_node: GateServer
) -> None:
    tls = TlsSettings(ca_cert=_write(tmp_path, loopback_pki.ca_pem))
    with GrpcAdminClient(tls) as client:
        assert _roundtrip(client, loopback_node.target) == [False, True]


def test_tls_authority_override_reaches_node_whose_cert_names_another_host(
    tmp_path: Path, named_pki: Pki, named_node: GateServer
) -> None:
    tls = TlsSettings(ca_cert=_write(tmp_path, named_pki.ca_pem), authority=AUTHORITY)
    with GrpcAdminClient(tls) as client:
        assert _roundtrip(client, named_node.target) == [False, True]


def test_tls_without_authority_override_name_mismatch_raises_unavailable(
    tmp_path: Path, named_pki: Pki, named_node: GateServer
) -> None:
    tls = TlsSettings(ca_cert=_write(tmp_path, named_pki.ca_pem))
    with GrpcAdminClient(tls) as client, pytest.raises(AdminCallError) as info:
        client.check_paused(named_node.target, timeout_s=5)
    assert (info.value.reason, info.value.code) == (Reason.UNAVAILABLE, "UNAVAILABLE")
    assert "CA certificate and authority" in info.value.detail
    assert named_node.calls == {}


def test_tls_untrusted_ca_raises_unavailable(
    tmp_path: Path, named_pki: Pki, loopback_node: GateServer
) -> None:
    tls = TlsSettings(ca_cert=_write(tmp_path, named_pki.ca_pem))  # not the node's CA
    with GrpcAdminClient(tls) as client, pytest.raises(AdminCallError) as info:
        client.check_paused(loopback_node.target, timeout_s=5)
    assert info.value.reason is Reason.UNAVAILABLE
    assert loopback_node.calls == {}


def test_tls_plaintext_client_against_tls_node_raises_unavailable(
    loopback_node: GateServer,
) -> None:
    with GrpcAdminClient() as client, pytest.raises(AdminCallError) as info:
        client.check_paused(loopback_node.target, timeout_s=5)
    assert info.value.reason is Reason.UNAVAILABLE


def test_tls_missing_ca_file_raises_config_error_naming_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "ca.pem"
    target = Target(host="127.0.0.1", port=50053)
    client = GrpcAdminClient(TlsSettings(ca_cert=missing))
    with client, pytest.raises(ConfigError) as info:
        client.check_paused(target, timeout_s=1)
    message = str(info.value)
    assert f"cannot read the CA certificate {missing}" in message
    assert "127.0.0.1:50053" in message and "targets.tls.ca_cert" in message


def test_tls_set_tls_per_target_mixes_plaintext_and_tls_nodes(
    tmp_path: Path, loopback_pki: Pki, loopback_node: GateServer
) -> None:
    tls = TlsSettings(ca_cert=_write(tmp_path, loopback_pki.ca_pem))
    with GateServer() as plain_node, GrpcAdminClient() as client:
        client.set_tls([loopback_node.target], tls)
        assert client.check_paused(loopback_node.target, timeout_s=5) is False
        assert client.check_paused(plain_node.target, timeout_s=5) is False
