"""Write stall of point-in-time backups: PostgreSQL ``pitr: wal`` + MariaDB ``pitr: binlog``.

    python -m bench.pitr_stall                         20 backups, clock offset 4 ms ± 3 ms
    python -m bench.pitr_stall --backups 40 --offset-ms 20 --dispersion-ms 10

One site: two test admin nodes (harness/gate_server.py) in front of the bank app (4 writers,
harness/bank_app.py) whose every transfer debits a WAL-archiving PostgreSQL and credits a
MariaDB with its binary log on. The real backup flow runs ``--backups`` times under that load;
each point's write stall (first Pause sent -> last Unpause confirmed) is compared with the
target ``G + 4 E + 200 ms``: G the coarsest store step (the binary log's 1000 ms), E the clock
error bound measured for that backup (|offset| + uncertainty). The clock is measured against a
loopback NTP responder (tests/unit/test_clock.py's FakeNtpServer: offset and root dispersion as
given) because this machine reaches no NTP server; E is what pausepoint measured through it.
Results: bench/out/pitr_stall.json. Method and results: BENCHMARKS.md, "Point-in-time stall".
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import pwd
import shutil
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench-pitr"
GUIDES_MS = (5_000, 10_000)  # the pauses ScalarDB's (5 s) and ScalarDL's (10 s) guides suggest


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


class GcProbe:
    """Every garbage collection of this process: (start, end) in Unix seconds and its
    generation, so a stall can be matched with the collections inside it."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, float, int]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        now = time.time()
        if phase == "start":
            self._started = now
        else:
            self.runs.append((self._started, now, info["generation"]))

    def inside(self, start: float, end: float) -> list[tuple[float, float, int]]:
        return [r for r in self.runs if r[1] > start and r[0] < end]


def phases(point) -> dict:
    """Where the write stall went (ms): the drain (first Pause sent -> last confirmed), each
    store's snapshot after the window opened, the hold's end (window start + hold -> first
    CheckPaused answered), the verify round (-> last CheckPaused), verified -> first Unpause
    sent, and the unpause fan-out (-> last Unpause confirmed)."""
    w = point.window
    t = {}
    for e in w.timeline:
        t.setdefault(e.event, []).append(e.at.timestamp())
    ms = lambda a, b: round((b - a) * 1000, 1)  # noqa: E731
    start, end = w.start.timestamp(), w.end.timestamp()
    hold_end = start + w.hold_ms / 1000
    checked = t.get("checked_paused", [end])
    opened = {
        s.name: ms(start, s.snapshot_established_at.timestamp())
        for c in point.components.values()
        for s in c.stores
        if s.snapshot_established_at is not None
    }
    return {
        "drain": ms(min(t["pause_sent"]), start),
        "opened_after_start": opened,
        "hold_end_to_first_check": ms(hold_end, min(checked)),
        "verify_round": ms(min(checked), max(checked)),
        "verified_to_unpause_sent": ms(max(checked), end),
        "unpause": ms(end, max(t.get("unpause_confirmed", [end]))),
    }


