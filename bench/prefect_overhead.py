"""What Prefect adds to one backup, on a running Prefect server.

    python -m bench.prefect_overhead    10 in-process + 5 worker backups, a few minutes on 2 cores
    python -m bench.prefect_overhead --runs 5 --modes inprocess
    python -m bench.prefect_overhead --database sqlite    the server on SQLite, not PostgreSQL

A small site is backed up through the real backup flow against a real `prefect server start`
(harness/prefect_server.py), called in this process (inprocess) and run by a process worker from
the `backup` deployment (worker). Results: bench/out/prefect_overhead/results.{json,md}; servers
and scratch files under var/bench-overhead/, removed at the end.
Method (what flow run, rest, untasked and pickup measure) and results: BENCHMARKS.md, sections
"What each benchmark does" (`bench.prefect_overhead`) and "Latest runs".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import yaml

from bench.progress import T0, say
from harness.kinds import KINDS

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench-overhead"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.prefect_overhead", description=__doc__)
    p.add_argument("--kind", default="postgres", choices=sorted(KINDS))
    p.add_argument("--runs", type=int, default=10, help="recorded in-process backups")
    p.add_argument("--worker-runs", type=int, default=5, help="recorded backups by the worker")
    p.add_argument("--size", default="1MB", help="bulk table size of the ledger database")
    p.add_argument("--modes", default="inprocess,worker")
    p.add_argument(
        "--database",
        default="postgres",
        choices=["postgres", "sqlite"],
        help="the Prefect server's database (production runs PostgreSQL)",
    )
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "prefect_overhead"))
    return p.parse_args(argv)


def _t(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _ms(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() * 1000


def _union_ms(intervals: list[tuple[datetime, datetime]]) -> float:
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += _ms(a, b)
            end = b
        elif b > end:
            total += _ms(end, b)
            end = b
    return total


class Api:
    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, timeout=30)

    def flow_run(self, run_id: str) -> dict:
        r = self.http.get(f"/flow_runs/{run_id}")
        r.raise_for_status()
        return r.json()

    def task_runs(self, run_id: str) -> list[dict]:
        """The flow run's task runs, once every one has ended (they arrive through events)."""
        last, deadline = -1, time.monotonic() + 30
        while True:
            body = {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200}
            r = self.http.post("/task_runs/filter", json=body)
            r.raise_for_status()
            runs = r.json()
            done = runs and all(t["end_time"] for t in runs)
            if (done and len(runs) == last) or time.monotonic() > deadline:
                return runs
            last = len(runs) if done else -1
            time.sleep(0.5)


def _gaps(start: datetime, end: datetime, spans: list[tuple[str, datetime, datetime]]) -> list:
    """Stretches of the flow run with no task running: (after task, before task, ms)."""
    out, cursor, last = [], start, "run start"
    for name, a, b in sorted(spans, key=lambda s: s[1]):
        if a > cursor:
            out.append((last, _base(name), _ms(cursor, a)))
        if b > cursor:
            cursor, last = b, _base(name)
    if end > cursor:
        out.append((last, "run end", _ms(cursor, end)))
    return out


def _base(task_run_name: str) -> str:
    """'finish-capture-7a3' -> 'finish-capture' (Prefect appends a random suffix)."""
    head, _, tail = task_run_name.rpartition("-")
    return head if head and len(tail) == 3 else task_run_name


def measure(api: Api, site_file: Path, run_id: str, wall_s: float, **extra) -> dict:
    """The figures of one backup run; its restore point is deleted afterwards."""
    from pausepoint.catalog import open_catalog
    from pausepoint.site import load_site

    fr = api.flow_run(run_id)
    if fr["state_type"] != "COMPLETED":
        raise RuntimeError(f"flow run {run_id} ended {fr['state_type']}: {fr['state']}")
    start, end = _t(fr["start_time"]), _t(fr["end_time"])
    tasks = api.task_runs(run_id)
    spans = [(t["name"], _t(t["start_time"]), _t(t["end_time"])) for t in tasks if t["start_time"]]
    copy = [_ms(a, b) for n, a, b in spans if n.startswith("finish-capture")]
    site = load_site(site_file)
    catalog = open_catalog(site.catalog)
    (point,) = [p for p in catalog.list_points(site.site) if p.flow_run_id == run_id]
    w = point.window
    run_ms = _ms(start, end)
    copy_ms = max(copy, default=0.0)
    out = {
        "flow_run": run_id,
        "point": point.id,
        "wall_s": wall_s,
        "run_ms": run_ms,
        "write_stall_ms": w.write_stall_ms,
        "window_ms": w.length_ms,
        "hold_ms": w.hold_ms,
        "copy_ms": copy_ms,
        "rest_ms": run_ms - w.write_stall_ms - copy_ms,
        "untasked_ms": run_ms - _union_ms([(a, b) for _, a, b in spans]),
        "task_runs": len(tasks),
        "gaps": _gaps(start, end, spans),
        **extra,
    }
    catalog.delete_point(site.site, point.id)
    return out


