"""Prefect tasks of the backup flow: each one step of ``pausepoint.backup.BackupRun``.

Retries only where repeating is safe: preflight checks and the clock measurement. Pause, capture
and unpause are never retried by Prefect (unpause retries itself, with backoff, in the core).
"""

from __future__ import annotations

import contextlib
import time

from prefect.logging import get_run_logger

from pausepoint.backup import BackupRun, StoreSlot
from pausepoint.catalog.manifest import RestorePoint
from pausepoint.clock import measure
from pausepoint.errors import CatalogError, ClockSkewError
from pausepoint.progress import CaptureProgress
from pausepoint.scalardb import check_coverage
from tasks._step import step
from tasks.prune_steps import sweep_abandoned_staging
from tasks.reporting import ProgressArtifact


@step(name="check-store", retries=2, retry_delay_seconds=2)
def check_store(run: BackupRun, slot: StoreSlot) -> dict:
    facts = slot.store.check()
    get_run_logger().info("store %s (%s) ready: %s", slot.store.name, slot.component, facts)
    return facts


@step(name="check-scalardb-coverage")
def check_scalardb(run: BackupRun) -> list[str]:
    """ScalarDB-managed components: every namespace, the coordinator and each storage's
    metadata captured by some store (ScalarDbCoverageError names what is not)."""
    covered = check_coverage(run.site)
    for line in covered:
        get_run_logger().info("ScalarDB %s", line)
    return covered


@step(name="check-nodes", retries=2, retry_delay_seconds=2)
def check_nodes(run: BackupRun) -> list[str]:
    session = run.open_session()
    session.preflight()
    nodes = [str(n) for n in session.nodes]
    get_run_logger().info("%d admin targets reachable and unpaused: %s", len(nodes), nodes)
    return nodes


@step(name="measure-clock", retries=1, retry_delay_seconds=1)
def measure_clock(run: BackupRun) -> str:
    settings = run.site.clock
    logger = get_run_logger()
    if not settings.ntp_servers:
        logger.info("no NTP servers configured; the restore point records no clock bound")
        return "not measured"
    try:
        run.clock = measure(settings.ntp_servers, settings.timeout_s)
    except ClockSkewError:
        if settings.required:
            raise
        logger.warning("clock bound not measured (NTP unreachable); recording none", exc_info=True)
        return "unreachable"
    logger.info(
        "clock offset %.1f ms ± %.1f ms (via %s)",
        run.clock.offset_s * 1000,
        run.clock.uncertainty_s * 1000,
        run.clock.server,
    )
    return f"{run.clock.offset_s:+.4f}s ±{run.clock.uncertainty_s:.4f}s"


@step(name="derive-hold")
def derive_hold(run: BackupRun) -> int:
    hold = run.hold_ms()
    get_run_logger().info("hold: %d ms", hold)
    return hold


@step(name="begin-restore-point")
def begin_point(run: BackupRun) -> str:
    sweep_abandoned_staging(run.catalog, run.site)  # what killed runs left; never fails
    pending = run.begin()
    return pending.id


@step(name="take-lease")
def take_lease(run: BackupRun, hold_ms: int) -> str:
    lease = run.take_lease(hold_ms)
    get_run_logger().info(
        "lease of run %s: %d nodes until %s", lease.run_id, len(lease.nodes), lease.deadline
    )
    return lease.deadline.isoformat()


@step(name="prepare-capture")
def prepare_capture(run: BackupRun, slot: StoreSlot) -> str:
    """Before the pause: connections, files and command lines the store's open_capture would
    otherwise make inside the window. Not retried: the flow fails before pausing instead."""
    t0 = time.monotonic()
    run.prepare_capture(slot)
    ms = (time.monotonic() - t0) * 1000
    get_run_logger().info("store %s: capture prepared in %.1f ms", slot.store.name, ms)
    return f"{ms:.1f} ms"


@step(name="pause-nodes")
def pause_nodes(run: BackupRun) -> float:
    assert run.session is not None
    t0 = time.monotonic()
    if not run.pause():
        get_run_logger().warning("interrupted before pausing: nothing was paused")
        return 0.0
    drain_ms = (time.monotonic() - t0) * 1000
    get_run_logger().info("all %d nodes paused (drain %.1f ms)", len(run.session.nodes), drain_ms)
    return drain_ms


# The window steps below are started BEFORE the pause and wait for their signal (see
# pausepoint.backup.WindowSignals), so task scheduling never lands inside the window.


@step(name="open-capture")
def open_capture(run: BackupRun, slot: StoreSlot) -> str:
    logger = get_run_logger()
    if run.needs_pause:
        if not run.open_capture_in_window(slot):
            logger.info("store %s: the window closed before it opened; skipped", slot.store.name)
            return "skipped"
    else:
        run.open_capture(slot)
    assert slot.handle is not None
    at = slot.handle.opened_at
    logger.info("store %s: snapshot established at %s", slot.store.name, at.isoformat())
    return at.isoformat()


@step(name="hold-and-verify")
def hold_and_verify(run: BackupRun, hold_ms: int) -> str:
    if not run.hold_and_verify(hold_ms):
        return "skipped: the window closed early"
    assert run.session is not None
    ms = run.session.elapsed_ms()
    get_run_logger().info("window verified after %.1f ms (hold %d ms)", ms, hold_ms)
    return f"{ms:.1f} ms"


@step(name="unpause-nodes")
def unpause_nodes(run: BackupRun) -> None:
    run.unpause_when_closing()
    get_run_logger().info("all nodes unpaused")


@step(name="end-lease")
def end_lease(run: BackupRun) -> str:
    """Releases the lease; after a failed pause first re-checks the nodes whose Pause may still
    land, until the lease deadline (see BackupRun.end_lease)."""
    lease = run.end_lease()
    if lease is None:
        return "no lease"
    get_run_logger().info("lease of run %s is %s", lease.run_id, lease.state)
    return lease.state


@step(name="begin-copy")
def begin_copy(run: BackupRun) -> ProgressArtifact:
    """The progress bar of the copy; each store's expected size is its size last time."""
    previous = None
    # Progress is advisory: a damaged old manifest costs only the estimate.
    with contextlib.suppress(CatalogError):
        ids = run.catalog.point_ids(run.site.site)
        previous = run.catalog.get_point(run.site.site, ids[0]) if ids else None
    tracker = CaptureProgress.from_previous([s.store.name for s in run.slots], previous)
    assert run.pending is not None
    return ProgressArtifact(run.site.site, run.pending.id, tracker)


@step(name="finish-capture")
def finish_capture(run: BackupRun, slot: StoreSlot, shown: ProgressArtifact | None = None) -> int:
    logger = get_run_logger()
    last = [time.monotonic()]

    def progress(store: str, copied: int) -> None:
        if shown is not None:
            shown.copied(store, copied)
        if time.monotonic() - last[0] >= 5:  # a line every 5 s is enough to see it moving
            last[0] = time.monotonic()
            logger.info("store %s: %.1f MB copied", store, copied / 1e6)

    capture = run.finish_capture(slot, progress)
    if shown is not None:
        shown.done(slot.store.name)
    logger.info(
        "store %s: %d artifacts, %.1f MB, %d tables fingerprinted",
        capture.name,
        len(capture.artifacts),
        capture.total_bytes / 1e6,
        len(capture.fingerprint),
    )
    return capture.total_bytes


@step(name="register-restore-point")
def register_point(run: BackupRun) -> RestorePoint:
    point = run.register()
    get_run_logger().info("registered restore point %s", point.id)
    return point
