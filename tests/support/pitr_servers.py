"""Servers whose recovery honours a timestamp: a PostgreSQL that archives its WAL (``pitr: wal``)
and a MariaDB with its binary log on (``pitr: binlog``). The point-in-time tests start theirs
from here, each under its own directory (an archive never holds two servers' segments)."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import servers
from pausepoint.stores.postgres_wal import stop_restored


def postgres_owns(path: Path) -> None:
    """Create ``path`` owned by the postgres user when running as root (the server writes it)."""
    pw = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    path.mkdir(parents=True, exist_ok=True)
    if pw is not None:
        os.chown(path, pw.pw_uid, pw.pw_gid)


def start_or_skip(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except servers.ServerUnavailable as exc:
        pytest.skip(str(exc))


@dataclass
class WalServer:
    server: servers.PostgresServer
    archive: Path
    restored: list[Path] = field(default_factory=list)  # servers a restore started: stopped


@contextmanager
def wal_postgres(base: Path) -> Iterator[WalServer]:
    """A PostgreSQL of its own in ``base`` that archives its WAL into ``base/archive/wal``
    (the archive_command of docs/stores.md); stops it and every server a restore started from
    it (``WalServer.restored``)."""
    postgres_owns(base)
    archive = base / "archive"
    postgres_owns(archive)
    postgres_owns(archive / "wal")
    # The command an operator writes (docs/stores.md): never overwrite a segment.
    command = f"test ! -f {archive}/wal/%f && cp %p {archive}/wal/%f"
    server = start_or_skip(
        servers.start_postgres,
        base,
        settings={"archive_mode": "on", "archive_command": command, "wal_level": "replica"},
    )
    wal = WalServer(server, archive)
    try:
        yield wal
    finally:
        for d in wal.restored:
            stop_restored(d)
        server.stop()


def start_binlog_mariadb(base: Path) -> servers.MysqlServer:
    """A MariaDB of its own in ``base`` with the binary log on (ROW format)."""
    return start_or_skip(
        servers.start_mariadb,
        base,
        extra_args=[f"--log-bin={base}/binlog", "--server-id=1", "--binlog-format=ROW"],
    )
