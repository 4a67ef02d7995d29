"""The contract every catalog driver passes (pausepoint/catalog/driver.py), over each adapter of
tests/support/catalog_drivers.py. A new driver is done when its adapter passes this suite.
The S3 adapter runs on moto's server (loopback): it proves the calls, their conditions and
their order; that S3 itself makes conditional writes atomic under true concurrency, and checks
the SHA-256 sent with each part, no local endpoint can prove (moto stores a wrong checksum).

What is tested: conditional writes (create-if-absent, replace-if-unchanged) including racing
threads and processes; streaming write and read of a large artifact with its sha256 and without
buffering it whole; a half-written artifact never visible; listing by prefix; removal that
never reads; and the lease race the conditional writes exist for: the run and the watchdog
ending one lease at once.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import queue
import random
import threading
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pausepoint.catalog import Catalog, CatalogDriver, Lease
from pausepoint.errors import CatalogConflictError, LeaseError
from tests.support.catalog_drivers import (
    ADAPTERS,
    DriverAdapter,
    race_creates,
    race_lease_ends,
    race_replaces,
    write_half_then_die,
)

pytestmark = pytest.mark.contract

SITE = "demo"
T0 = datetime(2026, 11, 28, 0, 31, 19, tzinfo=UTC)
MiB = 1 << 20


@pytest.fixture(params=ADAPTERS, ids=lambda a: a.name)
def adapter(request) -> DriverAdapter:
    if request.param.fixture is not None:
        request.getfixturevalue(request.param.fixture)  # its server, started once
    return request.param


@pytest.fixture
def driver(adapter: DriverAdapter, tmp_path: Path) -> CatalogDriver:
    return adapter.make(tmp_path)


@pytest.fixture(scope="module", autouse=True)
def _stop_resource_tracker():
    """Spawning starts multiprocessing's resource tracker, a process that would otherwise live
    as long as pytest and fail the session's check for leftovers."""
    yield
    from multiprocessing import resource_tracker

    stop = getattr(resource_tracker._resource_tracker, "_stop", None)
    if stop is not None:
        stop()


