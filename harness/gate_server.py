"""A test-only scalar-admin node: a Gate with GateKeeper semantics behind a real gRPC server.

Never shipped. The gate behaves like ONE real ScalarDL Ledger release (FACTS.md sections 1 and 6),
chosen with ``release`` (default ``LATEST``, 3.14.0):

- Every release: ``Gate.enter()`` is what an application request does on arrival: while the gate
  is closed it WAITS (held, not rejected); ``exit()`` marks it done. ``unpause()`` always opens,
  even in the middle of a drain. A pause without ``wait_outstanding`` closes and returns.
- **3.14.0**: pauses are serialised: a waiting pause waits for one in progress within its own
  time limit, then gives up with PAUSE_IN_PROGRESS without touching the gate (one that does not
  wait gives up at once). A drain timeout reopens a gate this call closed (TIMED_OUT) and leaves
  one an earlier pause closed as it is (TIMED_OUT_STILL_PAUSED); an unpause during the drain makes
  the pause report GATE_OPEN. A non-positive ``max_pause_wait_time`` with ``wait_outstanding`` is
  refused with INVALID_ARGUMENT. Failed pauses carry a ``google.rpc.ErrorInfo``
  (domain ``com.scalar.dl.admin``, reason = the outcome).
- **3.12.3 / 3.13.0**: no serialisation (a second pause on a closed gate just closes it again and
  drains); ``max_pause_wait_time`` 0 (or unset) means the 30 s default, a negative one means no
  wait at all; a drain that does not finish in time (or is cut short by an unpause) REOPENS the
  gate whoever closed it and answers a bare FAILED_PRECONDITION (no description, no ErrorInfo);
  an unpause during a drain that has nothing left in flight still reports success.

``GateServer`` serves one Gate as ``rpc.Admin`` on loopback with fault knobs that tests set while
it runs: ``slow_drain_ms``, ``refuse_with``, ``drop_unpause_calls``, ``late_pause_ms`` (a Pause
that fails for the caller and takes effect later), ``stop()`` / ``start()`` (crash / come back
with state intact) and ``restart_unpaused()`` (a node that restarted: same port, gate open). A
knob can only make the node answer what its release could answer (``refuse_with`` a 3.14-only
outcome on a 3.12.3 node is a ValueError); network-side failures (UNAVAILABLE, DEADLINE, OTHER)
are plain statuses in every release.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import grpc
from google.protobuf import any_pb2, empty_pb2
from google.rpc import error_details_pb2, status_pb2

from pausepoint.admin._generated import scalar_admin_pb2, scalar_admin_pb2_grpc
from pausepoint.admin.client import Reason
from pausepoint.site import Target

DEFAULT_MAX_WAIT_MS = 30_000  # the server default when max_pause_wait_time is unset
ERROR_DOMAIN = "com.scalar.dl.admin"


class Release(StrEnum):
    """The ScalarDL Ledger release whose pause behaviour a Gate reproduces."""

    V3_12_3 = "3.12.3"
    V3_13_0 = "3.13.0"
    V3_14_0 = "3.14.0"

    @property
    def legacy(self) -> bool:
        """3.12.3 and 3.13.0: unserialised pauses, bare FAILED_PRECONDITION, 0 ms = default."""
        return self is not Release.V3_14_0


LATEST = Release.V3_14_0


class PauseOutcome(StrEnum):
    PAUSED = "PAUSED"
    TIMED_OUT = "TIMED_OUT"
    TIMED_OUT_STILL_PAUSED = "TIMED_OUT_STILL_PAUSED"
    GATE_OPEN = "GATE_OPEN"
    PAUSE_IN_PROGRESS = "PAUSE_IN_PROGRESS"


class Gate:
    """The front gate of one node, as ``release`` has it. Thread-safe."""

    def __init__(self, release: Release | str = LATEST) -> None:
        self.release = Release(release)
        self._cond = threading.Condition()
        self._open = True
        self._inflight = 0
        self._held = 0
        self._pausing = False  # 3.14.0: a waiting pause holds the gate
        self._draining = 0  # 3.12.3 / 3.13.0: waiting pauses in their drain

    # --- application side ---------------------------------------------------------------

    def enter(self, timeout_s: float | None = None) -> None:
        """Admit one request; wait while the gate is closed (TimeoutError after timeout_s)."""
        with self._cond:
            self._held += 1
            try:
                admitted = self._cond.wait_for(lambda: self._open, timeout_s)
            finally:
                self._held -= 1
            if not admitted:
                raise TimeoutError(f"the gate stayed closed for {timeout_s} s")
            self._inflight += 1

    def exit(self) -> None:
        """Mark one admitted request finished."""
        with self._cond:
            # Clamped: after a restart (reset) old requests may still report in.
            self._inflight = max(0, self._inflight - 1)
            self._cond.notify_all()

    @contextmanager
    def request(self, timeout_s: float | None = None) -> Iterator[None]:
        self.enter(timeout_s)
        try:
            yield
        finally:
            self.exit()

    # --- admin side ---------------------------------------------------------------------

    def pause(
        self,
        wait_outstanding: bool = True,
        max_wait_ms: int | None = None,
        *,
        min_drain_ms: int = 0,
    ) -> PauseOutcome:
        """Close the gate; see the module docstring for the outcomes of each release.

        ``min_drain_ms`` stands for a request that is in flight for that long after the pause
        starts (the slow-drain fault). 3.14.0: a non-positive ``max_wait_ms`` with
        ``wait_outstanding`` is a ValueError (the server answers INVALID_ARGUMENT).
        """
        if self.release.legacy:
            return self._pause_legacy(wait_outstanding, max_wait_ms, min_drain_ms)
        if wait_outstanding and max_wait_ms is not None and max_wait_ms <= 0:
            raise ValueError(f"max_pause_wait_time must be > 0 ms, got {max_wait_ms} ms")
        with self._cond:
            if not wait_outstanding:
                if self._pausing:
                    return PauseOutcome.PAUSE_IN_PROGRESS
                self._open = False
                return PauseOutcome.PAUSED
            wait_ms = DEFAULT_MAX_WAIT_MS if max_wait_ms is None else max_wait_ms
            deadline = time.monotonic() + wait_ms / 1000
            while self._pausing:  # one pause at a time, within this call's own time limit
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return PauseOutcome.PAUSE_IN_PROGRESS
                self._cond.wait(remaining)
            self._pausing = True
            try:
                closed_by_this_call = self._open
                self._open = False
                drain_until = time.monotonic() + min_drain_ms / 1000
                while True:
                    now = time.monotonic()
                    if self._open:
                        return PauseOutcome.GATE_OPEN  # a concurrent unpause won
                    if self._inflight == 0 and now >= drain_until:
                        return PauseOutcome.PAUSED
                    if now >= deadline:
                        break
                    wake = deadline if self._inflight else min(deadline, drain_until)
                    self._cond.wait(wake - now)
                if closed_by_this_call:
                    self._open = True
                    return PauseOutcome.TIMED_OUT
                return PauseOutcome.TIMED_OUT_STILL_PAUSED
            finally:
                self._pausing = False
                self._cond.notify_all()

    def _pause_legacy(
        self, wait_outstanding: bool, max_wait_ms: int | None, min_drain_ms: int
    ) -> PauseOutcome:
        """3.12.3 / 3.13.0: close, drain, and on any failure reopen and report TIMED_OUT."""
        with self._cond:
            self._open = False
            if not wait_outstanding:
                return PauseOutcome.PAUSED
            # The field reads 0 when unset: both mean the default. A negative value is a deadline
            # that has passed already: the gate is checked once, without waiting.
            wait_ms = max_wait_ms or DEFAULT_MAX_WAIT_MS
            start = time.monotonic()
            deadline, drain_until = start + wait_ms / 1000, start + min_drain_ms / 1000
            self._draining += 1
            try:
                while True:
                    now = time.monotonic()
                    outstanding = self._inflight > 0 or now < drain_until
                    if self._open or not outstanding or now >= deadline:
                        break
                    wake = deadline if self._inflight else min(deadline, drain_until)
                    self._cond.wait(wake - now)
                if self._inflight == 0 and time.monotonic() >= drain_until:
                    return PauseOutcome.PAUSED  # even when an unpause opened the gate meanwhile
                self._open = True  # whoever closed it
                self._cond.notify_all()
                return PauseOutcome.TIMED_OUT
            finally:
                self._draining -= 1
                self._cond.notify_all()

    def unpause(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def check_paused(self) -> bool:
        with self._cond:
            return not self._open

    def reset(self) -> None:
        """What a restart does to the gate: open, nothing in flight."""
        with self._cond:
            self._open = True
            self._inflight = 0
            self._cond.notify_all()

    @property
    def inflight(self) -> int:
        with self._cond:
            return self._inflight

    @property
    def held(self) -> int:
        """Requests waiting at the closed gate."""
        with self._cond:
            return self._held

    @property
    def pausing(self) -> bool:
        """A waiting pause is in progress (draining, or holding the gate for its drain)."""
        with self._cond:
            return self._pausing or self._draining > 0


# --- the gRPC server -------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerTls:
    cert_chain_pem: bytes
    private_key_pem: bytes


@dataclass(frozen=True)
class PauseCall:
    wait_outstanding: bool
    max_pause_wait_ms: int | None


_CODES: dict[Reason, grpc.StatusCode] = {
    Reason.PAUSE_IN_PROGRESS: grpc.StatusCode.ABORTED,
    Reason.GATE_OPEN: grpc.StatusCode.ABORTED,
    Reason.TIMED_OUT: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.TIMED_OUT_STILL_PAUSED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Reason.DEADLINE: grpc.StatusCode.DEADLINE_EXCEEDED,
    Reason.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.OTHER: grpc.StatusCode.INTERNAL,
}

# Outcomes a 3.14.0 server reports with ErrorInfo; the rest only ever come as a plain status.
_GATE_REASONS = frozenset(
    {Reason.PAUSE_IN_PROGRESS, Reason.GATE_OPEN, Reason.TIMED_OUT, Reason.TIMED_OUT_STILL_PAUSED}
)
# Outcomes only 3.14.0 has: 3.12.3 / 3.13.0 answer every failed drain with TIMED_OUT's status.
_ERROR_INFO_ONLY = frozenset(
    {Reason.PAUSE_IN_PROGRESS, Reason.GATE_OPEN, Reason.TIMED_OUT_STILL_PAUSED}
)

_MESSAGES: dict[Reason, str] = {
    Reason.PAUSE_IN_PROGRESS: "pause not started: another pause request is in progress",
    Reason.GATE_OPEN: "pause not completed: the gate was reopened by a concurrent unpause",
    Reason.TIMED_OUT: "in-flight requests did not drain in time; the gate has been reopened",
    Reason.TIMED_OUT_STILL_PAUSED: (
        "in-flight requests did not drain in time; the gate stays closed by an earlier pause"
    ),
    Reason.UNAVAILABLE: "node unavailable (fault knob)",
    Reason.DEADLINE: "deadline exceeded (fault knob)",
    Reason.INVALID_ARGUMENT: "invalid argument (fault knob)",
    Reason.OTHER: "internal error (fault knob)",
}


class _Status(NamedTuple):
    """A grpc.Status for context.abort_with_status (grpcio-status is not installed)."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, bytes], ...]


