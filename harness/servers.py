"""Private PostgreSQL and MariaDB servers for tests.

Each server gets its own data directory, socket directory and a free loopback port under a
directory the caller gives, so a test run never touches a system instance. Durability is turned
off (fsync and friends): these settings are for throw-away TEST data only.

Shutdown only ever signals the process this module started (by its pid).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psycopg
import pymysql

from harness.processes import HOST, free_port, log_tail, stop_child

PASSWORD = "pp-test-Secret-42"  # known superuser password of the test servers (tests only)


class ServerUnavailable(RuntimeError):
    """The binaries to start a server are not installed (tests skip with this reason)."""


class ServerStartError(RuntimeError):
    """A server was found but did not come up; the message carries its log tail."""


class Login(Protocol):
    """Where a server listens and who logs in (a server here, or harness.kinds.Endpoint)."""

    host: str
    port: int
    user: str
    password: str


def connect_postgres(login: Login, dbname: str, autocommit: bool) -> psycopg.Connection:
    return psycopg.connect(
        host=login.host,
        port=login.port,
        user=login.user,
        password=login.password,
        dbname=dbname,
        autocommit=autocommit,
        connect_timeout=10,
    )


def connect_mysql(login: Login, database: str | None, autocommit: bool) -> pymysql.Connection:
    return pymysql.connect(
        host=login.host,
        port=login.port,
        user=login.user,
        password=login.password,
        database=database,
        autocommit=autocommit,
        connect_timeout=10,
        charset="utf8mb4",
    )


# --- PostgreSQL -----------------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin with initdb, or PAUSEPOINT_PG_BIN."""
    if env := os.environ.get("PAUSEPOINT_PG_BIN"):
        candidates = [env]
    else:
        candidates = sorted(
            glob.glob("/usr/lib/postgresql/*/bin"),
            key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
            reverse=True,
        )
    for c in candidates:
        if (Path(c) / "initdb").is_file() and (Path(c) / "postgres").is_file():
            return Path(c)
    raise ServerUnavailable(
        "PostgreSQL server binaries (initdb, postgres) not found under /usr/lib/postgresql/*/bin; "
        "run `bash scripts/install-servers.sh` (or set PAUSEPOINT_PG_BIN)"
    )


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    data_dir: Path
    socket_dir: Path
    bin_dir: Path
    version: str = ""
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    def connect(self, dbname: str = "postgres", autocommit: bool = True) -> psycopg.Connection:
        return connect_postgres(self, dbname, autocommit)

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: abort sessions, checkpoint, exit.
        if self._proc is not None:
            stop_child(self._proc, signal.SIGINT, timeout=30)


