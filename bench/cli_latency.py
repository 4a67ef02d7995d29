"""How long `pausepoint` takes to refuse what it can refuse before Prefect starts.

    python -m bench.cli_latency                      # 15 runs of each command, this checkout
    python -m bench.cli_latency --root /tmp/old --runs 3   # another checkout (an A/B)

Runs the real command as a subprocess (a fresh interpreter each time, as a person runs it)
without PREFECT_API_URL: `restore` of a point id the catalog does not have (target: median
under 1 s; it used to start a temporary Prefect API first, 20-50 s), and `points show` of the
same id for comparison. Every run must exit 8 with the catalog's message. Results:
bench/out/cli_latency.json and a line per command on stdout. Method: BENCHMARKS.md, "CLI
latency".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.progress import say

ROOT = Path(__file__).resolve().parent.parent
UNKNOWN = "20200101T000000Z-beef"
SITE = """\
site: bench
catalog: {path: catalog}
ledger:
  targets: {static: ["127.0.0.1:1"]}
  stores:
    - {kind: postgres, name: pg, user: u, database: d, password: {env: BENCH_CLI_PW}}
"""
COMMANDS = {
    "restore of an unknown point": ["restore", "--point", UNKNOWN],
    "points show of an unknown point": ["points", "show", UNKNOWN],
}


def _env(root: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PYTHONPATH=str(root), PREFECT_HOME=str(home), BENCH_CLI_PW="unused")
    return env


def time_command(
    args: list[str], site: Path, env: dict[str, str], runs: int, root: Path
) -> list[float]:
    """Wall-clock seconds of each run; each must exit 8 naming the unknown point."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pausepoint.cli", *args, "--site", str(site)],
            capture_output=True,
            text=True,
            env=env,
            cwd=root,  # `python -m` puts the working directory first on sys.path
            timeout=600,
        )
        times.append(time.perf_counter() - t0)
        if proc.returncode != 8 or f"has no restore point {UNKNOWN}" not in proc.stderr:
            raise SystemExit(f"unexpected outcome of {args}: {proc.returncode}\n{proc.stderr}")
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.cli_latency", description=__doc__.split("\n")[0]
    )
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--root", default=str(ROOT), help="the checkout whose pausepoint runs")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    args = p.parse_args(argv)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        site = Path(tmp) / "site.yaml"
        site.write_text(SITE)
        env = _env(Path(args.root), Path(tmp) / "prefect")
        for name, command in COMMANDS.items():
            times = time_command(command, site, env, args.runs, Path(args.root))
            p90 = sorted(times)[math.ceil(0.9 * len(times)) - 1]  # nearest rank
            results[name] = {
                "runs": len(times),
                "median_s": statistics.median(times),
                "p90_s": p90,
                "max_s": max(times),
                "times_s": times,
            }
            say(
                f"{name}: median {statistics.median(times):.2f} s, p90 {p90:.2f} s, "
                f"max {max(times):.2f} s over {len(times)} runs"
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "root": args.root,
        "commit": os.environ.get("BENCH_COMMIT"),
        "load_average_1_5_15": os.getloadavg(),  # the machine is shared: say how busy it was
        "results": results,
    }
    (out / "cli_latency.json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
