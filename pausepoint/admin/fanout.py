"""Run one call per key in parallel and keep each outcome with the moment it happened.

The pause logic builds its timeline from these moments: the window opens when the LAST node
confirmed Pause. A failure is kept as a value, never raised, so one bad node cannot hide the
outcome on the others.

``call_all`` runs any callable, one thread per key. ``fan_out`` runs admin calls: through the
client's own ``call_many`` when it has one (``GrpcAdminClient``: every call of the fan-out issued
at once from one event loop, no thread per call), else through ``call_all``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

from pausepoint.admin.client import AdminClient
from pausepoint.errors import InternalError
from pausepoint.site import Target

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

# One thread per node, so every Pause drains at the same time: with fewer threads than nodes the
# later nodes start their drain only after earlier ones finished theirs, and the write stall grows
# by whole drains (bench/fanout.py: 100 nodes, 64 threads). The calls mostly wait on the network.
DEFAULT_MAX_WORKERS = 1024


@dataclass(frozen=True)
class Result(Generic[T]):
    """One call's outcome: ``value`` or ``error``, with wall-clock (UTC) and monotonic times."""

    value: T | None
    error: Exception | None
    started_at: datetime
    started_mono: float
    returned_at: datetime
    returned_mono: float

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def elapsed_s(self) -> float:
        return self.returned_mono - self.started_mono

    def unwrap(self) -> T:
        """The value, or raise the call's error."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


def _timed(fn: Callable[[K], T], key: K) -> Result[T]:
    started_at, started_mono = datetime.now(UTC), time.monotonic()
    try:
        value = fn(key)
    except Exception as exc:  # kept per key; BaseException (KeyboardInterrupt) propagates
        return Result(None, exc, started_at, started_mono, datetime.now(UTC), time.monotonic())
    # Read the clocks the instant the call returned, before any other bookkeeping.
    returned_mono = time.monotonic()
    returned_at = datetime.now(UTC)
    return Result(value, None, started_at, started_mono, returned_at, returned_mono)


def call_all(
    targets: Iterable[K], fn: Callable[[K], T], max_workers: int | None = None
) -> dict[K, Result[T]]:
    """Call ``fn(target)`` for every target in parallel; results keyed by target, input order.

    Every call runs to completion (its own timeout bounds it). ``max_workers`` defaults to one
    thread per target, up to DEFAULT_MAX_WORKERS.
    """
    keys = list(targets)
    if len(set(keys)) != len(keys):
        raise InternalError("call_all needs distinct targets; one is listed twice")
    if max_workers is not None and max_workers < 1:
        raise InternalError(f"max_workers must be >= 1, got {max_workers}")
    if not keys:
        return {}
    workers = max_workers or min(len(keys), DEFAULT_MAX_WORKERS)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pausepoint-call") as pool:
        futures = [pool.submit(_timed, fn, key) for key in keys]
        return {key: future.result() for key, future in zip(keys, futures, strict=True)}


@dataclass(frozen=True)
class AdminCall:
    """One admin call of a fan-out: ``AdminClient.<method>(target, **kwargs)``."""

    method: Literal["pause", "unpause", "check_paused"]
    target: Target
    kwargs: Mapping[str, Any]

    def run(self, client: AdminClient) -> Any:
        return getattr(client, self.method)(self.target, **self.kwargs)


class FanOutClient(Protocol):
    """An AdminClient that issues a whole fan-out itself (GrpcAdminClient: one event loop)."""

    def call_many(
        self, calls: Sequence[AdminCall], before: Callable[[int], None] | None = None
    ) -> list[Result[Any]]: ...


def fan_out(
    client: AdminClient,
    keys: Iterable[K],
    call_of: Callable[[K], AdminCall],
    before: Callable[[K], None] | None = None,
) -> dict[K, Result[Any]]:
    """One admin call per key, all at once; ``call_all``'s contract (results keyed by key, in
    input order, each with its times; a failure kept as a value; distinct keys).

    ``before(key)`` runs just before that key's call is issued (the window's "sent" events).
    A client with ``call_many`` issues the calls itself, without a thread per call; any other
    client (the tests' fakes) gets ``call_all``.
    """
    keys = list(keys)
    if len(set(keys)) != len(keys):
        raise InternalError("fan_out needs distinct keys; one is listed twice")
    many = getattr(client, "call_many", None)
    if many is None:

        def one(key: K) -> Any:
            if before is not None:
                before(key)
            return call_of(key).run(client)

        return call_all(keys, one)
    if not keys:
        return {}
    hook = None if before is None else (lambda i: before(keys[i]))
    results = many([call_of(k) for k in keys], before=hook)
    return dict(zip(keys, results, strict=True))
