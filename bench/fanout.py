"""Fan-out: the write stall of one pause window with 3, 30 and 100 admin nodes.

    python -m bench.fanout                                  3,30,100 nodes, 20 rounds
    python -m bench.fanout --nodes 3,30,100 --rounds 30

Test admin nodes (harness/gate_server.py) in a few server processes, one site per node count,
all at once; each round runs one pause window per node count in a shuffled order. A window does
what the backup flow does around its captures (preflight, pause_all, hold(0), verify,
unpause_all, record), without Prefect and without stores. ``--drain-ms D`` makes every node's
Pause take at least D ms; ``--node-nice N`` runs the node processes at a lower CPU priority
than the caller (default 0: the same; 10 did not lower the stall). Results: bench/out/fanout.json.
Method and results: BENCHMARKS.md, section "Fan-out".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench-fanout"


# --- the server processes ----------------------------------------------------------------------


def serve(n: int) -> int:
    """Child: n admin nodes; prints their targets, then answers 'times' and 'stop' on stdin."""
    import threading

    from harness.gate_server import Gate, GateServer

    class TimedGate(Gate):
        """A Gate that notes when a Pause closed it and when an Unpause reopened it."""

        def __init__(self) -> None:
            super().__init__()
            self.events: list[tuple[str, float]] = []
            self._ev_lock = threading.Lock()

        def pause(self, *args, **kwargs):  # type: ignore[override]
            t = time.monotonic()
            outcome = super().pause(*args, **kwargs)
            with self._ev_lock:
                self.events.append(("closed", t))
            return outcome

        def unpause(self) -> None:
            super().unpause()
            t = time.monotonic()
            with self._ev_lock:
                self.events.append(("opened", t))

        def take(self) -> list[tuple[str, float]]:
            with self._ev_lock:
                out, self.events = self.events, []
            return out

    servers = [GateServer(gate=TimedGate(), max_workers=4) for _ in range(n)]
    try:
        print(json.dumps([str(s.target) for s in servers]), flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "times":
                print(json.dumps([s.gate.take() for s in servers]), flush=True)  # type: ignore[attr-defined]
            elif cmd.startswith("drain "):  # every node's Pause drains at least this long
                for s in servers:
                    s.slow_drain_ms = int(cmd.split()[1])
                print("{}", flush=True)
            elif cmd == "stop":
                break
    finally:
        for s in servers:
            s.close()
    return 0


class NodeProcess:
    def __init__(self, n: int, nice: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.fanout", "--serve", str(n), "--node-nice", str(nice)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"node process exited with {self.proc.wait(30)} before serving")
        self.targets: list[str] = json.loads(line)

    def ask(self, cmd: str):
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.close()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(30)


# --- the sites ------------------------------------------------------------------------------------


def write_site(directory: Path, name: str, targets: list[str]) -> Path:
    import yaml

    n_ledger = max(1, math.ceil(len(targets) * 2 / 3))
    ledger, auditor = targets[:n_ledger], targets[n_ledger:]
    # The stores are never contacted: the window alone is measured.
    store = {
        "kind": "postgres", "name": "unused", "host": "127.0.0.1", "port": 1, "user": "x",
        "password": {"env": "PP_FANOUT_UNUSED"}, "database": "unused",
    }  # fmt: skip
    site: dict = {
        "site": name,
        "catalog": {"path": str(directory / "catalog")},
        "ledger": {"targets": {"static": ledger}, "stores": [store]},
    }
    if auditor:
        site["auditor"] = {"targets": {"static": auditor}, "stores": [{**store, "name": "u2"}]}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


def one_window(site_file: Path) -> dict:
    """One pause window through PauseSession, as the flow's steps call it."""
    from pausepoint.admin.site_client import admin_client, discover_nodes
    from pausepoint.site import load_site
    from pausepoint.window import PauseSession

    site = load_site(site_file)
    client = admin_client(site)
    try:
        session = PauseSession(
            site=site.site, node_set=discover_nodes(site), client=client, settings=site.pause
        )
        session.preflight()
        cpu0 = time.process_time()
        session.pause_all()
        try:
            session.hold(0)
            t_verify = time.monotonic()
            session.verify()
            verify_ms = (time.monotonic() - t_verify) * 1000
        finally:
            session.unpause_all()
        cpu_ms = (time.process_time() - cpu0) * 1000
        rec = session.record()
    finally:
        client.close()
    return {
        "write_stall_ms": rec.write_stall_ms,
        "drain_ms": rec.drain_ms,
        "verify_ms": verify_ms,
        "unpause_ms": rec.unpause_ms,
        "window_ms": rec.length_ms,
        "caller_cpu_ms": cpu_ms,
    }