def _spawn(target: Callable[..., None], args_for: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target`` in one spawned process per argument tuple; every result put, in order
    of arrival. Spawned, not forked: each racer is a fresh interpreter, like two real runs."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    barrier = ctx.Barrier(len(args_for))
    procs = [ctx.Process(target=target, args=(*a, barrier, results)) for a in args_for]
    for p in procs:
        p.start()
    out = []
    try:
        while any(p.is_alive() for p in procs) or not results.empty():
            try:
                out.append(results.get(timeout=0.5))
            except queue.Empty:
                continue
    finally:
        for p in procs:
            p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return out


def _threads(target: Callable[..., None], args_for: list[tuple[Any, ...]]) -> list[Any]:
    results: queue.Queue[Any] = queue.Queue()
    barrier = threading.Barrier(len(args_for))
    threads = [threading.Thread(target=target, args=(*a, barrier, results)) for a in args_for]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    out = []
    while not results.empty():
        out.append(results.get())
    return out


RUNNERS = {"threads": _threads, "processes": _spawn}


# --- conditional writes -----------------------------------------------------------------------


def test_create_if_absent_refuses_the_second_create(driver):
    version = driver.create_if_absent("s/leases/a.json", b"first")
    with pytest.raises(CatalogConflictError, match="already exists"):
        driver.create_if_absent("s/leases/a.json", b"second")
    stored = driver.read_versioned("s/leases/a.json")
    assert (stored.data, stored.version) == (b"first", version)
    assert driver.read_bytes("s/leases/a.json") == b"first"


def test_replace_if_unchanged_refuses_a_stale_token(driver):
    key = "s/leases/a.json"
    v1 = driver.create_if_absent(key, b"one")
    v2 = driver.replace_if_unchanged(key, b"two", v1)
    assert v2 != v1
    with pytest.raises(CatalogConflictError, match="rewritten"):
        driver.replace_if_unchanged(key, b"three", v1)
    assert driver.read_versioned(key).data == b"two"
    assert driver.read_versioned(key).version == v2
    # An unconditional write makes every earlier token stale too.
    driver.write_atomic(key, b"four")
    with pytest.raises(CatalogConflictError):
        driver.replace_if_unchanged(key, b"five", v2)
    assert driver.read_bytes(key) == b"four"


def test_replace_if_unchanged_of_a_removed_key_is_refused_not_recreated(driver):
    key = "s/leases/a.json"
    version = driver.create_if_absent(key, b"one")
    driver.delete(key)
    with pytest.raises(CatalogConflictError, match="removed"):
        driver.replace_if_unchanged(key, b"two", version)
    assert not driver.exists(key)
    driver.delete_prefix("s")
    with pytest.raises(CatalogConflictError):
        driver.replace_if_unchanged(key, b"two", version)
    assert not driver.exists(key)


def test_read_of_a_missing_key_is_file_not_found(driver):
    for read in (driver.read_versioned, driver.read_bytes, driver.sha256):
        with pytest.raises(FileNotFoundError):
            read("s/nothing/here")
    with pytest.raises(FileNotFoundError), driver.open_read("s/nothing/here"):
        pass
    assert driver.stat("s/nothing/here") is None and not driver.exists("s/nothing/here")


def test_reserve_a_prefix_once(driver):
    assert driver.reserve("s/points/p1") is True
    assert driver.reserve("s/points/p1") is False


@pytest.mark.parametrize("how", RUNNERS)
def test_racing_creators_exactly_one_wins(adapter, tmp_path, how):
    racers, keys = (8, [f"s/points/p{i}/manifest.json" for i in range(20)])
    if how == "processes":
        racers = 4
    results = RUNNERS[how](
        race_creates, [(adapter.make, tmp_path, keys, f"racer-{r}") for r in range(racers)]
    )
    driver = adapter.make(tmp_path)
    assert len(results) == racers * len(keys)
    for key in keys:
        winners = [me for k, me, outcome in results if k == key and outcome == "won"]
        assert len(winners) == 1, (key, winners)
        assert driver.read_bytes(key) == winners[0].encode()  # the winner's content stays


@pytest.mark.parametrize("how", RUNNERS)
def test_racing_replacers_of_one_version_exactly_one_wins(adapter, tmp_path, how):
    key, rounds = "s/leases/run-1.json", 15
    racers = 8 if how == "threads" else 4
    adapter.make(tmp_path).create_if_absent(key, b"start")
    results = RUNNERS[how](
        race_replaces, [(adapter.make, tmp_path, key, rounds, f"racer-{r}") for r in range(racers)]
    )
    assert len(results) == racers * rounds
    for n in range(rounds):
        assert len([me for m, me, outcome in results if m == n and outcome == "won"]) == 1, n
    [last] = [me for n, me, outcome in results if n == rounds - 1 and outcome == "won"]
    assert adapter.make(tmp_path).read_bytes(key) == f"{rounds - 1}:{last}".encode()


# --- streaming --------------------------------------------------------------------------------


def _chunks(n: int, seed: int = 7) -> Any:
    rng = random.Random(seed)
    for _ in range(n):
        yield rng.randbytes(MiB)


def test_streaming_round_trip_of_a_large_artifact_without_buffering_it(driver):
    key, n = "s/points/p1/ledger/ledger-pg/dump/3001.dat.gz", 48
    expected = hashlib.sha256()
    tracemalloc.start()
    try:
        with driver.open_write(key) as out:
            for chunk in _chunks(n):
                expected.update(chunk)
                out.write(chunk)
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert driver.sha256(key) == expected.hexdigest()
        _, hash_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (out.size, out.sha256) == (n * MiB, expected.hexdigest())
    info = driver.stat(key)
    assert info is not None and info.size == n * MiB
    # Neither the write nor the hash held the artifact (48 MiB) in memory.
    assert write_peak < 16 * MiB and hash_peak < 16 * MiB
    got = hashlib.sha256()
    with driver.open_read(key) as f:
        while chunk := f.read(MiB):
            got.update(chunk)
    assert got.hexdigest() == expected.hexdigest()


def test_a_half_written_artifact_is_never_visible_and_an_error_leaves_no_trace(driver):
    key = "s/points/p1/ledger/ledger-pg/dump.sql"
    with pytest.raises(RuntimeError, match="the dump failed"), driver.open_write(key) as out:
        for chunk in _chunks(4):
            out.write(chunk)
        assert not driver.exists(key) and driver.stat(key) is None
        assert key not in [f.key for f in driver.list_files("s")]
        with pytest.raises(FileNotFoundError):
            driver.read_bytes(key)
        raise RuntimeError("the dump failed")
    assert not driver.exists(key)
    assert driver.list_files("s") == []


def test_an_artifact_of_a_killed_writer_is_never_visible(adapter, tmp_path):
    key = "s/points/p1/ledger/ledger-pg/dump.sql"
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=write_half_then_die, args=(adapter.make, tmp_path, key))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == -9
    driver = adapter.make(tmp_path)
    assert not driver.exists(key) and driver.stat(key) is None
    assert key not in [f.key for f in driver.list_files("s")]


