"""Prefect tasks of the restore flow: each one step of ``pausepoint.restore.RestoreRun``."""

from __future__ import annotations

import time

from prefect.logging import get_run_logger

from pausepoint.admin.client import AdminClient
from pausepoint.admin.site_client import discover_nodes
from pausepoint.restore import RestoreRun, RestoreSlot
from pausepoint.scalardb_restore import ScalarDbCheck
from tasks._step import step


@step(name="validate-restore-point")
def validate_point(run: RestoreRun) -> str:
    run.validate()
    comps = ", ".join(run.point.components)
    get_run_logger().info("restore point %s holds %s; every artifact verified", run.point.id, comps)
    return f"components {comps}; {sum(len(c.stores) for c in run.point.components.values())} stores"


@step(name="check-nodes-stopped", retries=1, retry_delay_seconds=2)
def check_nodes_stopped(run: RestoreRun, client: AdminClient) -> str:
    if not run.in_place:
        # Decided by where each database lives (server and database), not by the target file.
        return "every store goes into a database the site does not use: its nodes may run"
    run.check_nodes_stopped(client, discover_nodes(run.site))
    over = run.describe_in_place()
    get_run_logger().info("restoring over the site's databases: %s", over)
    return f"every admin endpoint is down; restoring over the site's databases: {over}"


@step(name="check-restore-target", retries=1, retry_delay_seconds=2)
def check_target(run: RestoreRun, slot: RestoreSlot) -> str:
    run.check_target(slot)
    return f"{slot.store.name}: target ready"


@step(name="restore-store")
def restore_store(run: RestoreRun, slot: RestoreSlot) -> float:
    t0 = time.monotonic()
    run.restore(slot)
    seconds = time.monotonic() - t0
    get_run_logger().info(
        "store %s restored in %.1f s (%.1f MB)",
        slot.store.name,
        seconds,
        slot.capture.total_bytes / 1e6,
    )
    return seconds


@step(name="verify-fingerprint", retries=1, retry_delay_seconds=2)
def verify_store(run: RestoreRun, slot: RestoreSlot) -> list[str]:
    problems = run.verify(slot)
    if problems:
        get_run_logger().error("store %s: %s", slot.store.name, "; ".join(problems))
    else:
        get_run_logger().info(
            "store %s: %d tables match the captured fingerprint",
            slot.store.name,
            len(slot.capture.fingerprint),
        )
    return problems


@step(name="rewrite-scalardb-metadata")
def rewrite_scalardb_metadata(run: RestoreRun) -> list[str]:
    lines = run.rewrite_scalardb_metadata()
    for line in lines:
        get_run_logger().info("ScalarDB metadata rewritten: %s", line)
    return lines


@step(name="check-scalardb-transactions", retries=1, retry_delay_seconds=2)
def check_scalardb(run: RestoreRun, component: str) -> ScalarDbCheck:
    result = run.check_scalardb(component)
    log = get_run_logger()
    (log.info if result.passed else log.error)("ScalarDB %s: %s", component, result.summary())
    return result
