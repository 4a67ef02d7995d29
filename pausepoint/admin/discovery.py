"""Finding a component's admin targets: a static list, a DNS SRV record, or both.

Every variant returns ALL nodes: a pause must reach each of them, so SRV priority and weight
(which pick one server among many) play no part. Discovery runs before the pause and again
before the window closes; a different answer the second time fails the backup (window.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Protocol

import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from pausepoint.errors import ConfigError, DiscoveryError
from pausepoint.site import Target, TargetSource


class Discovery(Protocol):
    def discover(self) -> list[Target]: ...


class StaticDiscovery:
    """The targets as configured, in their order, each once."""

    def __init__(self, targets: Iterable[Target]) -> None:
        self._targets = list(dict.fromkeys(targets))

    def discover(self) -> list[Target]:
        return list(self._targets)

    def __repr__(self) -> str:
        return f"StaticDiscovery({[str(t) for t in self._targets]})"


def parse_resolver(address: str) -> tuple[str, int]:
    """'10.0.0.2', '10.0.0.2:5353', '::1' or '[::1]:5353' -> (ip, port)."""
    text = address.strip()
    host, port_text = text, "53"
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        port_text = rest[1:] if closed and rest.startswith(":") else ("53" if closed else "")
        if rest and not rest.startswith(":"):
            port_text = ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    port = int(port_text) if port_text.isdigit() else -1
    try:
        ipaddress.ip_address(host)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ConfigError(
            f"DNS resolver address {address!r} is not an IP address with an optional port "
            "(for example 10.0.0.2, 10.0.0.2:5353 or [::1]:5353)"
        )
    return host, port


class SrvDiscovery:
    """Targets from a DNS SRV record: each answer's target host and port, sorted, each once.

    ``resolver_address`` (``ip`` or ``ip:port``) asks that server only; without it the system's
    resolver configuration applies, including its search domains, so a short name such as
    ``_scalardl-admin._tcp.ledger`` resolves inside a Kubernetes namespace.
    """

    def __init__(
        self, name: str, resolver_address: str | None = None, *, timeout_s: float = 5.0
    ) -> None:
        if not name.strip():
            raise ConfigError("the SRV record name is empty; set 'srv:' to a name")
        self.name = name.strip()
        self.resolver_address = resolver_address
        self.timeout_s = timeout_s
        self._server = parse_resolver(resolver_address) if resolver_address else None

    def _resolver(self) -> dns.resolver.Resolver:
        if self._server is None:
            try:
                resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration as exc:
                raise DiscoveryError(
                    f"cannot look up the SRV record {self.name}: this machine has no DNS "
                    "resolver configured; set a resolver address or list the targets under "
                    "'static:'"
                ) from exc
        else:
            resolver = dns.resolver.Resolver(configure=False)
            ip, port = self._server
            resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port)]
        resolver.lifetime = self.timeout_s
        resolver.timeout = min(self.timeout_s, 2.0)
        return resolver

    def _where(self) -> str:
        return f"resolver {self.resolver_address}" if self.resolver_address else "system resolver"

    def discover(self) -> list[Target]:
        resolver = self._resolver()
        fix = (
            "check 'srv:' in the site file and the DNS record, or list the targets under 'static:'"
        )
        try:
            answer = resolver.resolve(self.name, dns.rdatatype.SRV, search=self._server is None)
        except dns.resolver.NXDOMAIN as exc:
            raise DiscoveryError(
                f"DNS SRV record {self.name} does not exist (NXDOMAIN from the {self._where()}); "
                f"{fix}"
            ) from exc
        except dns.resolver.NoAnswer as exc:
            raise DiscoveryError(
                f"DNS name {self.name} exists but has no SRV records ({self._where()}); {fix}"
            ) from exc
        except dns.exception.Timeout as exc:
            raise DiscoveryError(
                f"no answer for the DNS SRV record {self.name} within {self.timeout_s:g} s from "
                f"the {self._where()}; check that the resolver is reachable, or list the "
                "targets under 'static:'"
            ) from exc
        except dns.resolver.NoNameservers as exc:
            raise DiscoveryError(
                f"every DNS server failed to answer for the SRV record {self.name} "
                f"({self._where()}: SERVFAIL or refused); {fix}"
            ) from exc
        except dns.exception.DNSException as exc:
            raise DiscoveryError(
                f"looking up the DNS SRV record {self.name} failed ({self._where()}): {exc}; {fix}"
            ) from exc
        found: set[Target] = set()
        for rdata in answer:
            host = rdata.target.to_text(omit_final_dot=True)
            # RFC 2782: a target of "." means the service is decidedly not available there.
            if host in ("", ".") or rdata.port == 0:
                continue
            found.add(Target(host=host, port=rdata.port))
        if not found:
            raise DiscoveryError(
                f"DNS SRV record {self.name} lists no usable target (only '.' or port 0) "
                f"({self._where()}); {fix}"
            )
        return sorted(found, key=lambda t: (t.host, t.port))

    def __repr__(self) -> str:
        return f"SrvDiscovery({self.name!r}, resolver_address={self.resolver_address!r})"


class CombinedDiscovery:
    """Static targets first, then every discovered target not already listed."""

    def __init__(self, parts: Iterable[Discovery]) -> None:
        self.parts = list(parts)

    def discover(self) -> list[Target]:
        seen: dict[Target, None] = {}
        for part in self.parts:
            seen.update(dict.fromkeys(part.discover()))
        return list(seen)

    def __repr__(self) -> str:
        return f"CombinedDiscovery({self.parts!r})"


def discovery_for(target_source: TargetSource, *, resolver_address: str | None = None) -> Discovery:
    """The Discovery a component's ``targets:`` section describes."""
    static = StaticDiscovery(target_source.static) if target_source.static else None
    srv = (
        SrvDiscovery(target_source.srv, resolver_address=resolver_address or target_source.resolver)
        if target_source.srv
        else None
    )
    if static and srv:
        return CombinedDiscovery([static, srv])
    if srv:
        return srv
    if static:
        return static
    raise ConfigError("a component's targets need 'static:' or 'srv:'")