def run(backups: int, offset_ms: float, dispersion_ms: float, out: Path) -> dict:
    from prefect.testing.utilities import prefect_test_harness

    from flows.backup import backup
    from harness import servers
    from harness.bank_app import BankApp, create_schema
    from harness.gate_server import start_gate_cluster
    from harness.kinds import for_servers
    from pausepoint.catalog import open_catalog
    from pausepoint.requests import BackupRequest
    from pausepoint.site import load_site
    from pausepoint.stores.postgres_wal import stop_restored
    from tests.unit.test_clock import FakeNtpServer

    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True)
    VAR.chmod(0o711)
    archive = VAR / "pg" / "archive"
    (archive / "wal").mkdir(parents=True)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for d in (VAR / "pg", archive, archive / "wal"):
            os.chown(d, pw.pw_uid, pw.pw_gid)
    cmd = f"test ! -f {archive}/wal/%f && cp %p {archive}/wal/%f"
    pg = servers.start_postgres(
        VAR / "pg", settings={"archive_mode": "on", "archive_command": cmd, "wal_level": "replica"}
    )
    my = servers.start_mariadb(
        VAR / "my",
        extra_args=[f"--log-bin={VAR}/my/binlog", "--server-id=1", "--binlog-format=ROW"],
    )
    ntp = FakeNtpServer(offset_s=offset_ms / 1000, root_dispersion_s=dispersion_ms / 1000)
    os.environ["PP_BENCH_PITR_PW"] = servers.PASSWORD
    rows: list[dict] = []
    try:
        kinds = for_servers(pg, my, {"postgres": "PP_BENCH_PITR_PW", "mysql": "PP_BENCH_PITR_PW"})
        kinds["postgres"].create_db("debit")
        kinds["mysql"].create_db("credit")
        debit, credit = kinds["postgres"].db("debit"), kinds["mysql"].db("credit")
        create_schema(debit)
        create_schema(credit)
        with start_gate_cluster(2) as nodes, prefect_test_harness(server_startup_timeout=120):
            site_file = VAR / "site.yaml"
            site_file.write_text(
                yaml.safe_dump(
                    {
                        "site": "bench-pitr",
                        "catalog": {"path": str(VAR / "catalog")},
                        "clock": {"ntp_servers": [ntp.address], "required": True},
                        "ledger": {
                            "targets": {"static": [str(t) for t in nodes.targets]},
                            "stores": [
                                kinds["postgres"].store_config(
                                    "ledger-pg", "debit", pitr="wal", archive_dir=str(archive)
                                ),
                                kinds["mysql"].store_config(
                                    "ledger-my",
                                    "credit",
                                    pitr="binlog",
                                    archive_dir=str(VAR / "my-archive"),
                                ),
                            ],
                        },
                    },
                    sort_keys=False,
                )
            )
            app = BankApp(
                components=[([s.gate for s in nodes.servers], [(debit, credit)])], writers=4
            ).start()
            probe = GcProbe()
            gc.callbacks.append(probe)
            try:
                app.wait_for_acks(50)
                site = load_site(site_file)
                catalog = open_catalog(site.catalog)
                for i in range(backups):
                    point = catalog.get_point(
                        site.site, backup(BackupRequest(site_file=str(site_file)))
                    )
                    w, c = point.window, point.clock
                    assert c is not None
                    error_ms = (abs(c.offset_s) + c.uncertainty_s) * 1000
                    bound = 1000 + 4 * error_ms + 200
                    stalled = [
                        a.latency_ms
                        for a in app.acks
                        if a.sent_at >= min(e.at for e in w.timeline if e.event == "pause_sent")
                        and a.sent_at <= w.end
                    ]
                    stall_start = min(e.at for e in w.timeline if e.event == "pause_sent")
                    stall_end = max(e.at for e in w.timeline if e.event == "unpause_confirmed")
                    gcs = probe.inside(stall_start.timestamp(), stall_end.timestamp())
                    rows.append(
                        {
                            "point": point.id,
                            "write_stall_ms": w.write_stall_ms,
                            "hold_ms": w.hold_ms,
                            "window_ms": w.length_ms,
                            "drain_ms": w.drain_ms,
                            "unpause_ms": w.unpause_ms,
                            "clock_error_ms": error_ms,
                            "bound_ms": bound,
                            "client_wait_max_ms": max(stalled, default=0.0),
                            "phases_ms": phases(point),
                            "gc_in_stall": [
                                {
                                    "gen": g,
                                    "ms": round((b - a) * 1000, 1),
                                    "at_ms": round((a - stall_start.timestamp()) * 1000, 1),
                                }
                                for a, b, g in gcs
                            ],
                        }
                    )
                    print(
                        f"{i + 1:3d}/{backups} stall {w.write_stall_ms:7.1f} ms  hold "
                        f"{w.hold_ms} ms  E {error_ms:5.1f} ms  bound {bound:7.1f} ms",
                        flush=True,
                    )
                    if w.write_stall_ms > bound:
                        print(f"      over: {rows[-1]['phases_ms']} gc {rows[-1]['gc_in_stall']}")
                    app.wait_for_acks(len(app.acks) + 50)
            finally:
                gc.callbacks.remove(probe)
                app.stop()
    finally:
        ntp.close()
        for d in VAR.glob("pg-restored-*"):
            stop_restored(d)
        pg.stop()
        my.stop()
    stalls = [r["write_stall_ms"] for r in rows]
    errors = [r["clock_error_ms"] for r in rows]
    bound_p95 = 1000 + 4 * max(errors) + 200
    result = {
        "commit": os.environ.get("BENCH_COMMIT", ""),
        "load_average": os.getloadavg(),
        "backups": len(rows),
        "offset_ms": offset_ms,
        "dispersion_ms": dispersion_ms,
        "write_stall_p50_ms": statistics.median(stalls),
        "write_stall_p95_ms": p95(stalls),
        "write_stall_max_ms": max(stalls),
        "clock_error_max_ms": max(errors),
        "bound_ms": bound_p95,
        "met": p95(stalls) <= bound_p95,
        "guides_ms": list(GUIDES_MS),
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backups", type=int, default=20)
    ap.add_argument("--offset-ms", type=float, default=4.0, help="the NTP responder's offset")
    ap.add_argument("--dispersion-ms", type=float, default=3.0, help="its root dispersion")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "pitr_stall.json")
    args = ap.parse_args(argv)
    r = run(args.backups, args.offset_ms, args.dispersion_ms, args.out)
    print(
        f"write stall p50 {r['write_stall_p50_ms']:.0f} / p95 {r['write_stall_p95_ms']:.0f} / "
        f"max {r['write_stall_max_ms']:.0f} ms over {r['backups']} backups; bound G + 4E + 200 "
        f"= {r['bound_ms']:.0f} ms (E up to {r['clock_error_max_ms']:.1f} ms): "
        f"{'met' if r['met'] else 'NOT met'}; the guides' pauses: 5000 / 10000 ms"
    )
    return 0 if r["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
