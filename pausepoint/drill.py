"""Drills: restore the newest restore point into scratch databases and verify it, so a backup is
known to restore before anyone needs it. The restore itself is ``pausepoint.restore.RestoreRun``;
this module adds what a drill needs around it:

- ``check_scratch_target``: the scratch target must not be any database of the site (a drill
  replaces what its target holds), checked before the catalog or any database is touched;
- ``newest_point``: which point to drill;
- ``drill_record`` / ``drill_markdown``: the result, kept in the catalog under the point.
"""

from __future__ import annotations

from datetime import datetime
from importlib.metadata import version
from typing import Any

from pydantic import ValidationError

from pausepoint.catalog import Catalog
from pausepoint.catalog.drills import DrillCheck, DrillRecord
from pausepoint.catalog.manifest import RestorePoint
from pausepoint.errors import ConfigError, RestorePointNotFoundError
from pausepoint.restore import RestoreTarget
from pausepoint.site import Site

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]", "ip6-localhost"}

Location = tuple[str, int, str]  # host, port, database


class ScratchTargetError(ConfigError):
    """A drill's scratch target is (part of) the site's own databases."""


def _host(host: str) -> str:
    h = host.strip().lower().strip("[]")
    return "loopback" if h in _LOOPBACK or h.startswith("127.") else h


def _locations(cfg: Any, mapped: bool) -> set[Location]:
    """The databases a store config names: (host, port, database). ``mapped``: as a restore
    target, with ``database_map`` applied. Empty when the kind has no host/database settings."""
    host, port = getattr(cfg, "host", None), getattr(cfg, "port", None)
    if host is None or port is None:
        return set()
    names: list[str] = []
    if isinstance(getattr(cfg, "database", None), str):
        names.append(cfg.database)
    dbs = getattr(cfg, "databases", None) or []
    dmap = getattr(cfg, "database_map", None) or {}
    names += [dmap.get(d, d) if mapped else d for d in dbs]
    return {(_host(host), int(port), n) for n in names}


def _show(loc: Location) -> str:
    host, port, db = loc
    return f"{'127.0.0.1' if host == 'loopback' else host}:{port}/{db}"


def check_scratch_target(site: Site, target: RestoreTarget) -> dict[str, str]:
    """Refuse a scratch target that would write into any database of the site.

    Every store needs an override in the target (without one it restores over its own
    database), and no store's scratch database may be a live database of ANY store of the site,
    nor another store's scratch database. Returns store name -> where it is restored, for the
    record. Raises ScratchTargetError naming the store and the fix.
    """
    stores = site.stores()
    known = {cfg.name for _, cfg in stores}
    unknown = sorted(set(target.stores) - known)
    if unknown:
        raise ConfigError(
            f"the drill's scratch target names stores the site {site.site!r} does not have: "
            f"{unknown}; its stores are {sorted(known)}"
        )
    live: dict[Location, str] = {}
    for comp, cfg in stores:
        for loc in _locations(cfg, mapped=False):
            live.setdefault(loc, f"{comp}/{cfg.name}")
    problems: list[str] = []
    scratch: dict[Location, str] = {}
    where: dict[str, str] = {}
    for comp, cfg in stores:
        overrides = target.stores.get(cfg.name)
        if not overrides:
            problems.append(
                f"store {cfg.name!r} ({comp}) has no entry in the scratch target, so the drill "
                f"would restore over the site's own database(s) "
                f"{', '.join(sorted(_show(x) for x in _locations(cfg, False))) or '(its own)'}: "
                f"add 'stores: {{{cfg.name}: {{...}}}}' pointing at a scratch database"
            )
            continue
        try:
            scratch_cfg = type(cfg).model_validate({**cfg.model_dump(), **overrides})
        except ValidationError as exc:
            raise ConfigError(
                f"the drill's scratch target for store {cfg.name!r} is invalid: {exc}"
            ) from None
        locs = _locations(scratch_cfg, mapped=True)
        where[cfg.name] = ", ".join(sorted(_show(x) for x in locs)) or "(scratch)"
        for loc in sorted(locs):
            if loc in live:
                problems.append(
                    f"store {cfg.name!r} ({comp}) would be drilled into {_show(loc)}, which is "
                    f"the live database of store {live[loc]}: point it at a scratch database "
                    "(another database name, or another server) in the target file"
                )
            elif loc in scratch:
                problems.append(
                    f"stores {scratch[loc]!r} and {cfg.name!r} would both be drilled into "
                    f"{_show(loc)}: give each store its own scratch database"
                )
            else:
                scratch[loc] = cfg.name
    if problems:
        raise ScratchTargetError(
            f"refusing to drill site {site.site!r}: a drill REPLACES what its target databases "
            f"hold, and {'; '.join(problems)}. Nothing was touched."
        )
    return where


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
