"""The store contract: what every store kind must do, run once per kind through its adapter.

Capture under load restores exactly the snapshot; restore into an empty target, refuse a
non-empty one and replace it when asked; a corrupt artifact is refused before any change;
fingerprints equal after a restore and differ after any change; abort and release free
everything; check() names what is wrong without the password. Every store call goes through
``protocol`` (one place to adapt when the protocol changes).
"""

from __future__ import annotations

import time

import pytest

from pausepoint.errors import (
    CaptureError,
    CorruptArtifactError,
    StoreCheckError,
    TargetNotEmptyError,
    ToolMissingError,
)
from tests.contract import protocol
from tests.contract.adapters import ACCOUNTS, INITIAL, PASSWORD_ENV
from tests.support.workload import TransferWriter

pytestmark = pytest.mark.integration


def flip_a_byte(path, at: int | None = None) -> bytearray:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x01
    path.write_bytes(data)
    return data


# --- capture and restore ----------------------------------------------------------------------


def test_capture_under_writer_restores_the_exact_snapshot(adapter, tmp_path, variant):
    """As the backup flow does: the snapshot opens while writes are held (the pause), writes
    go on while the copy runs; the restore holds the snapshot's state, not the end state."""
    adapter.needs("exact_point", "capture_fingerprint")
    settings = adapter.variants[variant]
    place = adapter.bank()
    store = adapter.live(place, **settings)
    protocol.check(store)
    workdir = tmp_path / "cap"
    seen: list[int] = []
    transfer = adapter.transfer(place)
    with TransferWriter(lambda: adapter.writer_connection(place), transfer, ACCOUNTS) as writer:
        writer.wait_for(50)
        prepared = protocol.prepare(store, workdir)
        with writer.paused():
            handle = protocol.open_(store, workdir, prepared)
        writer.wait_for(writer.committed + 50)  # writes continue after the unpause
        result = protocol.finish(store, handle, progress=seen.append)

    adapter.assert_capture_shape(result, settings)
    assert result.fingerprint_method == store.fingerprint_method
    assert adapter.bank_tables(place) <= set(result.fingerprint)
    assert all(len(a.sha256) == 64 for a in result.artifacts)
    assert seen and seen[-1] == result.total_bytes
    assert result.snapshot_established_at is not None

    target_place = adapter.elsewhere(place, "copy")  # does not exist yet: restore creates it
    target = adapter.target(place, target_place, **settings)
    protocol.check_target(target, result)
    protocol.restore(target, result, workdir)

    assert protocol.fingerprint(target) == result.fingerprint
    total, moved = adapter.invariant(target_place)
    assert total == ACCOUNTS * INITIAL
    assert 0 < moved < adapter.invariant(place)[1]  # the snapshot, not the end state


def test_capture_without_a_pause_restores_its_own_snapshot(adapter, tmp_path):
    """A site on one store is backed up without a pause and the writer never stops: the
    capture (fingerprint included) is that one snapshot's, whatever commits meanwhile."""
    adapter.needs("exact_point", "capture_fingerprint")
    place = adapter.bank()
    store = adapter.live(place)
    transfer = adapter.transfer(place)
    with TransferWriter(lambda: adapter.writer_connection(place), transfer, ACCOUNTS) as writer:
        writer.wait_for(50)
        handle = protocol.open_(store, tmp_path / "cap")  # prepares itself; writer goes on
        writer.wait_for(writer.committed + 50)
        result = protocol.finish(store, handle)
    adapter.assert_capture_shape(result, {})
    assert result.fingerprint_method == store.fingerprint_method

    target_place = adapter.elsewhere(place, "nopause")
    target = adapter.target(place, target_place)
    protocol.restore(target, result, tmp_path / "cap")
    assert protocol.fingerprint(target) == result.fingerprint
    assert adapter.invariant(target_place)[0] == ACCOUNTS * INITIAL


def test_restore_into_an_existing_empty_target(adapter, tmp_path):
    adapter.needs("empty_target")
    place = adapter.bank()
    result = protocol.capture(adapter.live(place), tmp_path / "cap")
    target_place = adapter.elsewhere(place, "empty")
    adapter.create_empty(target_place)
    target = adapter.target(place, target_place)
    protocol.check_target(target, result)  # empty: nothing to refuse
    protocol.restore(target, result, tmp_path / "cap")
    assert protocol.fingerprint(target) == result.fingerprint
    assert adapter.rows(target_place) == adapter.rows(place)


