"""Figures and markdown tables from a bench results JSON.

    python -m bench.report bench/out/results.json      prints the markdown again

Percentiles interpolate linearly between order statistics (numpy's default); what that means
for p95 at 5 repetitions: BENCHMARKS.md, "What each benchmark does" (Common ground).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

STALL_RATIO_TARGET = 1.1  # write stall at the largest size / at the smallest
BEYOND_HOLD_TARGET_MS = 300.0  # p95 of write stall minus hold
THROUGHPUT_TARGET = 0.9  # ours / raw, by throughput


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def f(x: float, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def trio(values: list[float], digits: int = 0) -> str:
    top = max(values) if values else math.nan
    return f"{f(pct(values, 50), digits)} / {f(pct(values, 95), digits)} / {f(top, digits)}"


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("**met**" if ok else "**not met**")


# --- summaries -------------------------------------------------------------------------------


def stage_summary(stage: dict) -> dict:
    flows = stage.get("flow", [])
    naive = stage.get("naive", [])
    pairs = stage.get("pairs", [])
    db_mb = stage.get("db_bytes", 0) / 1e6
    out: dict = {
        "kind": stage["kind"],
        "size": stage["size"],
        "size_bytes": stage["size_bytes"],
        "db_mb": db_mb,
        "reps": len(flows),
        "stall": [r["write_stall_ms"] for r in flows],
        "window": [r["window_ms"] for r in flows],
        "beyond_hold": [r["stall_beyond_hold_ms"] for r in flows],
        "hold": [r["hold_ms"] for r in flows],
        "client_wait": [x for r in flows for x in r.get("client_waits_ms", [])],
        "client_wait_max_per_rep": [
            max(r["client_waits_ms"]) for r in flows if r.get("client_waits_ms")
        ],
        "baseline_p50": stage.get("baseline_latency", {}).get("p50", math.nan),
        "segments": {
            k: [r["segments_ms"][k] for r in flows]
            for k in ("drain", "open_capture", "verify", "to_unpause", "unpause")
        },
        "snapshot_after": {
            name: [r["snapshot_after_pause_ms"][name] for r in flows]
            for name in (flows[0]["snapshot_after_pause_ms"] if flows else {})
        },
        "fingerprint_s": stage.get("fingerprint_s"),
        "naive_reps": len(naive),
        "naive_stall": [r["write_stall_ms"] for r in naive],
        "naive_dump_s": [r["dump_s"] for r in naive],
        "naive_client_wait": [x for r in naive for x in r.get("client_waits_ms", [])],
        "pairs": len(pairs),
    }
    for op in ("capture", "restore"):
        for who in ("ours", "raw"):
            secs = [p[f"{op}_s"][who] for p in pairs]
            out[f"{op}_{who}_mbs"] = [db_mb / s for s in secs if s > 0]
        ours, raw = out[f"{op}_ours_mbs"], out[f"{op}_raw_mbs"]
        out[f"{op}_ratio"] = med(ours) / med(raw) if ours and raw else math.nan
        out[f"{op}_pair_ratios"] = [
            p[f"{op}_s"]["raw"] / p[f"{op}_s"]["ours"] for p in pairs if p[f"{op}_s"]["ours"] > 0
        ]
    return out


def kind_targets(summaries: list[dict]) -> dict:
    """Per kind: stall ratio largest/smallest size (medians), beyond-hold p95 (all sizes)."""
    by_kind: dict[str, list[dict]] = {}
    for s in summaries:
        if s["reps"]:
            by_kind.setdefault(s["kind"], []).append(s)
    result = {}
    for kind, ss in by_kind.items():
        ss = sorted(ss, key=lambda s: s["size_bytes"])
        small, large = ss[0], ss[-1]
        ratio = (
            pct(large["stall"], 50) / pct(small["stall"], 50)
            if len(ss) > 1 and small["stall"]
            else math.nan
        )
        result[kind] = {
            "small": small["size"],
            "large": large["size"],
            "stall_ratio": ratio,
            "stall_ratio_met": None if math.isnan(ratio) else ratio <= STALL_RATIO_TARGET,
            "beyond_hold_p95": {s["size"]: pct(s["beyond_hold"], 95) for s in ss},
            "beyond_hold_met": all(pct(s["beyond_hold"], 95) < BEYOND_HOLD_TARGET_MS for s in ss),
        }
    return result


# --- markdown --------------------------------------------------------------------------------


def render(results: dict) -> str:
    meta = results["meta"]
    stages = results["stages"]
    summaries = [stage_summary(s) for s in stages]
    lines: list[str] = []
    add = lines.append
    add(f"Command: `{meta['command']}`  ")
    add(
        f"Date: {meta['started']} → {meta.get('finished', '(running)')} "
        f"({f(meta.get('elapsed_s', math.nan) / 60, 1)} min)  "
    )
    m = meta["machine"]
    add(
        f"Machine: {m['nproc']} cores, {m['ram_gb']:.1f} GB RAM, {m['kernel']}; load average "
        f"at start {m['loadavg_start']}, at end {meta.get('loadavg_end', '?')}  "
    )
    v = meta["versions"]
    add(
        f"Servers: PostgreSQL {v['postgres']}, MariaDB {v['mariadb']} (private test servers on "
        f"127.0.0.1, durability off); tools: {v['pg_dump']}; {v['mariadb-dump']}; "
        f"Python {v['python']}, Prefect {v['prefect']}; commit {meta.get('commit', '?')}  "
    )
    o = meta["options"]
    add(
        f"Load: {o['writers']} bank writers through 3 admin nodes (2 ledger + 1 auditor); "
        f"bulk rows of {o['row_payload']} characters of hash text"
    )
    add("")

    add("### 1. Write stall of the backup flow under load")
    add("")
    add(
        "Per backup through the real flow: the restore point's `write_stall_ms` (first Pause "
        "sent → last Unpause confirmed) and window (last Pause confirmed → first Unpause sent); "
        "client wait = latency of the bank requests sent during the stall. "
        "Cells: p50 / p95 / max, ms."
    )
    add("")
    add(
        "| kind | size | DB MB | reps | write stall | window | stall beyond hold | "
        "client wait (n) | normal latency p50 |"
    )
    add("|---|---|---:|---:|---|---|---|---|---:|")
    for s in summaries:
        if not s["reps"]:
            continue
        add(
            f"| {s['kind']} | {s['size']} | {f(s['db_mb'])} | {s['reps']} | {trio(s['stall'])} | "
            f"{trio(s['window'])} | {trio(s['beyond_hold'])} | "
            f"{trio(s['client_wait'])} ({len(s['client_wait'])}) | "
            f"{f(s['baseline_p50'], 1)} |"
        )
    add("")
    targets = kind_targets(summaries)
    add(
        "| kind | write stall p50, largest / smallest size | target <= 1.1 | "
        "stall beyond hold p95 | target < 300 ms |"
    )
    add("|---|---|---|---|---|")
    for kind, t in targets.items():
        bh = ", ".join(f"{k}: {f(x)} ms" for k, x in t["beyond_hold_p95"].items())
        add(
            f"| {kind} | {t['large']} / {t['small']} = {f(t['stall_ratio'], 2)} | "
            f"{verdict(t['stall_ratio_met'])} | {bh} | {verdict(t['beyond_hold_met'])} |"
        )
    add("")
    add("Where the write stall goes (medians, ms; from each restore point's timeline):")
    add("")
    add(
        "| kind | size | drain (pause sent → last confirmed) | open capture (→ last snapshot "
        "established) | verify (→ last CheckPaused) | to unpause (→ first Unpause sent) | "
        "unpause (→ last confirmed) | each store's snapshot established after window start |"
    )
    add("|---|---|---:|---:|---:|---:|---:|---|")
    for s in summaries:
        if not s["reps"]:
            continue
        seg = s["segments"]
        add(
            f"| {s['kind']} | {s['size']} | {f(med(seg['drain']), 1)} | "
            f"{f(med(seg['open_capture']), 1)} | {f(med(seg['verify']), 1)} | "
            f"{f(med(seg['to_unpause']), 1)} | {f(med(seg['unpause']), 1)} | "
            + ", ".join(f"{n} {f(med(v), 1)}" for n, v in s["snapshot_after"].items())
            + " |"
        )
    add("")

    if any(s["naive_reps"] for s in summaries):
        _naive(add, summaries)
    if any(s["pairs"] for s in summaries):
        _throughput(add, summaries)
    return "\n".join(lines)


def _naive(add, summaries: list[dict]) -> None:
    add("### 2. Naive script: pause, raw dump inside the pause, unpause")
    add("")
    add(
        "| kind | size | reps | write stall p50 / max, ms | dump inside the pause, s | "
        "client wait max, ms | naive / pausepoint stall (p50) |"
    )
    add("|---|---|---:|---|---|---:|---:|")
    for s in summaries:
        if not s["naive_reps"]:
            continue
        ratio = pct(s["naive_stall"], 50) / pct(s["stall"], 50) if s["stall"] else math.nan
        add(
            f"| {s['kind']} | {s['size']} | {s['naive_reps']} | "
            f"{f(pct(s['naive_stall'], 50))} / {f(max(s['naive_stall']))} | "
            f"{f(med(s['naive_dump_s']), 1)} | "
            f"{f(max(s['naive_client_wait']) if s['naive_client_wait'] else math.nan)} | "
            f"{f(ratio, 1)}x |"
        )
    add("")


def _throughput(add, summaries: list[dict]) -> None:
    add("### 3. Throughput against the raw tools (A/B pairs, same run)")
    add("")
    add(
        "MB/s = on-disk size of the ledger database's tables (bank + bulk, with indexes) / "
        "elapsed seconds; medians over the pairs. Ratio = ours / raw (medians); per-pair ratios "
        "in brackets."
    )
    add("")
    add(
        "| kind | size | DB MB | pairs | capture ours | capture raw | ratio | "
        "restore ours | restore raw | ratio | fingerprint alone, s |"
    )
    add("|---|---|---:|---:|---:|---:|---|---:|---:|---|---:|")
    for s in summaries:
        if not s["pairs"]:
            continue

        def rr(op: str, s: dict = s) -> str:
            pr = ", ".join(f(x, 2) for x in s[f"{op}_pair_ratios"])
            ok = s[f"{op}_ratio"] >= THROUGHPUT_TARGET
            return f"{f(s[f'{op}_ratio'], 2)} [{pr}] {'✓' if ok else '✗'}"

        add(
            f"| {s['kind']} | {s['size']} | {f(s['db_mb'])} | {s['pairs']} | "
            f"{f(med(s['capture_ours_mbs']), 1)} | {f(med(s['capture_raw_mbs']), 1)} | "
            f"{rr('capture')} | {f(med(s['restore_ours_mbs']), 1)} | "
            f"{f(med(s['restore_raw_mbs']), 1)} | {rr('restore')} | "
            f"{f(s['fingerprint_s'] if s['fingerprint_s'] is not None else math.nan, 1)} |"
        )
    add("")


def summary_json(results: dict) -> dict:
    summaries = [stage_summary(s) for s in results["stages"]]
    compact = []
    for s in summaries:
        compact.append(
            {
                "kind": s["kind"],
                "size": s["size"],
                "db_mb": s["db_mb"],
                "write_stall_ms": {"p50": pct(s["stall"], 50), "p95": pct(s["stall"], 95),
                                   "max": max(s["stall"], default=math.nan)},
                "window_ms_p50": pct(s["window"], 50),
                "beyond_hold_p95_ms": pct(s["beyond_hold"], 95),
                "client_wait_ms": {"p50": pct(s["client_wait"], 50),
                                   "p95": pct(s["client_wait"], 95),
                                   "max": max(s["client_wait"], default=math.nan),
                                   "n": len(s["client_wait"])},
                "naive_stall_ms_p50": pct(s["naive_stall"], 50),
                "capture_ratio": s["capture_ratio"],
                "restore_ratio": s["restore_ratio"],
            }
        )  # fmt: skip
    return {"stages": compact, "targets": kind_targets(summaries)}


def main(argv: list[str]) -> int:
    results = json.loads(Path(argv[0]).read_text())
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
