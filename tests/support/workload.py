"""A concurrent writer for capture tests: every transaction moves an amount between two tables
(in two schemas/databases), so ``sum(balance) + sum(amount)`` is invariant and a torn capture
shows up as a broken invariant.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any


class TransferWriter:
    """Runs ``transfer(conn, account, amount)`` in a loop on its own connection until stopped."""

    def __init__(
        self,
        connect: Callable[[], Any],
        transfer: Callable[[Any, int, int], None],
        accounts: int,
    ):
        self._connect, self._transfer, self._accounts = connect, transfer, accounts
        self._stop = threading.Event()
        self._gate = threading.Lock()  # held by paused(): like ScalarDL's pause gate
        self._thread = threading.Thread(target=self._run, name="transfer-writer", daemon=True)
        self.committed = 0
        self.error: BaseException | None = None

    def _run(self) -> None:
        rnd = random.Random(7)
        try:
            conn = self._connect()
            try:
                while not self._stop.is_set():
                    with self._gate:
                        self._transfer(conn, rnd.randrange(self._accounts), rnd.randrange(1, 100))
                        self.committed += 1
            finally:
                conn.close()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def __enter__(self) -> TransferWriter:
        self._thread.start()
        return self

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No transaction runs inside the block; the one in flight finishes first (a drain)."""
        with self._gate:
            yield

    def wait_for(self, commits: int, timeout: float = 30) -> None:
        """Block until the writer has committed at least ``commits`` transactions."""
        deadline = time.monotonic() + timeout
        while self.committed < commits and time.monotonic() < deadline and self.error is None:
            time.sleep(0.005)
        if self.error is not None:
            raise self.error
        assert self.committed >= commits, f"writer made only {self.committed} commits"

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.error is not None and exc[0] is None:
            raise self.error
