"""`make bench`: write stall, naive comparison and throughput, in one run.

    python -m bench.run                                   the full run (~19 min on 2 cores)
    python -m bench.run --sizes 10MB,100MB --reps 2       a quick run
    python -m bench.run --kinds postgres --sizes 1GB

Per database kind and size, smallest first: the write stall of the real backup flow under load
(bench/stall.py), the naive pause-dump-unpause script, and A/B throughput pairs
(bench/throughput.py). Results: bench/out/results.json and results.md; progress on stdout;
servers and scratch files under var/bench/, removed at the end.
Method and results: BENCHMARKS.md, sections "What each benchmark does" (`bench.run`) and
"Latest runs".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

from bench.progress import T0, say

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10MB,100MB,1GB", help="bulk sizes, e.g. 10MB,100MB,1GB")
    p.add_argument("--kinds", default="postgres,mysql", help="postgres,mysql")
    p.add_argument("--reps", type=int, help="quick runs: use N for every repetition count")
    p.add_argument("--stall-reps", default="5,5,5", help="flow backups per size (last repeats)")
    p.add_argument("--naive-reps", default="3,3,2", help="naive pauses per size (last repeats)")
    p.add_argument("--pairs", default="5,5,3", help="A/B pairs per size (last repeats)")
    p.add_argument("--writers", type=int, default=4, help="bank writers (2-4)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"), help="results directory")
    p.add_argument("--skip", default="", help="comma list of phases to skip: flow,naive,pairs")
    return p.parse_args(argv)


def _per_size(spec: str, n: int) -> list[int]:
    values = [int(x) for x in spec.split(",")]
    return [values[min(i, len(values) - 1)] for i in range(n)]


def _tool_version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    except OSError as exc:
        return f"unavailable ({exc})"


def _machine() -> dict:
    ram = 0.0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            ram = int(line.split()[1]) / 1024 / 1024
    return {
        "nproc": os.cpu_count(),
        "ram_gb": ram,
        "kernel": f"{platform.system()} {platform.release()}",
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _commit_guard_default():
    from pausepoint.stores.mysql_config import MysqlConfig

    field = MysqlConfig.model_fields.get("commit_guard")
    return None if field is None else field.default


class Bench:
    def __init__(self, args: argparse.Namespace):
        from bench.env import parse_size, size_label

        self.args = args
        self.sizes = sorted(parse_size(s) for s in args.sizes.split(","))
        self.labels = [size_label(s) for s in self.sizes]
        n = len(self.sizes)
        if args.reps:
            self.stall_reps = [args.reps] * n
            self.naive_reps = [min(args.reps, x) for x in _per_size(args.naive_reps, n)]
            self.pairs = [args.reps] * n
        else:
            # defaults per size index: 10MB, 100MB, 1GB
            self.stall_reps = _per_size(args.stall_reps, n)
            self.naive_reps = _per_size(args.naive_reps, n)
            self.pairs = _per_size(args.pairs, n)
        self.skip = {s for s in args.skip.split(",") if s}
        self.kinds = [k for k in args.kinds.split(",") if k]
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.results: dict = {"meta": {}, "stages": []}

    def save(self) -> None:
        from bench.report import render, summary_json

        meta = self.results["meta"]
        meta["elapsed_s"] = time.monotonic() - T0
        meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        self.results["summary"] = summary_json(self.results)
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=1, default=str))
        tmp.replace(self.out / "results.json")
        (self.out / "results.md").write_text(render(self.results) + "\n")

    def run(self) -> int:
        from bench.env import Servers

        env_defaults = {
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            # Flow and task logs still go to the API; the console shows warnings only, so the
            # bench's own progress lines stay readable.
            "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        }
        for k, v in env_defaults.items():
            os.environ.setdefault(k, v)
        # BENCH_COMMIT: set when running from an exported snapshot of a commit (no .git there)
        commit = os.environ.get("BENCH_COMMIT") or _tool_version(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]
        )
        dirty = not os.environ.get("BENCH_COMMIT") and _tool_version(
            ["git", "-C", str(ROOT), "status", "--porcelain", "pausepoint", "tasks", "flows"]
        )
        self.results["meta"] = {
            "command": "python -m bench.run " + " ".join(sys.argv[1:]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": _machine(),
            "commit": commit + (" + local changes in pausepoint/tasks/flows" if dirty else ""),
            "options": {
                "sizes": self.labels,
                "kinds": self.kinds,
                "stall_reps": self.stall_reps,
                "naive_reps": self.naive_reps,
                "pairs": self.pairs,
                "writers": self.args.writers,
                "row_payload": 1024,
                "mysql_commit_guard_default": _commit_guard_default(),
            },
        }
        say(f"sizes {self.labels}, kinds {self.kinds}, flow reps {self.stall_reps}, "
            f"naive reps {self.naive_reps}, A/B pairs {self.pairs}")  # fmt: skip
        say("starting PostgreSQL and MariaDB on 127.0.0.1 (var/bench/)")
        env = Servers.start(VAR / "servers")
        try:
            import prefect

            self.results["meta"]["versions"] = {
                "postgres": env.pg.version,
                "mariadb": env.my.version,
                "pg_dump": _tool_version([str(env.pg.bin_dir / "pg_dump"), "--version"]),
                "mariadb-dump": _tool_version(["mariadb-dump", "--version"]),
                "python": platform.python_version(),
                "prefect": prefect.__version__,
            }
            from prefect.testing.utilities import prefect_test_harness

            say("starting a temporary Prefect API (once for the whole bench)")
            with prefect_test_harness(server_startup_timeout=120):
                say("Prefect API up")
                for kind in self.kinds:
                    self.run_kind(env, kind)
        finally:
            self.results["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
            self.save()
            say("stopping servers")
            env.stop()
            shutil.rmtree(VAR, ignore_errors=True)
        say(f"done: {self.out / 'results.md'}")
        print((self.out / "results.md").read_text(), flush=True)
        return 0

    def run_kind(self, env, kind: str) -> None:
        from bench.env import rows_for

        ledger_db, auditor_db = "bench_ledger", "bench_auditor"
        for db in (ledger_db, auditor_db):
            env.create_db(kind, db)
            env.create_bank(kind, db)
        env.create_bulk(kind, ledger_db)
        warm = False
        for i, (size, label) in enumerate(zip(self.sizes, self.labels, strict=True)):
            t = time.monotonic()
            say(f"{kind} {label}: growing the bulk table to {rows_for(size):,} rows")
            env.grow_bulk(kind, ledger_db, rows_for(size))
            env.reset_bank(kind, ledger_db)
            env.reset_bank(kind, auditor_db)
            env.settle(kind, ledger_db)
            say(f"{kind} {label}: ready in {time.monotonic() - t:.1f} s, database "
                f"{env.db_bytes(kind, ledger_db) / 1e6:.0f} MB")  # fmt: skip
            stage = {"kind": kind, "size": label, "size_bytes": size, "flow": [], "naive": []}
            self.results["stages"].append(stage)
            work = VAR / "work" / f"{kind}-{label.replace(' ', '')}"
            work.mkdir(parents=True, exist_ok=True)
            try:
                if not ({"flow", "naive"} <= self.skip):
                    warm = self.stall_phase(env, kind, stage, work, ledger_db, auditor_db, i, warm)
                env.settle(kind, ledger_db)
                stage["db_bytes"] = env.db_bytes(kind, ledger_db)
                if "pairs" not in self.skip:
                    self.pairs_phase(env, kind, stage, work, ledger_db, i)
            except Exception:
                stage["error"] = traceback.format_exc()
                say(f"{kind} {label}: FAILED\n{stage['error']}")
            finally:
                shutil.rmtree(work, ignore_errors=True)
                self.save()

    def stall_phase(self, env, kind, stage, work, ledger_db, auditor_db, i, warm) -> bool:
        from bench.report import pct
        from bench.stall import (
            Load,
            baseline_latency,
            client_waits,
            flow_backup,
            naive_backup,
            write_site,
        )

        label = stage["size"]
        load = Load.start(env, kind, ledger_db, auditor_db, self.args.writers, work)
        acks: list = []
        try:
            site_file = write_site(env, kind, work, load.targets, ledger_db, auditor_db)
            if "flow" not in self.skip:
                if not warm:
                    # The first flow run of a process imports and registers tasks; its figures
                    # are kept apart (a worker-spawned run would pay this every time).
                    r = flow_backup(site_file)
                    stage["warmup"] = r
                    say(f"{kind} {label}: warm-up backup: stall {r['write_stall_ms']:.0f} ms, "
                        f"run {r['wall_s']:.1f} s (not counted)")  # fmt: skip
                    warm = True
                for n in range(self.stall_reps[i]):
                    r = flow_backup(site_file)
                    stage["flow"].append(r)
                    seg = " ".join(f"{k} {v:.0f}" for k, v in r["segments_ms"].items())
                    say(f"{kind} {label}: backup {n + 1}/{self.stall_reps[i]}: write stall "
                        f"{r['write_stall_ms']:.0f} ms (window {r['window_ms']:.0f} ms; {seg}), "
                        f"run {r['wall_s']:.1f} s, {r['artifact_bytes'] / 1e6:.0f} MB")  # fmt: skip
            if "naive" not in self.skip:
                for n in range(self.naive_reps[i]):
                    r = naive_backup(env, kind, site_file, work / "naive", [ledger_db, auditor_db])
                    shutil.rmtree(work / "naive", ignore_errors=True)
                    stage["naive"].append(r)
                    say(f"{kind} {label}: naive {n + 1}/{self.naive_reps[i]}: write stall "
                        f"{r['write_stall_ms']:.0f} ms (dump {r['dump_s']:.1f} s)")  # fmt: skip
        finally:
            try:
                acks, errors = load.stop()
                if errors:
                    stage["load_errors"] = errors
                    say(f"{kind} {label}: load errors: {errors}")
            except Exception:
                load.kill()
                raise
        for r in stage["flow"] + stage["naive"] + ([stage["warmup"]] if "warmup" in stage else []):
            r["client_waits_ms"] = client_waits(acks, r)
        stage["acks"] = len(acks)
        base = baseline_latency(
            acks, stage["flow"] + stage["naive"] + ([stage["warmup"]] if "warmup" in stage else [])
        )
        waits = [x for r in stage["flow"] for x in r["client_waits_ms"]]
        if waits:
            say(f"{kind} {label}: client wait during flow stalls p50 {pct(waits, 50):.0f} ms, "
                f"max {max(waits):.0f} ms ({len(waits)} requests; {len(acks)} acks)")  # fmt: skip
        # requests outside every stall (during copies too): the load's normal latency
        stage["baseline_latency"] = {
            "n": len(base), "p50": pct(base, 50), "p95": pct(base, 95), "max": max(base, default=0)
        }  # fmt: skip
        return warm

    def pairs_phase(self, env, kind, stage, work, ledger_db, i) -> None:
        from bench.throughput import pair

        label = stage["size"]
        mb = stage["db_bytes"] / 1e6
        stage["pairs"] = []
        for n in range(self.pairs[i]):
            p = pair(env, kind, ledger_db, work, n)
            stage["pairs"].append(p)
            c, r = p["capture_s"], p["restore_s"]
            say(f"{kind} {label}: pair {n + 1}/{self.pairs[i]}: capture ours {mb / c['ours']:.1f} "
                f"raw {mb / c['raw']:.1f} MB/s; restore ours {mb / r['ours']:.1f} "
                f"raw {mb / r['raw']:.1f} MB/s")  # fmt: skip
            self.save()
        # What the fingerprint alone costs (it runs beside the dump inside ours' capture).
        from bench.throughput import fingerprint_alone

        stage["fingerprint_s"] = fingerprint_alone(env, kind, ledger_db)
        say(f"{kind} {label}: fingerprint alone {stage['fingerprint_s']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    return Bench(_parse(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
