"""Which restore points a point-in-time store can restore NOW.

A point on a PITR store is restorable only once the store's latest restorable time has passed
the point's time (its WAL or binary logs are archived that far; a cloud provider's PITR has
caught up) and until its restorable window moves past it (retention). Both move with time, so
the answer is asked of the stores each time: ``Store.check_restorable`` says it (and why not).
Snapshot stores restore whatever their intact artifacts hold: they do not count here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from pausepoint.catalog.manifest import RestorePoint
from pausepoint.errors import PitrNotYetRestorableError, PitrWindowError
from pausepoint.stores.base import Store, StoreCapture

State = Literal["restorable", "not_yet", "expired", "unknown"]


@dataclass(frozen=True)
class StoreReadiness:
    store: str
    state: State
    detail: str = ""  # why not, in the store's words


@dataclass(frozen=True)
class PointReadiness:
    point_id: str
    stores: tuple[StoreReadiness, ...]  # PITR stores only

    @property
    def state(self) -> State | None:
        """The worst of its PITR stores' states; None: the point has no PITR store."""
        if not self.stores:
            return None
        for state in ("expired", "unknown", "not_yet"):
            if any(s.state == state for s in self.stores):
                return state  # type: ignore[return-value]
        return "restorable"

    @property
    def restorable(self) -> bool:
        return self.state in (None, "restorable")

    def label(self) -> str:
        """For `points list`: yes, not yet, no (left the window), ? (could not ask), -."""
        return {
            None: "-",
            "restorable": "yes",
            "not_yet": "not yet",
            "expired": "no",
            "unknown": "?",
        }[self.state]


def store_readiness(store: Store, capture: StoreCapture) -> StoreReadiness:
    try:
        store.check_restorable(capture)
    except PitrNotYetRestorableError as exc:
        return StoreReadiness(capture.name, "not_yet", str(exc))
    except PitrWindowError as exc:
        return StoreReadiness(capture.name, "expired", str(exc))
    except Exception as exc:
        return StoreReadiness(capture.name, "unknown", f"{type(exc).__name__}: {exc}")
    return StoreReadiness(capture.name, "restorable")


def point_readiness(point: RestorePoint, stores: Mapping[str, Store]) -> PointReadiness:
    """``stores``: the site's stores by name (opened from the LIVE site's configs: a store's
    restorable window is the source's, whatever the restore target)."""
    found = []
    for comp in point.components.values():
        for capture in comp.stores:
            if capture.pitr_timestamp is None:
                continue
            store = stores.get(capture.name)
            if store is None:
                found.append(StoreReadiness(capture.name, "unknown", "not in the site file now"))
            else:
                found.append(store_readiness(store, capture))
    return PointReadiness(point.id, tuple(found))


def wait_restorable(
    check: Callable[[], None],
    wait_s: float,
    *,
    poll_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Run ``check`` (a store's check_restorable) until it passes; while it says "not yet",
    try again every ``poll_s`` for up to ``wait_s`` seconds. Returns the seconds waited; the
    last PitrNotYetRestorableError, saying how long it waited, when time ran out."""
    start = time.monotonic()
    while True:
        try:
            check()
            return time.monotonic() - start
        except PitrNotYetRestorableError as exc:
            waited = time.monotonic() - start
            if waited >= wait_s:
                if wait_s > 0:
                    raise PitrNotYetRestorableError(
                        f"{exc} (waited {waited:.0f} s for it, the limit)"
                    ) from None
                raise
            sleep(min(poll_s, wait_s - waited))
