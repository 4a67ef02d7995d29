"""The lease of one backup run, enforced from inside the run's own process.

``LeaseGuard.take`` writes the lease before the first Pause and arms two daemon threads:

- a heartbeat that rewrites the lease every ``heartbeat_s`` (``Lease.heartbeat_at``): a run killed
  outright stops beating, which is how the watchdog tells it is gone even when the orchestrator
  still reports it running;
- a ``threading.Timer`` for the lease's deadline: if the window is still open then (a step hangs,
  the orchestrator stalls), it calls ``on_deadline``, which unpauses, and records what it did as
  the lease's broken reason. When the process itself is gone, the watchdog does the same.

``disarm`` stops both when the window closes. The run then ``release``s the lease, or leaves it
active when an unpause failed, so the watchdog retries. After a failed pause the run first
watches for Pause requests that take effect late: ``stop_timer`` then cancels only the timer (the
window is closed) and the heartbeat goes on until the watch ends; ``end_broken`` records a late
pause the run had to undo. Every write of the lease from this process
holds one lock, so a heartbeat never rewrites a lease this process has already ended.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from pausepoint.catalog import Catalog
from pausepoint.catalog.lease import Lease
from pausepoint.errors import InternalError

log = logging.getLogger(__name__)

# Short enough that a killed run is known gone soon after its deadline (HEARTBEAT_MISSES of
# these), long enough that a window of a few seconds writes the lease only once or twice more.
HEARTBEAT_S = 5.0

# Called by the timer at the deadline: unpause what is still paused and say what was done (the
# broken reason), or None when the window had already closed. Raising leaves the lease active.
OnDeadline = Callable[[], str | None]


class LeaseGuard:
    """Holds one run's lease from before the first Pause until the window closed."""

    def __init__(
        self,
        catalog: Catalog,
        on_deadline: OnDeadline,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.catalog = catalog
        self.heartbeat_s = heartbeat_s
        self.lease: Lease | None = None
        self.fired = False  # the deadline timer ran
        self._on_deadline = on_deadline
        self._now = now
        self._lock = threading.Lock()  # every lease write of this process
        self._ended = False
        self._stop = threading.Event()
        self._timer: threading.Timer | None = None
        self._beat: threading.Thread | None = None

    def take(self, lease: Lease) -> Lease:
        """Write the lease, then arm the heartbeat and the deadline timer.

        Raises what the catalog raises (LeaseError, CatalogError); nothing is armed then.
        """
        lease = lease.model_copy(
            update={"heartbeat_at": lease.created_at, "heartbeat_s": self.heartbeat_s}
        )
        self.lease = self.catalog.write_lease(lease)
        name = f"lease-{lease.site}-{lease.run_id}"
        delay = max(0.0, (lease.deadline - self._now()).total_seconds())
        self._timer = threading.Timer(delay, self._fire)
        self._timer.name, self._timer.daemon = f"{name}-deadline", True
        self._beat = threading.Thread(target=self._heartbeat, name=f"{name}-heartbeat", daemon=True)
        self._timer.start()
        self._beat.start()
        return self.lease

    def disarm(self) -> None:
        """The window closed: stop the heartbeat and cancel the timer. A timer already firing is
        waited for, so its record of what it did is written before the run ends the lease."""
        self._stop.set()
        timer, beat = self._timer, self._beat
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join()
        if beat is not None and beat is not threading.current_thread():
            beat.join(timeout=self.heartbeat_s)

    def stop_timer(self) -> None:
        """The window closed but the run still watches its nodes (a late Pause): cancel the
        deadline timer (waiting for one already firing), keep the heartbeat beating."""
        timer = self._timer
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join()

    def end_broken(self, reason: str) -> Lease:
        """End the lease as broken with ``reason``: the run had to undo a pause it did not mean
        to hold (a Pause that took effect late). A lease already ended keeps its record."""
        self.disarm()
        lease = self._require()
        return self._end(lambda: self.catalog.mark_broken(lease.site, lease.run_id, reason))

    def release(self) -> Lease:
        """Every node the run paused is unpaused: end the lease. Returns it as stored (a lease
        the timer or the watchdog broke stays broken)."""
        self.disarm()
        lease = self._require()
        return self._end(lambda: self.catalog.release_lease(lease.site, lease.run_id, self._now()))

    # --- threads ----------------------------------------------------------------------------

    def _require(self) -> Lease:
        if self.lease is None:
            raise InternalError("LeaseGuard used before take()")
        return self.lease

    def _end(self, write: Callable[[], Lease]) -> Lease:
        with self._lock:
            self._ended = True
            self.lease = write()
            return self.lease

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                if self._ended or self._stop.is_set():
                    return
                lease = self._require()
                try:
                    self.lease = self.catalog.write_lease(
                        lease.model_copy(update={"heartbeat_at": self._now()})
                    )
                except Exception as exc:  # keep beating: the deadline holds whatever fails here
                    log.warning(
                        "lease of run %s (site %s): heartbeat not written (%s); after the "
                        "deadline the watchdog may count this run as gone",
                        lease.run_id,
                        lease.site,
                        exc,
                    )

    def _fire(self) -> None:
        self.fired = True
        self._stop.set()  # no heartbeat after the deadline: the run has lost its claim
        lease = self._require()
        try:
            reason = self._on_deadline()
        except Exception as exc:  # a daemon thread: log it, the watchdog takes over
            log.critical(
                "site %s: lease of run %s expired at %s and its timer could not unpause "
                "%s: %s. The lease stays ACTIVE for the watchdog; run `pausepoint unpause "
                "--site FILE` if writes are blocked now.",
                lease.site,
                lease.run_id,
                lease.deadline.isoformat(),
                ", ".join(lease.nodes),
                exc,
            )
            return
        if reason is None:
            return
        try:
            self._end(lambda: self.catalog.mark_broken(lease.site, lease.run_id, reason))
        except Exception as exc:  # the nodes are unpaused; only the record is missing
            log.error(
                "lease of run %s (site %s): not marked broken: %s", lease.run_id, lease.site, exc
            )
