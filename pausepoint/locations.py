"""Where a store's data lives, so that "does this restore write over the live site?" is decided
from places, never from how a target file spells them.

A ``Location`` is one database on one server. The server is canonical: a host name is resolved
(``socket.getaddrinfo``), and every spelling of THIS machine (127.0.0.0/8, ::1, 0.0.0.0,
``localhost``, the machine's host name, any address of its own interfaces, a unix socket
directory) is one server, ``this machine:<port>``. Two spellings of one place compare equal;
a name that does not resolve is refused (``LocationError``), never counted as "somewhere else".

When in doubt the comparison errs towards "the same place": database names compare without
case, a socket directory and a TCP port of this machine with the same number are one server,
and a host that may be several servers (a libpq host list, a name with several addresses)
counts as each of them.

Each store kind declares its locations in its registry entry (``pausepoint.stores.registry``);
``server_locations`` is the one helper of the kinds that reach a server by host/port and name
databases (PostgreSQL, MySQL).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pausepoint.errors import LocationError

THIS_MACHINE = "this machine"
# Names that mean this machine without asking any resolver (RFC 6761 reserves *.localhost).
_LOCAL_NAMES = {"localhost", "ip6-localhost", "ip6-loopback", "localhost.localdomain"}

Resolver = Callable[[str, int], list[str]]  # (host, port) -> addresses; raises OSError


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the operating system's resolver gives for ``host`` (as the drivers do)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@dataclass(frozen=True)
class Location:
    """One database on one server. Equal when they are the same place, however spelt."""

    server: str  # "this machine:5432", "10.0.0.5:5432", "[2001:db8::5]:3306"
    database: str  # compared without case (conservative: some servers ignore it)
    shown: str = field(default="", compare=False, hash=False)  # as written: host:port/database

    def __str__(self) -> str:
        return self.shown or f"{self.server}/{self.database}"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _bindable(address: str) -> bool:
    """Whether ``address`` is one of this machine's own (binding to it works; no traffic)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((address, 0))
    except OSError:
        return False
    return True


def _canonical_address(address: str) -> tuple[str, bool]:
    """(the address in one spelling, whether it is this machine)."""
    bare = address.split("%", 1)[0]  # an IPv6 scope id names the interface, not the host
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return address, False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:  # connecting to 0.0.0.0 or :: reaches this machine
        return str(ip), True
    return str(ip), _bindable(address)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _is_local_name(host: str) -> bool:
    h = host.lower().rstrip(".")
    # Not getfqdn(): it may ask a DNS server; the name itself resolves below like any other.
    return h in _LOCAL_NAMES or h.endswith(".localhost") or h == socket.gethostname().lower()


def servers(
    host: str, port: int, *, store: str, where: str, resolve: Resolver = system_resolver
) -> set[str]:
    """The canonical servers one host (name, address or socket directory) and port reach.
    ``where`` says where the setting was written (for the error). Raises LocationError when
    a name does not resolve."""
    h = host.strip().strip("[]")
    if h == "" or h.startswith(("/", "@")) or _is_local_name(h):
        # no host, or a socket directory: a server of this machine on that port
        return {f"{THIS_MACHINE}:{port}"}
    try:
        # An address literal needs no resolver; anything else (127.1 too) is the system's call.
        addresses = [h] if _is_address(h) else resolve(h, port)
    except OSError as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise LocationError(
            f"store {store!r}: host {h!r} ({where}) does not resolve on this machine "
            f"({reason}), so pausepoint cannot tell whether it is a database the live site "
            "uses and refuses to guess. Fix the host name, write the server's IP address, "
            "or make the name resolve where pausepoint runs; nothing was touched."
        ) from None
    if not addresses:
        raise LocationError(
            f"store {store!r}: host {h!r} ({where}) resolves to no address; fix the host "
            "name or write the server's IP address; nothing was touched."
        )
    found: set[str] = set()
    for address in addresses:
        canonical, local = _canonical_address(address)
        found.add(f"{THIS_MACHINE}:{port}" if local else _hostport(canonical, port))
    return found


def server_locations(
    cfg: Any,
    names: Iterable[str],
    *,
    as_target: bool,
    where: str | None = None,
    resolve: Resolver | None = None,
) -> frozenset[Location]:
    """The shared ``locations`` of the "server" kinds (PostgreSQL, MySQL): databases ``names``
    on ``cfg.host`` (a libpq-style comma-separated list too) and ``cfg.port``.

    ``where`` names the file the config came from, for errors (default: the site file, or the
    restore target when ``as_target``). Raises LocationError when the place cannot be told.
    """
    resolve = resolve or system_resolver
    host, port = cfg.host, cfg.port
    where = where or ("in the restore target" if as_target else "in the site file")
    names = list(names)
    if not names:
        raise LocationError(f"store {cfg.name!r} names no database ({where}); add one.")
    found: set[Location] = set()
    # libpq takes a comma-separated host list: the store may write to any of them.
    for part in [p.strip() for p in host.split(",")]:
        for server in servers(part, port, store=cfg.name, where=where, resolve=resolve):
            for name in names:
                found.add(Location(server, name.casefold(), f"{_hostport(part, port)}/{name}"))
    return frozenset(found)


def locations(
    cfg: Any,
    *,
    as_target: bool,
    where: str | None = None,
    resolve: Resolver = system_resolver,
) -> frozenset[Location]:
    """Every place a store config reads or (``as_target``: a restore) writes, as its kind's
    registry entry declares (``pausepoint.stores.registry``). Raises LocationError when the
    place cannot be told."""
    from pausepoint.stores import registry  # the registry's entries use the helpers above

    return registry.locations(cfg, as_target=as_target, where=where, resolve=resolve)


def shown(locs: Iterable[Location]) -> str:
    """Locations for a message, each as written, sorted, without repeats."""
    return ", ".join(sorted({str(x) for x in locs}))
