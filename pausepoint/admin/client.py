"""The admin client protocol: Pause, Unpause and CheckPaused on one node.

``pausepoint.window`` talks to nodes only through ``AdminClient``; the gRPC implementation is
``pausepoint.admin.grpc_client.GrpcAdminClient``. Failures are ``AdminCallError`` with a
``reason`` read from google.rpc.ErrorInfo when the server sends one, else derived from the status.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from pausepoint.site import Target


class Reason(StrEnum):
    PAUSE_IN_PROGRESS = "PAUSE_IN_PROGRESS"  # lost a race with another admin call; retry
    GATE_OPEN = "GATE_OPEN"  # lost a race with another admin call; retry
    TIMED_OUT = "TIMED_OUT"  # drain did not finish in time; the server reopened the gate
    TIMED_OUT_STILL_PAUSED = "TIMED_OUT_STILL_PAUSED"  # gate stays closed under an earlier pause
    UNAVAILABLE = "UNAVAILABLE"  # node unreachable (connection refused, DNS, TLS handshake)
    DEADLINE = "DEADLINE"  # our per-call deadline passed; outcome unknown
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    OTHER = "OTHER"


class AdminCallError(Exception):
    """One admin call on one node failed."""

    def __init__(self, target: Target, method: str, reason: Reason, code: str, detail: str):
        self.target = target
        self.method = method
        self.reason = reason
        self.code = code  # grpc.StatusCode name, e.g. "UNAVAILABLE"
        self.detail = detail
        super().__init__(f"{method} on {target} failed: {reason} ({code}): {detail}")

    @property
    def retryable(self) -> bool:
        return self.reason in (Reason.PAUSE_IN_PROGRESS, Reason.GATE_OPEN, Reason.UNAVAILABLE)


class AdminClient(Protocol):
    """Calls on single nodes. Implementations are thread-safe; window.py fans out in parallel."""

    def pause(
        self,
        target: Target,
        *,
        wait_outstanding: bool,
        max_pause_wait_ms: int | None,
        timeout_s: float,
    ) -> None: ...

    def unpause(self, target: Target, *, timeout_s: float) -> None: ...

    def check_paused(self, target: Target, *, timeout_s: float) -> bool: ...

    def close(self) -> None: ...
