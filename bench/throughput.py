"""Capture and restore throughput: pausepoint's store against the raw tools, in A/B pairs.

A = the store in-process (open_capture + finish_capture, then store.restore into a fresh
database); B = the raw dump and restore tools (bench/raw.py). A and B alternate which goes first.
Method: BENCHMARKS.md, "What each benchmark does" (`bench.run`, step 3).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from pydantic import TypeAdapter

from bench.env import Servers
from bench.raw import raw_dump, raw_restore, size_on_disk


def _store(env: Servers, kind: str, database: str, /, **extra):
    from pausepoint.secrets import SecretResolver
    from pausepoint.stores import StoreConfig, open_store

    # extra last: a restore target's settings replace the live ones (database, database_map)
    config = TypeAdapter(StoreConfig).validate_python(
        {**env.store_config(kind, "ledger-store", database), **extra}
    )
    return open_store(config, SecretResolver())


def ours_capture(env: Servers, kind: str, db: str, workdir: Path):
    store = _store(env, kind, db)
    store.check()  # preflight, outside the timing (the flow runs it before the pause)
    t0 = time.monotonic()
    handle = store.open_capture(workdir)
    capture = store.finish_capture(handle)
    return time.monotonic() - t0, capture


def ours_restore(env: Servers, kind: str, db: str, capture, source: Path, fresh: str) -> float:
    store = _store(env, kind, db, **env.kind(kind).moved_to(db, fresh))
    t0 = time.monotonic()
    store.restore(capture, source, replace=False)
    return time.monotonic() - t0


def fingerprint_alone(env: Servers, kind: str, db: str) -> float:
    store = _store(env, kind, db)
    t0 = time.monotonic()
    store.fingerprint()
    return time.monotonic() - t0


def _timed(fn, *args):
    t0 = time.monotonic()
    value = fn(*args)
    return time.monotonic() - t0, value


def pair(env: Servers, kind: str, db: str, work: Path, n: int) -> dict:
    """One A/B pair of captures, then one A/B pair of restores."""
    a_dir, b_dir = work / f"ours-{n}", work / f"raw-{n}"
    a_db, b_db = f"{db}_ra{n}", f"{db}_rb{n}"
    for d in (a_dir, b_dir):
        if d.exists():
            shutil.rmtree(d)
    try:
        # The order alternates per pair (A first in even pairs, B first in odd ones), so that
        # neither side always runs on the caches, checkpoints and writeback the other left.
        sides = ("ours", "raw") if n % 2 == 0 else ("raw", "ours")
        cap: dict[str, float] = {}
        res: dict[str, float] = {}
        for side in sides:
            if side == "ours":
                cap["ours"], capture = ours_capture(env, kind, db, a_dir)
            else:
                cap["raw"], b_path = _timed(raw_dump, env, kind, db, b_dir / "dump")
        for side in sides:
            if side == "ours":
                env.create_db(kind, a_db)
                res["ours"] = ours_restore(env, kind, db, capture, a_dir, a_db)
            else:
                env.create_db(kind, b_db)
                res["raw"], _ = _timed(raw_restore, env, kind, b_path, b_db)
        restored = {"ours": env.bulk_rows(kind, a_db), "raw": env.bulk_rows(kind, b_db)}
        return {
            "capture_s": cap,
            "restore_s": res,
            "artifact_bytes": {"ours": capture.total_bytes, "raw": size_on_disk(b_path)},
            "bulk_rows_restored": restored,
        }
    finally:
        for d in (a_dir, b_dir):
            shutil.rmtree(d, ignore_errors=True)
        for name in (a_db, b_db):
            env.drop_db(kind, name)
