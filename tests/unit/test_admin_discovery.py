"""Discovery: static lists, DNS SRV against a DNS server on 127.0.0.1, and the combination."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pausepoint.admin.discovery import (
    CombinedDiscovery,
    SrvDiscovery,
    StaticDiscovery,
    discovery_for,
)
from pausepoint.errors import ConfigError, DiscoveryError
from pausepoint.site import Target, TargetSource
from tests.support.dns_server import TinyDnsServer

pytestmark = pytest.mark.timeout(30)

LEDGER = "_scalardl-admin._tcp.ledger.test"


def t(text: str) -> Target:
    return Target.parse(text)


@pytest.fixture
def dns_server() -> Iterator[TinyDnsServer]:
    with TinyDnsServer(
        srv={
            f"{LEDGER}.": [
                "0 10 50053 ledger-2.ledger.test.",
                "0 10 50053 ledger-0.ledger.test.",
                "10 5 50053 ledger-1.ledger.test.",
                "0 10 50053 ledger-0.ledger.test.",  # the same node under another priority
                "0 0 50053 .",  # "not available here" (RFC 2782): skipped
            ],
            "_only-dot._tcp.test.": ["0 0 0 ."],
        },
        empty={"no-srv.test."},
        silent={"_slow._tcp.test."},
        servfail={"_broken._tcp.test."},
    ) as server:
        yield server


def test_static_discovery_keeps_order_and_drops_repeats() -> None:
    found = StaticDiscovery([t("b:2"), t("a:1"), t("b:2")]).discover()
    assert found == [t("b:2"), t("a:1")]


def test_srv_discovery_answer_returns_targets_sorted_and_deduplicated(
    dns_server: TinyDnsServer,
) -> None:
    found = SrvDiscovery(LEDGER, resolver_address=dns_server.address).discover()
    assert found == [
        t("ledger-0.ledger.test:50053"),
        t("ledger-1.ledger.test:50053"),
        t("ledger-2.ledger.test:50053"),
    ]
    assert dns_server.queries == [f"{LEDGER}."]


def test_srv_discovery_nxdomain_raises_discovery_error_naming_record_and_fix(
    dns_server: TinyDnsServer,
) -> None:
    with pytest.raises(DiscoveryError) as info:
        SrvDiscovery("_missing._tcp.test", resolver_address=dns_server.address).discover()
    message = str(info.value)
    assert type(info.value) is DiscoveryError
    assert "DNS SRV record _missing._tcp.test does not exist (NXDOMAIN" in message
    assert f"resolver {dns_server.address}" in message
    assert "check 'srv:' in the site file" in message and "'static:'" in message


def test_srv_discovery_name_without_srv_records_raises_discovery_error(
    dns_server: TinyDnsServer,
) -> None:
    with pytest.raises(DiscoveryError, match=r"no-srv\.test exists but has no SRV records"):
        SrvDiscovery("no-srv.test", resolver_address=dns_server.address).discover()


def test_srv_discovery_only_unavailable_targets_raises_discovery_error(
    dns_server: TinyDnsServer,
) -> None:
    with pytest.raises(DiscoveryError, match=r"lists no usable target \(only '\.' or port 0\)"):
        SrvDiscovery("_only-dot._tcp.test", resolver_address=dns_server.address).discover()


def test_srv_discovery_resolver_silent_raises_discovery_error_after_timeout(
    dns_server: TinyDnsServer,
) -> None:
    srv = SrvDiscovery("_slow._tcp.test", resolver_address=dns_server.address, timeout_s=0.3)
    with pytest.raises(DiscoveryError) as info:
        srv.discover()
    assert "no answer for the DNS SRV record _slow._tcp.test within 0.3 s" in str(info.value)


def test_srv_discovery_servfail_raises_discovery_error(dns_server: TinyDnsServer) -> None:
    srv = SrvDiscovery("_broken._tcp.test", resolver_address=dns_server.address, timeout_s=1)
    with pytest.raises(DiscoveryError, match="SERVFAIL or refused"):
        srv.discover()


@pytest.mark.parametrize(
    "address",
    ["dns.example.test", "127.0.0.1:0", "127.0.0.1:x", "[::1", "[::1]x", "[::1]:", "::1:53:x"],
)
def test_srv_discovery_bad_resolver_address_raises_config_error(address: str) -> None:
    with pytest.raises(ConfigError, match="is not an IP address with an optional port"):
        SrvDiscovery(LEDGER, resolver_address=address)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
    ],
)
def test_srv_discovery_resolver_address_forms_parse(address: str, expected: tuple) -> None:
    assert SrvDiscovery(LEDGER, resolver_address=address)._server == expected


def test_discovery_for_static_only_returns_static_discovery() -> None:
    source = TargetSource(static=["10.0.0.1:50053", "10.0.0.2:50053"])
    discovery = discovery_for(source)
    assert type(discovery) is StaticDiscovery
    assert discovery.discover() == [t("10.0.0.1:50053"), t("10.0.0.2:50053")]


def test_discovery_for_srv_only_returns_srv_discovery(dns_server: TinyDnsServer) -> None:
    discovery = discovery_for(TargetSource(srv=LEDGER), resolver_address=dns_server.address)
    assert type(discovery) is SrvDiscovery
    assert len(discovery.discover()) == 3


def test_discovery_for_static_and_srv_lists_static_first_then_new_srv_targets(
    dns_server: TinyDnsServer,
) -> None:
    source = TargetSource(static=["ledger-1.ledger.test:50053", "10.0.0.9:50053"], srv=LEDGER)
    discovery = discovery_for(source, resolver_address=dns_server.address)
    assert type(discovery) is CombinedDiscovery
    assert discovery.discover() == [
        t("ledger-1.ledger.test:50053"),
        t("10.0.0.9:50053"),
        t("ledger-0.ledger.test:50053"),
        t("ledger-2.ledger.test:50053"),
    ]


def test_discovery_for_static_and_failing_srv_raises_discovery_error(
    dns_server: TinyDnsServer,
) -> None:
    source = TargetSource(static=["10.0.0.9:50053"], srv="_missing._tcp.test")
    with pytest.raises(DiscoveryError, match="NXDOMAIN"):
        discovery_for(source, resolver_address=dns_server.address).discover()
