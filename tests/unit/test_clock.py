"""The clock bound, the skew gate and the derived hold, against a tiny NTP server on loopback.

``FakeNtpServer`` answers real NTPv3/v4 client packets from a UDP socket on 127.0.0.1 with a
chosen clock offset, root dispersion and fault knobs. No traffic ever leaves loopback: names
that must not resolve go through an injected resolver, never through DNS.
"""

from __future__ import annotations

import math
import socket
import struct
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from pausepoint.catalog.manifest import ClockBoundRecord
from pausepoint.clock import ClockBound, NtpClient, check_gate, measure, required_hold_ms
from pausepoint.errors import ClockSkewError, InternalError, PreflightError

NTP_DELTA = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
NOW = datetime(2026, 11, 28, 0, 31, 19, tzinfo=UTC)


def _ntp64(t: float) -> bytes:
    ntp = t + NTP_DELTA
    return struct.pack("!II", int(ntp), int((ntp % 1) * 2**32))


def _short(seconds: float) -> int:
    """NTP 16.16 fixed point (root delay, root dispersion)."""
    return round(seconds * 2**16)


class FakeNtpServer:
    """Answers NTP client packets as a server whose clock is ``offset_s`` ahead of ours."""

    def __init__(
        self,
        offset_s: float = 0.0,
        root_dispersion_s: float = 0.0,
        root_delay_s: float = 0.0,
        *,
        delays_s: list[float] | None = None,  # per request: simulated network latency
        silent: bool = False,
        leap: int = 0,
        stratum: int = 2,
        ref_id: bytes = b"GPS\x00",
        wrong_origin: bool = False,
    ):
        self.offset_s = offset_s
        self.root_dispersion_s = root_dispersion_s
        self.root_delay_s = root_delay_s
        self.delays_s = list(delays_s or [])
        self.silent = silent
        self.leap = leap
        self.stratum = stratum
        self.ref_id = ref_id
        self.wrong_origin = wrong_origin
        self.requests: list[int] = []  # the NTP version of every request received
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 48 or data[0] & 0x7 != 3:
                continue  # not a client request
            version = data[0] >> 3 & 0x7
            self.requests.append(version)
            if self.silent:
                continue
            if self.delays_s:
                time.sleep(self.delays_s.pop(0))
            stamp = time.time() + self.offset_s
            origin = b"\x00" * 8 if self.wrong_origin else data[40:48]
            reply = (
                struct.pack(
                    "!BBbbII4s",
                    self.leap << 6 | version << 3 | 4,
                    self.stratum,
                    4,
                    -20,
                    _short(self.root_delay_s),
                    _short(self.root_dispersion_s),
                    self.ref_id,
                )
                + _ntp64(stamp - 16)  # reference time: last set a while ago
                + origin
                + _ntp64(stamp)  # receive
                + _ntp64(stamp)  # transmit
            )
            self._sock.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