def run_inprocess(api: Api, site_file: Path) -> dict:
    from flows.backup import backup
    from pausepoint.catalog import open_catalog
    from pausepoint.requests import BackupRequest
    from pausepoint.site import load_site

    t0 = time.monotonic()
    point_id = backup(BackupRequest(site_file=str(site_file)))
    wall_s = time.monotonic() - t0
    site = load_site(site_file)
    run_id = open_catalog(site.catalog).get_point(site.site, point_id).flow_run_id
    return measure(api, site_file, run_id, wall_s)


def run_worker(api: Api, deployment_id: str, site_file: Path) -> dict:
    t0 = time.monotonic()
    r = api.http.post(f"/deployments/{deployment_id}/create_flow_run", json={})
    r.raise_for_status()
    run_id = r.json()["id"]
    deadline = time.monotonic() + 300
    while (fr := api.flow_run(run_id))["state_type"] not in ("COMPLETED", "FAILED", "CRASHED"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"flow run {run_id} still {fr['state_type']} after 300 s")
        time.sleep(0.1)
    wall_s = time.monotonic() - t0
    pickup_ms = _ms(_t(fr["created"]), _t(fr["start_time"])) if fr["start_time"] else None
    return measure(api, site_file, run_id, wall_s, pickup_ms=pickup_ms)


def write_environment(directory: Path, site_file: Path) -> None:
    """A scratch environment for `prefect deploy` (deployments/environment.py): the site, a
    drill target that moves every store elsewhere, no parameter values (defaults)."""
    site = yaml.safe_load(site_file.read_text())
    stores = [s for c in ("ledger", "auditor") for s in site[c]["stores"]]
    target = {
        "replace": True,
        "stores": {
            s["name"]: KINDS[s["kind"]].moved_to(database, database + "_drill")
            for s in stores
            for database in [s.get("database") or s["databases"][0]]
        },
    }
    (directory / "drill-target.yaml").write_text(yaml.safe_dump(target))
    (directory / "parameters.yaml").write_text("backup: {labels: {bench: prefect-overhead}}\n")


def summarize(runs: list[dict]) -> dict:
    from bench.report import pct

    keys = ["run_ms", "write_stall_ms", "window_ms", "hold_ms", "copy_ms", "rest_ms"]
    keys += ["untasked_ms", "pickup_ms"]
    out = {}
    for k in keys:
        xs = [r[k] for r in runs if r.get(k) is not None]
        if xs:
            out[k] = {"p50": pct(xs, 50), "p95": pct(xs, 95), "min": min(xs), "max": max(xs)}
    out["wall_s"] = {"p50": pct([r["wall_s"] for r in runs], 50)}
    gaps: dict[str, list[float]] = {}
    for r in runs:
        for before, after, ms in r["gaps"]:
            gaps.setdefault(f"{before} -> {after}", []).append(ms)
    # The largest stretches without a task, by total over the runs; p50 per run it occurred in.
    top = sorted(gaps.items(), key=lambda kv: -sum(kv[1]))[:6]
    out["gaps"] = {k: {"p50": pct(v, 50), "n": len(v)} for k, v in top}
    out["n"] = len(runs)
    return out


