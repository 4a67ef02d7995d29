"""Drills: restore the newest restore point into scratch databases and verify it, so a backup is
known to restore before anyone needs it. The restore itself is ``pausepoint.restore.RestoreRun``;
this module adds what a drill needs around it:

- ``check_scratch_target``: the scratch target must not be any database of the site (a drill
  replaces what its target holds), however it is spelt (``pausepoint.locations``), checked
  before the catalog or any database is touched;
- ``newest_point``: which point to drill;
- ``drill_record`` / ``drill_markdown``: the result, kept in the catalog under the point.
"""

from __future__ import annotations

from datetime import datetime
from importlib.metadata import version

from pausepoint.catalog import Catalog
from pausepoint.catalog.drills import DrillCheck, DrillRecord
from pausepoint.catalog.manifest import RestorePoint
from pausepoint.errors import ConfigError, RestorePointNotFoundError, ScratchTargetError
from pausepoint.locations import Location, Resolver, shown, system_resolver
from pausepoint.restore import RestoreTarget, place_stores, shared_targets
from pausepoint.site import Site

WHAT = "the drill's scratch target"


def check_scratch_target(
    site: Site, target: RestoreTarget, *, resolve: Resolver = system_resolver
) -> dict[str, str]:
    """Refuse a scratch target that would write into any database of the site.

    Every store needs an entry in the target (without one it restores over its own
    database), and no store's scratch database may be a live database of ANY store of the
    site, nor another store's scratch database: compared by where the data lives
    (``pausepoint.locations``: host names resolved, every spelling of this machine one
    server), however the target spells it. Returns store name -> where it is restored, for
    the record. Raises ScratchTargetError naming the store and the fix, LocationError when a
    host does not resolve.
    """
    known = {cfg.name for _, cfg in site.stores()}
    unknown = sorted(set(target.stores) - known)
    if unknown:
        raise ConfigError(
            f"the drill's scratch target names stores the site {site.site!r} does not have: "
            f"{unknown}; its stores are {sorted(known)}"
        )
    places = place_stores(site, target, what=WHAT, resolve=resolve)
    problems: list[str] = []
    for p in places:
        if not p.moved:
            problems.append(
                f"store {p.name!r} ({p.component}) has no entry in the scratch target, so the "
                f"drill would restore over the site's own database(s) {shown(p.live)}: add "
                f"'stores: {{{p.name}: {{...}}}}' pointing at a scratch database"
            )
            continue
        for loc, users in p.over:
            problems.append(
                f"store {p.name!r} ({p.component}) would be drilled into {loc}, which is the "
                f"live database of {' and '.join(f'store {u}' for u in users)}: point it at a "
                "scratch database (another database name, or another server; another spelling "
                "of the same server does not count) in the target file"
            )
    reported: set[Location] = {loc for p in places for loc, _ in p.over}
    for a, b, loc in shared_targets(places):
        if loc not in reported and a.moved and b.moved:
            problems.append(
                f"stores {a.name!r} and {b.name!r} would both be drilled into {loc}: give each "
                "store its own scratch database"
            )
    if problems:
        raise ScratchTargetError(
            f"refusing to drill site {site.site!r}: a drill REPLACES what its target databases "
            f"hold, and {'; '.join(problems)}. Nothing was touched."
        )
    return {p.name: shown(p.locations) or "(scratch)" for p in places}


def newest_point(catalog: Catalog, site: Site) -> RestorePoint:
    points = catalog.list_points(site.site)
    if not points:
        raise RestorePointNotFoundError(
            f"site {site.site!r} has no registered restore point to drill in "
            f"{catalog.driver.location(site.site)}: run a backup first (`pausepoint backup`)"
        )
    return points[0]


def drill_record(
    point: RestorePoint,
    started_at: datetime,
    finished_at: datetime,
    checks: list[tuple[str, bool, str]],
    error: BaseException | None,
    *,
    targets: dict[str, str],
    target_file: str | None,
    flow_run_id: str | None,
) -> DrillRecord:
    checks_ = [DrillCheck(name=n, passed=ok, detail=d) for n, ok, d in checks]
    failed = error is not None or any(not c.passed for c in checks_)
    return DrillRecord(
        site=point.site,
        point_id=point.id,
        started_at=started_at,
        finished_at=finished_at,
        passed=not failed,
        checks=checks_,
        error=None if error is None else f"{type(error).__name__}: {error}",
        targets=targets,
        target_file=target_file,
        flow_run_id=flow_run_id,
        pausepoint_version=version("pausepoint"),
    )


def drill_markdown(record: DrillRecord, point: RestorePoint | None = None) -> str:
    verdict = "PASSED" if record.passed else "FAILED"
    seconds = (record.finished_at - record.started_at).total_seconds()
    lines = [
        f"# Drill of `{record.point_id}` (site {record.site}): **{verdict}**",
        "",
        f"Started {record.started_at:%Y-%m-%d %H:%M:%S} UTC, took {seconds:.1f} s.",
    ]
    if point is not None:
        lines.append(f"Restore point mid-time {point.window.mid.isoformat()}.")
    if record.targets:
        lines += ["", "| store | restored into (scratch) |", "|---|---|"]
        lines += [f"| {s} | {w} |" for s, w in record.targets.items()]
    lines += ["", "| check | result | detail |", "|---|---|---|"]
    for c in record.checks:
        lines.append(f"| {c.name} | {'PASS' if c.passed else 'FAIL'} | {c.detail} |")
    if record.error:
        lines += ["", f"Failure: {record.error}"]
    return "\n".join(lines)


def drills_summary(drills: list[DrillRecord]) -> list[str]:
    """One line per drill, newest first (for `pausepoint points show`)."""
    out = []
    for d in drills:
        line = f"{d.started_at:%Y-%m-%d %H:%M:%S} UTC  {'passed' if d.passed else 'FAILED'}"
        if d.error:
            line += f"  {d.error}"
        out.append(line)
    return out
