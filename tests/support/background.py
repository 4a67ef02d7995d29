"""Small thread helpers for tests: run a call in the background, wait for a condition."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll condition until it holds; AssertionError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


class Background:
    """Run fn in a daemon thread; ``result()`` joins and returns (or raises) its outcome."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._out: list[Any] = []
        self._err: list[BaseException] = []

        def run() -> None:
            try:
                self._out.append(fn())
            except BaseException as exc:
                self._err.append(exc)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self, timeout_s: float = 10.0) -> Any:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "background call did not finish"
        if self._err:
            raise self._err[0]
        return self._out[0]

    def error(self, timeout_s: float = 10.0) -> BaseException:
        """The exception the call raised (AssertionError if it returned)."""
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "background call did not finish"
        assert self._err, f"expected an error, got {self._out[0]!r}"
        return self._err[0]

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()
