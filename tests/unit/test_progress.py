from __future__ import annotations

import pytest

from pausepoint.progress import CaptureProgress


def test_estimate_from_previous_sizes_never_shows_complete_early():
    p = CaptureProgress({"a": 1000, "b": 1000}, min_interval_s=0)
    assert p.copied("a", 500) == pytest.approx(25.0)
    assert p.copied("a", 5000) == pytest.approx(47.5)  # bigger than last time: capped at 95 %
    assert p.done("a") == pytest.approx(50.0)
    assert p.done("b") == pytest.approx(100.0)


def test_a_store_without_a_previous_size_counts_when_done():
    p = CaptureProgress({"new": None, "old": 100}, min_interval_s=0)
    assert p.copied("new", 10**9) == pytest.approx(0.0)
    assert p.done("new") == pytest.approx(50.0)


def test_updates_are_throttled_but_done_always_reports():
    p = CaptureProgress({"a": 100}, min_interval_s=3600)
    assert p.copied("a", 10) == pytest.approx(10.0)  # the first one is shown
    assert p.copied("a", 20) is None
    assert p.done("a") == pytest.approx(100.0)


def test_copied_bytes_never_go_back():
    p = CaptureProgress({"a": 100}, min_interval_s=0)
    p.copied("a", 50)
    assert p.copied("a", 10) == pytest.approx(50.0)