def gate_view(times: list[list[tuple[str, float]]]) -> dict:
    closed = [t for node in times for e, t in node if e == "closed"]
    opened = [t for node in times for e, t in node if e == "opened"]
    per_node = []
    for node in times:
        c = [t for e, t in node if e == "closed"]
        o = [t for e, t in node if e == "opened"]
        if c and o:
            per_node.append((max(o) - min(c)) * 1000)
    return {
        "gate_stall_ms": (max(opened) - min(closed)) * 1000 if closed and opened else math.nan,
        "node_max_ms": max(per_node, default=math.nan),
    }


def pct(values: list[float], q: float) -> float:
    from bench.report import pct as _pct

    return _pct(values, q)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.split("\n")[0])
    p.add_argument("--nodes", default="3,30,100", help="node counts, e.g. 3,30,100")
    p.add_argument("--rounds", type=int, default=20, help="recorded windows per node count")
    p.add_argument("--per-process", type=int, default=25, help="admin nodes per server process")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--drain-ms", type=int, default=0, help="every node's Pause drains this long (load)"
    )
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "fanout.json"))
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument(
        "--node-nice",
        type=int,
        default=0,
        help="CPU niceness of the node processes (default 0: the caller's priority)",
    )
    a = p.parse_args(argv)
    if a.serve:
        # The nodes of a real site run on their own machines; here they share the caller's
        # cores, and a lower priority keeps them from starving the caller being measured.
        # They still get every cycle the caller leaves idle (it mostly waits on them).
        os.nice(a.node_nice)
        return serve(a.serve)
    sys.path.insert(0, str(ROOT))
    from bench.progress import say

    counts = [int(x) for x in a.nodes.split(",")]
    VAR.mkdir(parents=True, exist_ok=True)
    procs: list[NodeProcess] = []
    sites: dict[int, tuple[Path, list[NodeProcess]]] = {}
    results: dict[int, list[dict]] = {n: [] for n in counts}
    rnd = random.Random(a.seed)
    try:
        for n in counts:
            mine: list[NodeProcess] = []
            left = n
            while left > 0:
                k = min(left, a.per_process)
                mine.append(NodeProcess(k, a.node_nice))
                left -= k
            procs += mine
            for np_ in mine:
                np_.ask(f"drain {a.drain_ms}")
            targets = [t for np_ in mine for t in np_.targets]
            sites[n] = (write_site(VAR, f"fanout-{n}", targets), mine)
            say(f"{n} admin nodes up in {len(mine)} process(es)")
        for n in counts:  # warm-up: imports, first channels, thread start
            one_window(sites[n][0])
            for np_ in sites[n][1]:
                np_.ask("times")
        for r in range(a.rounds):
            order = counts[:]
            rnd.shuffle(order)
            for n in order:
                site_file, mine = sites[n]
                w = one_window(site_file)
                w.update(gate_view([node for np_ in mine for node in np_.ask("times")]))
                results[n].append(w)
            say(f"round {r + 1}/{a.rounds}: " + ", ".join(
                f"{n}: {results[n][-1]['write_stall_ms']:.1f} ms" for n in counts
            ))  # fmt: skip
    finally:
        for np_ in procs:
            np_.stop()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python -m bench.fanout " + " ".join(argv if argv is not None else sys.argv[1:]),
        "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "nproc": os.cpu_count(),
    }
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(render(results, counts))
    return 0


def render(results: dict[int, list[dict]], counts: list[int]) -> str:
    def cell(rows: list[dict], key: str) -> str:
        xs = [r[key] for r in rows]
        return f"{pct(xs, 50):.1f} / {pct(xs, 95):.1f} / {max(xs):.1f}"

    lines = [
        "| nodes | windows | write stall | drain | verify | unpause | gate stall | node max "
        "| caller CPU |",
        "|---:|---:|---|---|---|---|---|---|---|",
    ]
    for n in counts:
        rows = results[n]
        lines.append(
            f"| {n} | {len(rows)} | "
            + " | ".join(
                cell(rows, k)
                for k in (
                    "write_stall_ms", "drain_ms", "verify_ms", "unpause_ms", "gate_stall_ms",
                    "node_max_ms", "caller_cpu_ms",
                )
            )
            + " |"
        )  # fmt: skip
    lo, hi = min(counts), max(counts)
    for q in (50, 95):
        a = pct([r["write_stall_ms"] for r in results[hi]], q)
        b = pct([r["write_stall_ms"] for r in results[lo]], q)
        lines.append(f"\nwrite stall p{q}: {hi} nodes / {lo} nodes = {a / b:.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
