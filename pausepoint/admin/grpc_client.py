"""``AdminClient`` over gRPC: Pause, Unpause and CheckPaused on one scalar-admin endpoint.

One channel per target, created on first use and shared by every thread. A call that fails with
UNAVAILABLE retires its channel, so the next call dials afresh instead of waiting out gRPC's
reconnect backoff: that matters when a node comes back and the unpause retries must reach it.

Every call runs on ``grpc.aio`` in ONE event loop, in a thread the client owns (started on first
use, ended by ``close``). A single call from any thread waits for its result there; ``call_many``
issues a whole fan-out (one call per node, each with its own deadline) at once from that loop.
Why: a synchronous gRPC call in Python costs ~0.17 ms of CPU in the caller plus a thread per
concurrent call (~0.08 ms to start); in one loop a call costs about half that and needs no thread,
which is what bounds the write stall of a site with many nodes (BENCHMARKS.md, Fan-out).

How failures become a ``Reason``:

1. A ``google.rpc.ErrorInfo`` in the rich status (trailer ``grpc-status-details-bin``) whose domain
   is ``com.scalar.dl.admin`` (ScalarDL) or ``com.scalar.db.cluster.admin`` (ScalarDB Cluster,
   same reasons) is authoritative: its ``reason`` names the outcome. An unknown reason is OTHER.
2. Without one (older servers, or a status produced by gRPC itself) the status code decides:

   - UNAVAILABLE -> UNAVAILABLE (refused, DNS, TLS handshake, server shutting down)
   - DEADLINE_EXCEEDED -> DEADLINE: our deadline passed, the outcome on the server is unknown
   - INVALID_ARGUMENT -> INVALID_ARGUMENT
   - ABORTED -> PAUSE_IN_PROGRESS or GATE_OPEN when the description says so, else OTHER
   - FAILED_PRECONDITION -> TIMED_OUT (see below)
   - anything else -> OTHER

   FAILED_PRECONDITION without ErrorInfo is read as TIMED_OUT ("the server reopened the gate").
   Only servers that predate ErrorInfo send it bare, and those reopen the gate unconditionally
   when the drain times out (even a gate an earlier pause had closed): they have no "still
   paused" outcome, so there is no foreign pause left to protect. Reading it as
   TIMED_OUT_STILL_PAUSED would make the caller skip its unpause; if the reading were wrong,
   production writes would stay blocked, while a needless unpause of an open gate changes
   nothing. ScalarDL's own drain-timeout answer before ErrorInfo carried no description at all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from pausepoint.admin._generated import scalar_admin_pb2, scalar_admin_pb2_grpc
from pausepoint.admin.client import AdminCallError, Reason
from pausepoint.admin.fanout import AdminCall, Result
from pausepoint.errors import ConfigError, InternalError
from pausepoint.secrets import SecretRef, SecretResolver
from pausepoint.site import Target, TlsSettings

log = logging.getLogger(__name__)

ERROR_DOMAINS = frozenset({"com.scalar.dl.admin", "com.scalar.db.cluster.admin"})
_STATUS_DETAILS_KEY = "grpc-status-details-bin"

# Admin endpoints see a handful of calls per backup; keep reconnect backoff short so a node that
# came back is reachable within one unpause retry, not after gRPC's default 1 s .. 120 s backoff.
# Not grpc.min_reconnect_backoff_ms: it is also the connect timeout, which must stay generous.
# Each channel keeps its own connections (local subchannel pool): a channel opened after one was
# retired dials afresh instead of sharing the retired one's connection and its backoff (an aio
# channel's close runs later, in the loop, so the two can overlap).
_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.use_local_subchannel_pool", 1),
)

_HINTS: dict[Reason, str] = {
    Reason.PAUSE_IN_PROGRESS: "another pause on this node is in progress; retry",
    Reason.GATE_OPEN: "a concurrent unpause reopened the gate; retry",
    Reason.TIMED_OUT: (
        "in-flight requests did not finish in time and the node reopened its gate; retry when "
        "the load is lower or raise pause.drain_timeout_ms"
    ),
    Reason.TIMED_OUT_STILL_PAUSED: (
        "the node stays paused under an EARLIER pause that another caller owns; do not unpause "
        "it to recover, find who paused it"
    ),
    Reason.UNAVAILABLE: (
        "the node is unreachable: check that it runs, that host:port is its admin port "
        "(Ledger default 50053) and, with TLS, the CA certificate and authority"
    ),
    Reason.DEADLINE: (
        "no answer within the call deadline; the call may still take effect on the node "
        "(raise pause.call_timeout_ms if the node is just slow)"
    ),
    Reason.INVALID_ARGUMENT: "the node rejected the request's arguments",
}

T = TypeVar("T")


@dataclass
class _Channel:
    channel: grpc.aio.Channel
    stub: scalar_admin_pb2_grpc.AdminStub
    users: int = 0
    retired: bool = False
    closed: bool = False

    def idle_retired(self) -> bool:
        """True once: retired and no call left on it, so it is to be closed now."""
        # Calls in flight on a retired channel finish normally; the last one out closes it.
        if self.retired and self.users == 0 and not self.closed:
            self.closed = True
            return True
        return False


class GrpcAdminClient:
    """Thread-safe ``AdminClient`` for scalar-admin endpoints, with ``call_many`` for fan-outs.

    ``tls`` applies to every target unless ``set_tls`` names other settings for some targets
    (components of one site may differ). Close the client when done (it ends the client's event
    loop thread); it is a context manager.

    Example::

        with GrpcAdminClient() as client:
            client.pause(Target.parse("10.0.0.5:50053"), wait_outstanding=True,
                         max_pause_wait_ms=30_000, timeout_s=35)
    """

    def __init__(
        self,
        tls: TlsSettings | None = None,
        *,
        options: Iterable[tuple[str, Any]] = (),
        resolve: Callable[[SecretRef], Any] | None = None,
    ) -> None:
        self._default_tls = tls
        # Resolves a CA given by reference (tls.ca_pem); the environment alone by default.
        self._resolve = resolve or SecretResolver()
        self._tls: dict[Target, TlsSettings | None] = {}
        self._options = (*_CHANNEL_OPTIONS, *options)
        self._channels: dict[Target, _Channel] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._closing: set[asyncio.Task[None]] = set()  # retired channels being closed

    @classmethod
    def for_components(
        cls,
        tls_by_component: Mapping[str, TlsSettings | None],
        nodes: Mapping[str, Iterable[Target]] | None = None,
        resolve: Callable[[SecretRef], Any] | None = None,
    ) -> GrpcAdminClient:
        """One client for all components of a site.

        When every component uses the same TLS settings (the usual case) they become the
        default. When they differ, ``nodes`` (component -> its targets) says which settings a
        target gets; discovered targets can be added later with ``set_tls``.
        """
        distinct = set(tls_by_component.values())
        if len(distinct) <= 1:
            return cls(next(iter(distinct), None), resolve=resolve)
        if nodes is None:
            raise ConfigError(
                "the components of this site use different admin TLS settings ("
                + ", ".join(sorted(tls_by_component))
                + "): pass their targets to GrpcAdminClient.for_components(tls, nodes) so each "
                "node gets its component's settings"
            )
        client = cls(None, resolve=resolve)
        for component, targets in nodes.items():
            client.set_tls(targets, tls_by_component.get(component))
        return client

    def set_tls(self, targets: Iterable[Target], tls: TlsSettings | None) -> None:
        """Use ``tls`` (None: plaintext) for these targets; a cached channel is replaced."""
        with self._lock:
            for target in targets:
                self._tls[target] = tls
                entry = self._channels.pop(target, None)
                if entry is not None:
                    self._retire_locked(entry)

    # --- AdminClient ---------------------------------------------------------------------

    def pause(
        self,
        target: Target,
        *,
        wait_outstanding: bool,
        max_pause_wait_ms: int | None,
        timeout_s: float,
    ) -> None:
        """Pause one node. With ``wait_outstanding`` the deadline must cover the drain too.

        ``max_pause_wait_ms`` None leaves the field unset (server default, 30 s); any other value
        is sent as given, and the server decides whether it is valid.
        """
        self._submit(
            self._pause(
                target,
                wait_outstanding=wait_outstanding,
                max_pause_wait_ms=max_pause_wait_ms,
                timeout_s=timeout_s,
            )
        )

    def unpause(self, target: Target, *, timeout_s: float) -> None:
        self._submit(self._unpause(target, timeout_s=timeout_s))

    def check_paused(self, target: Target, *, timeout_s: float) -> bool:
        return self._submit(self._check_paused(target, timeout_s=timeout_s))

    def call_many(
        self, calls: Sequence[AdminCall], before: Callable[[int], None] | None = None
    ) -> list[Result[Any]]:
        """Issue every call at once from the client's event loop; one ``Result`` per call, in
        order (``fanout.call_all``'s contract: a failure is kept as the result's error).

        ``before(i)`` runs in the loop just before call i is issued. Each call has its own
        deadline (its ``timeout_s``), so one slow node does not hold up the others' outcomes.
        """
        if not calls:
            return []
        return self._submit(self._call_many(list(calls), before))

    def close(self) -> None:
        """Close every channel (calls still running on them are cancelled) and end the loop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            entries = list(self._channels.values())
            self._channels.clear()
            for entry in entries:
                entry.retired = True
                entry.closed = True
            loop, thread = self._loop, self._loop_thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(entries), loop).result(timeout=10)
        except Exception as exc:  # closing must not fail the caller's cleanup
            log.warning("closing the admin client's channels failed: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()

    def __enter__(self) -> GrpcAdminClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the event loop ------------------------------------------------------------------

    def _submit(self, coro: Awaitable[T]) -> T:
        """Run ``coro`` on the client's loop and wait for its result in the calling thread."""
        with self._lock:
            # Submitting under the lock: close() cannot stop the loop between the check and
            # the submission, which would leave this caller waiting for ever.
            if self._closed:
                coro.close()  # type: ignore[attr-defined]
                raise InternalError("this GrpcAdminClient is closed; build a new one")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._loop_thread = threading.Thread(
                    target=self._loop.run_forever, name="pausepoint-admin-loop", daemon=True
                )
                self._loop_thread.start()
            if threading.current_thread() is self._loop_thread:
                coro.close()  # type: ignore[attr-defined]
                raise InternalError("GrpcAdminClient called from its own event loop")
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise InternalError("this GrpcAdminClient was closed during the call") from None

    async def _shutdown(self, entries: list[_Channel]) -> None:
        current = asyncio.current_task()
        await asyncio.gather(*(e.channel.close() for e in entries), return_exceptions=True)
        await asyncio.gather(*self._closing, return_exceptions=True)
        # The calls cancelled by closing their channels, and calls submitted before close()
        # that find the client closed, end on their own; anything left after a grace period is
        # cancelled so that no caller waits for ever.
        pending = [t for t in asyncio.all_tasks() if t is not current]
        if pending:
            _, left = await asyncio.wait(pending, timeout=2)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    async def _call_many(
        self, calls: list[AdminCall], before: Callable[[int], None] | None
    ) -> list[Result[Any]]:
        return await asyncio.gather(*(self._timed(i, c, before) for i, c in enumerate(calls)))

    async def _timed(
        self, i: int, call: AdminCall, before: Callable[[int], None] | None
    ) -> Result[Any]:
        started_at, started_mono = datetime.now(UTC), time.monotonic()
        try:
            if before is not None:
                before(i)
            if call.method == "pause":
                value: Any = await self._pause(call.target, **call.kwargs)
            elif call.method == "unpause":
                value = await self._unpause(call.target, **call.kwargs)
            elif call.method == "check_paused":
                value = await self._check_paused(call.target, **call.kwargs)
            else:
                raise InternalError(f"unknown admin call {call.method!r}")
        except Exception as exc:  # kept per call, as call_all does
            return Result(None, exc, started_at, started_mono, datetime.now(UTC), time.monotonic())
        # Read the clocks the instant the call returned, before any other bookkeeping.
        returned_mono = time.monotonic()
        returned_at = datetime.now(UTC)
        return Result(value, None, started_at, started_mono, returned_at, returned_mono)

    # --- the calls (in the loop) ---------------------------------------------------------

    async def _pause(
        self,
        target: Target,
        *,
        wait_outstanding: bool,
        max_pause_wait_ms: int | None,
        timeout_s: float,
    ) -> None:
        request = scalar_admin_pb2.PauseRequest(wait_outstanding=wait_outstanding)
        if max_pause_wait_ms is not None:
            request.max_pause_wait_time = max_pause_wait_ms
        await self._call(target, "Pause", lambda stub: stub.Pause, request, timeout_s)

    async def _unpause(self, target: Target, *, timeout_s: float) -> None:
        await self._call(target, "Unpause", lambda stub: stub.Unpause, empty_pb2.Empty(), timeout_s)

    async def _check_paused(self, target: Target, *, timeout_s: float) -> bool:
        response = await self._call(
            target, "CheckPaused", lambda stub: stub.CheckPaused, empty_pb2.Empty(), timeout_s
        )
        return bool(response.paused)

    async def _call(
        self,
        target: Target,
        method: str,
        pick: Callable[[scalar_admin_pb2_grpc.AdminStub], Callable[..., Awaitable[Any]]],
        request: Any,
        timeout_s: float,
    ) -> Any:
        if not timeout_s > 0:
            raise InternalError(f"timeout_s must be > 0, got {timeout_s!r}")
        entry = self._acquire(target)
        try:
            return await pick(entry.stub)(request, timeout=timeout_s)
        except grpc.RpcError as err:
            error = to_admin_error(target, method, err)
            if error.reason is Reason.UNAVAILABLE:
                with self._lock:
                    if self._channels.get(target) is entry:
                        del self._channels[target]
                    self._retire_locked(entry)
            raise error from None
        except asyncio.CancelledError:
            if not entry.closed:
                raise
            # Its channel was closed under it (close(), or a retired channel): a sync call
            # reports CANCELLED; an aio call is cancelled instead. Keep it a per-call failure.
            raise AdminCallError(
                target, method, Reason.OTHER, "CANCELLED", "the admin client's channel was closed"
            ) from None
        finally:
            self._release(entry)

    def _acquire(self, target: Target) -> _Channel:
        with self._lock:
            if self._closed:
                raise InternalError("this GrpcAdminClient is closed; build a new one")
            entry = self._channels.get(target)
            if entry is None:
                channel = self._open_channel(target, self._tls.get(target, self._default_tls))
                entry = _Channel(channel, scalar_admin_pb2_grpc.AdminStub(channel))
                self._channels[target] = entry
            entry.users += 1
            return entry

    def _release(self, entry: _Channel) -> None:
        with self._lock:
            entry.users -= 1
            if entry.idle_retired():
                self._close_channel(entry.channel)

    def _retire_locked(self, entry: _Channel) -> None:
        entry.retired = True
        if entry.idle_retired():
            self._close_channel(entry.channel)

    def _close_channel(self, channel: grpc.aio.Channel) -> None:
        """Close a retired channel on the loop (from the loop or from any other thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def start() -> None:
            task = loop.create_task(channel.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

        if threading.current_thread() is self._loop_thread:
            start()
        else:
            loop.call_soon_threadsafe(start)

    def _open_channel(self, target: Target, tls: TlsSettings | None) -> grpc.aio.Channel:
        address = str(target)
        if tls is None:
            log.debug("opening plaintext admin channel to %s", address)
            return grpc.aio.insecure_channel(address, options=self._options)
        ca = root_certificates(tls, address, self._resolve)
        options = list(self._options)
        if tls.authority:
            # The name the server certificate must carry, when it differs from the dialled host.
            options += [
                ("grpc.ssl_target_name_override", tls.authority),
                ("grpc.default_authority", tls.authority),
            ]
        log.debug(
            "opening TLS admin channel to %s (authority %s, %s)",
            address,
            tls.authority,
            tls.trust(),
        )
        return grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(ca), options=options)


# --- error mapping ---------------------------------------------------------------------------

# A failed call: a sync call's error is a grpc.Call, an aio call's an AioRpcError (same methods).
_CALL_ERRORS = (grpc.Call, grpc.aio.AioRpcError)


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The scalar-admin ErrorInfo of a failed call, or None when the server sent none."""
    call = isinstance(err, _CALL_ERRORS)
    trailers = err.trailing_metadata() if call else None  # type: ignore[attr-defined]
    code = err.code() if call else None  # type: ignore[attr-defined]
    for key, value in trailers or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:
            return None
        # A rich status that disagrees with the call's own code is not to be trusted.
        if code is not None and status.code != code.value[0]:
            return None
        for detail in status.details:
            if not detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                continue
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain in ERROR_DOMAINS:
                return info
    return None


def _reason_from_code(code: grpc.StatusCode, description: str) -> Reason:
    if code is grpc.StatusCode.UNAVAILABLE:
        return Reason.UNAVAILABLE
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return Reason.DEADLINE
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return Reason.INVALID_ARGUMENT
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        return Reason.TIMED_OUT  # see the module docstring
    if code is grpc.StatusCode.ABORTED:
        text = description.lower()
        if "in progress" in text:
            return Reason.PAUSE_IN_PROGRESS
        if "concurrent unpause" in text:
            return Reason.GATE_OPEN
    return Reason.OTHER


def to_admin_error(target: Target, method: str, err: grpc.RpcError) -> AdminCallError:
    """Turn a failed gRPC call into an AdminCallError with its Reason and an operator hint."""
    if isinstance(err, _CALL_ERRORS):
        code = err.code()  # type: ignore[attr-defined]
        description = err.details() or ""  # type: ignore[attr-defined]
    else:  # not raised by grpc's own stubs, but keep the mapping total
        code, description = grpc.StatusCode.UNKNOWN, str(err)
    info = error_info(err)
    if info is not None:
        try:
            reason = Reason(info.reason)
        except ValueError:
            reason = Reason.OTHER
            description = f"{description} (server reason {info.reason})"
    else:
        reason = _reason_from_code(code, description)
    hint = _HINTS.get(reason)
    detail = f"{description or 'no description'}; {hint}" if hint else description
    return AdminCallError(target, method, reason, code.name, detail)


# Where OpenSSL-based tools look for the system's trusted CAs when nothing else says so.
_SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, Fedora
    "/etc/ssl/cert.pem",  # macOS, BSD
)


