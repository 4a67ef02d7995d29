"""The bench's world: private servers, databases, bulk data, store configs.

Servers are the test servers of ``harness/servers.py`` (loopback, durability off), so
figures compare pausepoint with the raw tools on the same servers, never with a system instance.
Bulk data is generated server-side: ``generate_series`` in PostgreSQL, the Sequence engine's
``seq_A_to_B`` tables in MariaDB. Every bulk row carries 1024 characters of hash text (eight
distinct SHA-512 hex digests), like the hash-chained assets of a ScalarDL ledger; hex text
compresses about 2:1, so gzip in ``pg_dump -Fd`` does real work.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pymysql

from harness import servers
from harness.bank_app import ACCOUNTS, INITIAL_BALANCE, Db, create_schema

KINDS = ("postgres", "mysql")
PG_ENV = "PP_BENCH_PG_PASSWORD"
MY_ENV = "PP_BENCH_MY_PASSWORD"
ROW_PAYLOAD = 1024  # characters of hash text per bulk row
BATCH_ROWS = 50_000  # rows per INSERT when growing the bulk table


def parse_size(text: str) -> int:
    """'10MB' -> 10_000_000 bytes (decimal units: MB = 10^6, GB = 10^9)."""
    t = text.strip().upper()
    for unit, mult in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if t.endswith(unit):
            return int(float(t[: -len(unit)]) * mult)
    return int(t)


def size_label(nbytes: int) -> str:
    return f"{nbytes // 10**9} GB" if nbytes >= 10**9 else f"{nbytes // 10**6} MB"


def rows_for(nbytes: int) -> int:
    return max(1, nbytes // ROW_PAYLOAD)


@dataclass
class Servers:
    base: Path
    pg: servers.PostgresServer
    my: servers.MysqlServer

    @classmethod
    def start(cls, base: Path) -> Servers:
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        base.chmod(0o711)  # PostgreSQL runs as the postgres user and must reach its data dir
        os.environ[PG_ENV] = servers.PASSWORD
        os.environ[MY_ENV] = servers.PASSWORD
        pg = servers.start_postgres(base / "postgres")
        try:
            my = servers.start_mariadb(base / "mariadb")
        except BaseException:
            pg.stop()
            raise
        return cls(base, pg, my)

    def stop(self) -> None:
        self.my.stop()
        self.pg.stop()

    # --- databases ---------------------------------------------------------------------------

    def db(self, kind: str, name: str) -> Db:
        if kind == "postgres":
            pg = self.pg

            def connect_pg():
                return psycopg.connect(
                    host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=name
                )

            return Db(name, connect_pg, kind)
        my = self.my

        def connect_my():
            return pymysql.connect(
                host=my.host, port=my.port, user=my.user, password=my.password, database=name
            )

        return Db(name, connect_my, kind)

    def create_db(self, kind: str, name: str) -> Db:
        self.drop_db(kind, name)
        if kind == "postgres":
            with self.pg.connect() as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        else:
            with self.my.connect() as conn:
                conn.cursor().execute(f"CREATE DATABASE `{name}`")
        return self.db(kind, name)

    def drop_db(self, kind: str, name: str) -> None:
        if kind == "postgres":
            with self.pg.connect() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            with self.my.connect() as conn:
                conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")

    def db_bytes(self, kind: str, name: str) -> int:
        """On-disk size of a database's user tables (with indexes and TOAST), no catalogs."""
        if kind == "postgres":
            with self.pg.connect(name) as conn:
                row = conn.execute(
                    "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind = 'r' AND n.nspname = 'public'"
                ).fetchone()
                return int(row[0])
        with self.my.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) "
                "FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                (name,),
            )
            return int(cur.fetchone()[0])

    def settle(self, kind: str, name: str) -> None:
        """Fresh statistics and no pending checkpoint work before measuring."""
        if kind == "postgres":
            with self.pg.connect(name) as conn:
                conn.execute("VACUUM ANALYZE")
                conn.execute("CHECKPOINT")
        else:
            with self.my.connect(name) as conn, conn.cursor() as cur:
                cur.execute("SHOW TABLES")
                for (table,) in cur.fetchall():
                    cur.execute(f"ANALYZE TABLE `{table}`")
                    cur.fetchall()

    # --- the bank tables and the bulk table --------------------------------------------------

    def create_bank(self, kind: str, name: str) -> None:
        create_schema(self.db(kind, name))

    def reset_bank(self, kind: str, name: str) -> None:
        """Empty the transfer log and reset balances (the bank app keeps adding rows)."""
        conn = self.db(kind, name).connect()
        try:
            cur = conn.cursor()
            cur.execute("DELETE FROM transfer")
            cur.execute("UPDATE account SET balance = %s", (INITIAL_BALANCE,))
            conn.commit()
        finally:
            conn.close()
        assert ACCOUNTS > 0

    def bulk_rows(self, kind: str, name: str) -> int:
        conn = self.db(kind, name).connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT COALESCE(MAX(id), 0) FROM bulk")
            return int(cur.fetchone()[0])
        finally:
            conn.close()

    def create_bulk(self, kind: str, name: str) -> None:
        conn = self.db(kind, name).connect()
        try:
            cur = conn.cursor()
            if kind == "postgres":
                cur.execute(
                    "CREATE TABLE bulk (id BIGINT PRIMARY KEY, age INT NOT NULL, "
                    "payload TEXT NOT NULL)"
                )
            else:
                cur.execute(
                    "CREATE TABLE bulk (id BIGINT PRIMARY KEY, age INT NOT NULL, "
                    "payload TEXT NOT NULL) ENGINE=InnoDB"
                )
            conn.commit()
        finally:
            conn.close()

    def grow_bulk(self, kind: str, name: str, rows: int, progress=None) -> None:
        """Insert rows (max id + 1 .. rows) in batches, generated by the server."""
        have = self.bulk_rows(kind, name)
        conn = self.db(kind, name).connect()
        try:
            cur = conn.cursor()
            if kind == "mysql":
                cur.execute("SET SESSION unique_checks = 0")
            start = have + 1
            while start <= rows:
                end = min(rows, start + BATCH_ROWS - 1)
                if kind == "postgres":
                    digests = " || ".join(
                        f"encode(sha512(('{c}' || i)::bytea), 'hex')" for c in "abcdefgh"
                    )
                    cur.execute(
                        f"INSERT INTO bulk SELECT i, i %% 1000, {digests} "
                        "FROM generate_series(%s::bigint, %s::bigint) AS i",
                        (start, end),
                    )
                else:
                    digests = ", ".join(f"SHA2(CONCAT('{c}', seq), 512)" for c in "abcdefgh")
                    cur.execute(
                        f"INSERT INTO bulk SELECT seq, seq % 1000, CONCAT({digests}) "
                        f"FROM seq_{start}_to_{end}"
                    )
                conn.commit()
                if progress is not None:
                    progress(end, rows)
                start = end + 1
        finally:
            conn.close()

    # --- store configs (site-file dictionaries) ----------------------------------------------

    def store_config(self, kind: str, store_name: str, database: str, **extra) -> dict:
        if kind == "postgres":
            return {
                "kind": "postgres",
                "name": store_name,
                "host": self.pg.host,
                "port": self.pg.port,
                "user": self.pg.user,
                "password": {"env": PG_ENV},
                "database": database,
                "bin_dir": str(self.pg.bin_dir),
                "jobs": 2,
                **extra,
            }
        return {
            "kind": "mysql",
            "name": store_name,
            "host": self.my.host,
            "port": self.my.port,
            "user": self.my.user,
            "password": {"env": MY_ENV},
            "databases": [database],
            **extra,
        }

    def tool_env(self, kind: str) -> dict[str, str]:
        """Environment for the raw tools: the password never goes on argv."""
        env = dict(os.environ)
        if kind == "postgres":
            env["PGPASSWORD"] = self.pg.password
        else:
            env["MYSQL_PWD"] = self.my.password
        return env

    def tool_conn_args(self, kind: str) -> list[str]:
        if kind == "postgres":
            return ["-h", self.pg.host, "-p", str(self.pg.port), "-U", self.pg.user, "-w"]
        return [f"--host={self.my.host}", f"--port={self.my.port}", "--protocol=TCP",
                f"--user={self.my.user}"]  # fmt: skip