def test_restore_into_non_empty_target_is_refused_then_replaced(adapter, tmp_path):
    adapter.needs("exact_point")
    place = adapter.bank()
    store = adapter.live(place)
    result = protocol.capture(store, tmp_path / "cap")
    conn = adapter.writer_connection(place)
    try:
        adapter.transfer(place)(conn, 1, 5)  # the live data moves on
    finally:
        conn.close()
    moved_on = adapter.rows(place)

    with pytest.raises(TargetNotEmptyError) as err:
        protocol.check_target(store, result, replace=False)
    text = str(err.value)
    assert "--replace" in text
    for word in adapter.non_empty_words(place):
        assert word in text
    with pytest.raises(TargetNotEmptyError):
        protocol.restore(store, result, tmp_path / "cap", replace=False)
    assert adapter.rows(place) == moved_on  # refused before any change

    protocol.check_target(store, result, replace=True)
    protocol.restore(store, result, tmp_path / "cap", replace=True)
    assert protocol.fingerprint(store) == result.fingerprint
    assert adapter.invariant(place) == (ACCOUNTS * INITIAL, 0)


def test_restore_with_corrupt_artifact_is_refused_before_any_change(adapter, tmp_path):
    place = adapter.bank()
    workdir = tmp_path / "cap"
    result = protocol.capture(adapter.live(place), workdir)
    victim = max(result.artifacts, key=lambda a: a.size)
    flip_a_byte(protocol.artifact_path(result, workdir, victim))

    target_place = adapter.elsewhere(place, "bad")
    with pytest.raises(CorruptArtifactError, match=victim.path.replace(".", r"\.")):
        protocol.restore(adapter.target(place, target_place), result, workdir)
    assert not adapter.exists(target_place)  # not even created
    # Checked beside the target's checks: a corrupt file is what is reported, even over a
    # target that is not empty and with replace; that target is untouched.
    before = adapter.rows(place)
    with pytest.raises(CorruptArtifactError, match=victim.path.replace(".", r"\.")):
        protocol.restore(adapter.live(place), result, workdir, replace=True)
    assert adapter.rows(place) == before


def test_restore_after_caller_verified_checks_sizes_not_checksums(adapter, tmp_path):
    place = adapter.bank()
    workdir = tmp_path / "cap"
    result = protocol.capture(adapter.live(place), workdir)
    victim = max(result.artifacts, key=lambda a: a.size)
    path = protocol.artifact_path(result, workdir, victim)
    data = flip_a_byte(path, at=-1)  # same size, other content: only a checksum sees it
    with pytest.raises(CorruptArtifactError, match="sha256"):
        protocol.restore(adapter.target(place, adapter.elsewhere(place, "a")), result, workdir)
    path.write_bytes(data[:-1])  # truncated: the size check catches it even when verified
    target_place = adapter.elsewhere(place, "b")
    with pytest.raises(CorruptArtifactError, match="bytes"):
        protocol.restore(adapter.target(place, target_place), result, workdir, verified=True)
    assert not adapter.exists(target_place)


# --- the fingerprint --------------------------------------------------------------------------


@pytest.fixture
def typed_fingerprint(adapter):
    adapter.needs("fingerprint")
    place = adapter.typed()
    return adapter.relative(protocol.fingerprint(adapter.live(place)), place)


def test_fingerprint_is_the_same_whatever_the_insertion_order(adapter, typed_fingerprint):
    adapter.needs("fingerprint")
    place = adapter.typed(reverse=True)
    assert adapter.relative(protocol.fingerprint(adapter.live(place)), place) == typed_fingerprint
    assert sorted(v.rows for v in typed_fingerprint.values()) != [0] * len(typed_fingerprint)


def test_fingerprint_sees_every_difference(adapter, typed_fingerprint, change):
    adapter.needs("fingerprint")
    place = adapter.typed(change=change)
    changed = adapter.relative(protocol.fingerprint(adapter.live(place)), place)
    table = adapter.changed_table(change)
    assert changed[table] != typed_fingerprint[table]
    assert {k: v for k, v in changed.items() if k != table} == {
        k: v for k, v in typed_fingerprint.items() if k != table
    }


def test_fingerprint_of_a_capture_matches_its_restore_for_every_type(adapter, tmp_path):
    adapter.needs("capture_fingerprint")
    place = adapter.typed()
    store = adapter.live(place)
    result = protocol.capture(store, tmp_path / "cap")
    assert result.fingerprint_method == store.fingerprint_method
    assert result.fingerprint == protocol.fingerprint(store)
    target_place = adapter.elsewhere(place, "copy")
    target = adapter.target(place, target_place)
    protocol.restore(target, result, tmp_path / "cap")
    assert protocol.fingerprint(target) == result.fingerprint
    one = sorted(result.fingerprint)[0]
    assert protocol.fingerprint(target, [one]) == {one: result.fingerprint[one]}

    # ... and differs once the restored data changes
    adapter.apply_change(target_place, adapter.changes[0])
    after = adapter.relative(protocol.fingerprint(target), place)  # keys: the captured names
    table = adapter.changed_table(adapter.changes[0])
    assert after[table] != adapter.relative(result.fingerprint, place)[table]


