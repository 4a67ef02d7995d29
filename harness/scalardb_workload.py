"""Clients for the ScalarDB-backed nodes (harness/scalardb_node.py), as a ScalarDL client runs:
a request is executed by a ledger node, then the ledger's result is handed to an auditor node,
which applies it to its own copy and keeps the ledger's result as proof; the request is
acknowledged when both answered. The two steps are never nested (a request held at one
component's gate holds nothing at the other's), so every node can drain while all are paused.

Every request is logged (:class:`Entry`): when it was sent, when the ledger answered, when it
was acknowledged, and how it ended. The log is what the checker (harness/scalardb_checker.py)
compares a restored copy with, and what the write stall is computed from (:func:`stall`).
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.scalardb_node import NodeConnection

Address = tuple[str, int]
ACCOUNTS_PER_SIDE = 8  # accounts on MariaDB (my-*) and as many on PostgreSQL (pg-*)
INITIAL_BALANCE = 1_000
CLIENTS = 8


def accounts(per_side: int = ACCOUNTS_PER_SIDE) -> list[str]:
    return [f"{side}-{i}" for side in ("my", "pg") for i in range(per_side)]


@dataclass
class Entry:
    """One request as the client saw it. Times are Unix seconds (time.time()).

    ``outcome``: "acked" (both components answered ok), "ledger_failed" (the ledger refused it
    or its outcome is unknown), "auditor_failed" (the ledger committed, the auditor did not),
    "cut" (the workload stopped while it was out; its fate is unknown)."""

    rid: str
    kind: str
    src: str
    dst: str
    amount: int
    sent: float
    ledger_acked: float | None = None
    acked: float | None = None
    outcome: str = "cut"
    error: str = ""

    @property
    def latency_ms(self) -> float | None:
        return None if self.acked is None else (self.acked - self.sent) * 1000


def _execute(ledger: NodeConnection, auditor: NodeConnection, entry: Entry) -> None:
    body: dict[str, Any] = {"op": entry.kind, "rid": entry.rid, "amount": entry.amount}
    if entry.kind == "create":
        body["account"] = entry.dst
    else:
        body |= {"src": entry.src, "dst": entry.dst}
    answer = ledger.call(body)
    if not answer.get("ok"):
        entry.outcome, entry.error = (
            "ledger_failed",
            f"{answer.get('error')}: {answer.get('message')}",
        )
        return
    entry.ledger_acked = time.time()
    answer = auditor.call({**body, "proof": answer["hashes"]})
    if not answer.get("ok"):
        entry.outcome = "auditor_failed"
        entry.error = f"{answer.get('error')}: {answer.get('message')}"
        return
    entry.acked = time.time()
    entry.outcome = "acked"


def create_accounts(
    ledgers: Sequence[Address],
    auditors: Sequence[Address],
    names: Iterable[str] | None = None,
    balance: int = INITIAL_BALANCE,
) -> list[Entry]:
    """Create the accounts on both components (through the nodes, as requests); returns their
    log entries. Raises if one is not acknowledged."""
    entries = []
    with NodeConnection(ledgers[0]) as ledger, NodeConnection(auditors[0]) as auditor:
        for name in names if names is not None else accounts():
            e = Entry(f"create-{name}", "create", "", name, balance, time.time())
            _execute(ledger, auditor, e)
            if e.outcome != "acked":
                raise RuntimeError(f"creating account {name} failed: {e.outcome} {e.error}")
            entries.append(e)
    return entries


@dataclass
class Workload:
    """``clients`` threads, each with a connection to one ledger and one auditor node (spread
    over the nodes), sending transfers between a my-* and a pg-* account until stopped."""

    ledgers: Sequence[Address]
    auditors: Sequence[Address]
    names: Sequence[str] = field(default_factory=accounts)
    clients: int = CLIENTS
    max_amount: int = 50
    seed: int = 1
    log: list[Entry] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _conns: list[NodeConnection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # request ids are unique across workloads on the same databases (a node answers a
        # request id it already holds as a duplicate, without executing it again)
        self.tag = uuid.uuid4().hex[:8]
        if self.clients < 1:
            raise ValueError("a workload needs at least one client")
        self._mine = [n for n in self.names if n.startswith("my-")]
        self._theirs = [n for n in self.names if n.startswith("pg-")]
        if not self._mine or not self._theirs:
            raise ValueError("a workload needs my-* and pg-* accounts (a transfer spans both)")

    def start(self) -> Workload:
        for n in range(self.clients):
            ledger = NodeConnection(self.ledgers[n % len(self.ledgers)], timeout=None)
            auditor = NodeConnection(self.auditors[n % len(self.auditors)], timeout=None)
            self._conns += [ledger, auditor]
            t = threading.Thread(
                target=self._client, args=(n, ledger, auditor), name=f"client-{n}", daemon=True
            )
            self._threads.append(t)
            t.start()
        return self

    def _client(self, n: int, ledger: NodeConnection, auditor: NodeConnection) -> None:
        rnd = random.Random(self.seed * 1000 + n)
        seq = 0
        try:
            while not self._stop.is_set():
                seq += 1
                a, b = rnd.choice(self._mine), rnd.choice(self._theirs)
                src, dst = (a, b) if rnd.random() < 0.5 else (b, a)
                e = Entry(
                    f"{self.tag}-c{n}-{seq}",
                    "transfer",
                    src,
                    dst,
                    rnd.randint(1, self.max_amount),
                    0,
                )
                with self._lock:
                    self.log.append(e)
                e.sent = time.time()
                _execute(ledger, auditor, e)
        except (OSError, ValueError) as exc:
            if not self._stop.is_set():  # a connection closed by stop() is expected
                self.errors.append(exc)
        except BaseException as exc:  # surfaced by stop()
            self.errors.append(exc)

    def acked(self) -> int:
        with self._lock:
            return sum(1 for e in self.log if e.outcome == "acked")

    def wait_for(self, acks: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.acked() < acks:
            if self.errors:
                raise self.errors[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.acked()} of {acks} requests acknowledged")
            time.sleep(0.05)

    def stop(self, timeout: float = 60) -> list[Entry]:
        """Stop sending; wait for requests in flight (they may be held at a paused gate for up to
        ``timeout`` s, then their connections are closed). Raises a client's error."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for c in self._conns:
            c.close()
        for t in self._threads:
            t.join(5)
        if self.errors:
            raise self.errors[0]
        with self._lock:
            return list(self.log)

    def __enter__(self) -> Workload:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        except BaseException:
            if exc[0] is None:
                raise


