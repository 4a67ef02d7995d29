"""Prefect tasks of the drill flow that the restore flow does not have (its restore steps are
reused from ``tasks.restore_steps``): check the scratch target, pick the point, record the
result in the catalog, publish it."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from pausepoint.catalog import Catalog, DrillRecord
from pausepoint.catalog.manifest import RestorePoint
from pausepoint.drill import check_scratch_target, drill_markdown, newest_point
from pausepoint.restore import RestoreTarget
from pausepoint.site import Site
from tasks._step import step


@step(name="check-scratch-target")
def check_scratch(site: Site, target: RestoreTarget) -> dict[str, str]:
    where = check_scratch_target(site, target)
    for store, place in where.items():
        get_run_logger().info("store %s is drilled into %s (replaced)", store, place)
    return where


@step(name="pick-newest-point", retries=1, retry_delay_seconds=2)
def pick_newest_point(catalog: Catalog, site: Site) -> RestorePoint:
    point = newest_point(catalog, site)
    get_run_logger().info(
        "drilling restore point %s (data of %s)", point.id, point.window.mid.isoformat()
    )
    return point


@step(name="record-drill", retries=2, retry_delay_seconds=2)
def record_drill(catalog: Catalog, record: DrillRecord) -> str:
    where = catalog.record_drill(record)
    log = get_run_logger()
    if record.passed:
        log.info("drill of %s passed; recorded in %s", record.point_id, where)
    else:
        log.error("drill of %s FAILED (%s); recorded in %s", record.point_id, record.error, where)
    return where


@step(name="publish-drill-report")
def publish_drill_report(record: DrillRecord, point: RestorePoint) -> None:
    create_markdown_artifact(
        key=f"{record.site}-drill".lower(),
        markdown=drill_markdown(record, point),
        description=f"drill of {record.point_id}: {'passed' if record.passed else 'FAILED'}",
    )
