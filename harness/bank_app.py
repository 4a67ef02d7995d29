"""A small test application whose writes pass through the gates of test admin nodes.

It plays ScalarDL: every request enters the gate of one ledger node and one auditor node (held
while they are paused), then writes ONE logical transaction that spans several databases: it
moves an amount between two accounts that live in different databases and logs the transfer id in
each. Each database commits on its own, one after the other, so a backup that is not taken at a
quiet point tears transfers: the id shows up in one database and not in the other, and the total
balance breaks. That is what the round-trip tests look for.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

ACCOUNTS = 20
INITIAL_BALANCE = 1_000


@dataclass
class Db:
    """One database the app writes to: a connect function and its SQL dialect."""

    name: str
    connect: Callable[[], object]
    dialect: str  # "postgres" or "mysql"

    @property
    def ph(self) -> str:
        return "%s"


def _exec(conn, sql: str, args: Sequence = ()) -> list:
    cur = conn.cursor()
    cur.execute(sql, args)
    try:
        return list(cur.fetchall())
    except Exception:  # statements without a result set
        return []


def create_schema(db: Db) -> None:
    conn = db.connect()
    try:
        _exec(conn, "CREATE TABLE account (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
        _exec(
            conn,
            "CREATE TABLE transfer (id BIGINT PRIMARY KEY, src INT NOT NULL, "
            "dst INT NOT NULL, amount BIGINT NOT NULL, note VARCHAR(200))",
        )
        for i in range(ACCOUNTS):
            _exec(conn, "INSERT INTO account (id, balance) VALUES (%s, %s)", (i, INITIAL_BALANCE))
        conn.commit()
    finally:
        conn.close()


def read_state(db: Db) -> tuple[int, set[int]]:
    """(total balance, set of transfer ids) of one database."""
    conn = db.connect()
    try:
        total = _exec(conn, "SELECT COALESCE(SUM(balance), 0) FROM account")[0][0]
        ids = {r[0] for r in _exec(conn, "SELECT id FROM transfer")}
        conn.commit()
        return int(total), ids
    finally:
        conn.close()


@dataclass
class Ack:
    id: int
    sent_at: datetime
    acked_at: datetime
    latency_ms: float


@dataclass
class BankApp:
    """Writers that each loop over the components: enter one node's gate, transfer across the
    component's pairs of databases, exit. Gates are never nested (a request held at one
    component's gate holds no other gate), as ScalarDL clients talk to Ledger and Auditor in turn.
    """

    components: list[tuple[list[object], list[tuple[Db, Db]]]]  # (node gates, (debit, credit))
    writers: int = 4
    acks: list[Ack] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _ids: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _writer(self, n: int) -> None:
        rnd = random.Random(n)
        conns = [[(a.connect(), b.connect()) for a, b in pairs] for _, pairs in self.components]
        try:
            while not self._stop.is_set():
                tx = self._next_id()
                src, dst = rnd.sample(range(ACCOUNTS), 2)
                amount = rnd.randint(1, 50)
                sent = datetime.now(UTC)
                t0 = time.monotonic()
                for (gates, _), comp_conns in zip(self.components, conns, strict=True):
                    gate = gates[(n + tx) % len(gates)]
                    gate.enter()
                    try:
                        self._transfer(comp_conns, tx, src, dst, amount)
                    finally:
                        gate.exit()
                acked = datetime.now(UTC)
                with self._lock:
                    self.acks.append(Ack(tx, sent, acked, (time.monotonic() - t0) * 1000))
        except BaseException as exc:  # surfaced by stop()
            self.errors.append(exc)
        finally:
            for comp_conns in conns:
                for a, b in comp_conns:
                    a.close()
                    b.close()

    @staticmethod
    def _transfer(comp_conns, tx, src, dst, amount) -> None:
        for debit, credit in comp_conns:
            # Two databases, two commits: the gap between them is what a torn
            # backup catches.
            _exec(debit, "UPDATE account SET balance = balance - %s WHERE id = %s", (amount, src))
            _exec(
                debit,
                "INSERT INTO transfer VALUES (%s, %s, %s, %s, %s)",
                (tx, src, dst, -amount, f"debit {tx}"),
            )
            debit.commit()
            _exec(credit, "UPDATE account SET balance = balance + %s WHERE id = %s", (amount, dst))
            _exec(
                credit,
                "INSERT INTO transfer VALUES (%s, %s, %s, %s, %s)",
                (tx, src, dst, amount, f"credit {tx}"),
            )
            credit.commit()

    def start(self) -> BankApp:
        for n in range(self.writers):
            t = threading.Thread(
                target=self._writer, args=(n,), name=f"bank-writer-{n}", daemon=True
            )
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        """Stop the writers and re-raise the first writer error; a second call does nothing."""
        if self._stop.is_set():
            return
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        if self.errors:
            raise self.errors[0]

    def wait_for_acks(self, n: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.acks) < n:
            if self.errors:
                raise self.errors[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.acks)} of {n} transfers acknowledged")
            time.sleep(0.01)


def check_consistent(
    pairs: list[tuple[Db, Db]], acks: list[Ack], window_start: datetime, window_end: datetime
) -> dict:
    """Check restored databases against the pause window.

    - no torn transfer: both databases of a pair hold the same transfer ids;
    - balances intact: the total over each pair is what it was at the start;
    - every transfer acknowledged before the window opened is present everywhere;
    - no transfer sent after the window closed is present anywhere.
    """
    states = {db.name: read_state(db) for pair in pairs for db in pair}
    torn, bad_totals = {}, {}
    expected_total = 2 * ACCOUNTS * INITIAL_BALANCE
    for a, b in pairs:
        ids_a, ids_b = states[a.name][1], states[b.name][1]
        if ids_a != ids_b:
            torn[f"{a.name}/{b.name}"] = sorted(ids_a ^ ids_b)[:10]
        total = states[a.name][0] + states[b.name][0]
        if total != expected_total:
            bad_totals[f"{a.name}+{b.name}"] = total
    before = {x.id for x in acks if x.acked_at < window_start}
    after = {x.id for x in acks if x.sent_at > window_end}
    missing, leaked = {}, {}
    for name, (_, ids) in states.items():
        if before - ids:
            missing[name] = sorted(before - ids)[:10]
        if after & ids:
            leaked[name] = sorted(after & ids)[:10]
    return {
        "transfers": {name: len(ids) for name, (_, ids) in states.items()},
        "acked_before_window": len(before),
        "torn": torn,
        "bad_totals": bad_totals,
        "missing_acked_before_window": missing,
        "present_sent_after_window": leaked,
        "ok": not (torn or bad_totals or missing or leaked),
    }
