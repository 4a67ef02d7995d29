"""Write stall under load: the real backup flow, and a naive pause-dump-unpause script.

One stage = one database kind at one size, with a load process (bench/load.py) around it.
Method: BENCHMARKS.md, "What each benchmark does" (`bench.run`, step 1 and 2).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from bench.env import Servers
from bench.raw import raw_dump

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Load:
    """The load process of one stage."""

    proc: subprocess.Popen
    targets: dict[str, list[str]]
    acks_path: Path

    @classmethod
    def start(
        cls, env: Servers, kind: str, ledger_db: str, auditor_db: str, writers: int, work: Path
    ) -> Load:
        server = env.kind(kind).server
        acks_path = work / "acks.json"
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "bench.load", "--kind", kind, "--host", server.host,
                "--port", str(server.port), "--user", server.user, "--ledger-db", ledger_db,
                "--auditor-db", auditor_db, "--writers", str(writers), "--acks", str(acks_path),
            ],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.wait(30)
            raise RuntimeError(f"the load process exited with {proc.returncode} before serving")
        return cls(proc, json.loads(line), acks_path)

    def stop(self) -> tuple[list[tuple[datetime, float]], list[str]]:
        """Stop the writers; (sent_at, latency_ms) of every acknowledged request, and errors."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        summary = json.loads(self.proc.stdout.readline() or "{}")
        self.proc.wait(60)
        acks = json.loads(self.acks_path.read_text())
        return [(datetime.fromisoformat(a[1]), float(a[3])) for a in acks], summary.get(
            "errors", ["the load process gave no summary"]
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def write_site(
    env: Servers, kind: str, directory: Path, targets: dict, ledger_db: str, auditor_db: str
) -> Path:
    site = {
        "site": f"bench-{kind}",
        "catalog": {"path": str(directory / "catalog")},
        "pause": {"min_hold_ms": 0},
        "ledger": {
            "targets": {"static": targets["ledger"]},
            "stores": [env.store_config(kind, "ledger-store", ledger_db)],
        },
        "auditor": {
            "targets": {"static": targets["auditor"]},
            "stores": [env.store_config(kind, "auditor-store", auditor_db)],
        },
    }
    path = directory / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


def _ms(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() * 1000


def flow_backup(site_file: Path) -> dict:
    """One run of the real backup flow; the restore point's figures; the point is deleted."""
    from flows.backup import backup
    from pausepoint.catalog import open_catalog
    from pausepoint.requests import BackupRequest
    from pausepoint.site import load_site

    t0 = time.monotonic()
    point_id = backup(BackupRequest(site_file=str(site_file)))
    wall_s = time.monotonic() - t0
    site = load_site(site_file)
    catalog = open_catalog(site.catalog)
    point = catalog.get_point(site.site, point_id)
    w = point.window
    events = w.timeline
    first_pause_sent = min(e.at for e in events if e.event == "pause_sent")
    last_checked = max(e.at for e in events if e.event == "checked_paused")
    last_unpause = max(e.at for e in events if e.event == "unpause_confirmed")
    snapshots = {
        s.name: s.snapshot_established_at
        for comp in point.components.values()
        for s in comp.stores
        if s.snapshot_established_at is not None
    }
    snapshots_open = max(snapshots.values())
    artifact_bytes = sum(s.total_bytes for c in point.components.values() for s in c.stores)
    catalog.delete_point(site.site, point_id)
    return {
        "point": point_id,
        "wall_s": wall_s,
        "write_stall_ms": w.write_stall_ms,
        "window_ms": w.length_ms,
        "hold_ms": w.hold_ms,
        "drain_ms": w.drain_ms,
        "unpause_ms": w.unpause_ms,
        "stall_beyond_hold_ms": w.write_stall_ms - w.hold_ms,
        # where the write stall goes (wall-clock timeline of the restore point)
        "segments_ms": {
            "drain": _ms(first_pause_sent, w.start),
            "open_capture": _ms(w.start, snapshots_open),
            "verify": _ms(snapshots_open, last_checked),
            "to_unpause": _ms(last_checked, w.end),
            "unpause": _ms(w.end, last_unpause),
        },
        "snapshot_after_pause_ms": {n: _ms(w.start, at) for n, at in snapshots.items()},
        "stall_from": first_pause_sent.isoformat(),
        "stall_to": last_unpause.isoformat(),
        "artifact_bytes": artifact_bytes,
    }


def naive_backup(env: Servers, kind: str, site_file: Path, out: Path, dbs: list[str]) -> dict:
    """What a script does: pause every node, run the raw dump tool(s), unpause."""
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
        dump_s = 0.0
        try:
            session.pause_all()
            t0 = time.monotonic()
            for db in dbs:  # one after the other, like the guide's steps in a shell script
                raw_dump(env, kind, db, out / db)
            dump_s = time.monotonic() - t0
        finally:
            session.unpause_all()
        rec = session.record()
    finally:
        client.close()
    first_pause_sent = min(e.at for e in rec.timeline if e.event == "pause_sent")
    last_unpause = max(e.at for e in rec.timeline if e.event == "unpause_confirmed")
    return {
        "write_stall_ms": rec.write_stall_ms,
        "window_ms": rec.length_ms,
        "dump_s": dump_s,
        "stall_from": first_pause_sent.isoformat(),
        "stall_to": last_unpause.isoformat(),
    }


def client_waits(acks: list[tuple[datetime, float]], run: dict) -> list[float]:
    """Latency of the requests sent while writes were stalled (first Pause .. last Unpause)."""
    start = datetime.fromisoformat(run["stall_from"])
    end = datetime.fromisoformat(run["stall_to"])
    return [lat for sent, lat in acks if start <= sent <= end]


def baseline_latency(acks: list[tuple[datetime, float]], runs: list[dict]) -> list[float]:
    """Latency of requests sent outside every stall (250 ms margin): the load's normal."""
    spans = [
        (
            datetime.fromisoformat(r["stall_from"]) - timedelta(milliseconds=250),
            datetime.fromisoformat(r["stall_to"]) + timedelta(milliseconds=250),
        )
        for r in runs
    ]
    return [lat for sent, lat in acks if not any(a <= sent <= b for a, b in spans)]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
