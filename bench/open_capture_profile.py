"""Where a MariaDB store's open_capture spends its time (the part of the write stall it owns).

    python -m bench.open_capture_profile --reps 20
    python -m bench.open_capture_profile --reps 20 --general-log   # + the dump's own timeline

One store's open_capture alone, then two stores on one server in parallel, split into parts by
wrapping the store's helpers; no load, no Prefect, no admin nodes. Prints its figures.
Method and results: BENCHMARKS.md, "What each benchmark does" (`bench.open_capture_profile`)
and the 3b8471a row of "Earlier runs".
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_local = threading.local()


def _parts() -> dict[str, float]:
    if not hasattr(_local, "parts"):
        _local.parts = {}
    return _local.parts


def _timed(name: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            parts = _parts()
            parts[name] = parts.get(name, 0.0) + (time.perf_counter() - t0) * 1000
            if name == "client_ports":
                parts["polls"] = parts.get("polls", 0) + 1
            if name == "dump start (fork+exec)":
                _local.dump_started = time.time()

    return wrapper


def instrument() -> None:
    """Wrap the helpers open_capture (and prepare_capture, where it exists) calls."""
    from pausepoint.stores.mysql import dump, store

    for module, attr, name in (
        (dump, "ToolProcess", "dump start (fork+exec)"),
        (store, "PipeToFile", "pipe reader start"),
        (dump, "client_ports", "client_ports"),
    ):
        if hasattr(module, attr):
            setattr(module, attr, _timed(name, getattr(module, attr)))
    for attr, name in (
        ("_connect", "connect"),
        ("_option_file", "option file"),
        ("_wait_for_snapshot", "wait for snapshot"),
        ("_dump_tool", "find tool"),
    ):
        if hasattr(store.MysqlStore, attr):
            setattr(store.MysqlStore, attr, _timed(name, getattr(store.MysqlStore, attr)))


def make_stores(server, dbs: list[str]):
    from pydantic import TypeAdapter

    from pausepoint.secrets import SecretResolver
    from pausepoint.stores import StoreConfig, open_store

    os.environ["PP_PROFILE_MY_PASSWORD"] = server.password
    stores = []
    for name, db in zip(("ledger-store", "auditor-store"), dbs, strict=True):
        cfg = {
            "kind": "mysql",
            "name": name,
            "host": server.host,
            "port": server.port,
            "user": server.user,
            "password": {"env": "PP_PROFILE_MY_PASSWORD"},
            "databases": [db],
        }
        stores.append(open_store(TypeAdapter(StoreConfig).validate_python(cfg), SecretResolver()))
    return stores


def one_capture(store, workdir: Path, out: dict) -> None:
    """prepare (if the store has the step; outside the window), then open_capture (timed)."""
    _local.parts = {}
    _local.dump_started = None
    prepared = None
    prepare = getattr(store, "prepare_capture", None)
    if prepare is not None:
        t0 = time.perf_counter()
        prepared = prepare(workdir)
        out["prepare (before the pause)"] = (time.perf_counter() - t0) * 1000
        _local.parts = {}
    t0 = time.perf_counter()
    handle = (
        store.open_capture(workdir, prepared)
        if prepared is not None
        else store.open_capture(workdir)
    )
    out["open_capture"] = (time.perf_counter() - t0) * 1000
    out["returned_at"] = time.time()
    out.update(_parts())
    out["dump_started_at"] = _local.dump_started
    out["handle"] = handle


def dump_timeline(server, user: str, since: float) -> dict[str, float]:
    """From the general log table: the newest dump connection's events (epoch seconds)."""
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT thread_id, UNIX_TIMESTAMP(event_time), command_type, argument "
            "FROM mysql.general_log WHERE event_time >= FROM_UNIXTIME(%s) ORDER BY event_time",
            (since - 0.001,),
        )
        rows = cur.fetchall()
    from pausepoint.stores.mysql import is_post_snapshot

    events: dict[int, dict[str, float]] = {}
    for thread, at, command, argument in rows:
        arg = argument.decode(errors="replace") if isinstance(argument, bytes) else str(argument)
        e = events.setdefault(thread, {})
        if command == "Connect" and "mysqldump" not in e:
            e.setdefault("connect", float(at))
        if "START TRANSACTION" in arg.upper():
            e["start_transaction"] = float(at)
            e["mysqldump"] = 1.0
        if is_post_snapshot(arg) and "post_snapshot" not in e:
            e["post_snapshot"] = float(at)
    dumps = [e for e in events.values() if "start_transaction" in e and "post_snapshot" in e]
    return dumps[-1] if dumps else {}


