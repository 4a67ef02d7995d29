"""How far this host's clock may be from true time, and whether a pause window can absorb it.

A point-in-time restore replays a store up to the MID-TIME of the pause window, read on this
host's clock; the provider applies it on its own (UTC-synchronised) clock. The restore point is
only valid when the mid-time, moved by the largest possible clock error, still falls inside the
window (FACTS.md §4): ``|offset| + uncertainty < hold / 2``.

``measure`` bounds the error with NTP, ``check_gate`` applies that rule, and ``required_hold_ms``
derives the hold a site needs instead of guessing it.

Sign convention (ntplib's): ``offset_s`` = server clock - local clock, so a positive offset means
this host's clock is behind.
"""

from __future__ import annotations

import errno
import math
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import ntplib

from pausepoint.catalog.manifest import ClockBoundRecord
from pausepoint.errors import ClockSkewError, ConfigError, InternalError

NTP_PORT = 123
DEFAULT_SAMPLES = 3
# Extra wait past the budget before a server whose query thread is stuck (for example in a DNS
# lookup that ignores our timeout) is given up on.
_JOIN_GRACE_S = 0.5
# A later sample only helps when its round trip beats the best one so far; waiting much longer
# than that for it cannot improve the bound.
_LATER_SAMPLE_SLACK_S = 0.1

_SPEC = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]\s]+))(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True)
class ClockBound:
    """One NTP measurement: this host's clock offset and how uncertain that offset is.

    ``uncertainty_s`` is the NTP root distance without the local terms: half the round trip to
    the server plus the server's own error bound to its reference (root delay / 2 + root
    dispersion). The true offset lies within ``offset_s ± uncertainty_s``.
    """

    offset_s: float
    uncertainty_s: float
    server: str
    measured_at: datetime

    def __post_init__(self) -> None:
        if self.uncertainty_s < 0 or math.isnan(self.uncertainty_s) or math.isnan(self.offset_s):
            raise InternalError(f"invalid clock bound {self.offset_s!r} ± {self.uncertainty_s!r}")
        if self.measured_at.tzinfo is None:
            raise InternalError("measured_at must be timezone-aware (UTC)")

    @property
    def error_s(self) -> float:
        """The largest distance between this host's clock and true time."""
        return abs(self.offset_s) + self.uncertainty_s

    def to_record(self) -> ClockBoundRecord:
        return ClockBoundRecord(
            offset_s=self.offset_s,
            uncertainty_s=self.uncertainty_s,
            server=self.server,
            measured_at=self.measured_at,
        )

    @classmethod
    def from_record(cls, record: ClockBoundRecord) -> ClockBound:
        return cls(record.offset_s, record.uncertainty_s, record.server, record.measured_at)

    def describe(self) -> str:
        return (
            f"offset {self.offset_s * 1000:+.1f} ms ± {self.uncertainty_s * 1000:.1f} ms "
            f"via {self.server}"
        )


# --- the gate and the derived hold -----------------------------------------------------------


def check_gate(bound: ClockBound, hold_ms: int) -> None:
    """Refuse a hold that cannot absorb the clock error: require ``error < hold / 2``.

    At ``error == hold / 2`` the mid-time may already sit on the window's edge, so equality
    fails too.
    """
    error_ms = bound.error_s * 1000
    half_ms = hold_ms / 2
    if error_ms < half_ms:
        return
    # Smallest whole-millisecond hold that passes.
    need_ms = math.floor(2 * error_ms) + 1
    raise ClockSkewError(
        f"clock error bound {error_ms:.1f} ms ({bound.describe()}) is not below half the "
        f"hold ({half_ms:.1f} ms of {hold_ms} ms): the restore point's mid-time could fall "
        "outside the pause window, so it cannot be trusted. Nothing was paused. "
        f"Fix: raise the hold with pause.min_hold_ms (to at least {need_ms} ms), or fix NTP sync "
        "on this host (a large offset) or use a closer NTP server (a large uncertainty)."
    )


def check_bound(bound: ClockBound, max_error_ms: int, hold_ms: int) -> None:
    """Refuse a bound wider than the site accepts (``clock.max_error_ms``): the hold that
    absorbs it would stall writes for longer than anyone asked for, and a wide bound usually
    means NTP is not doing its job on this host. Says the bound, the limit, the hold it would
    take and the fix."""
    error_ms = bound.error_s * 1000
    if error_ms <= max_error_ms:
        return
    raise ClockSkewError(
        f"clock error bound {error_ms:.1f} ms ({bound.describe()}) is wider than "
        f"clock.max_error_ms = {max_error_ms} ms: absorbing it would hold every node paused for "
        f"{hold_ms} ms, and the restore point's time could not be trusted otherwise. Nothing "
        "was paused. Fix: get this host's clock in sync (check the NTP daemon: a large offset) "
        "or use a closer NTP server in clock.ntp_servers (a large uncertainty); or, if a "
        f"{hold_ms} ms write stall is acceptable, raise clock.max_error_ms to at least "
        f"{math.ceil(error_ms)}."
    )


