"""The raw tools, as an operator would run them by hand; passwords only in the environment."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.env import Servers


def _run(argv: list[str], env: dict, what: str, **kw) -> None:
    r = subprocess.run(argv, env=env, stderr=subprocess.PIPE, text=True, check=False, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed ({r.returncode}): {r.stderr.strip()[-800:]}")


def raw_dump(env: Servers, kind: str, db: str, out: Path) -> Path:
    """``pg_dump -Fd -j2`` into a fresh directory / ``mariadb-dump --single-transaction db > f``."""
    if kind == "postgres":
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        _run(
            [str(env.pg.bin_dir / "pg_dump"), *env.tool_conn_args(kind), "-Fd", "-j2",
             "-f", str(out), db],
            env.tool_env(kind), "pg_dump",
        )  # fmt: skip
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.with_suffix(".sql")
    with open(path, "wb") as f:
        _run(
            ["mariadb-dump", *env.tool_conn_args(kind), "--single-transaction", db],
            env.tool_env(kind), "mariadb-dump", stdout=f,
        )  # fmt: skip
    return path


def raw_restore(env: Servers, kind: str, dump: Path, fresh_db: str) -> None:
    """``pg_restore -j2 -d <fresh db>`` / ``mariadb <fresh db> < file`` (the db exists, empty)."""
    if kind == "postgres":
        _run(
            [str(env.pg.bin_dir / "pg_restore"), *env.tool_conn_args(kind), "-j2",
             "-d", fresh_db, str(dump)],
            env.tool_env(kind), "pg_restore",
        )  # fmt: skip
        return
    with open(dump, "rb") as f:
        _run(["mariadb", *env.tool_conn_args(kind), fresh_db], env.tool_env(kind), "mariadb",
             stdin=f)  # fmt: skip


def size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
