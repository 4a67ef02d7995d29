"""The watchdog: unpause the nodes a dead backup run left paused, and only those.

For every ACTIVE lease of a site whose deadline has passed and whose run is gone (its flow run
is no longer running, or its heartbeat stopped: a run killed outright can stay RUNNING in the
orchestrator forever), the watchdog asks each node the lease names whether it is paused, unpauses
those that are, and marks the lease broken saying what it did. It never touches a node the lease
does not name, a lease that has not expired, a lease whose run is alive, or a node that another
live lease names (that pause belongs to the other run).

A lease stays ACTIVE, for the next watchdog run to retry, when a node cannot be asked or an
unpause fails; the report carries the error (an UnpauseError: writes may be blocked).

A lease file that cannot be read (damaged, edited, of a newer format) never stops the others
being handled. It may have named paused nodes, and which ones cannot be known, so once it has
been left alone long enough for a live run's heartbeat to have replaced it (``UNREADABLE_GRACE``)
the watchdog asks EVERY node of the site (discovered from the site file) whether it is paused
and unpauses those that are, except the nodes another run's live lease names; then it moves the
file to the catalog's quarantine (``Catalog.quarantine_lease``) and says so. When a node cannot
be asked or unpaused, the file stays where it is and the next run tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pausepoint.admin.client import AdminClient
from pausepoint.admin.site_client import discover_nodes
from pausepoint.catalog import Catalog, Lease, Unreadable
from pausepoint.catalog.lease import HEARTBEAT_MISSES
from pausepoint.errors import PausepointError, UnpauseError, WatchdogError
from pausepoint.lease_guard import HEARTBEAT_S
from pausepoint.site import Site, Target
from pausepoint.window import Node, PauseSession

log = logging.getLogger(__name__)

# run id -> is that run still running? An id the orchestrator does not know counts as not alive.
IsRunAlive = Callable[[str], bool]
# component -> the admin targets of the site now (pausepoint.admin.site_client.discover_nodes)
DiscoverNodes = Callable[[Site], dict[str, list[Target]]]

# A live run rewrites its lease every heartbeat (and write_lease replaces a damaged record), so a
# lease file damaged for longer than this has no live run behind it.
UNREADABLE_GRACE = timedelta(seconds=HEARTBEAT_MISSES * HEARTBEAT_S)


@dataclass(frozen=True)
class NodeOutcome:
    """What the watchdog found and did on the nodes it looked at."""

    unpaused: list[str]  # nodes that reported paused and were unpaused
    not_paused: list[str]  # nodes that already reported unpaused
    left_alone: list[str]  # nodes another live lease names: that pause is not this run's

    @staticmethod
    def none() -> NodeOutcome:
        return NodeOutcome(unpaused=[], not_paused=[], left_alone=[])

    def outcome(self) -> dict[str, list[str]]:
        """The three lists as plain data (the report, the events)."""
        return {
            "unpaused": self.unpaused,
            "not_paused": self.not_paused,
            "left_alone": self.left_alone,
        }


@dataclass(frozen=True)
class BrokenLease(NodeOutcome):
    """One lease the watchdog acted on: what it found and did."""

    lease: Lease  # as stored afterwards: state "broken", broken_reason says what was done


@dataclass(frozen=True)
class QuarantinedLease:
    """A lease file that could not be read, moved aside after every node of the site that
    reported paused (except those of live leases) was unpaused."""

    run_id: str  # as its file name gives it
    location: str  # where it was
    moved_to: str  # where it is now (kept for people)
    problem: str  # why it could not be read, and what to do


@dataclass(frozen=True)
class SiteCheck(NodeOutcome):
    """CheckPaused on every node of the site, because an unreadable lease may name any
    (left_alone: named by another run's live lease)."""

    reason: str


@dataclass
class WatchdogReport:
    site: str
    at: datetime
    broken: list[BrokenLease] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # run id -> why its lease was kept
    failures: list[PausepointError] = field(default_factory=list)
    quarantined: list[QuarantinedLease] = field(default_factory=list)
    site_check: SiteCheck | None = None

    def to_dict(self) -> dict:
        """Plain data (a flow's result, the CLI's output)."""
        return {
            "site": self.site,
            "at": self.at.isoformat(),
            "broken": [
                {"run_id": b.lease.run_id, **b.outcome(), "reason": b.lease.broken_reason}
                for b in self.broken
            ],
            "waiting": dict(self.waiting),
            "failures": [str(f) for f in self.failures],
            "quarantined": [
                {
                    "run_id": q.run_id,
                    "file": q.location,
                    "moved_to": q.moved_to,
                    "problem": q.problem,
                }
                for q in self.quarantined
            ],
            "site_check": None
            if self.site_check is None
            else {"reason": self.site_check.reason, **self.site_check.outcome()},
        }

    def summary(self) -> str:
        unpaused = sum(len(b.unpaused) for b in self.broken)
        if self.site_check is not None:
            unpaused += len(self.site_check.unpaused)
        text = (
            f"site {self.site}: {len(self.broken)} orphaned lease(s) closed, {unpaused} node(s) "
            f"unpaused, {len(self.waiting)} lease(s) left active, {len(self.failures)} failure(s)"
        )
        if self.quarantined:
            text += f", {len(self.quarantined)} damaged lease file(s) quarantined"
        return text


def _node(name: str) -> Node:
    # Lease.nodes are validated "component/host:port" (as str(Node) prints them)
    component, _, hostport = name.partition("/")
    return Node(component, Target.parse(hostport))


def _gone_because(lease: Lease, now: datetime, is_run_alive: IsRunAlive) -> str | None:
    """Why the lease's run counts as gone, or None while it is alive."""
    if lease.heartbeat_stale(now):
        assert lease.heartbeat_at is not None
        return f"its heartbeat stopped at {lease.heartbeat_at.isoformat()}"
    if not is_run_alive(lease.run_id):
        return "its flow run is no longer running"
    return None


def run_watchdog(
    catalog: Catalog,
    site: Site,
    client: AdminClient,
    is_run_alive: IsRunAlive,
    now: datetime | None = None,
    discover: DiscoverNodes = discover_nodes,
) -> WatchdogReport:
    """Close every orphaned lease of ``site`` and handle every unreadable one; see the module
    docstring. Never raises for one lease: each failure is in the report, and the other leases
    are still handled."""
    now = now or datetime.now(UTC)
    report = WatchdogReport(site.site, now)
    scan = catalog.scan_leases(site.site)
    active = [lease for lease in scan.leases if lease.state == "active"]
    orphans: list[tuple[Lease, str]] = []
    for lease in active:
        if not lease.expired(now):
            report.waiting[lease.run_id] = f"its deadline {lease.deadline.isoformat()} is ahead"
            continue
        try:
            gone = _gone_because(lease, now, is_run_alive)
        except Exception as exc:  # unknown is not dead: leave it, say so
            report.waiting[lease.run_id] = f"cannot tell whether its run is alive ({exc})"
            report.failures.append(
                WatchdogError(
                    f"site {site.site!r}: cannot tell whether run {lease.run_id} (lease expired "
                    f"at {lease.deadline.isoformat()}, nodes {', '.join(lease.nodes)}) is alive: "
                    f"{type(exc).__name__}: {exc}. Its nodes were not touched. Check that the "
                    "Prefect API is reachable; if writes are blocked now, run `pausepoint "
                    "unpause --site FILE`."
                )
            )
            continue
        if gone is None:
            report.waiting[lease.run_id] = "its flow run is still running"
            continue
        orphans.append((lease, gone))
    # Nodes named by a lease we leave alone may be paused by that (live) run: not ours to undo.
    protected = {n for lease in active if lease.run_id in report.waiting for n in lease.nodes}
    for lease, gone in orphans:
        try:
            broken = _close(catalog, site, client, lease, gone, protected, now)
        except PausepointError as exc:
            report.waiting[lease.run_id] = "left active for the next watchdog run"
            report.failures.append(exc)
            continue
        report.broken.append(broken)
        log.warning("site %s: %s", site.site, broken.lease.broken_reason)
    if scan.damaged:
        _handle_damaged(catalog, site, client, scan.damaged, protected, now, discover, report)
    return report


def _handle_damaged(
    catalog: Catalog,
    site: Site,
    client: AdminClient,
    damaged: list[Unreadable],
    protected: set[str],
    now: datetime,
    discover: DiscoverNodes,
    report: WatchdogReport,
) -> None:
    """Unpause what an unreadable lease may have left paused (any node of the site but those
    of live leases), then quarantine the file. Failures go in the report; the file then stays
    for the next run."""
    for bad in damaged:
        log.error("site %s: lease file %s cannot be read: %s", site.site, bad.location, bad.problem)
    fresh = [d for d in damaged if d.modified is None or now - d.modified < UNREADABLE_GRACE]
    if fresh:
        # A live run rewrites its lease within a heartbeat; until then its nodes are unknown,
        # so no node of the site is touched on this file's account this time.
        for d in fresh:
            report.waiting[d.id] = (
                f"its lease file {d.location} cannot be read but was written less than "
                f"{UNREADABLE_GRACE.total_seconds():.0f} s ago: a live run may still rewrite "
                "it; the next watchdog run checks it again"
            )
        return
    files = ", ".join(d.location for d in damaged)
    head = f"site {site.site!r}: lease file(s) {files} cannot be read"
    try:
        node_set = discover(site)
    except PausepointError as exc:
        report.failures.append(
            UnpauseError(
                f"{head}, so any node of the site may be paused, and the site's nodes could not "
                f"be discovered: {exc}. The file(s) stay for the next watchdog run; if writes are "
                "blocked now, run `pausepoint unpause --site FILE`."
            )
        )
        return
    nodes = [Node(c, t) for c, targets in node_set.items() for t in targets]
    try:
        check = _check_site(catalog, site, client, nodes, protected, head)
    except PausepointError as exc:
        report.failures.append(exc)
        return
    report.site_check = check
    log.warning("site %s: %s", site.site, check.reason)
    for d in damaged:
        try:
            moved_to = catalog.quarantine_lease(site.site, d, now)
        except PausepointError as exc:
            report.failures.append(exc)
            continue
        if moved_to is not None:
            report.quarantined.append(QuarantinedLease(d.id, d.location, moved_to, d.problem))


def _check_site(
    catalog: Catalog,
    site: Site,
    client: AdminClient,
    nodes: list[Node],
    protected: set[str],
    head: str,
) -> SiteCheck:
    """CheckPaused on every node but the protected ones; Unpause those that report paused.
    Raises UnpauseError when a node does not answer or does not unpause."""
    # A run may have taken a lease since we listed them: its nodes are its own.
    protected = protected | {
        n for lease in catalog.list_leases(site.site, state="active") for n in lease.nodes
    }
    left_alone = sorted((n for n in nodes if str(n) in protected), key=str)
    ours = [n for n in nodes if str(n) not in protected]
    asked = _unpause_paused(
        site, client, ours, head, " The file(s) stay for the next watchdog run."
    )
    if asked.unknown:
        raise UnpauseError(
            f"{head}, so any node of the site may be paused; {asked.unanswered()}. The file(s) "
            "stay for the next watchdog run; check those nodes, or unpause them with "
            "`pausepoint unpause --site FILE`."
        )
    reason = f"{head}: any node of the site may have been paused by it; " + asked.done(
        left_alone, "nothing to unpause: every node it checked reported unpaused"
    )
    return SiteCheck(reason=reason, **asked.outcome(left_alone))


def _close(
    catalog: Catalog,
    site: Site,
    client: AdminClient,
    lease: Lease,
    gone: str,
    protected: set[str],
    now: datetime,
) -> BrokenLease:
    """Unpause what the lease's run left paused, then mark the lease broken. Raises (the lease
    stays active) when a node cannot be asked or does not unpause."""
    nodes = [_node(n) for n in lease.nodes]
    left_alone = [n for n in nodes if str(n) in protected]
    ours = [n for n in nodes if str(n) not in protected]
    head = (
        f"site {site.site!r}: lease of run {lease.run_id} ({lease.owner}) expired at "
        f"{lease.deadline.isoformat()} and {gone}"
    )
    # an unpause error names the nodes and what to do; the lease stays active for the next run
    asked = _unpause_paused(site, client, ours, head, "")
    if asked.unknown:
        raise UnpauseError(
            f"{head}; {asked.unanswered()}, so they may still be paused. The lease stays active "
            "and the next watchdog run retries; check those nodes, or unpause them with "
            "`pausepoint unpause --site FILE`."
        )
    reason = f"run {lease.run_id} ({lease.owner}) was gone ({gone}) after the deadline; " + (
        asked.done(
            left_alone, "nothing to unpause: every node it checked already reported unpaused"
        )
    )
    stored = catalog.mark_broken(site.site, lease.run_id, reason, now)
    return BrokenLease(lease=stored, **asked.outcome(left_alone))


@dataclass(frozen=True)
class _Asked:
    """What CheckPaused said of the nodes asked (those that reported paused are unpaused)."""

    paused: list[Node]
    not_paused: list[Node]
    unknown: dict[Node, Exception]  # did not answer

    def unanswered(self) -> str:
        detail = "; ".join(f"{n}: {e}" for n, e in self.unknown.items())
        return f"{', '.join(str(n) for n in self.unknown)} did not answer CheckPaused ({detail})"

    def done(self, left_alone: list[Node], nothing: str) -> str:
        """What the watchdog did, for a reason; ``nothing`` says it when no node was paused."""
        text = (
            f"the watchdog unpaused {', '.join(str(n) for n in self.paused)}"
            if self.paused
            else nothing
        )
        if left_alone:
            text += (
                f"; left alone (named in another run's live lease): "
                f"{', '.join(str(n) for n in left_alone)}"
            )
        return text

    def outcome(self, left_alone: list[Node]) -> dict[str, list[str]]:
        return NodeOutcome(
            unpaused=[str(n) for n in self.paused],
            not_paused=[str(n) for n in self.not_paused],
            left_alone=[str(n) for n in left_alone],
        ).outcome()


def _unpause_paused(
    site: Site, client: AdminClient, nodes: list[Node], head: str, stays: str
) -> _Asked:
    """CheckPaused on ``nodes``, then Unpause those that reported paused. An unpause that fails
    raises an UnpauseError that starts with ``head`` and ends with ``stays``; a node that did not
    answer is the caller's to report (in ``unknown``), after the others were unpaused."""
    session = PauseSession(site.site, _by_component(nodes), client, site.pause)
    states = session.check_all(nodes)
    paused = sorted((n for n, r in states.items() if r.ok and r.value), key=str)
    if paused:
        session.paused = set(paused)
        try:
            session.unpause_all()
        except UnpauseError as exc:
            raise UnpauseError(f"{head}. {exc}{stays}") from exc
    return _Asked(
        paused=paused,
        not_paused=sorted((n for n, r in states.items() if r.ok and not r.value), key=str),
        unknown={n: r.error for n, r in states.items() if r.error is not None},
    )


def _by_component(nodes: list[Node]) -> dict[str, list[Target]]:
    node_set: dict[str, list[Target]] = {}
    for n in nodes:
        node_set.setdefault(n.component, []).append(n.target)
    return node_set


# --- the staging of dead runs -----------------------------------------------------------------


def live_staging(
    catalog: Catalog, site: str, is_run_alive: IsRunAlive, now: datetime | None = None
) -> set[str]:
    """Ids of the unfinished points (no manifest) that a run may still be writing: all of them
    except those whose lease proves the run gone. What is not in this set,
    ``Catalog.sweep_abandoned_staging`` may delete.

    A point no readable lease names (a backup that needs no pause takes none; a damaged lease
    names nothing we can read) counts as live: only prune's idle sweep removes it.
    """
    now = now or datetime.now(UTC)
    staged = set(catalog.staged_ids(site))
    if not staged:
        return set()
    by_point = {
        lease.point_id: lease
        for lease in catalog.scan_leases(site).leases
        if lease.point_id in staged
    }
    return {p for p in staged if p not in by_point or not _run_gone(by_point[p], now, is_run_alive)}


def _run_gone(lease: Lease, now: datetime, is_run_alive: IsRunAlive) -> bool:
    """True only when the lease proves its run will never write its point again."""
    try:
        if lease.state == "active":
            # As the watchdog judges it: past the deadline, and the run gone.
            return lease.expired(now) and _gone_because(lease, now, is_run_alive) is not None
        if lease.state == "broken":
            # Its window never closed well (a timer or the watchdog unpaused): the run failed
            # or is gone; a stopped heartbeat or the orchestrator says which.
            return _gone_because(lease, now, is_run_alive) is not None
        # Released: the window closed well and the run went on copying with its heartbeat
        # stopped, so only the orchestrator can say it is gone.
        return not is_run_alive(lease.run_id)
    except Exception:  # cannot tell: keep its staging
        log.warning("cannot tell whether run %s is alive; its staging is kept", lease.run_id)
        return False
