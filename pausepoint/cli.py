"""`pausepoint` command: the same flows as the deployments, run without a standing server.

The presentation layer: parse flags, check everything that needs no flow runtime, call a flow
(or the catalog), print the result, map error types to exit codes. It is the one module of this
package that reaches up to flows/ and tasks/, and it imports them lazily, so the rest of
``pausepoint`` stays free of Prefect and a command refused by its checks answers before Prefect
is even imported.

Exit codes (docs/errors.md): 0 done; 1 an unexpected error (a bug: run with --debug for the
traceback); 2 a configuration or usage error; 3 a check before the pause failed (and
`pausepoint check` found a failing check); 4 pause, 5 unpause, 6 verification, 7 capture,
8 catalog, 9 restore; 128 + N a signal N.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pausepoint.errors import ConfigError, InternalError, PausepointError, PreflightError
from pausepoint.site import Site

TEMPORARY_API = "starting a temporary Prefect API; set PREFECT_API_URL to use your server"
PROGRESS_EVERY_S = 5.0


def say(text: str) -> None:
    """A line for the person at the terminal (stderr: stdout stays the command's output)."""
    print(f"pausepoint: {text}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pausepoint",
        description=__doc__.splitlines()[0],
        epilog="Exit codes: 0 done, 1 unexpected error, 2 configuration, 3 preflight/check "
        "failed, 4 pause, 5 unpause, 6 verification, 7 capture, 8 catalog, 9 restore "
        "(docs/errors.md).",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks (of pausepoint's own errors too)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    _add = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return _add(name, parents=[common], **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    b = sub.add_parser("backup", help="pause the site, capture every store, register a point")
    b.add_argument("--site", required=True, help="site file (YAML)")

    r = sub.add_parser("restore", help="restore every component of a site to one point")
    r.add_argument("--site", required=True, help="site file (YAML)")
    r.add_argument("--point", required=True, help="restore point id (see `points list`)")
    r.add_argument("--target", help="restore target file: per-store settings to restore into")
    r.add_argument("--replace", action="store_true", help="drop existing data in the targets")

    pts = sub.add_parser("points", help="list or show registered restore points")
    pts_sub = pts.add_subparsers(dest="points_command", required=True)
    pl = pts_sub.add_parser("list", help="restore points of a site, newest first", parents=[common])
    pl.add_argument("--site", required=True)
    pl.add_argument("--json", action="store_true", help="JSON for scripts")
    ps = pts_sub.add_parser("show", help="one restore point", parents=[common])
    ps.add_argument("point")
    ps.add_argument("--site", required=True)
    ps.add_argument("--json", action="store_true", help="JSON for scripts")

    c = sub.add_parser(
        "check",
        help="every preflight check of a backup, pausing nothing",
        description="Nodes reachable and not paused, TLS, stores reachable (versions, tools, "
        "point-in-time settings), clock bound, catalog writable, pause lock free: one line "
        "each with its verdict. Exit 0 when nothing failed, 3 when a check failed. The pause "
        "lock is checked in the Prefect API at PREFECT_API_URL (skipped without it).",
    )
    c.add_argument("--site", required=True, help="site file (YAML)")
    c.add_argument("--json", action="store_true", help="JSON for scripts")

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
            return 0
        from pausepoint.listing import POINT_COLUMNS, Column, render

        readiness = _readiness(site)
        columns = [*POINT_COLUMNS, Column("RESTORABLE", readiness)]
        print("\n".join(render(columns, points)))
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


class _QuietPrefect(logging.Filter):
    """Prefect's words the CLI says itself (the temporary server's start and stop), and the
    tracebacks of pausepoint's own errors, whose message is the whole story (--debug keeps
    them). A bug (InternalError, any other exception) keeps its traceback."""

    OWN = ("Starting temporary server on", "Stopping temporary server on")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(self.OWN):
            return False
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, PausepointError) and not isinstance(exc, InternalError):
            record.exc_info, record.exc_text = None, None
        return True


_QUIET = _QuietPrefect()


def _quiet_prefect_logs(debug: bool) -> None:
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if debug:
            logger.removeFilter(_QUIET)
        elif _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


class _TemporaryApi:
    """The temporary Prefect API a run needs when PREFECT_API_URL is unset: started here, with
    one line saying so and a line of progress every few seconds (it takes 20-50 s on a busy
    machine). Prefect stops it at exit, once its log and event workers have drained into it."""

    def start(self) -> None:
        from prefect.server.api.server import SubprocessASGIServer
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

        say(TEMPORARY_API)
        server = SubprocessASGIServer()  # Prefect's own singleton: its flows reuse this one
        failure: list[BaseException] = []
        done = threading.Event()

        def start() -> None:
            try:
                server.start()
            except BaseException as exc:  # reported below, in the main thread
                failure.append(exc)
            finally:
                done.set()

        t0 = time.monotonic()
        threading.Thread(target=start, name="temporary-prefect-api", daemon=True).start()
        while not done.wait(PROGRESS_EVERY_S):
            say(f"  ... the temporary Prefect API is starting ({time.monotonic() - t0:.0f} s)")
        if failure:
            limit = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
            raise PreflightError(
                f"the temporary Prefect API did not start ({type(failure[0]).__name__}: "
                f"{str(failure[0])[:300]}); nothing was paused or changed. Start a Prefect server "
                f"(`prefect server start`) and set PREFECT_API_URL, or raise "
                f"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (now {limit})."
            )
        say(f"temporary Prefect API ready in {time.monotonic() - t0:.1f} s; running the flow")


def _prefect(debug: bool) -> None:
    """Ready Prefect for a flow: the API at PREFECT_API_URL answering, or a temporary one."""
    _prefect_defaults()
    _quiet_prefect_logs(debug)
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        _check_prefect_api()
    else:
        _TemporaryApi().start()


# --- validation before Prefect starts: the flows' own functions, so the same messages --------


def _secrets_set(*objs: Any) -> None:
    from pausepoint.prevalidate import check_env_secrets

    check_env_secrets(*objs)


def _backup_request(args: argparse.Namespace, site: Site) -> Any:
    from pausepoint.catalog import open_catalog
    from pausepoint.requests import BackupRequest, parse_request

    request = parse_request(BackupRequest, site_file=args.site)
    open_catalog(site.catalog)
    _secrets_set(site)
    return request


def _restore_request(args: argparse.Namespace, site: Site) -> Any:
    from pausepoint.catalog import layout, open_catalog
    from pausepoint.requests import RestoreRequest, parse_request
    from pausepoint.restore import RestoreRun, load_target
    from pausepoint.secrets import SecretResolver

    target = load_target(args.target)
    catalog = open_catalog(site.catalog)
    if not layout.is_point_id(args.point):
        # A shortened id: the catalog's error lists the full ids it matches.
        catalog.get_point(site.site, args.point)
    request = parse_request(
        RestoreRequest,
        site_file=args.site,
        point_id=args.point,
        confirm=args.point,  # naming the point on the command line is the confirmation
        target_file=args.target,
        replace=args.replace,
    )
    if request.replace:
        target = target.model_copy(update={"replace": True})
    # The flow's first step: the point exists, the target names known stores, no two stores
    # into one database (RestorePointNotFoundError, ConfigError, RestoreTargetError).
    run = RestoreRun.prepare(site, catalog, request.point_id, target, SecretResolver())
    _secrets_set([c.targets for c in site.components().values()], [p.config for p in run.places])
    return request


def _drill_request(args: argparse.Namespace, site: Site) -> Any:
    from pausepoint.drill import check_scratch_target
    from pausepoint.requests import DrillRequest, parse_request
    from pausepoint.restore import load_target

    target = load_target(args.target)
    request = parse_request(DrillRequest, site_file=args.site, target_file=args.target)
    check_scratch_target(site, target)
    _secrets_set(site)
    return request


def _prune_request(args: argparse.Namespace, site: Site) -> Any:
    from pausepoint.catalog import open_catalog
    from pausepoint.requests import PruneRequest, parse_request

    given = {"keep_last": args.keep_last, "keep_daily_days": args.keep_daily_days}
    request = parse_request(
        PruneRequest,
        site_file=args.site,
        dry_run=args.dry_run,
        **{k: v for k, v in given.items() if v is not None},
    )
    open_catalog(site.catalog)
    return request


def _watchdog_request(args: argparse.Namespace, site: Site) -> Any:
    from pausepoint.requests import WatchdogRequest, parse_request

    _secrets_set([c.targets for c in site.components().values()])
    return parse_request(WatchdogRequest, site_file=args.site)


_REQUESTS: dict[str, Callable[[argparse.Namespace, Site], Any]] = {
    "backup": _backup_request,
    "restore": _restore_request,
    "drill": _drill_request,
    "prune": _prune_request,
    "watchdog": _watchdog_request,
}


def run(argv: Sequence[str] | None = None) -> int:
    from pausepoint.site import load_site

    args = _parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    # Everything that needs no flow runtime is checked before Prefect starts (a temporary API
    # takes 20-50 s): the site file, then the command's own files, point and secrets.
    site = load_site(args.site)
    if args.command == "points":
        return _points(args, site)
    if args.command == "unpause":
        return _unpause(site)
    if args.command == "check":
        return _check(args, site)
    if args.command == "serve":
        _prefect_defaults()
        _check_prefect_api()
        return _serve(args)
    if args.command not in _REQUESTS:
        raise InternalError(f"the command {args.command!r} has no handler")
    request = _REQUESTS[args.command](args, site)
    _prefect(debug)
    return _FLOWS[args.command](request, site)


def _backup(request: Any, site: Site) -> int:
    from flows.backup import backup
    from pausepoint.catalog import open_catalog
    from pausepoint.report import restore_point_markdown

    point_id = backup(request)
    print(restore_point_markdown(open_catalog(site.catalog).get_point(site.site, point_id)))
    print(f"\nrestore point: {point_id}")
    return 0


def _restore(request: Any, site: Site) -> int:
    from flows.restore import restore

    result = restore(request)
    for name, ok, detail in result["checks"]:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    print(f"\nrestored point {result['point']}")
    return 0


def _watchdog(request: Any, site: Site) -> int:
    from flows.watchdog import watchdog

    report = watchdog(request)
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


def _check(args: argparse.Namespace, site: Site) -> int:
    """Every preflight check in this process (no flow, no temporary API: it answers in
    seconds); the pause lock through PREFECT_API_URL when it is set."""
    from pausepoint import checks
    from pausepoint.admin.site_client import admin_client
    from pausepoint.catalog import open_catalog
    from pausepoint.listing import Column, render
    from pausepoint.secrets import SecretResolver

    resolve = SecretResolver()
    catalog = open_catalog(site.catalog)

    def lock() -> checks.CheckLine:
        if not os.environ.get("PREFECT_API_URL"):
            return checks.NO_API_LOCK
        _prefect_defaults()
        _quiet_prefect_logs(bool(getattr(args, "debug", False)))
        from tasks.check_steps import pause_lock_line

        return pause_lock_line(site)

    client = admin_client(site, resolve)
    try:
        lines = checks.run_checks(site, catalog, client, resolve, lock)
    finally:
        client.close()
    overall = checks.verdict(lines)
    if args.json:
        report = {"site": site.site, "verdict": overall, "checks": [x.as_dict() for x in lines]}
        print(json.dumps(report, indent=2, default=str))
    else:
        columns: list[Column[checks.CheckLine]] = [
            Column("CHECK", lambda x: x.check),
            Column("VERDICT", lambda x: x.verdict),
            Column("DETAIL", lambda x: x.detail),
        ]
        print("\n".join(render(columns, lines)))
        failed = sum(x.verdict == checks.FAIL for x in lines)
        print(f"\nsite {site.site}: {overall}" + (f" ({failed} failed)" if failed else ""))
    return PreflightError.exit_code if overall == checks.FAIL else 0


def _prune(request: Any, site: Site) -> int:
    from flows.prune import prune

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


def _drill(request: Any, site: Site) -> int:
    from flows.drill import drill

    record = drill(request)
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


_FLOWS: dict[str, Callable[[Any, Site], int]] = {
    "backup": _backup,
    "restore": _restore,
    "watchdog": _watchdog,
    "prune": _prune,
    "drill": _drill,
}


def _stdout_gone() -> None:
    """The reader of stdout left (``| head``): say nothing more, there or at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor behind stdout: nothing to flush
        pass


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        code = run(argv)
        sys.stdout.flush()  # a closed pipe shows here rather than at exit
    except BrokenPipeError:
        _stdout_gone()
        code = 0
    except PausepointError as exc:
        if debug or isinstance(exc, InternalError):
            import traceback

            traceback.print_exc()
        print(f"pausepoint: error: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", ()):
            print(f"pausepoint: {note}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:  # outside a pause window (inside one, the backup closes it)
        print("pausepoint: interrupted (SIGINT)", file=sys.stderr)
        code = 130
    except Exception as exc:  # not one of ours: a bug, or a library's failure we do not name
        if debug:
            raise
        print(
            f"pausepoint: error: unexpected {type(exc).__name__}: {str(exc)[:500]}; run again "
            "with --debug for the traceback and report it",
            file=sys.stderr,
        )
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
