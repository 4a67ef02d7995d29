"""What every point-in-time store kind must do (the kinds whose capabilities say "pitr"), run
once per kind through its adapter; snapshot kinds skip. On a local endpoint (moto's server
for the AWS kinds) the restored data is the source's state at restore time, not the point's
(FACTS.md §8): these tests prove the point's time, the window refusals, where the restore
writes and what it refuses, not the point's data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pausepoint.errors import PitrWindowError, RestoreError
from pausepoint.stores import registry
from pausepoint.stores.base import CaptureWindow
from tests.contract import protocol

pytestmark = pytest.mark.integration


@pytest.fixture
def pitr(adapter) -> int:
    """The kind's granularity in ms (snapshot kinds skip)."""
    caps = registry.get(adapter.kind).capabilities
    if caps.capture != "pitr":
        pytest.skip(f"{adapter.kind} is a snapshot kind")
    assert caps.pitr_granularity_ms is not None
    return caps.pitr_granularity_ms


def capture_at(store, workdir, mid: datetime):
    prepared = protocol.prepare(store, workdir)
    handle = protocol.open_(store, workdir, prepared)
    handle.ctx.window = CaptureWindow(
        start=mid - timedelta(seconds=1), end=mid + timedelta(seconds=1), mid=mid
    )
    return protocol.finish(store, handle)


def test_the_capture_records_the_windows_mid_time_at_the_kinds_step(adapter, pitr, tmp_path):
    place = adapter.bank()
    store = adapter.live(place)
    protocol.check(store)
    mid = datetime.now(UTC) - timedelta(seconds=5, microseconds=300_000)
    result = capture_at(store, tmp_path / "cap", mid)
    adapter.assert_capture_shape(result, {})
    step = timedelta(milliseconds=pitr)
    assert abs(result.pitr_timestamp - mid) <= step / 2
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert (result.pitr_timestamp - epoch) % step == timedelta(0)
    assert result.fingerprint == {}  # nothing is read at the point
    protocol.check_target(adapter.target(place, adapter.elsewhere(place, "ok")), result)


def test_a_restore_at_the_point_writes_a_new_place_and_leaves_the_source(adapter, pitr, tmp_path):
    place = adapter.bank()
    before = adapter.rows(place)
    result = capture_at(
        adapter.live(place), tmp_path / "cap", datetime.now(UTC) - timedelta(seconds=2)
    )
    target_place = adapter.elsewhere(place, "new")
    target = adapter.target(place, target_place)
    protocol.check_target(target, result)
    protocol.restore(target, result, tmp_path / "cap")
    assert adapter.exists(target_place)
    assert adapter.rows(target_place) == before == adapter.rows(place)
    if adapter.has("fingerprint"):
        assert protocol.fingerprint(target) == protocol.fingerprint(adapter.live(place))
    where = " ".join(target.restored_to().values())
    assert target_place.databases[0] in where


def test_a_point_outside_the_window_is_refused_before_anything_is_made(adapter, pitr, tmp_path):
    place = adapter.bank()
    result = capture_at(
        adapter.live(place), tmp_path / "cap", datetime.now(UTC) - timedelta(seconds=2)
    )
    target_place = adapter.elsewhere(place, "old")
    target = adapter.target(place, target_place)
    for moved in (timedelta(days=-60), timedelta(hours=2)):  # long gone; not yet restorable
        shifted = result.model_copy(update={"pitr_timestamp": result.pitr_timestamp + moved})
        with pytest.raises(PitrWindowError, match="outside the restorable window"):
            protocol.check_target(target, shifted)
        with pytest.raises(PitrWindowError):
            protocol.restore(target, shifted, tmp_path / "cap")
    assert not adapter.exists(target_place)


def test_a_taken_target_is_refused_before_anything_changes(adapter, pitr, tmp_path):
    place = adapter.bank()
    result = capture_at(
        adapter.live(place), tmp_path / "cap", datetime.now(UTC) - timedelta(seconds=2)
    )
    target_place = adapter.elsewhere(place, "taken")
    adapter.create_empty(target_place)
    before = adapter.rows(target_place)
    target = adapter.target(place, target_place)
    with pytest.raises(RestoreError, match=target_place.databases[0]):
        protocol.check_target(target, result)
    with pytest.raises(RestoreError):
        protocol.restore(target, result, tmp_path / "cap")
    assert adapter.rows(target_place) == before