# --- the log -----------------------------------------------------------------------------------


def save_log(entries: Iterable[Entry], path: Path) -> Path:
    """One JSON object per line."""
    with open(path, "w", encoding="utf-8") as f:
        for e in entries:
            f.write(json.dumps(asdict(e)) + "\n")
    return path


def load_log(path: Path) -> list[Entry]:
    with open(path, encoding="utf-8") as f:
        return [Entry(**json.loads(line)) for line in f if line.strip()]


@dataclass(frozen=True)
class Stall:
    """Latency of the requests sent inside a pause window (they waited at a closed gate)."""

    requests: int
    p50_ms: float
    p95_ms: float
    max_ms: float

    def __str__(self) -> str:
        if not self.requests:
            return "no request was sent during the pause"
        return (
            f"{self.requests} requests sent during the pause: latency p50 {self.p50_ms:.0f} ms, "
            f"p95 {self.p95_ms:.0f} ms, max {self.max_ms:.0f} ms"
        )


def _percentile(sorted_values: list[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[int(q) - 1]


def stall(entries: Iterable[Entry], start: float, end: float) -> Stall:
    """p50/p95/max latency (send to acknowledgement) of acknowledged requests sent in
    [start, end] (Unix seconds): what the clients saw of the pause. Take ``start`` when the
    first Pause is sent (a request arriving while the nodes drain already waits at a closed
    gate) and ``end`` when the last Unpause is confirmed, as pausepoint's own write stall."""
    lat = sorted(
        e.latency_ms
        for e in entries
        if e.latency_ms is not None and start <= e.sent <= end and e.kind == "transfer"
    )
    if not lat:
        return Stall(0, 0.0, 0.0, 0.0)
    return Stall(len(lat), _percentile(lat, 50), _percentile(lat, 95), lat[-1])


def throughput(entries: Iterable[Entry]) -> float:
    """Acknowledged transfers per second over the span of the log's transfers."""
    acked = [e for e in entries if e.kind == "transfer" and e.acked is not None]
    if len(acked) < 2:
        return 0.0
    span = max(e.acked for e in acked) - min(e.sent for e in acked)  # type: ignore[type-var]
    return len(acked) / span if span > 0 else 0.0
