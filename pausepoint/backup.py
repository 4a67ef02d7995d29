"""One backup run of a site, as steps the backup flow calls one task each.

``BackupRun`` holds what the steps share (the site, its opened stores, the pause session, the
pending restore point) and owns the rules that are not Prefect's business: how long to hold,
which failure to report, what a restore point records. The order of the steps lives in
``flows/backup.py`` only.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from pausepoint.admin.client import AdminClient
from pausepoint.admin.site_client import discover_nodes
from pausepoint.catalog import Catalog, Lease, PendingPoint
from pausepoint.catalog.manifest import ComponentRecord, PauseWindowRecord, RestorePoint
from pausepoint.clock import ClockBound, check_bound, check_gate, required_hold_ms
from pausepoint.errors import (
    BackupInterruptedError,
    CaptureError,
    LeaseError,
    PausepointError,
    UnpauseError,
    WindowExpiredError,
    most_severe,
)
from pausepoint.lease_guard import LeaseGuard
from pausepoint.secrets import SecretResolver
from pausepoint.site import Site
from pausepoint.stores import open_store, registry
from pausepoint.stores.base import (
    CaptureContext,
    CaptureHandle,
    CaptureWindow,
    PreparedCapture,
    Store,
    StoreCapture,
)
from pausepoint.window import LateWatch, PauseSession, deadline_for, no_pause_record

log = logging.getLogger(__name__)


@dataclass
class StoreSlot:
    """One store of the run: where it belongs, its driver, and its capture as it progresses."""

    component: str
    store: Store
    ctx: CaptureContext | None = None  # from begin(): point, names, artifact sink, clock
    # A local staging directory instead of ``ctx`` (the protocol before capture contexts).
    workdir: Path | None = None
    prepared: PreparedCapture | None = None  # made before the pause, taken by open_capture
    handle: CaptureHandle | None = None
    capture: StoreCapture | None = None

    def __post_init__(self) -> None:
        if self.ctx is None and self.workdir is not None:
            self.ctx = CaptureContext.local(
                self.workdir, component=self.component, store=self.store.name
            )


class WindowSignals:
    """How the steps inside the pause window hand over to each other without waiting for an
    orchestrator: the flow starts every window step BEFORE pausing, each waits for its signal,
    so no scheduling delay lands inside the window (where it would stall production writes).

    ``closing`` is set exactly when the window must end: the window was verified, or anything
    failed. It releases every waiting step and lets the unpause step go.
    """

    def __init__(self) -> None:
        self.paused = threading.Event()  # every node confirmed Pause
        self.opened = threading.Event()  # every store's snapshot is established
        self.closing = threading.Event()  # verified, or failed: unpause now
        self.interrupted = threading.Event()  # SIGINT/SIGTERM: close now, pause nothing more

    @staticmethod
    def wait_for(event: threading.Event, closing: threading.Event, timeout_s: float) -> bool:
        """True once ``event`` is set; False if the window closes first or the wait times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if event.is_set():
                return True
            if closing.is_set():
                return False
            event.wait(0.001)  # short: every millisecond here is latency inside the window
        return event.is_set()