def required_hold_ms(
    bound: ClockBound | None,
    granularity_ms: int | None,
    min_hold_ms: int,
    capture_open_ms_estimate: float,
) -> int:
    """The hold this run needs, in whole milliseconds: derived, not guessed.

    Formula (E = ``bound.error_s`` in ms, G = ``granularity_ms``, O = the open_capture
    estimate)::

        pitr     = ceil(2 * E + G) + 1        only when G is given (the site has PITR stores)
        snapshot = ceil(O)
        hold     = max(pitr, snapshot, min_hold_ms)

    Why: the PITR timestamp is the window's mid-time rounded to the provider's granularity (to
    the nearest step, so it moves by at most G / 2). Read on a clock that is off by up to E, it
    stays inside the window when ``hold / 2 > E + G / 2``; the extra millisecond makes the strict
    ``<`` of ``check_gate`` hold and absorbs rounding. Snapshot stores only need the window to
    last until every snapshot is established. A mixed site needs both. ``min_hold_ms`` may raise
    the hold, never lower it.

    ``bound`` is ignored without a granularity (a snapshot-only site that measured its clock
    anyway). A granularity without a bound cannot be derived and raises ClockSkewError.
    """
    if min_hold_ms < 0 or capture_open_ms_estimate < 0:
        raise InternalError("min_hold_ms and capture_open_ms_estimate must not be negative")
    hold = max(min_hold_ms, math.ceil(capture_open_ms_estimate))
    if granularity_ms is None:
        return hold
    if granularity_ms < 0:
        raise InternalError("granularity_ms must not be negative")
    if bound is None:
        raise ClockSkewError(
            "the site has point-in-time stores but no clock bound was measured, so the hold "
            "that keeps the restore point inside the pause window cannot be derived. "
            "Fix: configure clock.ntp_servers (host or host:port) reachable from this host."
        )
    pitr = math.ceil(2 * bound.error_s * 1000 + granularity_ms) + 1
    return max(hold, pitr)


# --- measuring -------------------------------------------------------------------------------


class NtpQuery(Protocol):
    """What ``measure`` needs from a client; ``ntplib.NTPClient`` fits too."""

    def request(
        self, host: str, version: int = ..., port: Any = ..., timeout: float = ...
    ) -> ntplib.NTPStats: ...


class BadReplyError(Exception):
    """A server answered with a packet that must not be used (stale, unsynchronised, KoD)."""


Resolver = Callable[..., list[tuple[Any, ...]]]


