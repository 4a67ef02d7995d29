"""The pause window with Cassandra: how long writes stall while every node is snapshotted.

A real 3-node Cassandra 5.0 cluster (harness/cassandra_cluster.py) under a bank writer
(harness/cassandra_bank.py) that writes through a gate, the stand-in for ScalarDL's pause:
closing it waits for the write in flight (the drain) and holds the next one. The write stall
of one round is from asking the gate to close to reopening it; in between, the capture's
in-window step runs. Per data size, interleaved round by round, three ways:

- ``ours``: pausepoint's cassandra store, ``prepare_capture`` (JMX agents started, keyspaces
  flushed) before the pause, ``open_capture`` (a snapshot on every node at once, over the open
  agents, then the ring check) inside it;
- ``ours-noflush``: the same without the pre-flush (``flush_before_pause: false``);
- ``cassy``: Cassy's way, a ``nodetool snapshot -t TAG KEYSPACES`` per node inside the pause,
  all nodes at once (each starts a JVM).

Snapshots are cleared after each round (not uploaded: the copy happens after the window and is
not part of the stall). Target: stall p95 under 1 s with three nodes, flat in data size.

    python -m bench.cassandra_window [--sizes 10MB,100MB] [--rounds 10] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.cassandra_bank import Bank
from harness.cassandra_cluster import CassandraCluster
from pausepoint.secrets import SecretResolver
from pausepoint.stores.base import CaptureContext
from pausepoint.stores.cassandra.store import CassandraStore
from pausepoint.stores.cassandra_config import CassandraConfig

ROOT = Path(__file__).resolve().parent.parent
ROW_BYTES = 1024


def parse_size(text: str) -> int:
    units = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
    return int(float(text[:-2]) * units[text[-2:].upper()])


def store_for(cluster: CassandraCluster, keyspaces: list[str], flush: bool) -> CassandraStore:
    entry = cluster.store_settings(keyspaces)
    entry.pop("kind")
    cfg = CassandraConfig(name="bench", flush_before_pause=flush, **entry)
    return CassandraStore(cfg, SecretResolver(environ={}))


def round_ours(store: CassandraStore, bank: Bank, work: Path, n: int) -> dict:
    ctx = CaptureContext.local(work / f"r{n}", store=store.name, point_id=f"b{n}-{time.time_ns()}")
    t_prep = time.monotonic()
    prepared = store.prepare_capture(ctx)
    prep_s = time.monotonic() - t_prep
    asked = time.monotonic()
    with bank.paused():
        drained = time.monotonic()
        handle = store.open_capture(ctx, prepared)
        opened = time.monotonic()
    reopened = time.monotonic()
    store.abort_capture(handle)  # clears the snapshot on every node
    return {"stall_ms": (reopened - asked) * 1000, "drain_ms": (drained - asked) * 1000,
            "in_window_ms": (opened - drained) * 1000, "prepare_s": prep_s}  # fmt: skip


def round_cassy(cluster: CassandraCluster, bank: Bank, n: int, pool: ThreadPoolExecutor) -> dict:
    tag = f"cassy-{n}-{time.time_ns()}"

    def snapshot(node) -> None:
        cluster.nodetool(node, "snapshot", "-t", tag, *bank.keyspaces)

    asked = time.monotonic()
    with bank.paused():
        drained = time.monotonic()
        list(pool.map(snapshot, cluster.nodes))
        opened = time.monotonic()
    reopened = time.monotonic()
    for node in cluster.nodes:
        cluster.nodetool(node, "clearsnapshot", "-t", tag, "--", *bank.keyspaces)
    return {"stall_ms": (reopened - asked) * 1000, "drain_ms": (drained - asked) * 1000,
            "in_window_ms": (opened - drained) * 1000}  # fmt: skip


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def data_bytes(cluster: CassandraCluster, keyspaces: list[str]) -> int:
    total = 0
    for node in cluster.nodes:
        for ks in keyspaces:
            for p in (node.data_dir / ks).rglob("*"):
                if p.is_file() and "snapshots" not in p.parts:
                    total += p.stat().st_size
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10MB,100MB")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"))
    ap.add_argument("--work", default=str(ROOT / "var" / "bench-cassandra"))
    args = ap.parse_args(argv)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cluster = CassandraCluster(work / "cluster")
    results: dict = {"commit": os.environ.get("BENCH_COMMIT", ""), "rounds": args.rounds,
                     "sizes": {}}  # fmt: skip
    try:
        started = cluster.start()
        results["cluster_start_s"] = started
        print(f"cluster up in {started:.1f} s", flush=True)
        pool = ThreadPoolExecutor(max_workers=len(cluster.nodes))
        for size_text in args.sizes.split(","):
            size = parse_size(size_text)
            bank = Bank([n.address for n in cluster.nodes], cluster.native_port)
            t0 = time.monotonic()
            bank.create(accounts=max(100, size // ROW_BYTES), payload=ROW_BYTES)
            for node in cluster.nodes:
                for ks in bank.keyspaces:  # nodetool flush takes one keyspace (then tables)
                    cluster.nodetool(node, "flush", ks)
            on_disk = data_bytes(cluster, bank.keyspaces)
            print(f"{size_text}: loaded in {time.monotonic() - t0:.0f} s, "
                  f"{on_disk / 1e6:.0f} MB on disk over 3 nodes", flush=True)  # fmt: skip
            ours = store_for(cluster, bank.keyspaces, flush=True)
            noflush = store_for(cluster, bank.keyspaces, flush=False)
            bank.start_writer()
            rows: dict[str, list[dict]] = {"ours": [], "ours-noflush": [], "cassy": []}
            for n in range(args.rounds):
                time.sleep(1.0)  # the writer fills the memtables between rounds
                rows["ours"].append(round_ours(ours, bank, work / "c", n))
                time.sleep(1.0)
                rows["ours-noflush"].append(round_ours(noflush, bank, work / "c", n))
                time.sleep(1.0)
                rows["cassy"].append(round_cassy(cluster, bank, n, pool))
                last = ", ".join(f"{k} {v[-1]['stall_ms']:.0f} ms" for k, v in rows.items())
                print(f"  round {n}: {last}", flush=True)
            writes = bank.stop_writer()
            summary = {}
            for mode, rs in rows.items():
                stalls = [r["stall_ms"] for r in rs]
                summary[mode] = {
                    "stall_p50_ms": statistics.median(stalls), "stall_p95_ms": pct(stalls, 0.95),
                    "stall_max_ms": max(stalls),
                    "in_window_p50_ms": statistics.median(r["in_window_ms"] for r in rs),
                    "drain_p50_ms": statistics.median(r["drain_ms"] for r in rs),
                }  # fmt: skip
                if "prepare_s" in rs[0]:
                    summary[mode]["prepare_p50_s"] = statistics.median(r["prepare_s"] for r in rs)
            results["sizes"][size_text] = {"on_disk_bytes": on_disk, "writes": writes,
                                           "rounds": rows, "summary": summary}  # fmt: skip
            bank.drop()
            bank.close()
    finally:
        cluster.stop()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cassandra_window.json").write_text(json.dumps(results, indent=1))
    print("\n| size | way | stall p50 | stall p95 | max | in window p50 | prepare p50 |")
    print("|---|---|---|---|---|---|---|")
    for size_text, r in results["sizes"].items():
        for mode, s in r["summary"].items():
            prep = f"{s['prepare_p50_s']:.2f} s" if "prepare_p50_s" in s else "-"
            mb = r["on_disk_bytes"] / 1e6
            print(f"| {size_text} ({mb:.0f} MB on disk) | {mode} | {s['stall_p50_ms']:.0f} ms | "
                  f"{s['stall_p95_ms']:.0f} ms | {s['stall_max_ms']:.0f} ms | "
                  f"{s['in_window_p50_ms']:.0f} ms | {prep} |")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