def test_streaming_replaces_an_existing_artifact_whole(driver):
    key = "s/points/p1/a/b/f"
    driver.write_atomic(key, b"old" * 1000)
    with driver.open_write(key) as out:
        out.write(b"new")
    assert driver.read_bytes(key) == b"new"


# --- listing ----------------------------------------------------------------------------------


def test_listing_by_prefix(driver):
    for key in ["s/points/p1/a/1", "s/points/p1/a/b/2", "s/points/p1/ab/3", "t/points/p1/4"]:
        driver.write_atomic(key, key.encode())
    driver.create_if_absent("s/points/p1/manifest.json", b"{}")
    listed = driver.list_files("s/points/p1/a")
    assert [f.key for f in listed] == ["s/points/p1/a/1", "s/points/p1/a/b/2"]
    assert [f.size for f in listed] == [len("s/points/p1/a/1"), len("s/points/p1/a/b/2")]
    assert all(f.modified.tzinfo is not None for f in listed)
    assert [f.key for f in driver.list_files("s")] == [
        "s/points/p1/a/1",
        "s/points/p1/a/b/2",
        "s/points/p1/ab/3",
        "s/points/p1/manifest.json",
    ]
    assert driver.list_children("s/points/p1") == ["a", "ab"]
    assert driver.list_children("s/points") == ["p1"]
    assert driver.list_files("nothing") == [] and driver.list_children("nothing") == []


def test_conditional_writes_leave_nothing_a_listing_shows(driver):
    key = "s/leases/run-1.json"
    version = driver.create_if_absent(key, b"1")
    driver.replace_if_unchanged(key, b"2", version)
    assert [f.key for f in driver.list_files("s/leases")] == [key]


# --- removing, without reading ----------------------------------------------------------------


@pytest.fixture
def no_reads(driver, monkeypatch) -> CatalogDriver:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"read while removing: {args}")

    for name in ("read_versioned", "read_bytes", "open_read", "sha256"):
        monkeypatch.setattr(driver, name, forbidden)
    return driver


def test_delete_and_move_never_read(driver, no_reads):
    with driver.open_write("s/points/p1/a/big") as out:
        for chunk in _chunks(2):
            out.write(chunk)
    driver.write_atomic("s/points/p1/a/small", b"x")
    driver.create_if_absent("s/leases/r.json", b"lease")

    driver.move("s/leases/r.json", "s/leases/quarantine/r.json.1")
    driver.delete("s/points/p1/a/small")
    driver.delete("s/points/p1/a/small")  # already gone: fine
    driver.delete_prefix("s/points/p1")
    driver.delete_prefix("s/points/p1")  # already gone: fine

    assert [f.key for f in driver.list_files("s")] == ["s/leases/quarantine/r.json.1"]


