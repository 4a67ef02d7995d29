"""Write stall on the ScalarDB-backed nodes: what the clients saw against pausepoint's figure.

    python -m bench.scalardb_stall                        10 backups, each restored and checked
    python -m bench.scalardb_stall --backups 20 --no-check

The site of `make demo` and tests/integration/test_scalardb_e2e.py (harness/scalardb_site.py):
2 ledger + 2 auditor ScalarDB-backed nodes (harness/scalardb_node.py, `make scalardb-node`) on a
private MariaDB and PostgreSQL, 8 clients (each request: a Consensus Commit transaction across
both databases on a ledger node, then the same on an auditor node), backups through the backup
flow (in-process, a temporary Prefect API) one after another while the clients write. Per
backup: the clients' latency (p50 / p95 / max) of the requests SENT from the first Pause sent
to the last Unpause confirmed, i.e. those that arrived during the pause, next to pausepoint's
write stall (the same span) and pause window; for scale, the latency of the requests sent
outside the pauses (and not in the second before one). With --check (default) each point is then
restored through the restore flow into fresh databases and must pass the restore's ScalarDB
transaction check and the checker. Results: bench/out/scalardb_stall.json and .md (and
scalardb_stall_failures.txt with the full errors of failed checks); servers and scratch under
var/bench-scalardb/ (removed at the end unless a check failed: then kept, copies included).
Method: BENCHMARKS.md, "`bench.scalardb_stall`".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench.progress import say

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench-scalardb"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scalardb_stall", description=__doc__)
    p.add_argument("--backups", type=int, default=10, help="backups under load (default 10)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--gap-acks", type=int, default=100, help="acks between backups (default 100)")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="restore and check every point (default on)")  # fmt: skip
    p.add_argument("--out", default=str(ROOT / "bench" / "out"), help="results directory")
    return p.parse_args(argv)


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"ScalarDB-backed nodes, {meta['clients']} clients, {len(rows)} backups "
        f"(commit {meta['commit']}, {meta['date']})",
        "",
        "| # | requests in the pause | clients p50 / p95 / max, ms | pausepoint write stall, ms "
        "| window, ms | drain, ms | restore checks |",
        "|---:|---:|---|---:|---:|---:|---|",
    ]
    for i, r in enumerate(rows, 1):
        c = r["clients"]
        lines.append(
            f"| {i} | {c['requests']} | {c['p50_ms']:.0f} / {c['p95_ms']:.0f} / {c['max_ms']:.0f} "
            f"| {r['write_stall_ms']:.0f} | {r['window_ms']:.0f} | {r['drain_ms']:.0f} "
            f"| {r['checked']} |"
        )
    s = meta["summary"]
    lines += [
        "",
        f"median over backups: clients p50 {s['clients_p50_ms']:.0f} ms, p95 "
        f"{s['clients_p95_ms']:.0f} ms, max {s['clients_max_ms']:.0f} ms (max of maxima "
        f"{s['clients_max_of_max_ms']:.0f} ms); pausepoint write stall {s['write_stall_ms']:.0f} "
        f"ms, window {s['window_ms']:.0f} ms; {s['requests']} requests arrived during the "
        f"pauses; throughput {s['requests_per_s']:.0f} requests/s; latency outside the pauses "
        f"p50 {s['normal_latency_p50_ms']:.0f} ms, p95 {s['normal_latency_p95_ms']:.0f} ms",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from harness import scalardb_node as sn
    from harness import scalardb_site as ss
    from harness import servers
    from harness.scalardb_workload import Workload, create_accounts, throughput
    from pausepoint.cli import _prefect_defaults

    _prefect_defaults()
    sn.require_node()
    for env in ss.PASSWORD_ENVS.values():
        os.environ[env] = servers.PASSWORD
    if VAR.exists():
        shutil.rmtree(VAR)
    VAR.mkdir(parents=True)
    VAR.chmod(0o711)  # PostgreSQL runs as the postgres user and must reach its data dir
    say("starting PostgreSQL and MariaDB, then 2 ledger + 2 auditor nodes")
    pg = servers.start_postgres(VAR / "postgres")
    my = servers.start_mariadb(VAR / "mariadb")
    cluster = workload = None
    rows: list[dict] = []
    failures: list[str] = []  # full errors of failed checks (the table holds their start)
    try:
        cluster = sn.start_cluster(pg, my, "bench", VAR / "nodes")
        site_file = ss.write_yaml(
            VAR / "site.yaml", ss.site_data(cluster, "bench-scalardb", VAR / "catalog")
        )
        creations = create_accounts(cluster.addresses("ledger"), cluster.addresses("auditor"))
        workload = Workload(
            cluster.addresses("ledger"), cluster.addresses("auditor"), clients=args.clients
        ).start()
        workload.wait_for(50)
        figures = []
        for i in range(args.backups):
            figures.append(ss.backup(site_file))
            workload.wait_for(workload.acked() + args.gap_acks, timeout=120)
            say(f"backup {i + 1}/{args.backups}: {figures[-1].point_id}")
        log = creations + workload.stop()
        workload = None
        for i, fig in enumerate(figures, 1):
            clients = fig.clients(log)
            checked = "not run"
            if args.check:
                suffix = f"b{i}"
                try:
                    c = ss.restore_and_check(cluster, site_file, fig, log, suffix, VAR / "nodes")
                    checked = "pass" if c.ok else "FAIL: " + "; ".join(c.verdict.failed())
                except Exception as exc:  # a failed restore check is a result here
                    checked = f"FAIL: {type(exc).__name__}: {str(exc)[:200]}"
                    failures.append(f"point {i} ({fig.point_id}), copies *_{suffix}:\n{exc}")
                if checked == "pass":
                    ss.drop_copies(cluster, suffix)  # a failed one stays for a look
            say(f"point {i}: {ss.stall_line(fig, clients)}; checks {checked}")
            rows.append(
                {
                    "point": fig.point_id,
                    "clients": {
                        "requests": clients.requests,
                        "p50_ms": clients.p50_ms,
                        "p95_ms": clients.p95_ms,
                        "max_ms": clients.max_ms,
                    },
                    "write_stall_ms": fig.write_stall_ms,
                    "window_ms": fig.window_ms,
                    "drain_ms": fig.drain_ms,
                    "checked": checked,
                }
            )
        with_requests = [r["clients"] for r in rows if r["clients"]["requests"]]
        spans = [f.stall_span for f in figures]
        normal = sorted(
            e.latency_ms
            for e in log
            if e.kind == "transfer"
            and e.latency_ms is not None
            and not any(a - 1 <= e.sent <= b for a, b in spans)  # 1 s margin before a pause
        )
        meta = {
            "commit": os.environ.get("BENCH_COMMIT", "working tree"),
            "date": time.strftime("%Y-%m-%d"),
            "clients": args.clients,
            "machine": f"{os.cpu_count()} cores, {platform.platform()}",
            "summary": {
                "clients_p50_ms": _med([c["p50_ms"] for c in with_requests]),
                "clients_p95_ms": _med([c["p95_ms"] for c in with_requests]),
                "clients_max_ms": _med([c["max_ms"] for c in with_requests]),
                "clients_max_of_max_ms": max((c["max_ms"] for c in with_requests), default=0.0),
                "write_stall_ms": _med([r["write_stall_ms"] for r in rows]),
                "window_ms": _med([r["window_ms"] for r in rows]),
                "requests": sum(c["requests"] for c in with_requests),
                "requests_per_s": throughput(log),
                "normal_latency_p50_ms": _med(normal),
                "normal_latency_p95_ms": normal[int(0.95 * (len(normal) - 1))] if normal else 0.0,
            },
        }
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scalardb_stall.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        md = _markdown(rows, meta)
        (out / "scalardb_stall.md").write_text(md)
        if failures:
            (out / "scalardb_stall_failures.txt").write_text("\n\n".join(failures) + "\n")
        print("\n" + md)
        return 0 if all(r["checked"] in ("pass", "not run") for r in rows) else 1
    finally:
        if workload is not None:
            workload.stop()
        if cluster is not None:
            cluster.stop()
        my.stop()
        pg.stop()
        if failures:  # the servers' data (and the failed copies) stay for a look
            say(f"kept {VAR} (restart its servers with harness.servers on the same directories)")
        else:
            shutil.rmtree(VAR, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