def _as_postgres_user() -> dict:
    """Popen arguments that drop root to the `postgres` user (initdb/postgres refuse root)."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServerUnavailable("running as root but there is no `postgres` user") from exc
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def start_postgres(
    base: Path, port: int | None = None, settings: dict[str, str] | None = None
) -> PostgresServer:
    """initdb + postgres in ``base`` (which the postgres user must be able to traverse).
    ``settings``: extra server settings (``-c name=value``), e.g. WAL archiving."""
    bin_dir = postgres_bin_dir()
    base.mkdir(parents=True, exist_ok=True)
    data, sock = base / "data", base / "sock"
    for d in (base, sock):
        d.mkdir(exist_ok=True)
        _chown_postgres(d)
    log = base / "postgres.log"
    pwfile = base / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    pwfile.chmod(0o600)
    _chown_postgres(pwfile)
    drop = _as_postgres_user()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": str(base)}
    if not (data / "PG_VERSION").exists():
        r = subprocess.run(
            [
                str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-sync",
            ],
            env=env, capture_output=True, text=True, cwd=base, **drop,
        )  # fmt: skip
        if r.returncode != 0:
            raise ServerStartError(f"initdb failed: {r.stderr.strip()[-2000:]}")
    pwfile.unlink()
    port = port or free_port()
    with open(log, "ab") as logf:
        if os.geteuid() == 0:
            _chown_postgres(log)
        proc = subprocess.Popen(
            [
                str(bin_dir / "postgres"), "-D", str(data),
                "-c", f"port={port}", "-c", f"listen_addresses={HOST}",
                "-c", f"unix_socket_directories={sock}",
                # TESTS ONLY: no durability, small footprint, quick checkpoints.
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_wal_size=1GB", "-c", "shared_buffers=128MB",
                "-c", "max_connections=100", "-c", "logging_collector=off",
                *(a for k, v in (settings or {}).items() for a in ("-c", f"{k}={v}")),
            ],
            stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=base,
            start_new_session=True, **drop,
        )  # fmt: skip
    server = PostgresServer(HOST, port, "postgres", PASSWORD, data, sock, bin_dir, _proc=proc)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise ServerStartError(f"postgres exited with {proc.returncode}:\n{log_tail(log, 30)}")
        try:
            with server.connect() as conn:
                server.version = conn.execute("SHOW server_version").fetchone()[0]
            return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise ServerStartError(
                    f"postgres did not accept connections:\n{log_tail(log, 30)}"
                ) from None
            time.sleep(0.1)


# --- MariaDB --------------------------------------------------------------------------------


def mariadb_binaries() -> tuple[Path, Path]:
    """(mariadbd, mariadb-install-db), or ServerUnavailable."""
    server = shutil.which("mariadbd") or (
        "/usr/sbin/mariadbd" if os.access("/usr/sbin/mariadbd", os.X_OK) else None
    )
    install = shutil.which("mariadb-install-db")
    if not server or not install:
        raise ServerUnavailable(
            "MariaDB server binaries (mariadbd, mariadb-install-db) not found; "
            "run `bash scripts/install-servers.sh`"
        )
    return Path(server), Path(install)


@dataclass
class MysqlServer:
    host: str
    port: int
    user: str
    password: str
    data_dir: Path
    socket: Path
    version: str = ""
    general_log: Path | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    def connect(self, database: str | None = None, autocommit: bool = True) -> pymysql.Connection:
        return connect_mysql(self, database, autocommit)

    def stop(self) -> None:
        # SIGTERM makes mariadbd shut down cleanly.
        if self._proc is not None:
            stop_child(self._proc, signal.SIGTERM, timeout=60)


def _root_on_socket(sock: Path) -> pymysql.Connection:
    try:
        return pymysql.connect(unix_socket=str(sock), user="root", autocommit=True)
    except pymysql.err.OperationalError as exc:
        if exc.args[0] != 1045:  # not "access denied": the server is not up yet
            raise
        return pymysql.connect(
            unix_socket=str(sock), user="root", password=PASSWORD, autocommit=True
        )


def start_mariadb(
    base: Path, port: int | None = None, extra_args: list[str] | None = None
) -> MysqlServer:
    """``extra_args``: more server options; ``--log-bin...`` among them turns the binary log on
    (it is off otherwise)."""
    mariadbd, install_db = mariadb_binaries()
    base.mkdir(parents=True, exist_ok=True)
    data, sock_dir = base / "data", base / "sock"
    sock_dir.mkdir(exist_ok=True)
    sock = sock_dir / "mysqld.sock"
    log = base / "mariadb.err"
    user_opt = ["--user=root"] if os.geteuid() == 0 else []
    if not (data / "mysql").is_dir():
        r = subprocess.run(
            [
                str(install_db), "--no-defaults", f"--datadir={data}", "--skip-test-db",
                "--auth-root-authentication-method=normal", "--skip-name-resolve",
                *user_opt,
            ],
            capture_output=True, text=True, cwd=base,
        )  # fmt: skip
        if r.returncode != 0:
            raise ServerStartError(f"mariadb-install-db failed: {(r.stdout + r.stderr)[-2000:]}")
    port = port or free_port()
    binlog = any(a.startswith("--log-bin") for a in extra_args or [])
    general_log = base / "general.log"
    proc = subprocess.Popen(
        [
            str(mariadbd), "--no-defaults", f"--datadir={data}", f"--socket={sock}",
            f"--port={port}", f"--bind-address={HOST}", f"--pid-file={base / 'mariadbd.pid'}",
            f"--log-error={log}", "--skip-name-resolve",
            *([] if binlog else ["--skip-log-bin"]),
            f"--general-log-file={general_log}", "--general-log=0",
            # TESTS ONLY: no durability, small footprint.
            "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--sync-binlog=0",
            "--innodb-buffer-pool-size=256M", "--innodb-log-file-size=256M",
            "--innodb-flush-method=nosync", "--max-connections=200",
            *user_opt, *(extra_args or []),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=base, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise ServerStartError(f"mariadbd exited with {proc.returncode}:\n{log_tail(log, 30)}")
        try:
            # Fresh install: root@localhost has no password; a reused data dir has ours.
            conn = _root_on_socket(sock)
            break
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                stop_child(proc, signal.SIGTERM, timeout=30)
                raise ServerStartError(
                    f"mariadbd did not accept connections:\n{log_tail(log, 30)}"
                ) from None
            time.sleep(0.1)
    with conn:
        cur = conn.cursor()
        # With skip-name-resolve TCP clients match root@'127.0.0.1'; give both a password.
        for account in ("'root'@'localhost'", f"'root'@'{HOST}'"):
            cur.execute(f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY %s", (PASSWORD,))
            cur.execute(f"ALTER USER {account} IDENTIFIED BY %s", (PASSWORD,))
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION")
        cur.execute("SELECT VERSION()")
        version = cur.fetchone()[0]
    return MysqlServer(
        HOST, port, "root", PASSWORD, data, sock, version, general_log=general_log, _proc=proc
    )
