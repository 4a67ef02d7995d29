"""The raw tools, as an operator would run them by hand; passwords only in the environment.
The commands of each kind are in harness/kinds.py (``raw_dump``, ``raw_restore``)."""

from __future__ import annotations

from pathlib import Path

from bench.env import Servers


def raw_dump(env: Servers, kind: str, db: str, out: Path) -> Path:
    """``pg_dump -Fd -j2`` into a fresh directory / ``mariadb-dump --single-transaction db > f``."""
    return env.kind(kind).raw_dump(db, out)


def raw_restore(env: Servers, kind: str, dump: Path, fresh_db: str) -> None:
    """``pg_restore -j2 -d <fresh db>`` / ``mariadb <fresh db> < file`` (the db exists, empty)."""
    env.kind(kind).raw_restore(dump, fresh_db)


def size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