def render(results: dict) -> str:
    meta = results["meta"]
    lines = [
        f"Command: `{meta['command']}`; commit {meta['commit']}; {meta['started']}; "
        f"{meta['machine']}; Prefect {meta['prefect']} on "
        f"{meta.get('prefect_database', 'sqlite')}; {meta['kind']} {meta['versions']}; "
        f"bulk {meta['size']}, {meta['writers']} bank writers; load average "
        f"{meta['loadavg_start']} -> {meta.get('loadavg_end', '?')}; "
        f"{meta.get('elapsed_s', 0):.0f} s in all",
        "",
        "| mode | n | flow run | write stall | window (hold) | copy | rest = run - stall - copy "
        "| untasked | pickup |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(s: dict, k: str) -> str:
        if k not in s:
            return "-"
        return f"{s[k]['p50']:.0f} / {s[k]['p95']:.0f}"

    for mode, s in results["summary"].items():
        lines.append(
            f"| {mode} | {s['n']} | {f(s, 'run_ms')} | {f(s, 'write_stall_ms')} | "
            f"{f(s, 'window_ms')} ({s['hold_ms']['p50']:.0f}) | {f(s, 'copy_ms')} | "
            f"{f(s, 'rest_ms')} | {f(s, 'untasked_ms')} | {f(s, 'pickup_ms')} |"
        )
    lines.append("")
    lines.append("Milliseconds, p50 / p95 over the recorded runs.")
    for mode, s in results["summary"].items():
        lines.append("")
        lines.append(f"Largest stretches without a running task ({mode}; p50 ms, runs):")
        for k, g in s["gaps"].items():
            lines.append(f"- {k}: {g['p50']:.0f} ({g['n']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    modes = [m for m in args.modes.split(",") if m]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    from bench.env import MY_ENV, PG_ENV, Servers, parse_size, rows_for
    from bench.stall import Load, write_site
    from harness.prefect_server import postgres_database, start_server

    commit = (
        os.environ.get("BENCH_COMMIT")
        or subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )
    results: dict = {
        "meta": {
            "command": "python -m bench.prefect_overhead " + " ".join(sys.argv[1:]),
            "commit": commit,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": f"{os.cpu_count()} cores",
            "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "kind": args.kind,
            "size": args.size,
            "writers": 2,
            "prefect_database": args.database,
        },
        "runs": {},
        "summary": {},
    }
    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True)
    say(f"starting PostgreSQL and MariaDB on 127.0.0.1 ({VAR})")
    env = Servers.start(VAR / "servers")
    server = worker = load = None
    try:
        kind = args.kind
        results["meta"]["versions"] = env.kind(kind).version
        ledger_db, auditor_db = "ovh_ledger", "ovh_auditor"
        for db in (ledger_db, auditor_db):
            env.create_db(kind, db)
            env.create_bank(kind, db)
        env.create_bulk(kind, ledger_db)
        env.grow_bulk(kind, ledger_db, rows_for(parse_size(args.size)))
        env.settle(kind, ledger_db)
        say(f"starting a Prefect server on {args.database} (harness/prefect_server.py)")
        url = postgres_database(env.pg, "prefect_bench") if args.database == "postgres" else None
        server = start_server(VAR / "prefect", database_url=url)
        # This process is a client of that server from here on (the in-process mode).
        os.environ.update(server.env())
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "WARNING"
        import prefect

        results["meta"]["prefect"] = prefect.__version__
        api = Api(server.url)
        envdir = VAR / "environment"
        envdir.mkdir()
        load = Load.start(env, kind, ledger_db, auditor_db, 2, envdir)
        site_file = write_site(env, kind, envdir, load.targets, ledger_db, auditor_db)
        for mode in modes:
            if mode == "worker":
                write_environment(envdir, site_file)
                server.cli("work-pool", "create", "pausepoint", "--type", "process")
                server.cli(
                    "deploy", "--name", "backup", "--no-prompt", cwd=ROOT,
                    env={"PAUSEPOINT_ENV": str(envdir)}, unset=("PAUSEPOINT_HOME",),
                )  # fmt: skip
                (dep,) = api.http.post("/deployments/filter", json={}).json()
                worker = server.start_worker(
                    "pausepoint", ROOT, VAR / "worker.log",
                    env={PG_ENV: os.environ[PG_ENV], MY_ENV: os.environ[MY_ENV],
                         "PREFECT_WORKER_QUERY_SECONDS": "1"},
                )  # fmt: skip

                def one(dep_id=dep["id"]):
                    return run_worker(api, dep_id, site_file)
            else:

                def one():
                    return run_inprocess(api, site_file)

            r = one()
            say(f"{mode}: warm-up: run {r['run_ms']:.0f} ms (not counted)")
            runs = results["runs"][mode] = []
            count = args.worker_runs if mode == "worker" else args.runs
            for n in range(count):
                r = one()
                runs.append(r)
                pickup = f", pickup {r['pickup_ms']:.0f}" if r.get("pickup_ms") else ""
                say(f"{mode} {n + 1}/{count}: run {r['run_ms']:.0f} ms = stall "
                    f"{r['write_stall_ms']:.0f} + copy {r['copy_ms']:.0f} + rest "
                    f"{r['rest_ms']:.0f} (untasked {r['untasked_ms']:.0f}){pickup}")  # fmt: skip
            results["summary"][mode] = summarize(runs)
            if worker is not None:
                worker.stop()
                worker = None
    finally:
        results["meta"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        results["meta"]["elapsed_s"] = time.monotonic() - T0
        if worker is not None:
            worker.stop()
        if load is not None:
            try:
                load.stop()
            except Exception:
                load.kill()
        if server is not None:
            server.stop()
        env.stop()
        shutil.rmtree(VAR, ignore_errors=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    if results["summary"]:
        (out_dir / "results.md").write_text(render(results) + "\n")
        print(render(results), flush=True)
    say(f"done: {out_dir / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