class NtpClient:
    """ntplib's packets over a CONNECTED UDP socket.

    Connecting lets the kernel report an ICMP port-unreachable as ConnectionRefusedError, so a
    server that is down fails at once and by name instead of after the whole timeout. The reply
    must echo our transmit timestamp (no stale or spoofed answer is taken for a fresh one).
    """

    def __init__(self, resolve: Resolver = socket.getaddrinfo):
        self._resolve = resolve

    def request(
        self, host: str, version: int = 4, port: Any = NTP_PORT, timeout: float = 2.0
    ) -> ntplib.NTPStats:
        family, _, _, _, sockaddr = self._resolve(host, port, 0, socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            sent = ntplib.system_to_ntp_time(time.time())
            query = ntplib.NTPPacket(version=version, mode=3, tx_timestamp=sent).to_data()
            # Random lowest bits (15 us): the echo check then also rejects a late reply to an
            # earlier query. The offset below uses the true send time.
            query = query[:46] + secrets.token_bytes(2)
            sock.send(query)
            try:
                data = sock.recv(1024)
            except TimeoutError:
                raise TimeoutError(f"no reply within {timeout:.2f} s") from None
            dest = ntplib.system_to_ntp_time(time.time())
        if len(data) < 48:
            raise BadReplyError(f"short packet ({len(data)} bytes)")
        if data[24:32] != query[40:48]:
            raise BadReplyError("reply does not answer our query (originate timestamp differs)")
        stats = ntplib.NTPStats()
        stats.from_data(data)
        stats.orig_timestamp = sent
        stats.dest_timestamp = dest
        return stats


@dataclass(frozen=True)
class _Sample:
    offset_s: float
    uncertainty_s: float
    at: datetime


def _parse_server(spec: str) -> tuple[str, int]:
    text = spec.strip()
    if text.count(":") > 1 and not text.startswith("["):
        return text, NTP_PORT  # a bare IPv6 address
    m = _SPEC.match(text)
    if not m or (m["port"] is not None and not 0 < int(m["port"]) < 65536):
        raise ConfigError(f"{spec!r} is not host or host:port (for example pool.ntp.org:123)")
    return m["v6"] or m["host"], int(m["port"] or NTP_PORT)


def _check_reply(stats: ntplib.NTPStats) -> _Sample:
    if stats.mode != 4:
        raise BadReplyError(f"not a server reply (mode {stats.mode})")
    if stats.stratum == 0:
        code = stats.ref_id.to_bytes(4, "big").decode("ascii", "replace").strip("\x00")
        raise BadReplyError(f"kiss-o'-death {code!r}: the server refuses to serve this host")
    if stats.leap == 3 or stats.stratum >= 16:
        raise BadReplyError("the server's own clock is not synchronised")
    if stats.tx_timestamp == 0:
        raise BadReplyError("the reply carries no transmit time")
    # A negative round trip means the server's processing time exceeded what we measured;
    # count it as zero rather than let it shrink the bound.
    delay = max(stats.delay, 0.0)
    uncertainty = delay / 2 + stats.root_delay / 2 + stats.root_dispersion
    return _Sample(stats.offset, uncertainty, datetime.now(UTC))


def _why(exc: BaseException, port: int, timeout_s: float) -> str:
    """A failure in the words an operator needs: timeout, DNS, refused, or what else."""
    if isinstance(exc, socket.gaierror):
        return f"name does not resolve (DNS: {exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return f"refused: nothing listens on UDP port {port}"
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, ntplib.NTPException) and "No response" in str(exc)
    ):
        return f"timed out: no answer within {timeout_s:g} s (down, firewalled or UDP blocked)"
    if isinstance(exc, BadReplyError | ntplib.NTPException):
        return f"bad reply: {exc}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"unreachable: {exc.strerror}"
    if isinstance(exc, OSError):
        return f"network error: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def _measure_one(
    client: NtpQuery, spec: str, deadline: float, timeout_s: float, samples: int
) -> _Sample | str:
    """The best of up to ``samples`` replies from one server, or why it gave none."""
    try:
        host, port = _parse_server(spec)
    except ConfigError as exc:
        return str(exc)
    best: _Sample | None = None
    best_delay = math.inf
    for i in range(samples):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        wait = remaining if i == 0 else min(remaining, 2 * best_delay + _LATER_SAMPLE_SLACK_S)
        try:
            stats = client.request(host, version=4, port=port, timeout=wait)
            sample = _check_reply(stats)
        except Exception as exc:
            if best is None:
                return _why(exc, port, timeout_s)
            break  # keep what we have: an earlier reply is still a valid bound
        if best is None or sample.uncertainty_s < best.uncertainty_s:
            best, best_delay = sample, max(stats.delay, 0.0)
    return best if best is not None else f"timed out: no answer within {timeout_s:g} s"


def measure(
    servers: Sequence[str],
    timeout_s: float,
    client: NtpQuery | None = None,
    *,
    samples: int = DEFAULT_SAMPLES,
) -> ClockBound:
    """Bound this host's clock error with the configured NTP servers.

    Every server (``host`` or ``host:port``) is queried in parallel, up to ``samples`` times; per
    server the sample with the smallest uncertainty is kept, and the server with the smallest
    error (``|offset| + uncertainty``) wins. ``timeout_s`` bounds the whole measurement, not
    each query. Raises ClockSkewError naming every server and why it failed when none answered.
    """
    if not servers:
        raise ClockSkewError(
            "no NTP servers are configured, so the clock error cannot be bounded. "
            "Fix: list reachable servers in clock.ntp_servers (host or host:port)."
        )
    if samples < 1 or timeout_s <= 0:
        raise InternalError("samples must be >= 1 and timeout_s > 0")
    client = client or NtpClient()
    deadline = time.monotonic() + timeout_s
    results: dict[str, _Sample | str] = {}

    def run(spec: str) -> None:
        results[spec] = _measure_one(client, spec, deadline, timeout_s, samples)

    # Daemon threads: a lookup stuck past the budget must not keep the process alive.
    threads = [threading.Thread(target=run, args=(s,), daemon=True) for s in dict.fromkeys(servers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + _JOIN_GRACE_S)

    answered: list[ClockBound] = []
    failures: list[str] = []
    stuck = f"no answer within {timeout_s:g} s (still resolving the name or waiting)"
    for spec in dict.fromkeys(servers):
        outcome = results.get(spec, stuck)
        if isinstance(outcome, _Sample):
            answered.append(ClockBound(outcome.offset_s, outcome.uncertainty_s, spec, outcome.at))
        else:
            failures.append(f"  - {spec}: {outcome}")
    if answered:
        return min(answered, key=lambda b: b.error_s)
    raise ClockSkewError(
        "no NTP server answered, so this host's clock error cannot be bounded:\n"
        + "\n".join(failures)
        + "\nFix: check clock.ntp_servers in the site file (host or host:port), that the names "
        "resolve and that UDP to the NTP port is allowed from this host; or raise "
        "clock.timeout_s for distant servers."
    )
