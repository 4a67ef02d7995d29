"""The pause window: pause every node, hold, verify, unpause every node.

Follows the shape of scalar-admin-for-kubernetes' PauseService: every step runs, unpause always
runs for the nodes this session paused, each failure keeps its own type, and
``pausepoint.errors.most_severe`` picks what to report (unpause > pause > verification).

Rules that keep production safe:
- refuse to start when any node already reports paused (someone else owns that pause);
- on a pause failure unpause exactly the nodes this run paused, plus nodes whose Pause outcome is
  unknown (our deadline passed; the pause may still land and it would be ours);
- never unpause a node that answered TIMED_OUT_STILL_PAUSED or PAUSE_IN_PROGRESS: the closed gate
  belongs to another caller's pause;
- after a failed pause, keep asking the nodes whose Pause got no answer from their gate (deadline,
  unreachable, a proxy's error) until the lease deadline, and unpause any that turns up paused:
  the Pause may take effect after we gave up on it (``watch_late_pauses``);
- before closing the window, every node must still report paused and the node set must be the
  one we paused (a node that restarted comes back unpaused and accepts writes).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pausepoint.admin.client import AdminCallError, AdminClient, Reason
from pausepoint.admin.fanout import AdminCall, Result, fan_out
from pausepoint.catalog.manifest import PauseWindowRecord, TimelineEvent
from pausepoint.errors import (
    InternalError,
    NodeAlreadyPausedError,
    PauseError,
    PauseStillPausedError,
    PreflightError,
    UnpauseError,
    VerificationError,
)
from pausepoint.site import PauseSettings, Target

log = logging.getLogger(__name__)

# component name -> its admin targets
NodeSet = dict[str, list[Target]]
Discover = Callable[[], NodeSet]

_collector_lock = threading.Lock()
_collector_holders = 0
_collector_was_enabled = False


@contextlib.contextmanager
def collector_held() -> Iterator[None]:
    """No automatic garbage collection in this process for the block (the pause window).

    A full (generation 2) collection stops every thread of the process, the admin client's
    event loop included, for as long as it walks the heap: 241 ms inside one drain of
    ``bench.pitr_stall`` (the whole of that write-stall spike; BENCHMARKS.md). Deferred, it runs
    after the window, when production writes flow again. The collector is process-wide, so
    overlapping windows (two sites' backups in one worker process) share one hold: it is
    re-enabled when the last one ends, and only if it was enabled before the first began."""
    global _collector_holders, _collector_was_enabled
    with _collector_lock:
        if _collector_holders == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_holders += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_holders -= 1
            if _collector_holders == 0 and _collector_was_enabled:
                gc.enable()


# Pause outcomes after which the gate may be closed by US and must be reopened.
_OURS_IF_FAILED = {Reason.DEADLINE}

# Pause failures that are the node's own answer about its gate: the request was handled and is
# over, so it cannot take effect later. Any other failure (our deadline passed, the node was
# unreachable, a proxy answered, an unknown error) leaves the request possibly still on its way.
_ANSWERED_BY_THE_GATE = {
    Reason.TIMED_OUT,
    Reason.TIMED_OUT_STILL_PAUSED,
    Reason.PAUSE_IN_PROGRESS,
    Reason.GATE_OPEN,
    Reason.INVALID_ARGUMENT,
}

# How often the nodes of a failed pause are asked whether a late Pause closed their gate.
LATE_PAUSE_POLL_S = 0.25


@dataclass(frozen=True)
class Node:
    component: str
    target: Target

    def __str__(self) -> str:
        return f"{self.component}/{self.target}"


def _nodes(node_set: NodeSet) -> list[Node]:
    return [Node(c, t) for c, targets in node_set.items() for t in targets]


def _describe(nodes: list[Node]) -> str:
    return ", ".join(str(n) for n in nodes)


@dataclass(frozen=True)
class LateWatch:
    """What ``PauseSession.watch_late_pauses`` saw."""

    watched: list[Node]
    unpaused: list[Node]  # reported paused (a Pause of this run that landed late): unpaused
    unanswered: list[Node]  # did not answer the LAST CheckPaused: their state is unknown
    stopped: bool = False  # cut short before the deadline (the run was interrupted)


@dataclass
class PauseSession:
    """One pause of a whole site. Not reusable: build one per backup run."""

    site: str
    node_set: NodeSet
    client: AdminClient
    settings: PauseSettings
    rediscover: Discover | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    # True for the operator's `pausepoint unpause`: its failure advice must not be "run it again"
    emergency: bool = False

    timeline: list[TimelineEvent] = field(default_factory=list)
    paused: set[Node] = field(default_factory=set)  # nodes whose gate we (may) hold
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _first_pause_sent: float | None = None
    _window_start: datetime | None = None
    _window_start_mono: float | None = None
    _window_end: datetime | None = None
    _first_unpause_sent_mono: float | None = None
    _last_unpause_mono: float | None = None
    _unpaused: bool = False
    # unpause_all runs once: the lease timer may race the unpause step (see lease_guard.py)
    _unpause_lock: threading.Lock = field(default_factory=threading.Lock)
    _unpause_error: UnpauseError | None = None
    # Nodes whose Pause failed without an answer from their gate: it may still take effect.
    _pause_unsure: set[Node] = field(default_factory=set)
    pause_error: PauseError | None = None  # what pause_all raised; the late watch adds notes
    hold_ms: int = 0

    # --- helpers -------------------------------------------------------------------------

    @property
    def nodes(self) -> list[Node]:
        return _nodes(self.node_set)

    @property
    def _timeout_s(self) -> float:
        return self.settings.call_timeout_ms / 1000

    def check_all(self, nodes: list[Node] | None = None) -> dict[Node, Result[bool]]:
        """CheckPaused on ``nodes`` (default: every node of the session) at once."""
        nodes = self.nodes if nodes is None else nodes
        kwargs = {"timeout_s": self._timeout_s}
        return fan_out(self.client, nodes, lambda n: AdminCall("check_paused", n.target, kwargs))

    def _event(self, node: Node, event: str, at: datetime | None = None, detail: str | None = None):
        with self._lock:
            self.timeline.append(
                TimelineEvent(
                    at=at or self.now(),
                    component=node.component,
                    node=str(node.target),
                    event=event,
                    detail=detail,  # type: ignore[arg-type]
                )
            )

    # --- preflight -----------------------------------------------------------------------

    def preflight(self) -> None:
        """Every node reachable and unpaused. Raises PreflightError; pauses nothing."""
        if not self.nodes:
            raise PreflightError(f"site {self.site!r} has no admin targets to pause")
        results = self.check_all()
        unreachable = [(n, r.error) for n, r in results.items() if r.error is not None]
        if unreachable:
            detail = "; ".join(f"{n}: {e}" for n, e in unreachable)
            raise PreflightError(
                f"site {self.site!r}: cannot reach the admin endpoint of "
                f"{_describe([n for n, _ in unreachable])} ({detail}). Nothing was paused. Check "
                "that the node runs and its admin port (Ledger default 50053) is reachable, or "
                "fix the target list in the site file."
            )
        already = [n for n, r in results.items() if r.value]
        if already:
            raise NodeAlreadyPausedError(
                f"site {self.site!r}: {_describe(already)} already report PAUSED before this run "
                "paused anything; another backup or an operator owns that pause. Nothing was "
                "paused. Wait for it to end (or, if it was left behind, run the watchdog or "
                "`pausepoint unpause`), then retry."
            )

    # --- pause ---------------------------------------------------------------------------

    def pause_all(self) -> None:
        """Pause every node in parallel. On any failure, roll back and raise PauseError."""

        kwargs = {
            "wait_outstanding": True,
            "max_pause_wait_ms": self.settings.drain_timeout_ms,
            # The drain may take up to drain_timeout; our deadline must outlast it.
            "timeout_s": self.settings.drain_timeout_ms / 1000 + self._timeout_s,
        }
        self._first_pause_sent = time.monotonic()
        results = fan_out(
            self.client,
            self.nodes,
            lambda n: AdminCall("pause", n.target, kwargs),
            before=lambda n: self._event(n, "pause_sent"),
        )
        failed: list[tuple[Node, BaseException]] = []
        # Under the unpause lock: either unpause_all has not begun and will unpause what we add,
        # or it already ran (the lease deadline closed the window mid-pause) and we undo it here.
        with self._unpause_lock:
            for node, r in results.items():
                if r.error is None:
                    self.paused.add(node)
                    self._event(node, "pause_confirmed", at=r.returned_at)
                else:
                    failed.append((node, r.error))
                    reason = getattr(r.error, "reason", None)
                    self._event(node, "pause_failed", at=r.returned_at, detail=str(reason))
                    if reason in _OURS_IF_FAILED:
                        self.paused.add(node)
                    if reason not in _ANSWERED_BY_THE_GATE:
                        self._pause_unsure.add(node)
            if self._unpaused and self.paused:
                try:
                    self._undo_late_pause()
                except PauseError as exc:
                    self.pause_error = exc
                    raise
        if not failed:
            last = max(results.values(), key=lambda r: r.returned_mono)
            self._window_start = last.returned_at
            self._window_start_mono = last.returned_mono
            log.info("paused %d nodes of site %s", len(self.paused), self.site)
            return
        self.pause_error = self._pause_failure(failed)
        raise self.pause_error

    def _undo_late_pause(self) -> None:
        """Pause calls that landed after the window was closed: unpause them at once."""
        late = sorted(self.paused, key=str)
        try:
            self._unpause()
        except UnpauseError as exc:
            self._unpause_error = exc
            raise
        raise PauseError(
            f"site {self.site!r}: the window was closed (the lease deadline passed, or the run "
            f"was interrupted) while Pause was still in flight; {_describe(late)} paused after "
            "that and were unpaused again. "
            "No backup was taken. Raise pause.lease_margin_ms above pause.call_timeout_ms, or "
            "find why pausing took so long (drain, network), then retry."
        )

    def _pause_failure(self, failed: list[tuple[Node, BaseException]]) -> PauseError:
        still = [
            n for n, e in failed if getattr(e, "reason", None) == Reason.TIMED_OUT_STILL_PAUSED
        ]
        parts = []
        for node, err in failed:
            if isinstance(err, AdminCallError):
                parts.append(f"{node}: {err.reason} ({err.code}) {err.detail}")
            else:
                parts.append(f"{node}: {type(err).__name__}: {err}")
        detail = "; ".join(parts)
        if still:
            cls: type[PauseError] = PauseStillPausedError
            advice = (
                f"{_describe(still)} stay paused under an EARLIER pause that another caller owns; "
                "pausepoint did not unpause them (that would revoke the other pause). Find the "
                "owner (another backup, an operator), let it finish, then retry."
            )
        else:
            cls = PauseError
            advice = (
                "nodes this run paused are being unpaused; no backup was taken. Check the failed "
                "nodes (running? admin port reachable? in-flight requests that drain slower than "
                "pause.drain_timeout_ms?) and retry."
            )
        return cls(f"site {self.site!r}: pause failed on {len(failed)} node(s): {detail}. {advice}")

    # --- hold and verify -------------------------------------------------------------------

    @property
    def window_started(self) -> bool:
        return self._window_start is not None

    def elapsed_ms(self) -> float:
        if self._window_start_mono is None:
            return 0.0
        return (time.monotonic() - self._window_start_mono) * 1000

    def hold(self, hold_ms: int, cut_short: threading.Event | None = None) -> bool:
        """Wait until the window is at least hold_ms long (time already spent counts).
        False when ``cut_short`` was set first (the window is being closed: stop holding)."""
        self.hold_ms = hold_ms
        remaining = hold_ms - self.elapsed_ms()
        if cut_short is not None:
            return not cut_short.wait(max(0.0, remaining) / 1000)
        if remaining > 0:
            time.sleep(remaining / 1000)
        return True

    def verify(self) -> None:
        """Every node still paused and the node set unchanged; else VerificationError."""
        results = self.check_all()
        problems = []
        for node, r in results.items():
            if r.error is not None:
                problems.append(f"{node} did not answer CheckPaused ({r.error})")
            elif not r.value:
                problems.append(f"{node} reports UNPAUSED (it restarted or someone unpaused it)")
            else:
                self._event(node, "checked_paused", at=r.returned_at)
        if self.rediscover is not None:
            try:
                now_set = {str(n) for n in _nodes(self.rediscover())}
            except Exception as exc:
                problems.append(f"re-discovering the nodes failed ({exc})")
            else:
                before = {str(n) for n in self.nodes}
                if now_set != before:
                    added = sorted(now_set - before)
                    gone = sorted(before - now_set)
                    problems.append(
                        f"the node set changed during the pause (new: {added}, gone: {gone})"
                    )
        if problems:
            raise VerificationError(
                f"site {self.site!r}: the pause window cannot be trusted: {'; '.join(problems)}. "
                "Writes may have happened inside the window, so this backup is discarded. "
                "Retry when the cluster is stable."
            )

    # --- unpause -------------------------------------------------------------------------

    @property
    def unpause_started(self) -> bool:
        """True once unpause_all began: the window is closed (or closing)."""
        return self._unpaused

    @property
    def unpaused_everything(self) -> bool:
        """True once unpause_all confirmed every node this session paused."""
        return self._unpaused and self._unpause_error is None and not self.paused

    def unpause_all(self) -> bool:
        """Unpause every node this session paused, with retries. Raises UnpauseError.

        Runs once. A second caller (the lease timer racing the unpause step) waits for the
        first and gets its outcome: the same UnpauseError, or False. True: this call unpaused.
        """
        with self._unpause_lock:
            if self._unpaused:
                if self._unpause_error is not None:
                    raise self._unpause_error
                return False
            self._unpaused = True
            try:
                self._unpause()
            except UnpauseError as exc:
                self._unpause_error = exc
                raise
            return True

    def _unpause(self) -> None:
        if self._window_end is None:
            self._window_end = self.now()
        self._first_unpause_sent_mono = time.monotonic()
        try:
            self._unpause_nodes(sorted(self.paused, key=str))
        finally:
            self._last_unpause_mono = time.monotonic()

    def _unpause_nodes(self, todo: list[Node]) -> None:
        """Unpause ``todo`` with retries; confirmed nodes leave ``paused``. Raises UnpauseError."""
        if not todo:
            return
        attempts = self.settings.unpause_attempts
        last_error: dict[Node, BaseException] = {}
        kwargs = {"timeout_s": self._timeout_s}
        for attempt in range(1, attempts + 1):
            results = fan_out(
                self.client,
                todo,
                lambda n: AdminCall("unpause", n.target, kwargs),
                before=lambda n: self._event(n, "unpause_sent"),
            )
            retry = []
            for node, r in results.items():
                if r.error is None:
                    self._event(node, "unpause_confirmed", at=r.returned_at)
                    self.paused.discard(node)
                else:
                    self._event(node, "unpause_failed", at=r.returned_at, detail=str(r.error))
                    last_error[node] = r.error
                    retry.append(node)
            if not retry:
                return
            todo = retry
            if attempt < attempts:
                time.sleep(self.settings.unpause_backoff_ms / 1000 * 2 ** (attempt - 1))
        detail = "; ".join(f"{n}: {last_error[n]}" for n in todo)
        head = (
            f"site {self.site!r}: {_describe(todo)} may still be PAUSED after {attempts} unpause "
            f"attempts ({detail}). ScalarDL holds every request on those nodes until they are "
            "unpaused"
        )
        if self.emergency:
            # This IS `pausepoint unpause`: advising to run it again would send the operator
            # in a circle. What is left is the node itself.
            raise UnpauseError(
                f"{head}. Check that each of them runs and that its admin port (the host:port "
                "above; Ledger default 50053, Auditor 40053) is reachable from here (firewall, "
                "TLS settings, a proxy in between). If a node runs but does not answer there, "
                "restart that node: a ScalarDL node comes back from a restart UNPAUSED. Then "
                "run this command again to confirm every node is unpaused."
            )
        raise UnpauseError(
            f"{head}: run `pausepoint unpause --site <site file>` now (or scalar-admin's unpause "
            "on each node); the watchdog also retries from the lease."
        )

    # --- after a failed pause: Pause requests that take effect late ----------------------------

    @property
    def pause_sent(self) -> bool:
        """True once pause_all sent Pause (to any node)."""
        return self._first_pause_sent is not None

    @property
    def pause_unsure(self) -> list[Node]:
        """Nodes whose Pause failed without an answer from their gate (our deadline passed, the
        node or a proxy in between failed the call): the request may still close the gate."""
        return sorted(self._pause_unsure, key=str)

    def watch_late_pauses(
        self,
        until: datetime,
        *,
        poll_s: float = LATE_PAUSE_POLL_S,
        stop: threading.Event | None = None,
    ) -> LateWatch:
        """After a failed pause: ask the ``pause_unsure`` nodes (CheckPaused, every ``poll_s``)
        until ``until`` (the lease deadline), and unpause each that reports paused.

        Why such a pause is this run's: the node reported unpaused at preflight, this run sent
        it Pause, and the site's pause lock (held until the lease ends) keeps other pausepoint
        runs from pausing it meanwhile. The limit: a pause that someone else (an operator,
        another tool) takes on that node before the deadline looks the same and is unpaused
        too; a Pause that lands after the deadline is not seen by this run.

        Raises UnpauseError when a late-paused node cannot be unpaused (it stays in ``paused``,
        so ``unpaused_everything`` is False). ``stop`` cuts the watch short after a check.
        """
        watched = self.pause_unsure
        if not watched:
            return LateWatch([], [], [])
        end = time.monotonic() + max(0.0, (until - self.now()).total_seconds())
        unpaused: list[Node] = []
        while True:
            results = self.check_all(watched)
            unanswered = [n for n, r in results.items() if not r.ok]
            late = [n for n, r in results.items() if r.ok and r.value]
            if late:
                self._unpause_late(late)
                unpaused += [n for n in late if n not in unpaused]
            left = end - time.monotonic()
            if left <= 0:
                return LateWatch(watched, unpaused, unanswered)
            if stop is not None:
                if stop.wait(min(poll_s, left)):
                    return LateWatch(watched, unpaused, unanswered, stopped=True)
            else:
                time.sleep(min(poll_s, left))

    def _unpause_late(self, late: list[Node]) -> None:
        seen = self.now()
        log.warning(
            "site %s: %s report PAUSED after this run's Pause on them had failed: the Pause "
            "took effect late; unpausing them",
            self.site,
            _describe(late),
        )
        with self._unpause_lock:
            self.paused.update(late)
            try:
                self._unpause_nodes(late)
            except UnpauseError as exc:
                self._unpause_error = exc
                if self.pause_error is not None:
                    self.pause_error.add_note(
                        f"{_describe(late)} applied this run's Pause late (reported PAUSED at "
                        f"{seen.isoformat()}) and could NOT be unpaused: see the UnpauseError"
                    )
                raise
        if self.pause_error is not None:
            self.pause_error.add_note(
                f"{_describe(late)} applied this run's Pause late (reported PAUSED at "
                f"{seen.isoformat()}, after pausepoint had given up on that Pause) and were "
                "unpaused again"
            )

    # --- the record ------------------------------------------------------------------------

    def record(self) -> PauseWindowRecord:
        """The window as it happened; valid only after a successful pause and unpause."""
        if self._window_start is None or self._window_end is None or self._first_pause_sent is None:
            raise InternalError("PauseSession.record() needs a completed pause window")
        start, end = self._window_start, self._window_end
        assert self._window_start_mono is not None and self._first_unpause_sent_mono is not None
        last_unpause = self._last_unpause_mono or self._first_unpause_sent_mono
        return PauseWindowRecord(
            paused=True,
            start=start,
            end=end,
            mid=start + (end - start) / 2,
            hold_ms=self.hold_ms,
            drain_ms=(self._window_start_mono - self._first_pause_sent) * 1000,
            unpause_ms=(last_unpause - self._first_unpause_sent_mono) * 1000,
            write_stall_ms=(last_unpause - self._first_pause_sent) * 1000,
            timeline=sorted(self.timeline, key=lambda e: e.at),
        )


def no_pause_record(snapshot_at: datetime) -> PauseWindowRecord:
    """The record of a site in ONE transactional store: its snapshot is the point, no pause."""
    return PauseWindowRecord(
        paused=False,
        start=snapshot_at,
        end=snapshot_at,
        mid=snapshot_at,
        hold_ms=0,
        drain_ms=0.0,
        unpause_ms=0.0,
        write_stall_ms=0.0,
        timeline=[],
    )


def deadline_for(settings: PauseSettings, hold_ms: int, now: datetime) -> datetime:
    """When a lease taken now expires: drain + hold + capture opening + margin."""
    ms = (
        settings.drain_timeout_ms
        + hold_ms
        + settings.open_capture_timeout_ms
        + settings.lease_margin_ms
    )
    return now + timedelta(milliseconds=ms)