grpc.Status.register(_Status)


class _Servicer(scalar_admin_pb2_grpc.AdminServicer):
    def __init__(self, node: GateServer) -> None:
        self._node = node

    def Pause(self, request: Any, context: grpc.ServicerContext) -> empty_pb2.Empty:
        node = self._node
        max_ms = request.max_pause_wait_time if request.HasField("max_pause_wait_time") else None
        node._record("Pause", PauseCall(request.wait_outstanding, max_ms))
        refuse = node.refuse_with
        if refuse is not None:
            node._fail(context, refuse, _MESSAGES[refuse])
        late_ms = node.late_pause_ms
        if late_ms is not None:
            # The caller hears a failure now; the request still reaches the gate later (a slow
            # network or a proxy that gave up on the call but had already passed it on).
            node._pause_later(late_ms, request.wait_outstanding, max_ms)
            node._fail(context, node.late_pause_error, _MESSAGES[node.late_pause_error])
        if (
            not node.release.legacy
            and request.wait_outstanding
            and max_ms is not None
            and max_ms <= 0
        ):
            # Like the real server: a plain status, no ErrorInfo (no pause was attempted).
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"max_pause_wait_time must be greater than 0 ms, but was {max_ms} ms",
            )
        outcome = node.gate.pause(request.wait_outstanding, max_ms, min_drain_ms=node.slow_drain_ms)
        if outcome is not PauseOutcome.PAUSED:
            reason = Reason(outcome.value)
            node._fail(context, reason, _MESSAGES[reason])
        return empty_pb2.Empty()

    def Unpause(self, request: Any, context: grpc.ServicerContext) -> empty_pb2.Empty:
        node = self._node
        node._record("Unpause")
        if node._take_dropped_unpause():
            context.abort(grpc.StatusCode.UNAVAILABLE, "unpause dropped (fault knob)")
        node.gate.unpause()
        return empty_pb2.Empty()

    def CheckPaused(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._node._record("CheckPaused")
        if self._node.slow_check_ms:
            time.sleep(self._node.slow_check_ms / 1000)
        return scalar_admin_pb2.CheckPausedResponse(paused=self._node.gate.check_paused())


# Every GateServer serving right now: the suite's end checks that none is left (hygiene.py).
LIVE: set[GateServer] = set()


class GateServer:
    """One admin node on loopback. Starts on construction (``autostart=False`` to defer).

    Fault knobs, settable at any time:
      slow_drain_ms       a waiting Pause drains for at least this long
      slow_check_ms       CheckPaused answers after this long (a slow or overloaded node)
      refuse_with         answer every Pause with this Reason (the gate is not touched)
      drop_unpause_calls  fail the next N Unpause calls with UNAVAILABLE (gate stays as it is)
      late_pause_ms       answer every Pause at once with ``late_pause_error`` (default DEADLINE,
                          a plain status), and apply that Pause to the gate this many ms later;
                          each late outcome is appended to ``late_pauses``

    ``release`` (or the given gate's) decides how the gate behaves and how a failed pause is
    answered (module docstring); ``refuse_with`` and ``late_pause_error`` refuse an outcome that
    release never sends.
    """

    def __init__(
        self,
        gate: Gate | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        tls: ServerTls | None = None,
        *,
        release: Release | str | None = None,
        max_workers: int = 8,
        autostart: bool = True,
    ) -> None:
        if gate is not None and release is not None and Release(release) is not gate.release:
            raise ValueError(f"release {release} given for a gate of release {gate.release}")
        self.gate = gate if gate is not None else Gate(release if release is not None else LATEST)
        self.host = host
        self.port = port
        self.tls = tls
        self.slow_drain_ms = 0
        self.slow_check_ms = 0
        self._refuse_with: Reason | None = None
        self.drop_unpause_calls = 0
        self.late_pause_ms: int | None = None
        self._late_pause_error: Reason = Reason.DEADLINE
        self.late_pauses: list[PauseOutcome] = []
        self._late_timers: list[threading.Timer] = []
        self.restarts = 0
        self.pause_calls: list[PauseCall] = []
        self._max_workers = max_workers
        self._calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        if autostart:
            self.start()

    @property
    def release(self) -> Release:
        return self.gate.release

    @property
    def refuse_with(self) -> Reason | None:
        return self._refuse_with

    @refuse_with.setter
    def refuse_with(self, reason: Reason | None) -> None:
        self._refuse_with = None if reason is None else self._answerable(reason)

    @property
    def late_pause_error(self) -> Reason:
        return self._late_pause_error

    @late_pause_error.setter
    def late_pause_error(self, reason: Reason) -> None:
        self._late_pause_error = self._answerable(reason)

    def _answerable(self, reason: Reason) -> Reason:
        reason = Reason(reason)
        if self.release.legacy and reason in _ERROR_INFO_ONLY:
            raise ValueError(
                f"a {self.release} node never answers {reason} (that outcome came with 3.14.0)"
            )
        return reason

    @property
    def target(self) -> Target:
        return Target(host=self.host, port=self.port)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def calls(self) -> dict[str, int]:
        """Calls received per method ("Pause", "Unpause", "CheckPaused"), refused ones too."""
        with self._lock:
            return dict(self._calls)

    def start(self) -> GateServer:
        """Serve (again) on the same port; the gate keeps its state."""
        if self._server is not None:
            return self
        executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="gate-server")
        # no SO_REUSEPORT: a second server on a busy port must fail, not share it silently
        server = grpc.server(executor, options=[("grpc.so_reuseport", 0)])
        scalar_admin_pb2_grpc.add_AdminServicer_to_server(_Servicer(self), server)
        host = f"[{self.host}]" if ":" in self.host else self.host
        address = f"{host}:{self.port}"
        try:
            if self.tls is None:
                bound = server.add_insecure_port(address)
            else:
                creds = grpc.ssl_server_credentials(
                    [(self.tls.private_key_pem, self.tls.cert_chain_pem)]
                )
                bound = server.add_secure_port(address, creds)
        except RuntimeError as exc:
            executor.shutdown(wait=False)
            raise RuntimeError(f"GateServer cannot bind {address}: {exc}") from exc
        if not bound:
            executor.shutdown(wait=False)
            raise RuntimeError(f"GateServer cannot bind {address}")
        self.port = bound
        server.start()
        self._server, self._executor = server, executor
        LIVE.add(self)
        return self

    def stop(self) -> None:
        """Crash: the port stops answering at once; calls in progress are cancelled (late
        pauses not yet applied too: they die with the node)."""
        with self._lock:
            timers, self._late_timers = self._late_timers, []
        for timer in timers:
            timer.cancel()
        server, executor = self._server, self._executor
        self._server = self._executor = None
        LIVE.discard(self)
        if server is not None:
            server.stop(grace=None).wait()
        if executor is not None:
            executor.shutdown(wait=False)

    def restart_unpaused(self) -> None:
        """A node that restarted: same port, the gate open, nothing in flight."""
        self.stop()
        self.gate.reset()
        self.restarts += 1
        self.start()

    def close(self) -> None:
        """Stop for good and release anything blocked on the gate (handlers, held writers)."""
        self.stop()
        self.gate.reset()

    def __enter__(self) -> GateServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- used by the servicer ------------------------------------------------------------

    def _record(self, method: str, pause_call: PauseCall | None = None) -> None:
        with self._lock:
            self._calls[method] += 1
            if pause_call is not None:
                self.pause_calls.append(pause_call)

    def _pause_later(self, delay_ms: int, wait_outstanding: bool, max_ms: int | None) -> None:
        def apply() -> None:
            outcome = self.gate.pause(wait_outstanding, max_ms, min_drain_ms=self.slow_drain_ms)
            with self._lock:
                self.late_pauses.append(outcome)

        timer = threading.Timer(delay_ms / 1000, apply)
        timer.name, timer.daemon = f"gate-server-{self.port}-late-pause", True
        with self._lock:
            self._late_timers.append(timer)
        timer.start()

    def _take_dropped_unpause(self) -> bool:
        with self._lock:
            if self.drop_unpause_calls > 0:
                self.drop_unpause_calls -= 1
                return True
            return False

    def _fail(self, context: grpc.ServicerContext, reason: Reason, message: str) -> None:
        """Abort the call with reason's status; raises (grpc's abort does)."""
        code = _CODES[reason]
        if self.release.legacy and reason is Reason.TIMED_OUT:
            # new StatusRuntimeException(Status.FAILED_PRECONDITION): no description. (Python's
            # gRPC still sends an empty grpc-message, which Java reads as "" rather than null.)
            context.abort(code, "")
        if self.release.legacy or reason not in _GATE_REASONS:
            context.abort(code, message)
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=reason.value, domain=ERROR_DOMAIN))
        status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
        context.abort_with_status(
            _Status(code, message, (("grpc-status-details-bin", status.SerializeToString()),))
        )


class GateCluster(NamedTuple):
    """Several nodes of one component; ``servers, targets = start_gate_cluster(3)``."""

    servers: list[GateServer]
    targets: list[Target]

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def __enter__(self) -> GateCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start_gate_cluster(
    n: int, *, release: Release | str = LATEST, tls: ServerTls | None = None
) -> GateCluster:
    """Start n independent nodes of one release on free loopback ports (each has its own Gate)."""
    servers: list[GateServer] = []
    try:
        for _ in range(n):
            servers.append(GateServer(tls=tls, release=release))
    except BaseException:
        for server in servers:
            server.close()
        raise
    return GateCluster(servers, [s.target for s in servers])