@pytest.fixture
def ntp() -> Iterator[type[FakeNtpServer]]:
    """Factory for fake servers; every one is stopped at the end of the test."""
    started: list[FakeNtpServer] = []

    class Tracked(FakeNtpServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    yield Tracked
    for server in started:
        server.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback UDP port nobody listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_dns(host, port, *args):
    """A resolver for tests: numeric addresses only; '*.invalid' fails like a real NXDOMAIN."""
    if host.endswith(".invalid"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return socket.getaddrinfo(host, port, *args, flags=socket.AI_NUMERICHOST)


def bound(offset_s: float, uncertainty_s: float) -> ClockBound:
    return ClockBound(offset_s, uncertainty_s, "127.0.0.1:123", NOW)


# --- ClockBound --------------------------------------------------------------------------------


def test_clock_bound_error_is_absolute_offset_plus_uncertainty():
    assert bound(0.125, 0.0625).error_s == 0.1875
    assert bound(-0.125, 0.0625).error_s == 0.1875


def test_clock_bound_to_record_round_trips():
    b = bound(-0.003, 0.0007)
    record = b.to_record()
    assert isinstance(record, ClockBoundRecord)
    assert record.model_dump() == {
        "offset_s": -0.003,
        "uncertainty_s": 0.0007,
        "server": "127.0.0.1:123",
        "measured_at": NOW,
    }
    assert ClockBound.from_record(record) == b


@pytest.mark.parametrize(
    ("offset", "uncertainty", "at"),
    [(0.0, -0.001, NOW), (math.nan, 0.0, NOW), (0.0, 0.0, NOW.replace(tzinfo=None))],
)
def test_clock_bound_invalid_values_are_refused(offset, uncertainty, at):
    with pytest.raises(InternalError):
        ClockBound(offset, uncertainty, "x", at)


# --- the gate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0.125, -0.125])
def test_check_gate_error_exactly_half_the_hold_fails(offset):
    with pytest.raises(ClockSkewError) as info:
        check_gate(bound(offset, 0.125), hold_ms=500)
    msg = str(info.value)
    assert "250.0 ms" in msg  # the error bound
    assert "500 ms" in msg  # the hold
    assert "pause.min_hold_ms" in msg and "at least 501 ms" in msg
    assert "NTP" in msg
    assert isinstance(info.value, PreflightError)  # nothing was paused yet


@pytest.mark.parametrize("offset", [0.125, -0.125])
def test_check_gate_error_just_below_half_the_hold_passes(offset):
    check_gate(bound(offset, 0.125), hold_ms=501)


def test_check_gate_zero_hold_fails_even_for_a_perfect_clock():
    with pytest.raises(ClockSkewError):
        check_gate(bound(0.0, 0.0), hold_ms=0)


# --- the derived hold --------------------------------------------------------------------------


def test_required_hold_snapshot_only_covers_open_capture():
    assert required_hold_ms(None, None, 0, 12.3) == 13
    assert required_hold_ms(None, None, 0, 0) == 0


def test_required_hold_snapshot_only_ignores_a_measured_clock():
    assert required_hold_ms(bound(2.0, 0.5), None, 0, 40) == 40


def test_required_hold_minimum_raises_the_hold():
    assert required_hold_ms(None, None, 5000, 12.3) == 5000
    assert required_hold_ms(bound(0.25, 0.0), 1000, 10_000, 0) == 10_000


def test_required_hold_minimum_never_lowers_the_hold():
    # 2 * 250 ms + 1000 ms granularity + 1 ms
    assert required_hold_ms(bound(0.25, 0.0), 1000, 200, 0) == 1501
    assert required_hold_ms(None, None, 5, 300) == 300


def test_required_hold_pitr_covers_both_sides_plus_granularity():
    assert required_hold_ms(bound(-0.010, 0.0025), 1, 0, 0) == 27  # ceil(2 * 12.5 + 1) + 1
    assert required_hold_ms(bound(0.0, 0.0), 0, 0, 0) == 1


def test_required_hold_mixed_site_takes_the_longer_need():
    assert required_hold_ms(bound(0.25, 0.0), 1000, 0, 3000.2) == 3001


@pytest.mark.parametrize("error_ms", [0.0, 0.4, 1.0, 12.5, 250.0, 999.999, 4321.1])
@pytest.mark.parametrize("granularity_ms", [0, 1, 1000])
def test_required_hold_pitr_hold_passes_gate_and_keeps_rounded_mid_inside(error_ms, granularity_ms):
    b = bound(error_ms / 2000, error_ms / 2000)
    hold = required_hold_ms(b, granularity_ms, 0, 0)
    check_gate(b, hold)  # the derived hold always passes the gate
    # mid rounded to the nearest step moves by <= G/2; +- the clock error it stays inside
    assert hold / 2 > b.error_s * 1000 + granularity_ms / 2
    assert hold <= 2 * error_ms + granularity_ms + 2  # and it is not padded beyond rounding


def test_required_hold_pitr_without_bound_raises_clock_skew_error():
    with pytest.raises(ClockSkewError, match=r"clock\.ntp_servers"):
        required_hold_ms(None, 1000, 5000, 0)


@pytest.mark.parametrize("args", [(None, None, -1, 0), (None, None, 0, -1), (None, -1, 0, 0)])
def test_required_hold_negative_inputs_are_an_internal_error(args):
    with pytest.raises(InternalError):
        required_hold_ms(*args)


# --- measuring against the fake server ---------------------------------------------------------


def test_measure_one_server_reports_its_offset_and_uncertainty(ntp):
    server = ntp(offset_s=0.25, root_dispersion_s=0.0625)
    before = datetime.now(UTC)
    b = measure([server.address], timeout_s=2)
    assert b.server == server.address
    assert b.offset_s == pytest.approx(0.25, abs=0.005)
    # root dispersion plus half a loopback round trip
    assert 0.0625 <= b.uncertainty_s < 0.0625 + 0.005
    assert before - timedelta(seconds=1) <= b.measured_at <= datetime.now(UTC)
    assert b.measured_at.tzinfo is not None
    assert server.requests == [4, 4, 4]  # NTPv4, three samples


def test_measure_root_delay_counts_half_into_uncertainty(ntp):
    server = ntp(offset_s=0.0, root_dispersion_s=0.0, root_delay_s=0.5)
    b = measure([server.address], timeout_s=2)
    assert 0.25 <= b.uncertainty_s < 0.255


def test_measure_negative_offset_is_kept_signed(ntp):
    server = ntp(offset_s=-0.4)
    b = measure([server.address], timeout_s=2)
    assert b.offset_s == pytest.approx(-0.4, abs=0.005)
    assert b.error_s == pytest.approx(0.4, abs=0.005)


def test_measure_gate_at_the_boundary_passes_and_fails(ntp):
    # offset 250 ms + dispersion 62.5 ms: exact in NTP's fixed point; the round trip adds a bit
    server = ntp(offset_s=0.25, root_dispersion_s=0.0625)
    b = measure([server.address], timeout_s=2)
    with pytest.raises(ClockSkewError, match=r"625 ms"):
        check_gate(b, hold_ms=625)
    check_gate(b, hold_ms=640)


def test_measure_keeps_the_sample_with_the_smallest_round_trip(ntp):
    server = ntp(offset_s=0.1, delays_s=[0.3, 0.0, 0.3])
    b = measure([server.address], timeout_s=3)
    assert len(server.requests) >= 2
    assert b.uncertainty_s < 0.05  # not the 300 ms samples
    assert b.offset_s == pytest.approx(0.1, abs=0.005)


def test_measure_picks_the_server_with_the_smallest_error(ntp):
    far = ntp(offset_s=0.3, root_dispersion_s=0.01)
    near = ntp(offset_s=0.01, root_dispersion_s=0.01)
    wide = ntp(offset_s=0.0, root_dispersion_s=0.5)
    b = measure([far.address, near.address, wide.address], timeout_s=2)
    assert b.server == near.address
    assert b.offset_s == pytest.approx(0.01, abs=0.005)


def test_measure_dead_servers_beside_a_live_one_are_ignored(ntp, closed_port):
    live = ntp(offset_s=0.02)
    silent = ntp(silent=True)
    b = measure([f"127.0.0.1:{closed_port}", silent.address, live.address], timeout_s=0.5)
    assert b.server == live.address


def test_measure_closed_port_gives_refused_clock_skew_error(closed_port):
    spec = f"127.0.0.1:{closed_port}"
    t0 = time.monotonic()
    with pytest.raises(ClockSkewError) as info:
        measure([spec], timeout_s=2)
    assert time.monotonic() - t0 < 1.0  # refused at once, not after the timeout
    msg = str(info.value)
    assert f"{spec}: refused" in msg and f"UDP port {closed_port}" in msg
    assert "clock.ntp_servers" in msg  # the fix


def test_measure_unresolvable_name_gives_dns_clock_skew_error(closed_port, ntp):
    silent = ntp(silent=True)
    servers = ["ntp.example.invalid", f"127.0.0.1:{closed_port}", silent.address]
    with pytest.raises(ClockSkewError) as info:
        measure(servers, timeout_s=0.3, client=NtpClient(resolve=_no_dns))
    msg = str(info.value)
    assert "ntp.example.invalid: name does not resolve (DNS" in msg
    assert f"127.0.0.1:{closed_port}: refused" in msg
    assert f"{silent.address}: timed out" in msg  # every server named, each with its reason
    assert "check clock.ntp_servers" in msg


def test_measure_silent_server_times_out_within_the_budget_not_per_sample(ntp):
    silent = ntp(silent=True)
    t0 = time.monotonic()
    with pytest.raises(ClockSkewError, match=r"timed out: no answer within 0\.5 s"):
        measure([silent.address], timeout_s=0.5, samples=3)
    elapsed = time.monotonic() - t0
    assert 0.45 <= elapsed < 0.9
    assert len(silent.requests) == 1  # no second query once the budget is gone


def test_measure_slow_later_sample_does_not_hold_the_measurement(ntp):
    server = ntp(offset_s=0.05, delays_s=[0.0, 1.0])
    t0 = time.monotonic()
    b = measure([server.address], timeout_s=5)
    assert time.monotonic() - t0 < 0.6  # gave up on the slow sample, kept the first
    assert b.offset_s == pytest.approx(0.05, abs=0.005)


def test_measure_stuck_client_is_abandoned_after_budget_and_grace():
    release = threading.Event()

    class StuckClient:
        def request(self, host, version=4, port=123, timeout=1.0):
            release.wait(10)  # like a DNS lookup that ignores every timeout
            raise TimeoutError

    t0 = time.monotonic()
    try:
        with pytest.raises(ClockSkewError, match="still resolving the name or waiting"):
            measure(["10.0.0.1"], timeout_s=0.2, client=StuckClient())
        assert time.monotonic() - t0 < 1.2
    finally:
        release.set()


@pytest.mark.parametrize(
    ("knobs", "reason"),
    [
        ({"leap": 3}, "not synchronised"),
        ({"stratum": 16}, "not synchronised"),
        ({"stratum": 0, "ref_id": b"RATE"}, "kiss-o'-death 'RATE'"),
        ({"wrong_origin": True}, "originate timestamp differs"),
    ],
)
def test_measure_unusable_reply_is_refused_with_its_reason(ntp, knobs, reason):
    server = ntp(offset_s=0.0, **knobs)
    with pytest.raises(ClockSkewError) as info:
        measure([server.address], timeout_s=0.5)
    assert f"{server.address}: bad reply: " in str(info.value)
    assert reason in str(info.value)


def test_measure_works_with_plain_ntplib_client_and_ntpv3(ntp):
    import ntplib

    class V3(ntplib.NTPClient):
        def request(self, host, version=4, port="ntp", timeout=5):
            return super().request(host, version=3, port=port, timeout=timeout)

    server = ntp(offset_s=-0.125)
    b = measure([server.address], timeout_s=2, client=V3())
    assert b.offset_s == pytest.approx(-0.125, abs=0.005)
    assert set(server.requests) == {3}


@pytest.mark.parametrize("spec", ["127.0.0.1:99999", "host:port", "a b"])
def test_measure_malformed_server_is_named_with_the_expected_form(spec):
    with pytest.raises(ClockSkewError) as info:
        measure([spec], timeout_s=0.2, client=NtpClient(resolve=_no_dns))
    assert f"{spec!r} is not host or host:port" in str(info.value)


def test_measure_no_servers_configured_says_where_to_configure():
    with pytest.raises(ClockSkewError, match=r"clock\.ntp_servers"):
        measure([], timeout_s=1)


def test_measure_ipv6_loopback_with_brackets(closed_port):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback (::1) on this host")
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ClockSkewError, match=rf"\[::1\]:{port}: refused"):
        measure([f"[::1]:{port}"], timeout_s=0.5, client=NtpClient(resolve=_no_dns))
