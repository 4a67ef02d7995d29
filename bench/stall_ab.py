"""Write stall at two sizes, interleaved: does the stall grow with the data?

    python -m bench.stall_ab --kind postgres --sizes 10MB,1GB --rounds 6

Every round backs up both sizes' sites, in alternating order, so load drift hits both alike.
Results: bench/out/stall_ab.json and .md; servers under var/bench-ab/.
Method and results: BENCHMARKS.md, sections "What each benchmark does" (`bench.stall_ab`) and
"Latest runs".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from bench.progress import say

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench-ab"


def backup_under_load(env, kind, label, ledger_db, auditor_db, writers, work) -> dict:
    from bench.stall import Load, client_waits, flow_backup, write_site

    site_dir = work / label.replace(" ", "")
    site_dir.mkdir(parents=True, exist_ok=True)
    for db in (ledger_db, auditor_db):  # each load process numbers its transfers from 1
        env.reset_bank(kind, db)
    load = Load.start(env, kind, ledger_db, auditor_db, writers, site_dir)
    try:
        site_file = write_site(env, kind, site_dir, load.targets, ledger_db, auditor_db)
        r = flow_backup(site_file)
    finally:
        acks, errors = load.stop()
    r["client_waits_ms"] = client_waits(acks, r)
    r["load_errors"] = errors
    return r


def render(results: dict) -> str:
    from bench.report import f, med, pct, trio

    lines = [
        f"Command: `{results['command']}`  ",
        f"Date: {results['started']} → {results['finished']}; commit {results['commit']}; "
        f"load average at start {results['loadavg_start']}, at end {results['loadavg_end']}",
        "",
        "| size | backups | write stall p50 / p95 / max, ms | window p50 / p95 / max, ms | "
        "drain | open capture | verify | to unpause | unpause | client wait max, ms |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    sizes = results["sizes"]
    for label in sizes:
        runs = [r for rnd in results["rounds"] for r in rnd if r["size"] == label]
        seg = {k: med([r["segments_ms"][k] for r in runs]) for k in runs[0]["segments_ms"]}
        waits = [x for r in runs for x in r["client_waits_ms"]]
        lines.append(
            f"| {label} | {len(runs)} | {trio([r['write_stall_ms'] for r in runs])} | "
            f"{trio([r['window_ms'] for r in runs])} | {f(seg['drain'], 1)} | "
            f"{f(seg['open_capture'], 1)} | {f(seg['verify'], 1)} | {f(seg['to_unpause'], 1)} | "
            f"{f(seg['unpause'], 1)} | {f(max(waits) if waits else float('nan'))} |"
        )
    small, large = sizes[0], sizes[-1]
    by = {
        s: [r["write_stall_ms"] for rnd in results["rounds"] for r in rnd if r["size"] == s]
        for s in sizes
    }
    paired = [
        next(r for r in rnd if r["size"] == large)["write_stall_ms"]
        / next(r for r in rnd if r["size"] == small)["write_stall_ms"]
        for rnd in results["rounds"]
    ]
    lines += [
        "",
        f"Write stall p50 {large} / {small}: {f(pct(by[large], 50) / pct(by[small], 50), 2)} "
        f"(target <= 1.1); per-round ratios {', '.join(f(x, 2) for x in paired)} "
        f"(median {f(med(paired), 2)}).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from bench.env import Servers, parse_size, rows_for, size_label

    p = argparse.ArgumentParser(prog="python -m bench.stall_ab")
    p.add_argument("--kind", default="postgres")
    p.add_argument("--sizes", default="10MB,1GB")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args(argv)
    for k, v in {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    }.items():
        os.environ.setdefault(k, v)
    sizes = sorted(parse_size(s) for s in a.sizes.split(","))
    labels = [size_label(s) for s in sizes]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "command": "python -m bench.stall_ab " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": os.environ.get("BENCH_COMMIT", "?"),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "kind": a.kind,
        "sizes": labels,
        "writers": a.writers,
        "rounds": [],
    }
    say(f"{a.kind}: sizes {labels}, {a.rounds} rounds, servers under var/bench-ab/")
    env = Servers.start(VAR / "servers")
    try:
        auditor_db = "bench_auditor"
        env.create_db(a.kind, auditor_db)
        env.create_bank(a.kind, auditor_db)
        ledgers = {}
        for size, label in zip(sizes, labels, strict=True):
            db = f"bench_ledger_{label.replace(' ', '').lower()}"
            env.create_db(a.kind, db)
            env.create_bank(a.kind, db)
            env.create_bulk(a.kind, db)
            env.grow_bulk(a.kind, db, rows_for(size))
            env.settle(a.kind, db)
            ledgers[label] = db
            say(f"{label}: {db}, {env.db_bytes(a.kind, db) / 1e6:.0f} MB")
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            say("Prefect API up; warm-up backup (not counted)")
            backup_under_load(env, a.kind, labels[0], ledgers[labels[0]], auditor_db,
                              a.writers, VAR / "work")  # fmt: skip
            for n in range(a.rounds):
                order = labels if n % 2 == 0 else list(reversed(labels))
                rnd = []
                for label in order:
                    r = backup_under_load(env, a.kind, label, ledgers[label], auditor_db,
                                          a.writers, VAR / "work")  # fmt: skip
                    r["size"] = label
                    rnd.append(r)
                    say(f"round {n + 1}/{a.rounds} {label}: write stall "
                        f"{r['write_stall_ms']:.0f} ms (window {r['window_ms']:.0f} ms), "
                        f"run {r['wall_s']:.1f} s")  # fmt: skip
                results["rounds"].append(rnd)
    finally:
        results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        results["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        (out / "stall_ab.json").write_text(json.dumps(results, indent=1))
        env.stop()
        shutil.rmtree(VAR, ignore_errors=True)
    md = render(results)
    (out / "stall_ab.md").write_text(md + "\n")
    print(md, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
