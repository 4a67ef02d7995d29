"""How far the copy of a backup's stores has got, as one percentage for a progress bar.

Copying happens after unpause and its total is not known up front (compressed dumps), so each
store's expected size is what the same store wrote for the site's previous restore point. A store
with no previous size counts only once it is done, and no store shows complete before it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from pausepoint.catalog.manifest import RestorePoint

UNFINISHED_CAP = 0.95  # an estimate may be short: keep the last 5 % for "really done"


class CaptureProgress:
    def __init__(self, expected: dict[str, int | None], min_interval_s: float = 2.0):
        self.expected = dict(expected)
        self._copied = dict.fromkeys(expected, 0)
        self._done: set[str] = set()
        self._lock = threading.Lock()
        self._min_interval_s = min_interval_s
        self._last_sent = float("-inf")

    @classmethod
    def from_previous(
        cls, stores: Iterable[str], previous: RestorePoint | None, min_interval_s: float = 2.0
    ) -> CaptureProgress:
        sizes: dict[str, int] = {}
        if previous is not None:
            for comp in previous.components.values():
                sizes.update({s.name: s.total_bytes for s in comp.stores if s.total_bytes > 0})
        return cls({name: sizes.get(name) for name in stores}, min_interval_s)

    def _fraction(self, store: str) -> float:
        if store in self._done:
            return 1.0
        expected = self.expected.get(store)
        if not expected:
            return 0.0
        return min(self._copied[store] / expected, UNFINISHED_CAP)

    @property
    def percent(self) -> float:
        with self._lock:
            if not self.expected:
                return 100.0
            return 100.0 * sum(self._fraction(s) for s in self.expected) / len(self.expected)

    def copied(self, store: str, n_bytes: int) -> float | None:
        """Record bytes copied so far; the new percentage when it is time to show it, else None
        (a progress bar needs an update every few seconds, not one per chunk)."""
        with self._lock:
            self._copied[store] = max(self._copied.get(store, 0), n_bytes)
            now = time.monotonic()
            if now - self._last_sent < self._min_interval_s:
                return None
            self._last_sent = now
        return self.percent

    def done(self, store: str) -> float:
        with self._lock:
            self._done.add(store)
        return self.percent