def system_trust_store() -> Path | None:
    """The system's CA bundle: ``SSL_CERT_FILE`` when set, else OpenSSL's default file, else a
    distribution's usual path; None when there is none (gRPC then uses its own roots)."""
    given = os.environ.get("SSL_CERT_FILE")
    if given:
        return Path(given)
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, *_SYSTEM_BUNDLES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def root_certificates(
    tls: TlsSettings, address: str, resolve: Callable[[SecretRef], Any]
) -> bytes | None:
    """The PEM roots that verify a node's certificate: the CA file, the CA text by reference,
    or the system trust store (as scalar-admin's --tls)."""
    if tls.ca_pem is not None:
        secret = resolve(tls.ca_pem)
        text = secret.get_secret_value() if secret is not None else ""
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise ConfigError(
                f"the {tls.ca_pem.describe()} (targets.tls.ca_pem, for the admin endpoint "
                f"{address}) holds no PEM certificate ('-----BEGIN CERTIFICATE-----'); put the "
                "CA's PEM text there"
            )
        return text.encode()
    path, where = tls.ca_cert, "targets.tls.ca_cert in the site file"
    if path is None:
        path = system_trust_store()
        if path is None:
            return None
        where = "SSL_CERT_FILE, or give targets.tls.ca_cert in the site file"
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the CA certificate {path} for the admin endpoint {address}: "
            f"{exc.strerror}; fix {where}"
        ) from None