def test_move_never_overwrites_and_says_when_the_source_is_gone(driver):
    driver.create_if_absent("s/leases/a.json", b"a")
    driver.create_if_absent("s/leases/b.json", b"b")
    with pytest.raises(CatalogConflictError, match="cannot move"):
        driver.move("s/leases/a.json", "s/leases/b.json")
    assert driver.read_bytes("s/leases/b.json") == b"b"
    assert driver.read_bytes("s/leases/a.json") == b"a"
    with pytest.raises(FileNotFoundError):
        driver.move("s/leases/quarantine/x", "s/leases/y")


def test_discarding_a_point_never_reads_its_artifacts(driver, no_reads):
    catalog = Catalog(driver)
    pending = catalog.begin_point(SITE)
    with catalog.write_artifact(pending, "ledger", "pg", "dump.sql") as out:
        out.write(b"rows" * 1000)
    assert catalog.discard(pending) is True
    assert catalog.staged_ids(SITE) == []


# --- the lease race ---------------------------------------------------------------------------


def _lease(run_id: str) -> Lease:
    return Lease(
        site=SITE,
        run_id=run_id,
        owner="backup/host-a pid 4242",
        nodes=["ledger/10.0.0.1:50053"],
        created_at=T0,
        deadline=T0 + timedelta(minutes=2),
    )


class _ActsBetweenReadAndWrite:
    """The driver as one writer sees it: right after its first read of ``key``, ``act`` (the
    other writer) runs to completion. The interleaving of a race, made certain."""

    def __init__(self, driver: CatalogDriver, key: str, act: Callable[[], object]):
        self._driver, self._key, self._act = driver, key, act

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)

    def _after(self, key: str) -> None:
        if key == self._key and self._act is not None:
            act, self._act = self._act, None
            act()

    def read_versioned(self, key: str) -> Any:
        stored = self._driver.read_versioned(key)
        self._after(key)
        return stored

    def read_bytes(self, key: str) -> bytes:
        data = self._driver.read_bytes(key)
        self._after(key)
        return data


def test_lease_ended_by_the_watchdog_while_the_run_releases_it_stays_broken(driver):
    watchdog = Catalog(driver)
    watchdog.write_lease(_lease("run-1"))
    key = f"{SITE}/leases/run-1.json"
    broke: list[Lease] = []
    run = Catalog(
        _ActsBetweenReadAndWrite(
            driver,
            key,
            lambda: broke.append(watchdog.mark_broken(SITE, "run-1", "the watchdog unpaused")),
        )
    )
    released = run.release_lease(SITE, "run-1", now=T0 + timedelta(seconds=9))
    stored = watchdog.get_lease(SITE, "run-1")
    # Exactly one transition landed: the watchdog's, first; the run re-read and got it back.
    assert stored == broke[0] and stored.state == "broken"
    assert released == stored


def test_lease_released_by_the_run_while_the_watchdog_breaks_it_stays_released(driver):
    run = Catalog(driver)
    run.write_lease(_lease("run-1"))
    key = f"{SITE}/leases/run-1.json"
    released: list[Lease] = []
    watchdog = Catalog(
        _ActsBetweenReadAndWrite(
            driver, key, lambda: released.append(run.release_lease(SITE, "run-1"))
        )
    )
    answer = watchdog.mark_broken(SITE, "run-1", "the watchdog unpaused")
    stored = run.get_lease(SITE, "run-1")
    assert stored == released[0] and stored.state == "released"
    assert answer == stored  # the watchdog learns the run got there first


