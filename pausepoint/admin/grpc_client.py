"""``AdminClient`` over gRPC: Pause, Unpause and CheckPaused on one scalar-admin endpoint.

One channel per target, created on first use and shared by every thread. A call that fails with
UNAVAILABLE retires its channel, so the next call dials afresh instead of waiting out gRPC's
reconnect backoff: that matters when a node comes back and the unpause retries must reach it.

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

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from pausepoint.admin._generated import scalar_admin_pb2, scalar_admin_pb2_grpc
from pausepoint.admin.client import AdminCallError, Reason
from pausepoint.errors import ConfigError, InternalError
from pausepoint.site import Target, TlsSettings

log = logging.getLogger(__name__)

ERROR_DOMAINS = frozenset({"com.scalar.dl.admin", "com.scalar.db.cluster.admin"})
_STATUS_DETAILS_KEY = "grpc-status-details-bin"

# Admin endpoints see a handful of calls per backup; keep reconnect backoff short so a node that
# came back is reachable within one unpause retry, not after gRPC's default 1 s .. 120 s backoff.
# Not grpc.min_reconnect_backoff_ms: it is also the connect timeout, which must stay generous.
_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
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
    channel: grpc.Channel
    stub: scalar_admin_pb2_grpc.AdminStub
    users: int = 0
    retired: bool = False
    closed: bool = False

    def close_if_idle(self) -> None:
        # Calls in flight on a retired channel finish normally; the last one out closes it.
        if self.retired and self.users == 0 and not self.closed:
            self.closed = True
            self.channel.close()


class GrpcAdminClient:
    """Thread-safe ``AdminClient`` for scalar-admin endpoints.

    ``tls`` applies to every target unless ``set_tls`` names other settings for some targets
    (components of one site may differ). Close the client when done; it is a context manager.

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
    ) -> None:
        self._default_tls = tls
        self._tls: dict[Target, TlsSettings | None] = {}
        self._options = (*_CHANNEL_OPTIONS, *options)
        self._channels: dict[Target, _Channel] = {}
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def for_components(
        cls,
        tls_by_component: Mapping[str, TlsSettings | None],
        nodes: Mapping[str, Iterable[Target]] | None = None,
    ) -> GrpcAdminClient:
        """One client for all components of a site.

        When every component uses the same TLS settings (the usual case) they become the
        default. When they differ, ``nodes`` (component -> its targets) says which settings a
        target gets; discovered targets can be added later with ``set_tls``.
        """
        distinct = set(tls_by_component.values())
        if len(distinct) <= 1:
            return cls(next(iter(distinct), None))
        if nodes is None:
            raise ConfigError(
                "the components of this site use different admin TLS settings ("
                + ", ".join(sorted(tls_by_component))
                + "): pass their targets to GrpcAdminClient.for_components(tls, nodes) so each "
                "node gets its component's settings"
            )
        client = cls(None)
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
        request = scalar_admin_pb2.PauseRequest(wait_outstanding=wait_outstanding)
        if max_pause_wait_ms is not None:
            request.max_pause_wait_time = max_pause_wait_ms
        self._call(target, "Pause", lambda stub: stub.Pause, request, timeout_s)

    def unpause(self, target: Target, *, timeout_s: float) -> None:
        self._call(target, "Unpause", lambda stub: stub.Unpause, empty_pb2.Empty(), timeout_s)

    def check_paused(self, target: Target, *, timeout_s: float) -> bool:
        response = self._call(
            target, "CheckPaused", lambda stub: stub.CheckPaused, empty_pb2.Empty(), timeout_s
        )
        return bool(response.paused)

    def close(self) -> None:
        """Close every channel; calls still running on them are cancelled."""
        with self._lock:
            self._closed = True
            entries = list(self._channels.values())
            self._channels.clear()
            for entry in entries:
                entry.retired = True
                entry.closed = True
        for entry in entries:
            entry.channel.close()

    def __enter__(self) -> GrpcAdminClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------

    def _call(
        self,
        target: Target,
        method: str,
        pick: Callable[[scalar_admin_pb2_grpc.AdminStub], Callable[..., T]],
        request: Any,
        timeout_s: float,
    ) -> T:
        if not timeout_s > 0:
            raise InternalError(f"timeout_s must be > 0, got {timeout_s!r}")
        entry = self._acquire(target)
        try:
            return pick(entry.stub)(request, timeout=timeout_s)
        except grpc.RpcError as err:
            error = to_admin_error(target, method, err)
            if error.reason is Reason.UNAVAILABLE:
                with self._lock:
                    if self._channels.get(target) is entry:
                        del self._channels[target]
                    self._retire_locked(entry)
            raise error from None
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
            entry.close_if_idle()

    @staticmethod
    def _retire_locked(entry: _Channel) -> None:
        entry.retired = True
        entry.close_if_idle()

    def _open_channel(self, target: Target, tls: TlsSettings | None) -> grpc.Channel:
        address = str(target)
        if tls is None:
            log.debug("opening plaintext admin channel to %s", address)
            return grpc.insecure_channel(address, options=self._options)
        try:
            ca = tls.ca_cert.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the CA certificate {tls.ca_cert} for the admin endpoint {address}: "
                f"{exc.strerror}; fix targets.tls.ca_cert in the site file"
            ) from None
        options = list(self._options)
        if tls.authority:
            # The name the server certificate must carry, when it differs from the dialled host.
            options += [
                ("grpc.ssl_target_name_override", tls.authority),
                ("grpc.default_authority", tls.authority),
            ]
        log.debug("opening TLS admin channel to %s (authority %s)", address, tls.authority)
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(ca), options=options)


# --- error mapping ---------------------------------------------------------------------------


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The scalar-admin ErrorInfo of a failed call, or None when the server sent none."""
    trailers = err.trailing_metadata() if isinstance(err, grpc.Call) else None
    code = err.code() if isinstance(err, grpc.Call) else None
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
    if isinstance(err, grpc.Call):
        code = err.code()
        description = err.details() or ""
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