@dataclass
class BackupRun:
    site: Site
    catalog: Catalog
    client: AdminClient | None
    resolver: SecretResolver
    flow_run_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    slots: list[StoreSlot] = field(default_factory=list)
    session: PauseSession | None = None
    pending: PendingPoint | None = None
    clock: ClockBound | None = None
    point: RestorePoint | None = None
    failed: bool = False
    signals: WindowSignals = field(default_factory=WindowSignals)
    guard: LeaseGuard | None = None
    deadline_passed: bool = False  # the lease timer closed the window: nothing is registered
    interrupted_by: tuple[str, int] | None = None  # (signal name, number) that closed the window
    late_watch: LateWatch | None = None  # after a failed pause: what the watch for late ones saw
    _late_errors: list[BaseException] = field(default_factory=list)
    _opened_count: int = 0
    _window: PauseWindowRecord | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local_id: str = field(default_factory=lambda: f"local-{uuid.uuid4().hex}")

    @property
    def run_id(self) -> str:
        """The flow run id, or an id of this process's run when there is no flow run."""
        return self.flow_run_id or self._local_id

    @classmethod
    def prepare(
        cls,
        site: Site,
        catalog: Catalog,
        client: AdminClient | None,
        resolver: SecretResolver,
        flow_run_id: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> BackupRun:
        run = cls(
            site=site,
            catalog=catalog,
            client=client,
            resolver=resolver,
            flow_run_id=flow_run_id,
            labels=dict(labels or {}),
        )
        run.slots = [StoreSlot(comp, open_store(cfg, resolver)) for comp, cfg in site.stores()]
        return run

    # --- preflight -------------------------------------------------------------------------

    @property
    def needs_pause(self) -> bool:
        return self.site.needs_pause()

    def open_session(self) -> PauseSession:
        assert self.client is not None, "a site that needs a pause needs an admin client"
        self.session = PauseSession(
            site=self.site.site,
            node_set=discover_nodes(self.site),
            client=self.client,
            settings=self.site.pause,
            rediscover=lambda: discover_nodes(self.site),
        )
        return self.session

    def hold_ms(self) -> int:
        """The derived hold (see clock.required_hold_ms), gated by the measured clock bound."""
        # Snapshot stores only need the window to cover open_capture, which the flow awaits
        # before holding; PITR stores contribute their timestamp granularity here.
        capabilities = [registry.capabilities(s.store.config) for s in self.slots]
        pitr = [c.pitr_granularity_ms for c in capabilities if c.pitr_granularity_ms is not None]
        hold = required_hold_ms(
            self.clock if pitr else None,
            max(pitr) if pitr else None,
            self.site.pause.min_hold_ms,
            0,
        )
        if pitr:
            if self.clock is None:
                from pausepoint.errors import ClockSkewError

                raise ClockSkewError(
                    f"site {self.site.site!r} has point-in-time stores but no clock bound: "
                    "configure clock.ntp_servers so the restore point's time can be trusted"
                )
            check_bound(self.clock, self.site.clock.max_error_ms, hold)
            check_gate(self.clock, hold)
        return hold

    # --- the lease (see lease_guard.py) -------------------------------------------------------

    def take_lease(self, hold_ms: int, now: datetime | None = None) -> Lease:
        """Write the lease naming every node about to be paused, and arm its deadline timer.
        Before the first Pause: a LeaseError here means nothing was paused."""
        assert self.session is not None, "open_session() first: the lease names its nodes"
        now = now or datetime.now(UTC)
        nodes = [str(n) for n in self.session.nodes]
        lease = Lease(
            site=self.site.site,
            run_id=self.run_id,
            owner=f"backup run {self.run_id} on {socket.gethostname()} pid {os.getpid()}",
            nodes=nodes,
            created_at=now,
            deadline=deadline_for(self.site.pause, hold_ms, now),
            point_id=self.pending.id if self.pending else None,
        )
        guard = LeaseGuard(self.catalog, self._lease_deadline_passed)
        try:
            written = guard.take(lease)
        except Exception as exc:
            raise LeaseError(
                f"site {self.site.site!r}: the lease for {', '.join(nodes)} could not be written "
                f"to the catalog ({exc}). Nothing was paused: without a lease nothing could "
                "unpause these nodes if this run died. Check that catalog.path in the site file "
                "is writable (disk full? permissions?), then retry."
            ) from exc
        self.guard = guard
        return written

    def _lease_deadline_passed(self) -> str | None:
        """The lease timer: unpause now unless the window already closed (see LeaseGuard)."""
        session = self.session
        if session is None or session.unpause_started:
            return None
        # Set before unpausing: the unpause step, waiting for our unpause, must see it.
        self.deadline_passed = True
        nodes = ", ".join(sorted(str(n) for n in session.paused)) or "no node"
        log.critical(
            "site %s: the lease deadline passed with the pause window still open (a step hangs): "
            "unpausing %s now; this backup will not be registered",
            self.site.site,
            nodes,
        )
        self.signals.closing.set()  # releases every waiting window step
        session.unpause_all()
        return (
            "the deadline passed with the pause window still open; the run's own deadline "
            f"timer unpaused {nodes}"
        )

    def end_lease(self) -> Lease | None:
        """After the window: release the lease when every node this run paused is unpaused;
        otherwise leave it ACTIVE, so the watchdog retries the unpause after the deadline.

        After a failed pause, first watch the nodes whose Pause may still land until the lease
        deadline (``_watch_late_pauses``): a late pause is unpaused and the lease ends broken
        saying so; a node that cannot be asked at the end, or an interruption of the watch,
        leaves it ACTIVE for the watchdog."""
        if self.guard is None or self.session is None:
            return None
        if self.session.unpaused_everything and self.session.pause_unsure:
            watch = self._watch_late_pauses()
            if watch is not None and watch.unpaused and not watch.unanswered and not watch.stopped:
                return self._end_lease_broken(watch)
            if watch is not None and (watch.unanswered or watch.stopped):
                return self._leave_lease_for_watchdog(watch)
        if not self.session.unpaused_everything:
            self.guard.disarm()
            log.critical(
                "site %s: lease of run %s left ACTIVE: %s may still be paused; the watchdog "
                "retries after %s (or run `pausepoint unpause --site FILE` now)",
                self.site.site,
                self.run_id,
                ", ".join(sorted(str(n) for n in self.session.paused)) or "some node",
                self.guard.lease.deadline.isoformat() if self.guard.lease else "the deadline",
            )
            return self.guard.lease
        try:
            return self.guard.release()
        except PausepointError as exc:
            # The nodes are unpaused and the backup is good: after the deadline the watchdog
            # finds nothing paused and marks the lease broken, so do not fail the run for it.
            log.warning(
                "site %s: lease of run %s not released (%s); every node is unpaused, so the "
                "watchdog will close it after its deadline",
                self.site.site,
                self.run_id,
                exc,
            )
            return self.guard.lease

    def _watch_late_pauses(self) -> LateWatch | None:
        """None when unpausing a late pause failed (kept for ``errors_after_window``)."""
        assert self.session is not None and self.guard is not None
        lease = self.guard.lease
        assert lease is not None
        log.warning(
            "site %s: Pause failed on %s without an answer from the node; it may still take "
            "effect. Checking them until the lease deadline %s and unpausing any that pauses",
            self.site.site,
            ", ".join(str(n) for n in self.session.pause_unsure),
            lease.deadline.isoformat(),
        )
        try:
            self.late_watch = self.session.watch_late_pauses(
                lease.deadline, stop=self.signals.interrupted
            )
        except UnpauseError as exc:
            self._late_errors.append(exc)
            return None
        return self.late_watch

    def _end_lease_broken(self, watch: LateWatch) -> Lease | None:
        assert self.guard is not None
        nodes = ", ".join(str(n) for n in watch.unpaused)
        reason = (
            f"Pause took effect late on {nodes}, after this run had given up on it and "
            "unpaused; the run re-checked the nodes of the failed pause until the lease "
            f"deadline and unpaused {nodes} again"
        )
        try:
            return self.guard.end_broken(reason)
        except PausepointError as exc:
            log.warning(
                "site %s: lease of run %s not ended (%s); every node is unpaused, so the "
                "watchdog will close it after its deadline",
                self.site.site,
                self.run_id,
                exc,
            )
            return self.guard.lease

    def _leave_lease_for_watchdog(self, watch: LateWatch) -> Lease | None:
        assert self.guard is not None and self.session is not None
        self.guard.disarm()
        lease = self.guard.lease
        deadline = lease.deadline.isoformat() if lease else "its deadline"
        if watch.unanswered:
            why = (
                f"{', '.join(str(n) for n in watch.unanswered)} did not answer CheckPaused at "
                "the end of the watch for a late Pause"
            )
        else:
            why = "the watch for a late Pause was interrupted"
        note = (
            f"{why}; the lease of run {self.run_id} stays ACTIVE so the watchdog checks "
            f"{', '.join(str(n) for n in watch.watched)} after {deadline} and unpauses any "
            "still paused"
        )
        log.critical("site %s: %s", self.site.site, note)
        if self.session.pause_error is not None:
            self.session.pause_error.add_note(note)
        return lease

    # --- interruption (SIGINT / SIGTERM; see interrupts_close_window) -------------------------

    def interrupt(self, name: str, signum: int) -> None:
        """Close the window at once: the hold is cut short, the unpause step unpauses, no
        further Pause is sent, a watch for late pauses stops; nothing will be registered."""
        first = self.interrupted_by is None
        if first:
            self.interrupted_by = (name, signum)
        self.signals.interrupted.set()
        self.signals.closing.set()
        if first:
            log.warning(
                "site %s: %s received: closing the pause window now (unpausing every node "
                "this run paused); no restore point will be registered",
                self.site.site,
                name,
            )
        else:
            log.warning(
                "site %s: %s received again: still closing the pause window, the nodes are "
                "being unpaused",
                self.site.site,
                name,
            )

    def errors_after_window(self) -> list[BaseException]:
        """What failed after the window closed: unpausing a late pause, the interruption."""
        errors = list(self._late_errors)
        if self.interrupted_by is None:
            return errors
        name, signum = self.interrupted_by
        session = self.session
        if session is None or not session.pause_sent:
            when, what = "before the pause", "nothing was paused"
        elif session.unpaused_everything:
            when, what = "during the pause window", "every node was unpaused"
        else:
            when = "during the pause window"
            what = (
                f"{', '.join(sorted(str(n) for n in session.paused)) or 'some node'} may still "
                "be PAUSED (see the unpause error)"
            )
        lease = self.guard.lease if self.guard is not None else None
        kept = ""
        if lease is not None and lease.state == "active":
            kept = (
                f"; the lease of run {self.run_id} stays ACTIVE, so the watchdog checks its "
                f"nodes after {lease.deadline.isoformat()}"
            )
        errors.append(
            BackupInterruptedError(
                f"site {self.site.site!r}: interrupted by {name} {when}: {what}; no restore "
                f"point was registered{kept}.",
                signum,
            )
        )
        return errors

    # --- the pause window (each method is one task; see WindowSignals) ------------------------

    @property
    def _window_wait_s(self) -> float:
        p = self.site.pause
        return (p.drain_timeout_ms + p.call_timeout_ms + p.open_capture_timeout_ms) / 1000

    def pause(self) -> bool:
        """Pause every node; False (nothing paused) when the run was interrupted first."""
        assert self.session is not None
        if self.signals.interrupted.is_set():
            self.signals.closing.set()
            return False
        try:
            self.session.pause_all()
        except BaseException:
            self.signals.closing.set()
            if self.interrupted_by is not None and self.session.unpaused_everything:
                # The signal closed the window while Pause was in flight and what landed was
                # unpaused again: the interruption's own error says so.
                log.info("site %s: interrupted while pausing; every node unpaused", self.site.site)
                return False
            raise
        self.signals.paused.set()
        return True

    def open_capture_in_window(self, slot: StoreSlot) -> bool:
        """Waits for the pause, then establishes the snapshot. False: the window closed first."""
        if not self.signals.wait_for(
            self.signals.paused, self.signals.closing, self._window_wait_s
        ):
            return False
        try:
            self.open_capture(slot)
        except BaseException:
            self.signals.closing.set()
            raise
        with self._lock:
            self._opened_count += 1
            if self._opened_count == len(self.slots):
                self.signals.opened.set()
        return True

    def hold_and_verify(self, hold_ms: int) -> bool:
        """Waits for every snapshot, holds, verifies; then closes the window either way."""
        assert self.session is not None
        try:
            if not self.signals.wait_for(
                self.signals.opened, self.signals.closing, self._window_wait_s
            ):
                return False
            if not self.session.hold(hold_ms, cut_short=self.signals.closing):
                return False  # closed by a failure or the lease deadline: nothing to verify
            self.session.verify()
            return True
        finally:
            self.signals.closing.set()

    def _closing_wait_s(self) -> float:
        if self.guard is not None and self.guard.lease is not None:
            # The lease timer closes the window at the deadline; this bound only backs it up.
            left = (self.guard.lease.deadline - datetime.now(UTC)).total_seconds()
            return max(0.0, left) + 1.0
        return self._window_wait_s + self.site.pause.lease_margin_ms / 1000

    def unpause_when_closing(self) -> None:
        """Waits until the window closes (or the lease deadline passes), then unpauses."""
        assert self.session is not None
        self.signals.closing.wait(self._closing_wait_s())
        self.signals.closing.set()
        try:
            self.session.unpause_all()
        finally:
            if self.guard is not None:
                if self.session.pause_unsure:
                    # end_lease watches for a late Pause: beat on until that watch ends
                    self.guard.stop_timer()
                else:
                    self.guard.disarm()  # the window is closed: no deadline left to enforce
        if self.deadline_passed:
            lease = self.guard.lease if self.guard else None
            raise WindowExpiredError(
                f"site {self.site.site!r}: the pause window was still open at the lease "
                f"deadline{f' ({lease.deadline.isoformat()})' if lease else ''}, so the run's "
                "deadline timer unpaused every node; this backup is discarded. Look in this "
                "run's log for the step that hung; if the stores are just slow to open their "
                "snapshots, raise pause.open_capture_timeout_ms or pause.lease_margin_ms."
            )

    # --- capture ---------------------------------------------------------------------------

    def begin(self) -> PendingPoint:
        self.pending = self.catalog.begin_point(self.site.site)
        for slot in self.slots:
            slot.ctx = CaptureContext(
                sink=self.catalog.artifact_sink(self.pending, slot.component, slot.store.name),
                point_id=self.pending.id,
                site=self.site.site,
                component=slot.component,
                store=slot.store.name,
                clock=self.clock,
            )
        return self.pending

    def window_record(self) -> PauseWindowRecord:
        """The pause window as it happened (after it closed); the same record every time."""
        with self._lock:  # the finish steps run in parallel: one record for all of them
            if self._window is None:
                if self.session is not None:
                    self._window = self.session.record()
                else:
                    opened = [s.handle.opened_at for s in self.slots if s.handle is not None]
                    self._window = no_pause_record(min(opened) if opened else datetime.now(UTC))
            return self._window

    def prepare_capture(self, slot: StoreSlot) -> None:
        """Before the pause: what the store's open_capture can do ahead (see Store)."""
        assert slot.ctx is not None
        try:
            prepared = slot.store.prepare_capture(slot.ctx)
        except PausepointError:
            raise
        except Exception as exc:
            raise CaptureError(
                f"store {slot.store.name!r} ({slot.component}): could not prepare its capture: "
                f"{type(exc).__name__}: {exc}. Nothing was paused."
            ) from exc
        with self._lock:
            slot.prepared = prepared
            late = self.failed or self.signals.closing.is_set()
        if late:  # the run failed meanwhile: nobody would take it over
            self.release_prepared()

    def release_prepared(self) -> list[BaseException]:
        """Free every preparation no open_capture took over (its connections, files). Safe at
        any time: a preparation already taken is the handle's to release."""
        with self._lock:
            taken = [(s, s.prepared) for s in self.slots if s.prepared is not None]
            for slot, _ in taken:
                slot.prepared = None
        errors: list[BaseException] = []
        for slot, prepared in taken:
            try:
                prepared.release()
            except Exception as exc:  # keep going: free every one
                log.warning("store %s: releasing its preparation failed: %s", slot.store.name, exc)
                errors.append(exc)
        return errors

    def open_capture(self, slot: StoreSlot) -> None:
        assert slot.ctx is not None
        with self._lock:
            prepared, slot.prepared = slot.prepared, None
        try:
            slot.handle = slot.store.open_capture(slot.ctx, prepared)
        except PausepointError:
            raise
        except Exception as exc:
            raise CaptureError(
                f"store {slot.store.name!r} ({slot.component}): could not open its snapshot: "
                f"{type(exc).__name__}: {exc}. No restore point was registered."
            ) from exc

    def finish_capture(self, slot: StoreSlot, progress=None) -> StoreCapture:
        assert slot.handle is not None and slot.ctx is not None
        try:
            # Known only now that the window closed: a PITR kind records its mid-time.
            w = self.window_record()
            slot.ctx.window = CaptureWindow(start=w.start, end=w.end, mid=w.mid, paused=w.paused)
            slot.capture = slot.store.finish_capture(slot.handle, progress)
        except PausepointError:
            raise
        except Exception as exc:
            raise CaptureError(
                f"store {slot.store.name!r} ({slot.component}): copying its snapshot failed: "
                f"{type(exc).__name__}: {exc}. No restore point was registered."
            ) from exc
        finally:
            slot.store.abort_capture(slot.handle)
        return slot.capture

    # --- failure and registration ----------------------------------------------------------

    def fail(self, errors: list[BaseException]) -> BaseException:
        """Release every snapshot, sweep the staging files, and return the error to raise."""
        with self._lock:
            self.failed = True
        errors.extend(self.release_prepared())
        for slot in self.slots:
            if slot.handle is not None:
                try:
                    slot.store.abort_capture(slot.handle)
                except Exception as exc:  # keep going: every snapshot must be released
                    errors.append(exc)
        if self.pending is not None:
            try:
                self.catalog.discard(self.pending)
            except Exception as exc:
                errors.append(exc)
        worst = most_severe(errors)
        assert worst is not None
        return worst

    def register(self) -> RestorePoint:
        assert self.pending is not None
        window = self.window_record()
        components: dict[str, ComponentRecord] = {}
        for name in self.site.components():
            targets = (
                []
                if self.session is None
                else [str(t) for t in self.session.node_set.get(name, [])]
            )
            captures = [s.capture for s in self.slots if s.component == name]
            assert all(c is not None for c in captures), "register() before every capture finished"
            components[name] = ComponentRecord(targets=targets, stores=captures)  # type: ignore[arg-type]
        point = RestorePoint(
            id=self.pending.id,
            site=self.site.site,
            created_at=datetime.now(UTC),
            flow_run_id=self.flow_run_id,
            labels=self.labels,
            pausepoint_version=version("pausepoint"),
            window=window,
            clock=self.clock.to_record() if self.clock else None,
            components=components,
        )
        self.catalog.register(self.pending, point)
        self.point = point
        return point


@contextmanager
def interrupts_close_window(run: BackupRun) -> Iterator[None]:
    """While the run may hold a pause, SIGINT and SIGTERM close the window at once
    (``BackupRun.interrupt``) instead of raising wherever the main thread happens to be, which
    left the hold to run out and the process to end in a traceback (or, for SIGTERM, to die
    with its nodes paused). The previous handlers are back afterwards.

    Only in the main thread (Python delivers signals there); elsewhere this does nothing. The
    handler only puts the signal on a queue (``SimpleQueue.put`` is safe in a signal handler);
    a thread of ours does the work, so no lock the interrupted code holds is taken again.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: queue.SimpleQueue[int | None] = queue.SimpleQueue()

    def act() -> None:
        while (signum := received.get()) is not None:
            run.interrupt(signal.Signals(signum).name, signum)

    worker = threading.Thread(target=act, name=f"interrupts-{run.run_id}", daemon=True)
    worker.start()
    previous: dict[int, object] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda n, _frame: received.put(n))
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)  # type: ignore[arg-type]
        received.put(None)
        worker.join(timeout=5)
