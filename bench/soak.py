"""Soak: many backups in a row under load, with random faults, and the invariants after each.

    python -m bench.soak --backups 20                 a quick soak (~2 min after start-up)
    python -m bench.soak --backups 200 --seed 7       the full soak

A ledger store on PostgreSQL and an auditor store on MariaDB (private servers under var/soak/),
three test admin nodes in this process, bank writers the whole time; backups through the real
backup flow against a real `prefect server start` (harness/prefect_server.py), one fault per
iteration drawn with ``--seed`` (the kill fault runs its backup in a child process), and the
invariants checked after every iteration and at the end. Results: bench/out/soak.json (every
iteration) and bench/out/soak.md (tables).
Method (faults, invariants, why not prefect_test_harness) and results: BENCHMARKS.md, section
"Soak".
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "soak"

FAULTS = {  # fault -> weight
    "none": 55,
    "slow_drain": 6,
    "slow_check": 6,
    "refuse_pause": 7,
    "restart_in_hold": 8,
    "kill": 5,
    "db_restart_between": 7,
    "db_restart_during": 6,
}
EXPECTED = {
    "none": {"ok"},
    "slow_drain": {"ok"},
    "slow_check": {"ok"},
    "refuse_pause": {"failed"},
    "restart_in_hold": {"failed"},
    "kill": {"killed"},
    "db_restart_between": {"ok"},
    "db_restart_during": {"ok", "failed"},
}
HOLD_MS = {"restart_in_hold": 1500, "kill": 4000}
FD_SLACK = 10


def say(text: str) -> None:
    from bench.progress import say as _say

    _say(text)


# --- processes and files of ours ------------------------------------------------------------------


def children(pid: int | None = None) -> dict[int, str]:
    """Every descendant of ``pid`` (default: this process): pid -> command line."""
    root = pid or os.getpid()
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: split after the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parent_of[int(entry)] = ppid
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        p = todo.pop()
        for c, pp in parent_of.items():
            if pp == p and c not in found:
                try:
                    cmd = Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    cmd = "?"
                found[c] = cmd.strip()[:160]
                todo.append(c)
    return found


def in_session(sid: int) -> list[int]:
    """Processes still in session ``sid`` (a killed backup's session: its tools must be gone)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[4]) == sid:
                found.append(int(entry))
    return found


def open_fds() -> int:
    """Open files of this process once unreachable objects are collected: connections that only
    a reference cycle keeps (Prefect's and the stores' clients) close at the next full garbage
    collection, so without one the count saws up and down by ~40 between collections."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def our_temp_files() -> list[str]:
    return sorted(n for n in os.listdir(tempfile.gettempdir()) if n.startswith("pausepoint"))


# --- the load ------------------------------------------------------------------------------------


def resilient_bank_app():
    from harness.bank_app import BankApp

    class ResilientBankApp(BankApp):
        """BankApp whose writers reconnect after losing a database (the restart faults)."""

        lost: int = 0

        def _writer(self, n: int) -> None:
            while not self._stop.is_set():
                try:
                    super()._writer(n)
                except Exception as exc:  # connecting failed: the database is down
                    self.errors.append(exc)
                if self.errors:
                    with self._lock:
                        self.lost += len(self.errors)
                        self.errors.clear()
                    self._stop.wait(0.2)

    return ResilientBankApp


# --- the soak ------------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rnd = random.Random(args.seed)
        self.iterations: list[dict] = []
        self.violations: list[str] = []
        self.ok_points: set[str] = set()

    # --- setup ----------------------------------------------------------------------------

    def write_site(self, hold_ms: int) -> None:
        site = {
            "site": "soak",
            "catalog": {"path": str(VAR / "catalog")},
            "pause": {
                "min_hold_ms": hold_ms,
                "drain_timeout_ms": 2000,
                "call_timeout_ms": 2000,
                "open_capture_timeout_ms": 5000,
                "lease_margin_ms": 1000,
            },
            "ledger": {
                "targets": {"static": [str(t) for t in self.ledger.targets]},
                "stores": [self.env.store_config("postgres", "ledger-store", "soak_ledger")],
            },
            "auditor": {
                "targets": {"static": [str(t) for t in self.auditor.targets]},
                "stores": [self.env.store_config("mysql", "auditor-store", "soak_auditor")],
            },
        }
        self.site_file.write_text(yaml.safe_dump(site, sort_keys=False))

    @property
    def gates(self) -> list:
        return self.ledger.servers + self.auditor.servers

    def catalog(self):
        from pausepoint.catalog import open_catalog
        from pausepoint.site import load_site

        return open_catalog(load_site(self.site_file).catalog)

    def staged(self) -> list[str]:
        root = VAR / "catalog" / "soak" / "points"
        if not root.exists():
            return []
        return sorted(p.name for p in root.iterdir() if not (p / "manifest.json").exists())

    # --- faults ---------------------------------------------------------------------------

    def restart_db(self, kind: str) -> None:
        self.env.restart(kind)  # under VAR / "servers", where run() started them

    def _restart_when_paused(self, stop: threading.Event, note: dict) -> None:
        while not stop.is_set():
            if all(g.gate.check_paused() for g in self.gates):
                node = self.rnd_thread.choice(self.gates)
                note["restarted"] = str(node.target)
                note["restarted_at"] = datetime.now(UTC).isoformat()
                node.restart_unpaused()
                return
            time.sleep(0.005)

    def _db_restart_later(self, kind: str, delay_s: float, stop: threading.Event, note: dict):
        if stop.wait(delay_s):
            note["db_restart_skipped"] = "the backup ended first"
            return
        t0 = time.monotonic()
        self.restart_db(kind)
        note["db_restart_s"] = round(time.monotonic() - t0, 2)

    # --- one backup -----------------------------------------------------------------------

    def backup_in_process(self) -> tuple[str, str | None, str | None]:
        from flows.backup import backup
        from pausepoint.requests import BackupRequest

        try:
            return "ok", backup(BackupRequest(site_file=str(self.site_file))), None
        except Exception as exc:
            return "failed", None, f"{type(exc).__name__}: {str(exc)[:300]}"

    def backup_killed(self, note: dict) -> str:
        """Run the backup in a child, SIGKILL it inside its hold, then the watchdog."""
        from flows.watchdog import watchdog
        from pausepoint.catalog.lease import HEARTBEAT_MISSES
        from pausepoint.requests import WatchdogRequest

        env = dict(os.environ)  # PREFECT_API_URL: the soak's server
        code = "import sys; from flows.backup import backup; backup({'site_file': sys.argv[1]})"
        log = VAR / "killed-backup.log"
        with log.open("wb") as out:
            child = subprocess.Popen(
                [sys.executable, "-c", code, str(self.site_file)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            t0 = time.monotonic()
            while not all(g.gate.check_paused() for g in self.gates):
                if child.poll() is not None:
                    note["child_log"] = log.read_text(errors="replace")[-1500:]
                    return "child ended before pausing"
                if time.monotonic() - t0 > 180:
                    return "child did not pause within 180 s"
                time.sleep(0.01)
            os.killpg(child.pid, signal.SIGKILL)  # the session this soak created, nothing else
            child.wait(30)
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(30)
        time.sleep(0.5)
        note["session_left"] = in_session(child.pid)
        catalog = self.catalog()
        leases = catalog.list_leases("soak", state="active")
        note["active_leases_after_kill"] = len(leases)
        if leases:
            lease = leases[0]
            gone_at = max(
                lease.deadline,
                (lease.heartbeat_at or lease.created_at)
                + timedelta(seconds=HEARTBEAT_MISSES * (lease.heartbeat_s or 5)),
            )
            left = (gone_at - datetime.now(UTC)).total_seconds() + 0.3
            if left > 0:
                time.sleep(left)
        t1 = time.monotonic()
        report = watchdog(WatchdogRequest(site_file=str(self.site_file)))
        note["watchdog"] = {
            "s": round(time.monotonic() - t1, 2),
            "broken": [sorted(b.get("unpaused", [])) for b in report["broken"]],
            "waiting": list(report["waiting"]),
        }
        note["swept"] = [p.name for p in catalog.sweep_orphans("soak", older_than=timedelta(0))]
        return "killed"

    def iteration(self, i: int) -> dict:
        fault = self.rnd.choices(list(FAULTS), weights=list(FAULTS.values()))[0]
        note: dict = {"i": i, "fault": fault}
        before = set(self.catalog().point_ids("soak"))
        self.write_site(HOLD_MS.get(fault, 0))
        node = self.rnd.choice(self.gates)
        stop = threading.Event()
        helper: threading.Thread | None = None
        if fault == "slow_drain":
            node.slow_drain_ms, note["node"] = 300, str(node.target)
        elif fault == "slow_check":
            node.slow_check_ms, note["node"] = 300, str(node.target)
        elif fault == "refuse_pause":
            from pausepoint.admin.client import Reason

            reason = self.rnd.choice(
                [Reason.TIMED_OUT, Reason.UNAVAILABLE, Reason.PAUSE_IN_PROGRESS]
            )
            node.refuse_with, note["node"], note["reason"] = reason, str(node.target), str(reason)
        elif fault == "restart_in_hold":
            helper = threading.Thread(target=self._restart_when_paused, args=(stop, note))
        elif fault in ("db_restart_between", "db_restart_during"):
            note["db"] = kind = self.rnd.choice(["postgres", "mysql"])
            if fault == "db_restart_between":
                t0 = time.monotonic()
                self.restart_db(kind)
                note["db_restart_s"] = round(time.monotonic() - t0, 2)
            else:
                delay = note["delay_s"] = round(self.rnd.uniform(0, 3), 2)
                helper = threading.Thread(
                    target=self._db_restart_later, args=(kind, delay, stop, note)
                )
        t0 = time.monotonic()
        try:
            if helper is not None:
                helper.start()
            if fault == "kill":
                outcome, point_id, error = self.backup_killed(note), None, None
            else:
                outcome, point_id, error = self.backup_in_process()
        finally:
            stop.set()
            if helper is not None:
                helper.join(120)
            node.slow_drain_ms = node.slow_check_ms = 0
            node.refuse_with = None
        note.update(outcome=outcome, point=point_id, error=error)
        note["wall_s"] = round(time.monotonic() - t0, 2)
        note["expected"] = outcome in EXPECTED[fault]
        self.check(note, before)
        return note

    # --- invariants -----------------------------------------------------------------------

    def violation(self, note: dict, text: str) -> None:
        note.setdefault("violations", []).append(text)
        self.violations.append(f"iteration {note['i']} ({note['fault']}): {text}")

    def check(self, note: dict, before: set[str]) -> None:
        paused = [str(g.target) for g in self.gates if g.gate.check_paused()]
        if paused:
            self.violation(note, f"nodes left paused: {paused}")
            for g in self.gates:  # unpause them so the soak can go on
                g.gate.unpause()
        catalog = self.catalog()
        new = set(catalog.point_ids("soak")) - before
        if note["outcome"] == "ok":
            if new != {note["point"]}:
                self.violation(note, f"ok run registered {sorted(new)}, not just {note['point']}")
            problems = catalog.verify_point("soak", note["point"])
            if problems:
                self.violation(note, f"point {note['point']} does not verify: {problems}")
            point = catalog.get_point("soak", note["point"])
            w = point.window
            note["write_stall_ms"] = w.write_stall_ms
            note["hold_ms"] = w.hold_ms
            note["window_ms"] = w.length_ms
            if "restarted_at" in note:
                at = datetime.fromisoformat(note["restarted_at"])
                if w.start <= at <= w.end:
                    self.violation(note, f"registered although {note['restarted']} restarted "
                                         "inside its window")  # fmt: skip
            self.ok_points.add(note["point"])
        elif new:
            self.violation(note, f"{note['outcome']} run registered {sorted(new)}")
        staged = self.staged()
        if staged:
            self.violation(note, f"staging directories without manifest: {staged}")
        active = [x.run_id for x in catalog.list_leases("soak", state="active")]
        if active:
            self.violation(note, f"active leases left: {active}")
        if note.get("session_left"):
            self.violation(note, f"processes of the killed backup left: {note['session_left']}")
        stray = {p: c for p, c in children().items() if p not in self.allowed_children()}
        if stray:
            time.sleep(2)  # a tool may be exiting this instant
            stray = {p: c for p, c in children().items() if p not in self.allowed_children()}
        if stray:
            self.violation(note, f"stray child processes: {stray}")
        note["fds"] = open_fds()

    def allowed_children(self) -> set[int]:
        """The database servers (their pids change on restart) and the Prefect API's tree."""
        allowed = set(self.api_tree)
        for server in (self.env.pg, self.env.my):
            proc = server._proc
            if proc is not None:
                allowed.add(proc.pid)
                allowed |= set(children(proc.pid))
        return allowed

    # --- the run --------------------------------------------------------------------------

    def run(self) -> int:
        from bench.env import Servers
        from harness.bank_app import create_schema
        from harness.gate_server import start_gate_cluster
        from harness.prefect_server import start_server

        for k, v in {
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "ERROR",
            "GRPC_VERBOSITY": "ERROR",
        }.items():
            os.environ.setdefault(k, v)
        self.rnd_thread = random.Random(self.args.seed + 1)
        started = datetime.now(UTC)
        temp_before = set(our_temp_files())
        shutil.rmtree(VAR, ignore_errors=True)  # a previous soak's catalog and server
        say("starting PostgreSQL and MariaDB on 127.0.0.1 (var/soak/)")
        self.env = Servers.start(VAR / "servers")
        self.site_file = VAR / "site.yaml"
        app = None
        summary: dict = {}
        try:
            self.env.create_db("postgres", "soak_ledger")
            self.env.create_db("mysql", "soak_auditor")
            create_schema(self.env.db("postgres", "soak_ledger"))
            create_schema(self.env.db("mysql", "soak_auditor"))
            self.ledger, self.auditor = start_gate_cluster(2), start_gate_cluster(1)
            env = self.env

            class _Reconnecting:
                """A Db whose connect reads the server's current port and password."""

                def __init__(self, kind: str, name: str) -> None:
                    self.kind, self.name = kind, name

                def __call__(self):
                    return env.db(self.kind, self.name).connect()

            from harness.bank_app import Db

            ledger_db = Db("soak_ledger", _Reconnecting("postgres", "soak_ledger"), "postgres")
            auditor_db = Db("soak_auditor", _Reconnecting("mysql", "soak_auditor"), "mysql")
            app = resilient_bank_app()(
                components=[
                    ([s.gate for s in self.ledger.servers], [(ledger_db, auditor_db)]),
                    ([s.gate for s in self.auditor.servers], []),
                ],
                writers=self.args.writers,
            ).start()
            app.wait_for_acks(20)
            say("starting a Prefect server (harness/prefect_server.py)")
            self.server = start_server(
                VAR / "prefect",
                # how often expired concurrency-slot leases are revoked (default 15 s)
                env={"PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "5"},
            )
            # This process is a client of that server from here on, like `pausepoint backup`
            # with PREFECT_API_URL set.
            os.environ.update(self.server.env())
            os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "ERROR"
            self.api_tree = {self.server.pid, *children(self.server.pid)}
            self.write_site(0)
            warm = self.backup_in_process()
            say(f"warm-up backup: {warm[0]} {warm[2] or ''}")
            if warm[1]:
                self.ok_points.add(warm[1])
            fds_base = open_fds()
            t_soak = time.monotonic()
            for i in range(1, self.args.backups + 1):
                try:
                    note = self.iteration(i)
                except Exception:
                    note = {"i": i, "fault": "?", "outcome": "soak error", "expected": False,
                            "error": traceback.format_exc()[-2000:]}  # fmt: skip
                    self.violations.append(f"iteration {i}: the soak itself failed")
                self.iterations.append(note)
                say(progress_line(self.args.backups, note))
                if i % 10 == 0:
                    self.save(summary)
            soak_s = time.monotonic() - t_soak
            # end-of-soak invariants (inside the harness: the API still runs)
            catalog = self.catalog()
            ids = set(catalog.point_ids("soak"))
            bad = {p: catalog.verify_point("soak", p) for p in sorted(ids)}
            bad = {p: x for p, x in bad.items() if x}
            foreign = sorted(ids - self.ok_points)
            missing = sorted(self.ok_points - ids)
            fds_end = open_fds()
            summary.update(
                points=len(ids), bad_points=bad, points_not_from_ok_runs=foreign,
                ok_points_missing=missing, fds_baseline=fds_base, fds_end=fds_end,
                soak_s=round(soak_s, 1), staged_end=self.staged(),
                active_leases_end=[x.run_id for x in catalog.list_leases("soak", "active")],
            )  # fmt: skip
            if bad:
                self.violations.append(f"points that do not verify: {bad}")
            if foreign:
                self.violations.append(f"points not made by a successful iteration: {foreign}")
            if fds_end > fds_base + FD_SLACK:
                self.violations.append(f"open files grew: {fds_base} -> {fds_end}")
        finally:
            if app is not None:
                app._stop.set()
                for t in app._threads:
                    t.join(30)
                summary["load"] = {"acks": len(app.acks), "lost_connections": app.lost}
            for cluster in (getattr(self, "ledger", None), getattr(self, "auditor", None)):
                if cluster is not None:
                    cluster.close()
            if getattr(self, "server", None) is not None:
                # Flush Prefect's log and event workers while their API still answers: at exit
                # they would wait on the stopped server (seen: a soak that never exited).
                from prefect.events.worker import EventsWorker
                from prefect.logging.handlers import APILogWorker

                for worker in (APILogWorker, EventsWorker):
                    with contextlib.suppress(Exception):
                        worker.drain_all(timeout=30)
                self.server.stop()
            self.env.stop()
        time.sleep(1)
        left = children()
        temp_new = sorted(set(our_temp_files()) - temp_before)
        summary.update(children_after_stop=left, temp_files_new=temp_new)
        if left:
            self.violations.append(f"child processes left after the servers stopped: {left}")
        if temp_new:
            self.violations.append(f"pausepoint temp files left: {temp_new}")
        summary["started"] = started.isoformat(timespec="seconds")
        summary["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.save(summary)
        print(render(self.result(summary)))
        return 0 if not self.violations else 1

    def result(self, summary: dict) -> dict:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
            text=True, check=False,
        ).stdout.strip()  # fmt: skip
        return {
            "meta": {
                "command": "python -m bench.soak " + " ".join(sys.argv[1:]),
                "seed": self.args.seed,
                "commit": commit,
                "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                "nproc": os.cpu_count(),
            },
            "summary": summary,
            "violations": self.violations,
            "iterations": self.iterations,
        }

    def save(self, summary: dict) -> None:
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        result = self.result(summary)
        (out / "soak.json").write_text(json.dumps(result, indent=1, default=str))
        (out / "soak.md").write_text(render(result) + "\n")


def progress_line(total: int, note: dict) -> str:
    text = f"{note['i']}/{total} {note['fault']}: {note['outcome']}"
    if not note.get("expected"):
        text += " (UNEXPECTED)"
    if "write_stall_ms" in note:
        text += f" stall {note['write_stall_ms']:.0f} ms"
    if note.get("error"):
        text += f" - {note['error'][:160]}"
    if note.get("violations"):
        text += f" VIOLATIONS: {note['violations']}"
    return text + f" [{note.get('wall_s', 0):.1f} s, fds {note.get('fds')}]"


def render(result: dict) -> str:
    from bench.report import pct

    its = result["iterations"]
    lines = [
        f"Command: `{result['meta']['command']}` (seed {result['meta']['seed']}, "
        f"commit {result['meta']['commit']})",
        "",
        "| fault | iterations | ok | failed | killed | as expected | unexpected |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    by: dict[str, list[dict]] = {}
    for it in its:
        by.setdefault(it["fault"], []).append(it)
    for fault in [*FAULTS, "?"]:
        rows = by.get(fault, [])
        if not rows:
            continue
        c = Counter(r["outcome"] for r in rows)
        exp = sum(1 for r in rows if r.get("expected"))
        lines.append(
            f"| {fault} | {len(rows)} | {c['ok']} | {c['failed']} | {c['killed']} | {exp} | "
            f"{len(rows) - exp} |"
        )
    exp = sum(1 for r in its if r.get("expected"))
    c = Counter(r["outcome"] for r in its)
    lines.append(
        f"| **all** | {len(its)} | {c['ok']} | {c['failed']} | {c['killed']} | {exp} | "
        f"{len(its) - exp} |"
    )
    ok = [r for r in its if "write_stall_ms" in r]

    def dist(xs: list[float]) -> str:
        if not xs:
            return "- | - | - | - | 0"
        return (f"{pct(xs, 50):.0f} | {pct(xs, 90):.0f} | {pct(xs, 99):.0f} | {max(xs):.0f} | "
                f"{len(xs)}")  # fmt: skip

    lines += [
        "",
        "Write stall of the successful backups (first Pause sent -> last Unpause confirmed), ms:",
        "",
        "| backups | p50 | p90 | p99 | max | n |",
        "|---|---:|---:|---:|---:|---:|",
        f"| all successful | {dist([r['write_stall_ms'] for r in ok])} |",
        f"| fault none | {dist([r['write_stall_ms'] for r in ok if r['fault'] == 'none'])} |",
        f"| beyond the hold, all | {dist([r['write_stall_ms'] - r['hold_ms'] for r in ok])} |",
    ]
    s = result["summary"]
    if s:
        lines += ["", "End of soak: " + "; ".join(f"{k} {v}" for k, v in s.items())]
    lines += ["", f"Violations ({len(result['violations'])}):"]
    lines += [f"- {v}" for v in result["violations"]] or ["- none"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--backups", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--writers", type=int, default=2, help="bank writers")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    # A temp directory of its own: /tmp is shared with other jobs that run pausepoint's tests,
    # so only a private one tells which temp files this soak (and its killed backups) left.
    tmp = ROOT / "var" / "soak-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    # SIGTERM (someone stopping the soak) unwinds like Ctrl-C: the servers we started stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return Soak(a).run()


if __name__ == "__main__":
    sys.exit(main())
