"""Artifacts a person reads in the Prefect UI: the restore point and the restore report."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from pausepoint.catalog.manifest import RestorePoint
from pausepoint.report import restore_markdown, restore_point_markdown
from tasks._step import step


def _key(site: str, suffix: str) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    return f"{site}-{suffix}".lower()


@step(name="publish-restore-point")
def publish_restore_point(point: RestorePoint) -> None:
    create_markdown_artifact(
        key=_key(point.site, "restore-point"),
        markdown=restore_point_markdown(point),
        description=f"restore point {point.id}",
    )


@step(name="publish-restore-report")
def publish_restore_report(point: RestorePoint, checks: list[tuple[str, bool, str]]) -> None:
    create_markdown_artifact(
        key=_key(point.site, "restore"),
        markdown=restore_markdown(point, checks),
        description=f"restore of {point.id}",
    )
