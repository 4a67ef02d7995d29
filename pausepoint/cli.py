"""`pausepoint` command: the same flows as the deployments, run without a standing server.

The presentation layer: parse flags, call a flow (or the catalog), print the result, map error
types to exit codes. It is the one module of this package that reaches up to flows/, and it
imports them lazily, so the rest of ``pausepoint`` stays free of Prefect.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from pausepoint.errors import ConfigError, InternalError, PausepointError, PreflightError
from pausepoint.site import Site


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pausepoint", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("backup", help="pause the site, capture every store, register a point")
    b.add_argument("--site", required=True, help="site file (YAML)")

    r = sub.add_parser("restore", help="restore every component of a site to one point")
    r.add_argument("--site", required=True, help="site file (YAML)")
    r.add_argument("--point", required=True, help="restore point id (see `points list`)")
    r.add_argument("--target", help="restore target file: per-store settings to restore into")
    r.add_argument("--replace", action="store_true", help="drop existing data in the targets")

    pts = sub.add_parser("points", help="list or show registered restore points")
    pts_sub = pts.add_subparsers(dest="points_command", required=True)
    pl = pts_sub.add_parser("list", help="restore points of a site, newest first")
    pl.add_argument("--site", required=True)
    pl.add_argument("--json", action="store_true")
    ps = pts_sub.add_parser("show", help="one restore point")
    ps.add_argument("point")
    ps.add_argument("--site", required=True)
    ps.add_argument("--json", action="store_true")

    u = sub.add_parser("unpause", help="emergency: unpause every node of the site")
    u.add_argument("--site", required=True)

    w = sub.add_parser(
        "watchdog",
        help="unpause what a dead backup run left paused (expired leases only)",
        description="For every expired lease whose run is gone, unpause the nodes it names that "
        "still report paused, and mark the lease broken. Runs are asked about through "
        "PREFECT_API_URL; without it a run counts as gone once its lease expired.",
    )
    w.add_argument("--site", required=True)

    pr = sub.add_parser(
        "prune",
        help="delete old restore points by retention; sweep what failed runs left",
        description="Keep the newest N points and the newest point of each of the last D days "
        "(UTC); never the newest point nor the newest verified point (latest drill passed). "
        "Unfinished points idle for 24 h are swept.",
    )
    pr.add_argument("--site", required=True)
    pr.add_argument("--keep-last", type=int, help="keep the newest N points (default 7)")
    pr.add_argument(
        "--keep-daily-days", type=int, help="keep one a day for the last D days (default 30)"
    )
    pr.add_argument("--dry-run", action="store_true", help="report only; delete nothing")

    dr = sub.add_parser(
        "drill",
        help="restore the newest point into scratch databases and verify it",
        description="The scratch databases named by --target are REPLACED; a target that is "
        "any database of the site is refused. The result is recorded under the point.",
    )
    dr.add_argument("--site", required=True)
    dr.add_argument("--target", required=True, help="restore target file of scratch databases")

    sv = sub.add_parser(
        "serve",
        help="serve every flow on its schedule from this process (no work pool, no worker)",
        description="Registers prefect.yaml's deployments (backup, restore, watchdog, prune, "
        "drill) with the Prefect API at PREFECT_API_URL, with their schedules, parameters and "
        "concurrency limits, and runs their flows in subprocesses of this process until it is "
        "stopped (the schedules are then paused). The site file replaces the environment's. "
        "Needs a checkout of pausepoint (prefect.yaml, deployments/).",
    )
    sv.add_argument("--site", required=True, help="site file (YAML)")
    sv.add_argument(
        "--drill-target",
        help="restore target of scratch databases for the weekly drill; without it the drill "
        "is not served",
    )
    sv.add_argument(
        "--env",
        help="take the parameter values (labels, retention) from deployments/ENV/parameters.yaml"
        " (default: the requests' defaults)",
    )
    return p


def _points(args: argparse.Namespace, site: Site) -> int:
    from pausepoint.catalog import open_catalog
    from pausepoint.report import restore_point_markdown

    catalog = open_catalog(site.catalog)
    if args.points_command == "list":
        scan = catalog.scan_points(site.site)
        points = scan.points
        # One unreadable manifest never hides the others: name it (and the fix) on stderr.
        for bad in scan.unreadable:
            print(f"{bad.id}  UNREADABLE, not listed: {bad.problem}", file=sys.stderr)
        if args.json:
            print(json.dumps([p.model_dump(mode="json") for p in points], indent=2))
            return 0
        if not points:
            print(f"site {site.site}: no readable restore points in {site.catalog.describe()}")
        readiness = _readiness(site)
        for p in points:
            stores = sum(len(c.stores) for c in p.components.values())
            size = sum(s.total_bytes for c in p.components.values() for s in c.stores)
            print(
                f"{p.id}  mid {p.window.mid.isoformat()}  stall {p.window.write_stall_ms:7.1f} ms"
                f"  {'+'.join(p.components)}  {stores} stores  {size / 1e6:,.1f} MB"
                f"  restorable {readiness(p)}"
            )
        return 0
    point = catalog.get_point(site.site, args.point)
    if args.json:
        print(point.model_dump_json(indent=2))
        return 0
    from pausepoint.drill import drills_summary

    print(restore_point_markdown(point))
    drills = drills_summary(catalog.list_drills(site.site, point.id))
    print("\nDrills (newest first):" if drills else "\nDrills: none yet (`pausepoint drill`)")
    for line in drills:
        print(f"- {line}")
    return 0


def _readiness(site: Site):
    """``point -> label``: whether its point-in-time stores can restore it now (yes, not yet,
    no: left the window, ?: could not ask, -: no such store; pausepoint.readiness)."""
    from pausepoint.readiness import point_readiness
    from pausepoint.secrets import SecretResolver
    from pausepoint.stores import open_store

    stores = {cfg.name: open_store(cfg, SecretResolver()) for _, cfg in site.stores()}
    return lambda point: point_readiness(point, stores).label()


def _unpause(site: Site) -> int:
    """Unpause every node of the site that reports paused (an operator's explicit decision)."""
    from pausepoint.admin.site_client import admin_client, discover_nodes
    from pausepoint.window import PauseSession

    client = admin_client(site)
    try:
        session = PauseSession(site.site, discover_nodes(site), client, site.pause, emergency=True)
        states = session.check_all()
        for node, r in states.items():
            print(f"{node}: {'PAUSED' if r.value else 'not paused' if r.ok else r.error}")
        # Unreachable nodes are tried too: a paused node may just be slow to answer.
        todo = {n for n, r in states.items() if r.value or not r.ok}
        session.paused = set(todo)
        session.unpause_all()
    finally:
        client.close()
    print(f"site {site.site}: sent Unpause to {len(todo)} node(s); every one confirmed")
    return 0


def _prefect_defaults() -> None:
    # Without PREFECT_API_URL a run starts a temporary local API; on a busy 2-core machine that
    # can take longer than Prefect's default 20 s wait.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


# The commands that run a flow, and so need the Prefect API (or start a temporary one).
_FLOW_COMMANDS = frozenset({"backup", "restore", "watchdog", "prune", "drill", "serve"})


def _check_prefect_api() -> None:
    """With PREFECT_API_URL set, a flow records its run there and the backup takes the site's
    pause lock there: an API that does not answer stops the command before anything starts,
    with the fix, instead of a traceback from inside Prefect."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return  # the flow starts a temporary local API
    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        raise PreflightError(
            f"the Prefect API at {url} (PREFECT_API_URL) does not answer "
            f"({type(problem).__name__}: {problem}); nothing was paused or changed. Start the "
            "Prefect server (`prefect server start`) or fix PREFECT_API_URL, then run again; "
            "without PREFECT_API_URL the command runs with a temporary local API."
        )


def run(argv: Sequence[str] | None = None) -> int:
    from pausepoint.site import load_site

    args = _parser().parse_args(argv)
    # Validate the site file before anything starts (a temporary Prefect API takes seconds).
    site = load_site(args.site)
    _prefect_defaults()
    if args.command in _FLOW_COMMANDS:
        _check_prefect_api()
    if args.command == "backup":
        from flows.backup import backup
        from pausepoint.catalog import open_catalog
        from pausepoint.report import restore_point_markdown
        from pausepoint.requests import BackupRequest

        point_id = backup(BackupRequest(site_file=args.site))
        print(restore_point_markdown(open_catalog(site.catalog).get_point(site.site, point_id)))
        print(f"\nrestore point: {point_id}")
        return 0
    if args.command == "restore":
        from flows.restore import restore
        from pausepoint.catalog import layout, open_catalog
        from pausepoint.requests import RestoreRequest, parse_request
        from pausepoint.restore import load_target

        load_target(args.target)
        if not layout.is_point_id(args.point):
            # A shortened id: the catalog's error lists the full ids it matches.
            open_catalog(site.catalog).get_point(site.site, args.point)
        request = parse_request(
            RestoreRequest,
            site_file=args.site,
            point_id=args.point,
            confirm=args.point,  # naming the point on the command line is the confirmation
            target_file=args.target,
            replace=args.replace,
        )
        result = restore(request)
        for name, ok, detail in result["checks"]:
            print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
        print(f"\nrestored point {result['point']}")
        return 0
    if args.command == "points":
        return _points(args, site)
    if args.command == "unpause":
        return _unpause(site)
    if args.command == "watchdog":
        from flows.watchdog import watchdog
        from pausepoint.requests import WatchdogRequest

        report = watchdog(WatchdogRequest(site_file=args.site))
        for broken in report["broken"]:
            print(f"lease of run {broken['run_id']} broken: {broken['reason']}")
        for run_id, why in report["waiting"].items():
            print(f"lease of run {run_id} left active: {why}")
        if report["site_check"]:
            print(report["site_check"]["reason"])
        for q in report["quarantined"]:
            print(f"damaged lease file {q['file']} moved to {q['moved_to']}: {q['problem']}")
        print(f"site {site.site}: {len(report['broken'])} orphaned lease(s) closed")
        return 0
    if args.command == "prune":
        return _prune(args)
    if args.command == "drill":
        return _drill(args)
    if args.command == "serve":
        return _serve(args)
    raise InternalError(f"the command {args.command!r} has no handler")


def _prune(args: argparse.Namespace) -> int:
    from flows.prune import prune
    from pausepoint.requests import PruneRequest, parse_request

    given = {"keep_last": args.keep_last, "keep_daily_days": args.keep_daily_days}
    request = parse_request(
        PruneRequest,
        site_file=args.site,
        dry_run=args.dry_run,
        **{k: v for k, v in given.items() if v is not None},
    )
    report = prune(request)
    verb = "would delete" if report["dry_run"] else "deleted"
    for point_id, why in report["kept"].items():
        print(f"keep    {point_id}  {'; '.join(why)}")
    for point_id, why in report["deleted"].items():
        print(f"{verb:7} {point_id}  {'; '.join(why)}")
    for path in report["swept"]:
        print(f"{'would sweep' if report['dry_run'] else 'swept'} {path}")
    for run_id in report["leases"]:
        print(f"{verb} ended lease of run {run_id}")
    for point_id, why in report["unreadable"].items():
        print(f"skipped {point_id} (kept, cannot be read): {why}", file=sys.stderr)
    for path, why in report["damaged_leases"].items():
        print(f"skipped lease file {path} (cannot be read): {why}", file=sys.stderr)
    print(
        f"\nsite {report['site']}: kept {len(report['kept'])}, {verb} {len(report['deleted'])}, "
        f"{'would sweep' if report['dry_run'] else 'swept'} {len(report['swept'])} unfinished"
    )
    return 0


def _drill(args: argparse.Namespace) -> int:
    from flows.drill import drill
    from pausepoint.requests import DrillRequest, parse_request
    from pausepoint.restore import load_target

    load_target(args.target)
    record = drill(parse_request(DrillRequest, site_file=args.site, target_file=args.target))
    for check in record["checks"]:
        print(f"{'PASS' if check['passed'] else 'FAIL'}  {check['name']}: {check['detail']}")
    print(f"\ndrill of restore point {record['point_id']} passed")
    return 0


def _serve(args: argparse.Namespace) -> int:
    """Serve the deployments of prefect.yaml from this process (deployments/serve.py)."""
    home = os.environ.get("PAUSEPOINT_HOME")
    if home and home not in sys.path:
        sys.path.insert(0, home)
    try:
        from deployments.serve import serve
    except ImportError:
        raise ConfigError(
            "`pausepoint serve` runs from a checkout of pausepoint (it reads prefect.yaml and "
            "deployments/): run it there, or set PAUSEPOINT_HOME to the checkout"
        ) from None
    serve(args.site, args.drill_target, args.env)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = run(argv)
    except PausepointError as exc:
        print(f"pausepoint: error: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", ()):
            print(f"pausepoint: {note}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:  # outside a pause window (inside one, the backup closes it)
        print("pausepoint: interrupted (SIGINT)", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