def test_heartbeat_never_revives_a_lease_the_watchdog_broke(driver):
    watchdog = Catalog(driver)
    watchdog.write_lease(_lease("run-1"))
    key = f"{SITE}/leases/run-1.json"
    run = Catalog(
        _ActsBetweenReadAndWrite(
            driver, key, lambda: watchdog.mark_broken(SITE, "run-1", "the watchdog unpaused")
        )
    )
    beat = _lease("run-1").model_copy(update={"deadline": T0 + timedelta(minutes=5)})
    with pytest.raises(LeaseError, match="already ended its lease"):
        run.write_lease(beat)
    assert watchdog.get_lease(SITE, "run-1").state == "broken"


def test_heartbeat_racing_another_heartbeat_rereads_and_lands(driver):
    catalog = Catalog(driver)
    catalog.write_lease(_lease("run-1"))
    key = f"{SITE}/leases/run-1.json"
    other = _lease("run-1").model_copy(update={"deadline": T0 + timedelta(minutes=3)})
    mine = _lease("run-1").model_copy(update={"deadline": T0 + timedelta(minutes=4)})
    racing = Catalog(_ActsBetweenReadAndWrite(driver, key, lambda: catalog.write_lease(other)))
    assert racing.write_lease(mine) == mine
    assert catalog.get_lease(SITE, "run-1") == mine


@pytest.mark.parametrize("how", RUNNERS)
def test_run_and_watchdog_ending_leases_at_once_exactly_one_wins(adapter, tmp_path, how):
    run_ids = [f"run-{i}" for i in range(12)]
    catalog = Catalog(adapter.make(tmp_path))
    for run_id in run_ids:
        catalog.write_lease(_lease(run_id))
    results = RUNNERS[how](
        race_lease_ends,
        [(adapter.make, tmp_path, SITE, run_ids, who) for who in ("run", "watchdog")],
    )
    assert len(results) == 2 * len(run_ids)
    assert not [r for r in results if r[2].startswith("error")], results
    for run_id in run_ids:
        stored = catalog.get_lease(SITE, run_id)
        assert stored.state in ("released", "broken")
        answers = [Lease.model_validate_json(r[2]) for r in results if r[0] == run_id]
        # Both learn the one record that landed: no one believes its own lost transition.
        assert answers == [stored, stored], run_id


# --- registration -----------------------------------------------------------------------------


class _ActsAfterPublish:
    """The driver as one registering run sees it: another run registers right after this
    one's existence check and publish, before its manifest is written."""

    def __init__(self, driver: CatalogDriver, act: Callable[[], object]):
        self._driver, self._act = driver, act

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)

    def publish(self, prefix: str) -> None:
        self._driver.publish(prefix)
        self._act()


def test_two_registrations_of_one_point_at_once_exactly_one_wins(driver):
    from pausepoint.catalog import layout
    from pausepoint.catalog.manifest import ComponentRecord, PauseWindowRecord, RestorePoint
    from pausepoint.stores.base import Artifact, StoreCapture

    catalog = Catalog(driver)
    pending = catalog.begin_point(SITE, now=T0)
    key = f"{layout.store_key(SITE, pending.id, 'ledger', 'pg')}/dump.sql"
    with driver.open_write(key) as out:
        out.write(b"rows")

    def point(version: str) -> RestorePoint:
        capture = StoreCapture(
            name="pg",
            kind="postgres",
            method="pg_dump",
            artifacts=[Artifact(path="dump.sql", size=out.size, sha256=out.sha256)],
        )
        return RestorePoint(
            id=pending.id,
            site=SITE,
            created_at=T0,
            pausepoint_version=version,
            window=PauseWindowRecord(
                start=T0, end=T0, mid=T0, hold_ms=0, drain_ms=0, unpause_ms=0, write_stall_ms=0
            ),
            components={"ledger": ComponentRecord(targets=[], stores=[capture])},
        )

    first = point("first")
    racing = Catalog(_ActsAfterPublish(driver, lambda: catalog.register(pending, first)))
    with pytest.raises(CatalogConflictError, match="already registered"):
        racing.register(pending, point("second"))
    assert catalog.get_point(SITE, pending.id) == first  # never rewritten