# --- abort and release free everything --------------------------------------------------------


def test_open_capture_is_fast_on_a_large_table(adapter, tmp_path, leftovers):
    """The snapshot opens in a time that does not grow with the data (a loose bound: the
    dump would take many times longer), and abort frees the running copy."""
    adapter.needs("server_snapshot")
    place = adapter.bank()
    assert adapter.add_large_table(place) > 20_000_000
    store = adapter.live(place)
    protocol.check(store)  # caches the tool versions, as the backup flow's preflight does
    before = leftovers.take()
    started = time.monotonic()
    handle = protocol.open_(store, tmp_path / "cap")
    elapsed = time.monotonic() - started
    protocol.abort(store, handle)
    protocol.abort(store, handle)  # idempotent
    assert elapsed < 2.0
    leftovers.assert_none_since(before)


def test_abort_frees_everything(adapter, tmp_path, leftovers):
    """No connection on the server, no process, no file in the temp directory, no open
    snapshot (it lives in a connection) after an abort in the window or in the copy."""
    adapter.needs("server_snapshot")
    place = adapter.bank()
    adapter.add_large_table(place)  # the copy is still running when it is aborted
    store = adapter.live(place)
    protocol.check(store)
    before = leftovers.take()
    prepared = protocol.prepare(store, tmp_path / "cap")
    handle = protocol.open_(store, tmp_path / "cap", prepared)
    assert leftovers.new_since(before).connections  # the snapshot is held by a connection
    protocol.abort(store, handle)
    protocol.abort(store, handle)
    protocol.release(prepared)  # taken over by the open: nothing left to free, no error
    leftovers.assert_none_since(before)


def test_abort_after_finish_is_harmless(adapter, tmp_path, leftovers):
    place = adapter.bank()
    store = adapter.live(place)
    before = leftovers.take()
    handle = protocol.open_(store, tmp_path / "cap")
    result = protocol.finish(store, handle)
    protocol.abort(store, handle)
    leftovers.assert_none_since(before)
    if adapter.has("capture_fingerprint"):
        assert result.fingerprint == protocol.fingerprint(store)


def test_prepare_then_release_without_open_leaves_nothing(adapter, tmp_path, leftovers):
    place = adapter.bank()
    store = adapter.live(place)
    before = leftovers.take()
    prepared = protocol.prepare(store, tmp_path / "cap")
    protocol.release(prepared)
    protocol.release(prepared)  # idempotent
    leftovers.assert_none_since(before)
    with pytest.raises(CaptureError, match="already released"):
        protocol.open_(store, tmp_path / "cap", prepared)  # a late open never runs on it
    leftovers.assert_none_since(before)


def test_a_prepared_capture_the_open_took_is_not_freed_by_release(adapter, tmp_path, leftovers):
    place = adapter.bank()
    store = adapter.live(place)
    before = leftovers.take()
    prepared = protocol.prepare(store, tmp_path / "cap")
    handle = protocol.open_(store, tmp_path / "cap", prepared)
    protocol.release(prepared)  # as the window's end does: the open owns it now
    result = protocol.finish(store, handle)
    if adapter.has("capture_fingerprint"):
        assert result.fingerprint == protocol.fingerprint(store)
    leftovers.assert_none_since(before)


# --- check ------------------------------------------------------------------------------------


def test_check_reports_the_server_version_and_the_tools(adapter):
    place = adapter.bank()
    facts = protocol.check(adapter.live(place))
    assert facts["server_version"]
    if adapter.has("tools"):
        assert adapter.dump_tool in facts
    adapter.assert_check_facts(facts, place)


def test_check_with_wrong_password_says_so_without_the_password(adapter):
    adapter.needs("password")
    place = adapter.bank()
    wrong = "not-the-Password-123"
    with pytest.raises(StoreCheckError) as err:
        protocol.check(adapter.store(adapter.live_config(place), password=wrong))
    text = str(err.value)
    assert "password" in text and PASSWORD_ENV in text and f"{adapter.server.port}" in text
    assert wrong not in text and adapter.server.password not in text


def test_check_names_what_the_site_file_lists_but_the_server_lacks(adapter):
    place = adapter.bank()
    settings, name = adapter.missing(place)
    with pytest.raises(StoreCheckError, match=name):
        protocol.check(adapter.live(place, **settings))


def test_check_with_empty_bin_dir_reports_missing_tool(adapter, tmp_path):
    adapter.needs("tools")
    place = adapter.bank()
    with pytest.raises(ToolMissingError) as err:
        protocol.check(adapter.live(place, bin_dir=str(tmp_path)))
    assert adapter.dump_tool in str(err.value) and adapter.tool_package in str(err.value)
