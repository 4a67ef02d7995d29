"""A bank-like CQL workload on the test Cassandra cluster (tests, bench): two keyspaces like
ScalarDL's tables and its coordinator, a writer thread that moves money while a gate is open
(the stand-in for ScalarDL's pause: ``with bank.paused(): ...`` waits for the write in flight
and holds the next one), and the invariant (balances + transfers never change)."""

from __future__ import annotations

import contextlib
import random
import threading
import uuid
from collections.abc import Iterator
from typing import Any

ACCOUNTS = 100
INITIAL = 1_000


def connect(contact_points: list[str], port: int) -> tuple[Any, Any]:
    from cassandra.cluster import Cluster
    from cassandra.policies import RoundRobinPolicy

    cluster = Cluster(
        contact_points, port=port, connect_timeout=30, control_connection_timeout=30,
        load_balancing_policy=RoundRobinPolicy(), protocol_version=5,
    )  # fmt: skip
    session = cluster.connect()
    session.default_timeout = 120
    return cluster, session


class Bank:
    def __init__(self, contact_points: list[str], port: int, prefix: str | None = None):
        prefix = prefix or f"pp{uuid.uuid4().hex[:8]}"
        self.bank, self.coord = f"{prefix}_bank", f"{prefix}_coord"
        self.cluster, self.session = connect(contact_points, port)
        self._gate = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.writes = 0
        self.errors: list[BaseException] = []

    @property
    def keyspaces(self) -> list[str]:
        return [self.bank, self.coord]

    def create(self, accounts: int = ACCOUNTS, payload: int = 0) -> None:
        """The schema and ``accounts`` accounts; ``payload`` bytes of filler per account (a
        larger data set for the bench)."""
        s = self.session
        for ks in self.keyspaces:
            s.execute(
                f"CREATE KEYSPACE {ks} WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 3}"
            )
        s.execute(
            f"CREATE TABLE {self.bank}.account (id int PRIMARY KEY, balance bigint, note text, "
            "data blob, tags set<text>)"
        )
        s.execute(
            f"CREATE TABLE {self.coord}.transfer (tx_id uuid PRIMARY KEY, account int, "
            "amount bigint)"
        )
        s.execute(f"CREATE TABLE {self.coord}.empty (id int PRIMARY KEY)")
        insert = s.prepare(
            f"INSERT INTO {self.bank}.account (id, balance, note, data, tags) VALUES (?,?,?,?,?)"
        )
        from cassandra.concurrent import execute_concurrent_with_args

        filler = random.Random(1)
        rows = [
            (i, INITIAL, None if i % 3 == 0 else f"n{i}\n'q'",
             filler.randbytes(payload) if payload else b"", {"a", str(i % 5)})
            for i in range(accounts)
        ]  # fmt: skip
        execute_concurrent_with_args(s, insert, rows, concurrency=32, raise_on_first_error=True)
        self.accounts = accounts
        self._balances = {i: INITIAL for i in range(accounts)}

    # --- the writer ---------------------------------------------------------------------------

    def start_writer(self, seed: int = 7) -> None:
        rnd = random.Random(seed)
        update = self.session.prepare(f"UPDATE {self.bank}.account SET balance = ? WHERE id = ?")
        insert = self.session.prepare(
            f"INSERT INTO {self.coord}.transfer (tx_id, account, amount) VALUES (?, ?, ?)"
        )

        def run() -> None:
            try:
                while not self._stop.is_set():
                    with self._gate:  # held by paused(): no write while "ScalarDL" is paused
                        account = rnd.randrange(self.accounts)
                        amount = rnd.randrange(1, 10)
                        self._balances[account] -= amount
                        # A logged batch: both rows or neither, like one ScalarDL transaction.
                        from cassandra.query import BatchStatement

                        batch = BatchStatement()
                        batch.add(update, (self._balances[account], account))
                        batch.add(insert, (uuid.uuid4(), account, amount))
                        self.session.execute(batch)
                        self.writes += 1
            except BaseException as exc:
                self.errors.append(exc)

        self._thread = threading.Thread(target=run, daemon=True, name="cassandra-bank-writer")
        self._thread.start()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No write in flight and none starts inside the block (ScalarDL's pause)."""
        with self._gate:
            yield

    def stop_writer(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self.errors:
            raise self.errors[0]
        return self.writes

    # --- checks -------------------------------------------------------------------------------

    def invariant(self) -> tuple[int, int]:
        """(balances + transfers, number of transfers) read at consistency ALL."""
        from cassandra import ConsistencyLevel
        from cassandra.query import SimpleStatement

        def all_rows(cql: str) -> list[Any]:
            return list(self.session.execute(
                SimpleStatement(cql, consistency_level=ConsistencyLevel.ALL)))  # fmt: skip

        balances = sum(r[0] for r in all_rows(f"SELECT balance FROM {self.bank}.account"))
        transfers = all_rows(f"SELECT amount FROM {self.coord}.transfer")
        return balances + sum(r[0] for r in transfers), len(transfers)

    def drop(self) -> None:
        for ks in self.keyspaces:
            with contextlib.suppress(Exception):
                self.session.execute(f"DROP KEYSPACE IF EXISTS {ks}")

    def close(self) -> None:
        self._stop.set()
        self.cluster.shutdown()
