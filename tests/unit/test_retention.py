"""Retention rules (pausepoint.retention): what prune keeps, what it deletes, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pausepoint.errors import InternalError
from pausepoint.retention import Candidate, Policy, PruneReport, plan, prune_markdown

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def pid(t: datetime, suffix: str = "0000") -> str:
    return f"{t.astimezone(UTC):%Y%m%dT%H%M%SZ}-{suffix}"


def point(t: datetime, verified: bool = False, suffix: str = "0000") -> Candidate:
    return Candidate(pid(t, suffix), t, verified)


def daily(days: int, hour: int = 3) -> list[Candidate]:
    """One point a day at ``hour`` UTC, today first, going back ``days`` days."""
    return [point(NOW.replace(hour=hour) - timedelta(days=d)) for d in range(days)]


def kept(p) -> list[str]:
    return [d.id for d in p.keep]


def deleted(p) -> list[str]:
    return [d.id for d in p.delete]


def test_no_points_no_decisions():
    p = plan([], Policy(3, 7), NOW)
    assert p.decisions == [] and p.newest_verified is None


def test_keep_last_keeps_the_newest_n_only():
    points = daily(10)
    p = plan(points, Policy(keep_last=3, keep_daily_days=0), NOW)
    assert kept(p) == [c.id for c in points[:3]]
    assert deleted(p) == [c.id for c in points[3:]]
    assert p.keep[0].reasons == ("newest point", "one of the newest 3 (#1)")
    assert "no daily retention" in p.delete[0].reasons[1]


def test_keep_last_larger_than_the_catalog_keeps_everything():
    points = daily(4)
    assert deleted(plan(points, Policy(100, 0), NOW)) == []


def test_decisions_are_newest_first_whatever_the_input_order():
    points = daily(5)
    p = plan(list(reversed(points)), Policy(2, 0), NOW)
    assert [d.id for d in p.decisions] == [c.id for c in points]


def test_daily_keeps_the_newest_of_each_of_the_last_d_days():
    # three points a day for five days; keep_last 1, daily 3 -> today, yesterday, the day before
    points = [point(NOW.replace(hour=h) - timedelta(days=d)) for d in range(5) for h in (1, 9, 11)]
    p = plan(points, Policy(keep_last=1, keep_daily_days=3), NOW)
    newest_each_day = [pid(NOW.replace(hour=11) - timedelta(days=d)) for d in range(3)]
    assert kept(p) == newest_each_day
    assert len(deleted(p)) == 15 - 3
    yesterday = next(d for d in p.decisions if d.id == newest_each_day[1])
    assert yesterday.reasons == ("newest of 2026-11-27 (one a day for 3 days)",)
    older_same_day = next(d for d in p.decisions if d.id == pid(NOW.replace(hour=9)))
    assert f"not the newest of 2026-11-28 ({newest_each_day[0]} is)" in older_same_day.reasons
    old = next(d for d in p.decisions if d.id == pid(NOW.replace(hour=11) - timedelta(days=3)))
    assert "2026-11-25 is before the last 3 days (2026-11-26 on)" in old.reasons


def test_daily_one_day_means_today_only():
    points = daily(3)
    p = plan(points, Policy(keep_last=1, keep_daily_days=1), NOW)
    assert kept(p) == [points[0].id]


def test_a_day_without_points_keeps_nothing_extra():
    # points today and 5 days ago; daily 3: the old one is outside the window
    points = [point(NOW.replace(hour=1)), point(NOW - timedelta(days=5))]
    p = plan(points, Policy(1, 3), NOW)
    assert deleted(p) == [points[1].id]


def test_days_are_utc_days():
    # 2026-11-28 00:30 at UTC+2 is 2026-11-27 22:30 UTC: yesterday's newest, not today's
    plus2 = timezone(timedelta(hours=2))
    today = point(datetime(2026, 11, 28, 1, 0, tzinfo=UTC))
    late_yesterday = point(datetime(2026, 11, 28, 0, 30, tzinfo=plus2))
    earlier_yesterday = point(datetime(2026, 11, 27, 20, 0, tzinfo=UTC))
    p = plan([today, late_yesterday, earlier_yesterday], Policy(1, 2), NOW)
    assert kept(p) == [today.id, late_yesterday.id]
    assert deleted(p) == [earlier_yesterday.id]


def test_the_newest_point_is_kept_even_when_it_is_yesterdays_and_daily_is_zero():
    p = plan([point(NOW - timedelta(days=40))], Policy(1, 0), NOW)
    assert kept(p) and p.keep[0].reasons[0] == "newest point"


def test_newest_verified_point_is_never_deleted():
    points = daily(10)
    points[7] = Candidate(points[7].id, points[7].time, verified=True)
    points[8] = Candidate(points[8].id, points[8].time, verified=True)  # older verified: normal
    p = plan(points, Policy(keep_last=2, keep_daily_days=0), NOW)
    assert kept(p) == [points[0].id, points[1].id, points[7].id]
    assert p.newest_verified == points[7].id
    verified = next(d for d in p.decisions if d.id == points[7].id)
    assert verified.reasons == ("newest verified point (its latest drill passed)",)
    older = next(d for d in p.decisions if d.id == points[8].id)
    assert not older.keep
    assert f"verified, but {points[7].id} is the newest verified point" in older.reasons


def test_newest_point_and_newest_verified_point_both_kept_with_keep_last_one():
    points = daily(3)
    points[2] = Candidate(points[2].id, points[2].time, verified=True)
    p = plan(points, Policy(keep_last=1, keep_daily_days=0), NOW)
    assert kept(p) == [points[0].id, points[2].id]


def test_newest_point_verified_carries_both_reasons():
    points = [point(NOW - timedelta(hours=1), verified=True), point(NOW - timedelta(days=9))]
    p = plan(points, Policy(1, 0), NOW)
    assert p.keep[0].reasons[:2] == (
        "newest point",
        "newest verified point (its latest drill passed)",
    )
    assert deleted(p) == [points[1].id]


def test_same_time_orders_by_id_like_the_catalog():
    t = NOW - timedelta(hours=1)
    a, b = point(t, suffix="aaaa"), point(t, suffix="bbbb")
    p = plan([a, b], Policy(1, 0), NOW)
    assert kept(p) == [b.id] and deleted(p) == [a.id]


def test_a_point_from_a_clock_ahead_counts_as_recent():
    ahead = point(NOW + timedelta(days=1))
    today = point(NOW - timedelta(hours=1))
    p = plan([ahead, today], Policy(1, 1), NOW)
    assert kept(p) == [ahead.id, today.id]  # newest overall; newest of today


def test_naive_times_and_duplicate_ids_are_refused():
    with pytest.raises(InternalError, match="no time zone"):
        plan([Candidate("20261128T000000Z-0000", datetime(2026, 11, 28))], Policy(1, 0), NOW)
    with pytest.raises(InternalError, match="no time zone"):
        plan([], Policy(1, 0), datetime(2026, 11, 28))
    c = point(NOW)
    with pytest.raises(InternalError, match="more than once"):
        plan([c, c], Policy(1, 0), NOW)


@pytest.mark.parametrize(("last", "days"), [(0, 3), (-1, 0), (1, -1)])
def test_policy_bounds(last, days):
    with pytest.raises(InternalError):
        Policy(last, days)


def test_report_and_markdown_say_what_and_why():
    points = daily(4)
    points[3] = Candidate(points[3].id, points[3].time, verified=True)
    p = plan(points, Policy(1, 0), NOW)
    report = PruneReport("demo", False, p, deleted=[points[1].id], failed={points[2].id: "EACCES"})
    report.swept = ["/cat/demo/points/20261120T000000Z-dead"]
    d = report.to_dict()
    assert d["newest_verified"] == points[3].id
    assert set(d["kept"]) == {points[0].id, points[3].id}
    assert list(d["deleted"]) == [points[1].id] and d["failed"] == {points[2].id: "EACCES"}
    md = prune_markdown(report)
    assert f"| `{points[1].id}` |" in md and "deleted" in md and "**delete failed**" in md
    assert "20261120T000000Z-dead" in md
    assert "1 delete(s) failed" in report.summary()
    dry = prune_markdown(PruneReport("demo", True, p, deleted=[points[1].id]))
    assert "dry run" in dry and "would delete" in dry


def test_old_ended_leases_go_active_ones_never():
    from pausepoint.catalog import Lease
    from pausepoint.retention import old_leases

    def lease(run_id, state="released", ended_days_ago=None, created_days_ago=60):
        created = NOW - timedelta(days=created_days_ago)
        return Lease(
            site="demo",
            run_id=run_id,
            owner="backup",
            nodes=["ledger/127.0.0.1:50053"],
            created_at=created,
            deadline=created + timedelta(minutes=1),
            state=state,
            broken_reason="the watchdog unpaused it" if state == "broken" else None,
            updated_at=None if ended_days_ago is None else NOW - timedelta(days=ended_days_ago),
        )

    leases = [
        lease("old-released", ended_days_ago=31),
        lease("old-broken", "broken", ended_days_ago=40),
        lease("recent", ended_days_ago=29),
        lease("no-updated-at-old"),  # ended time unknown: created_at counts
        lease("active-ancient", "active"),
    ]
    assert old_leases(leases, Policy(1, 30), NOW) == [
        "old-released",
        "old-broken",
        "no-updated-at-old",
    ]
    # keep_daily_days below the minimum: ended leases still kept a week
    assert Policy(1, 0).lease_days == 7
    assert old_leases([lease("six", ended_days_ago=6)], Policy(1, 0), NOW) == []
    assert old_leases([lease("eight", ended_days_ago=8)], Policy(1, 0), NOW) == ["eight"]
