"""Retention: which restore points prune keeps, and why. ``plan`` is pure logic (no catalog, no
clock); ``candidates`` reads what it decides on from the catalog.

A point is kept when any of these holds (every reason that holds is recorded):

- it is the newest point of the site (always, whatever the policy says);
- it is the newest **verified** point: its latest drill passed (always);
- it is one of the newest ``keep_last`` points;
- it is the newest point of its UTC day, for each of the last ``keep_daily_days`` days (today
  counts as the first; a point dated after ``now``, from a skewed clock, counts as recent).

Everything else is deleted. Points are ordered by the time of their data (the pause window's
mid-time), then id, as ``Catalog.list_points`` orders them.

A point whose manifest or drill record cannot be read (damaged, or written by a newer
pausepoint) is never a candidate: it is never deleted, never counted among the newest nor as
verified, and the report names its file and the fix (``candidates`` gathers them).

Ended leases (released or broken) are history: kept for ``Policy.lease_days`` after they ended,
then deleted (``old_leases``). Active leases are never deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pausepoint.catalog.base import Catalog
from pausepoint.catalog.lease import Lease
from pausepoint.errors import CatalogError, InternalError

# Ended leases are kept at least this long, whatever keep_daily_days says: they tell who paused
# what and who had to unpause it.
MIN_LEASE_DAYS = 7


@dataclass(frozen=True)
class Policy:
    keep_last: int
    keep_daily_days: int

    def __post_init__(self) -> None:
        if self.keep_last < 1:
            raise InternalError(
                f"keep_last is {self.keep_last}: at least the newest point is always kept, so give "
                "1 or more"
            )
        if self.keep_daily_days < 0:
            raise InternalError(f"keep_daily_days is {self.keep_daily_days}: give 0 or more days")

    @property
    def lease_days(self) -> int:
        """How long an ended lease is kept as history."""
        return max(self.keep_daily_days, MIN_LEASE_DAYS)

    def describe(self) -> str:
        daily = (
            f"the newest of each of the last {self.keep_daily_days} days (UTC)"
            if self.keep_daily_days
            else "no daily points"
        )
        return (
            f"keep the newest {self.keep_last}, {daily}, the newest verified point and the "
            f"newest point; ended leases for {self.lease_days} days"
        )


@dataclass(frozen=True)
class Candidate:
    """One registered restore point, as retention sees it."""

    id: str
    time: datetime  # when its data is from (window mid-time); timezone-aware
    verified: bool = False  # its latest drill passed


@dataclass(frozen=True)
class Decision:
    id: str
    time: datetime
    keep: bool
    reasons: tuple[str, ...]  # why it is kept; or, for a deleted point, why it is not
    verified: bool = False


@dataclass(frozen=True)
class RetentionPlan:
    policy: Policy
    now: datetime
    decisions: list[Decision] = field(default_factory=list)  # newest first

    @property
    def keep(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    @property
    def delete(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]

    @property
    def newest_verified(self) -> str | None:
        return next((d.id for d in self.decisions if d.verified), None)


def candidates(catalog: Catalog, site: str) -> tuple[list[Candidate], dict[str, str]]:
    """Every registered point with its latest drill, and the points that cannot be judged (id
    -> the problem, naming the file and the fix): their manifest or a drill record cannot be
    read. Reads the catalog; the rest of this module does not."""
    scan = catalog.scan_points(site)
    unreadable = {u.id: u.problem for u in scan.unreadable}
    found = []
    for point in scan.points:
        try:
            latest = catalog.latest_drill(site, point.id)
        except CatalogError as exc:
            # Whether it is verified is unknown: it may be the newest verified point, so keep it.
            unreadable[point.id] = f"its drill records cannot be read: {exc}"
            continue
        found.append(Candidate(point.id, point.window.mid, latest is not None and latest.passed))
    return found, unreadable


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InternalError(f"{what} {value.isoformat()} has no time zone; give an aware datetime")
    return value.astimezone(UTC)


def plan(candidates: Iterable[Candidate], policy: Policy, now: datetime) -> RetentionPlan:
    """Decide for every candidate whether it is kept; decisions newest first."""
    now = _aware(now, "now")
    points = list(candidates)
    ids = [c.id for c in points]
    if len(ids) != len(set(ids)):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise InternalError(f"restore point ids appear more than once: {dup}")
    times = {c.id: _aware(c.time, f"time of point {c.id}") for c in points}
    ordered = sorted(points, key=lambda c: (times[c.id], c.id), reverse=True)

    first_day: date | None = None
    if policy.keep_daily_days:
        first_day = now.date() - timedelta(days=policy.keep_daily_days - 1)
    newest_of_day: dict[date, str] = {}
    for c in ordered:
        newest_of_day.setdefault(times[c.id].date(), c.id)
    newest_verified = next((c.id for c in ordered if c.verified), None)

    decisions = []
    for rank, c in enumerate(ordered, start=1):
        day = times[c.id].date()
        keep: list[str] = []
        if rank == 1:
            keep.append("newest point")
        if c.id == newest_verified:
            keep.append("newest verified point (its latest drill passed)")
        if rank <= policy.keep_last:
            keep.append(f"one of the newest {policy.keep_last} (#{rank})")
        in_days = first_day is not None and day >= first_day
        if in_days and newest_of_day[day] == c.id:
            keep.append(f"newest of {day} (one a day for {policy.keep_daily_days} days)")
        if keep:
            decisions.append(Decision(c.id, times[c.id], True, tuple(keep), c.verified))
            continue
        why = [f"older than the newest {policy.keep_last}"]
        if in_days:
            why.append(f"not the newest of {day} ({newest_of_day[day]} is)")
        elif first_day is None:
            why.append("no daily retention (keep_daily_days 0)")
        else:
            why.append(f"{day} is before the last {policy.keep_daily_days} days ({first_day} on)")
        if c.verified:
            why.append(f"verified, but {newest_verified} is the newest verified point")
        decisions.append(Decision(c.id, times[c.id], False, tuple(why), c.verified))
    return RetentionPlan(policy, now, decisions)


def old_leases(leases: Iterable[Lease], policy: Policy, now: datetime) -> list[str]:
    """Run ids of ended leases that ended more than ``policy.lease_days`` before ``now``."""
    cutoff = _aware(now, "now") - timedelta(days=policy.lease_days)
    return [
        lease.run_id
        for lease in leases
        if lease.state != "active" and (lease.updated_at or lease.created_at) < cutoff
    ]


# --- what a prune did -----------------------------------------------------------------------


@dataclass
class PruneReport:
    site: str
    dry_run: bool
    plan: RetentionPlan
    deleted: list[str] = field(default_factory=list)  # with dry_run: would be deleted
    failed: dict[str, str] = field(default_factory=dict)  # point id -> why its delete failed
    swept: list[str] = field(default_factory=list)  # unfinished points' directories removed
    leases: list[str] = field(default_factory=list)  # run ids of ended leases deleted
    # point id -> why it could not be judged (kept, untouched); file and fix named
    unreadable: dict[str, str] = field(default_factory=dict)
    damaged_leases: dict[str, str] = field(default_factory=dict)  # lease file -> its problem

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        sweep = "would sweep" if self.dry_run else "swept"
        text = (
            f"site {self.site}: kept {len(self.plan.keep)}, {verb} {len(self.deleted)} restore "
            f"point(s); {sweep} {len(self.swept)} unfinished point(s) and "
            f"{len(self.leases)} ended lease(s)"
        )
        if self.failed:
            text += f"; {len(self.failed)} delete(s) failed"
        if self.unreadable:
            text += f"; {len(self.unreadable)} unreadable point(s) skipped (kept)"
        if self.damaged_leases:
            text += f"; {len(self.damaged_leases)} damaged lease file(s) skipped"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "dry_run": self.dry_run,
            "policy": {
                "keep_last": self.plan.policy.keep_last,
                "keep_daily_days": self.plan.policy.keep_daily_days,
            },
            "newest_verified": self.plan.newest_verified,
            "kept": {d.id: list(d.reasons) for d in self.plan.keep},
            "deleted": {d.id: list(d.reasons) for d in self.plan.delete if d.id in self.deleted},
            "failed": dict(self.failed),
            "swept": list(self.swept),
            "leases": list(self.leases),
            "unreadable": dict(self.unreadable),
            "damaged_leases": dict(self.damaged_leases),
        }


def prune_markdown(report: PruneReport) -> str:
    title = "Prune (dry run)" if report.dry_run else "Prune"
    verb = "would delete" if report.dry_run else "deleted"
    lines = [
        f"# {title} of site {report.site}",
        "",
        f"Policy: {report.plan.policy.describe()}.",
        f"Newest verified point: {report.plan.newest_verified or 'none (no drill has passed)'}.",
        "",
        report.summary() + ".",
        "",
        "| restore point | data time (UTC) | verified | decision | why |",
        "|---|---|---|---|---|",
    ]
    for d in report.plan.decisions:
        if d.keep:
            decision = "keep"
        elif d.id in report.failed:
            decision = "**delete failed**"
        else:
            decision = verb
        why = "; ".join(d.reasons)
        if d.id in report.failed:
            why += f"; {report.failed[d.id]}"
        lines.append(
            f"| `{d.id}` | {d.time:%Y-%m-%d %H:%M:%S} | {'yes' if d.verified else ''} | "
            f"{decision} | {why} |"
        )
    if not report.plan.decisions:
        lines.append("| (none) | | | | |")
    if report.swept:
        lines += ["", f"Unfinished points ({'to sweep' if report.dry_run else 'swept'}):", ""]
        lines += [f"- `{p}`" for p in report.swept]
    if report.unreadable:
        lines += ["", "Points that cannot be read (kept, never deleted; fix them):", ""]
        lines += [f"- `{i}`: {why}" for i, why in report.unreadable.items()]
    if report.leases:
        lines += ["", f"Ended leases older than {report.plan.policy.lease_days} days:", ""]
        lines += [f"- run `{r}`" for r in report.leases]
    if report.damaged_leases:
        lines += ["", "Lease files that cannot be read (skipped; the watchdog handles them):", ""]
        lines += [f"- `{f}`: {why}" for f, why in report.damaged_leases.items()]
    return "\n".join(lines)
