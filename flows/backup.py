"""The backup flow: the guide's procedure, one task per step.

    load site -> preflight (stores, ScalarDB coverage, admin targets, clock)  in parallel
              -> begin restore point
              -> take the lease (names the nodes; its timer unpauses at the deadline)
              -> (Python's garbage collector held until every Unpause is confirmed)
              -> pause every node                                      (one task, parallel calls)
              -> open_capture on every store                           in parallel
              -> hold; CheckPaused on every node; node set unchanged
              -> unpause every node (always)
              -> end the lease (released; left active for the watchdog if unpause failed;
                 after a failed pause, first re-check its nodes until the lease deadline)
              -> finish_capture on every store (a progress bar)         in parallel
              -> register restore point, publish it (markdown, table, catalog link)
              -> event pausepoint.backup.completed (or .failed, with the error)

Preflight to the end of the lease run under the site's pause lock (tasks.pause_lock). From the
lease to its end, SIGINT and SIGTERM close the window at once (unpause, nothing registered) and
the run fails with BackupInterruptedError, returned as a Failed state: one line, no traceback.

Any failure registers nothing and sweeps the run's files; unpause failures outrank pause
failures, which outrank verification failures (pausepoint.errors.most_severe).
"""

from __future__ import annotations

from prefect import flow
from prefect.futures import wait
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from flows._common import results
from pausepoint.backup import BackupRun, interrupts_close_window
from pausepoint.errors import BackupInterruptedError, CaptureError, most_severe
from pausepoint.requests import BackupRequest
from pausepoint.window import collector_held
from tasks import events
from tasks.backup_steps import (
    begin_copy,
    begin_point,
    check_nodes,
    check_scalardb,
    check_store,
    derive_hold,
    end_lease,
    finish_capture,
    hold_and_verify,
    measure_clock,
    open_capture,
    pause_nodes,
    prepare_capture,
    register_point,
    take_lease,
    unpause_nodes,
)
from tasks.pause_lock import site_pause_lock
from tasks.reporting import publish_restore_point
from tasks.site_steps import connect, load_site


def _preflight(run: BackupRun) -> None:
    futures = [check_store.submit(run, slot) for slot in run.slots]
    futures.append(check_scalardb.submit(run))
    if run.needs_pause:
        futures.append(check_nodes.submit(run))
    futures.append(measure_clock.submit(run))
    errors = results(futures)
    if errors:
        raise most_severe(errors)  # type: ignore[misc]


def _window(run: BackupRun, hold: int) -> list[BaseException]:
    """Prepare every capture, then pause, open every snapshot, hold, verify, unpause: the steps
    inside the window are submitted first and wait for their signal; unpause always runs. A
    preparation that fails pauses nothing; preparations no open step took over are released."""
    errors = results([prepare_capture.submit(run, slot) for slot in run.slots])
    opens = [open_capture.submit(run, slot) for slot in run.slots]
    verify = hold_and_verify.submit(run, hold)
    unpause = unpause_nodes.submit(run)
    opened: set = set()  # the open steps known to have ended (wait's own answer)
    try:
        if not errors:  # a failed preparation pauses nothing: the window closes unopened
            pause_nodes(run)
            limit = run.site.pause.open_capture_timeout_ms / 1000
            opened, not_done = wait(opens, timeout=limit)
            if not_done:
                errors.append(
                    CaptureError(
                        f"{len(not_done)} store(s) did not establish their snapshot within "
                        f"pause.open_capture_timeout_ms={run.site.pause.open_capture_timeout_ms}"
                        "; the nodes are being unpaused and no restore point is registered. "
                        "Check the stores' load and connectivity, or raise the limit."
                    )
                )
    except BaseException as exc:
        errors.append(exc)
    finally:
        if errors:
            run.signals.closing.set()
        # A future that wait() saw end counts even when its state, read back from the API,
        # is not final yet: else a failed open step could be missed and the copy would start.
        errors += results([*(f for f in opens if f in opened or f.state.is_final()), verify])
        try:
            unpause.result()
        except BaseException as exc:
            errors.append(exc)
        finally:
            run.signals.closing.set()
            run.release_prepared()
    return errors


@flow(
    name="backup",
    description="Pause a ScalarDL site, capture every store, register a restore point.",
    # Window steps wait in their threads for their signal: never let the pool run short.
    task_runner=ThreadPoolTaskRunner(max_workers=128),
)
def backup(request: BackupRequest) -> str:
    """Back up the site of ``request.site_file``; returns the restore point id."""
    logger = get_run_logger()
    site = load_site(request.site_file)
    client, resolver, catalog = connect(site)
    run = BackupRun.prepare(
        site, catalog, client, resolver, flow_run_id=flow_run.get_id(), labels=request.labels
    )
    try:
        errors: list[BaseException] = []
        with site_pause_lock(site, "backup"):
            _preflight(run)
            hold = derive_hold(run)
            begin_point(run)
            if run.needs_pause:
                with interrupts_close_window(run):
                    take_lease(run, hold)
                    with collector_held():  # no full collection stalls the window's threads
                        errors += _window(run, hold)
                    end_lease(run)
                errors += run.errors_after_window()
            else:
                logger.info("the whole site lives in one transactional store: no pause is needed")
                errors += results([open_capture.submit(run, slot) for slot in run.slots])
        if errors:
            failure = run.fail(errors)
            if isinstance(failure, BackupInterruptedError):
                # An operator's signal, handled: fail the run with its one line, not with the
                # traceback Prefect logs for a raised exception. Calling the flow still raises it.
                events.backup_failed(site.site, failure, run.pending.id if run.pending else None)
                return Failed(message=str(failure), data=failure)  # type: ignore[return-value]
            raise failure
        shown = begin_copy(run)
        errors = results([finish_capture.submit(run, slot, shown) for slot in run.slots])
        if errors:
            raise run.fail(errors)
        point = register_point(run)
        publish_restore_point(point, catalog)
        events.backup_completed(point)
        return point.id
    except BaseException as exc:
        # Anything that failed before registration leaves nothing staged behind.
        if run.pending is not None and run.point is None and not run.failed:
            run.fail([exc])
        if run.point is None:
            events.backup_failed(site.site, exc, run.pending.id if run.pending else None)
        raise
    finally:
        if client is not None:
            client.close()