def summarize(label: str, rows: list[dict]) -> list[str]:
    keys = [k for k in rows[0] if isinstance(rows[0][k], int | float) and not k.endswith("_at")]
    for r in rows[1:]:
        keys += [k for k in r if k not in keys and isinstance(r[k], int | float)]
    keys = [k for k in keys if not k.endswith("_at")]
    lines = [f"{label} (n={len(rows)}): median / p90 / max, ms"]
    for k in keys:
        vals = sorted(r.get(k, 0.0) for r in rows)
        p90 = vals[min(len(vals) - 1, round(0.9 * (len(vals) - 1)))]
        unit = "" if k == "polls" else " ms"
        lines.append(f"  {k:<34} {statistics.median(vals):8.1f} {p90:8.1f} {max(vals):8.1f}{unit}")
    return lines


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from harness import servers

    p = argparse.ArgumentParser(prog="python -m bench.open_capture_profile")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--bulk-rows", type=int, default=10_000)
    p.add_argument("--general-log", action="store_true")
    a = p.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="pp-open-profile-"))
    server = servers.start_mariadb(base / "mariadb")
    try:
        dbs = ["prof_ledger", "prof_auditor"]
        with server.connect() as conn, conn.cursor() as cur:
            for db in dbs:
                cur.execute(f"CREATE DATABASE {db}")
                cur.execute(
                    f"CREATE TABLE {db}.account (id INT PRIMARY KEY, balance BIGINT) ENGINE=InnoDB"
                )
                cur.execute(f"INSERT INTO {db}.account SELECT seq, 1000 FROM {db}.seq_1_to_1000")
            cur.execute(
                "CREATE TABLE prof_ledger.bulk (id BIGINT PRIMARY KEY, payload TEXT) ENGINE=InnoDB"
            )
            cur.execute(
                "INSERT INTO prof_ledger.bulk SELECT seq, REPEAT(SHA2(seq, 512), 8) "
                f"FROM prof_ledger.seq_1_to_{a.bulk_rows}"
            )
            if a.general_log:
                cur.execute("SET GLOBAL log_output = 'TABLE'")
                cur.execute("SET GLOBAL general_log = 1")
        instrument()
        stores = make_stores(server, dbs)
        for s in stores:
            s.check()
        work = base / "work"
        alone: list[dict] = []
        pair: list[dict] = []
        timelines: list[dict] = []
        for n in range(a.reps + 1):  # the first repetition warms up and is not counted
            out: dict = {}
            one_capture(stores[0], work / f"a{n}", out)
            stores[0].abort_capture(out.pop("handle"))
            if a.general_log and out["dump_started_at"]:
                t = dump_timeline(server, server.user, out["dump_started_at"])
                if t:
                    st = out["dump_started_at"]
                    timelines.append(
                        {
                            "dump start -> its connection": (t["connect"] - st) * 1000,
                            "-> START TRANSACTION": (t["start_transaction"] - st) * 1000,
                            "-> first post-snapshot stmt": (t["post_snapshot"] - st) * 1000,
                            "-> open_capture returned": (out["returned_at"] - st) * 1000,
                        }
                    )
            outs: list[dict] = [{}, {}]
            t0 = time.perf_counter()
            threads = [
                threading.Thread(target=one_capture, args=(s, work / f"p{n}-{i}", o))
                for i, (s, o) in enumerate(zip(stores, outs, strict=True))
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            both = (time.perf_counter() - t0) * 1000
            for s, o in zip(stores, outs, strict=True):
                s.abort_capture(o.pop("handle"))
            if n:
                alone.append(out)
                pair.append(
                    {
                        "both stores (the window's share)": both,
                        **{f"{s.name}: {k}": v for s, o in zip(stores, outs, strict=True)
                           for k, v in o.items() if k in ("open_capture", "wait for snapshot",
                                                          "connect", "dump start (fork+exec)")},
                    }
                )  # fmt: skip
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(work)
        print(f"MariaDB {server.version}; load average {os.getloadavg()}")
        print("\n".join(summarize("one store, alone", alone)))
        print("\n".join(summarize("two stores on one server, in parallel", pair)))
        if timelines:
            print("\n".join(summarize("the dump's own timeline (general log)", timelines[1:])))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
