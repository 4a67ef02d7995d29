"""Artifacts a person reads in the Prefect UI: the restore point (markdown, table, catalog link),
the copy's progress while stores are captured, and the restore report."""

from __future__ import annotations

import threading
from pathlib import Path
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from pausepoint.catalog import Catalog
from pausepoint.catalog.manifest import RestorePoint
from pausepoint.progress import CaptureProgress
from pausepoint.report import restore_markdown, restore_point_markdown, restore_point_rows
from pausepoint.scalardb_restore import ScalarDbCheck
from tasks._step import step


def artifact_key(site: str, suffix: str) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    return f"{site}-{suffix}".lower()


def _link(location: str) -> str:
    return location if "://" in location else Path(location).as_uri()


@step(name="publish-restore-point")
def publish_restore_point(point: RestorePoint, catalog: Catalog) -> None:
    create_markdown_artifact(
        key=artifact_key(point.site, "restore-point"),
        markdown=restore_point_markdown(point),
        description=f"restore point {point.id}",
    )
    w = point.window
    create_table_artifact(
        key=artifact_key(point.site, "restore-point-stores"),
        table=restore_point_rows(point),
        description=(
            f"restore point {point.id}: window {w.start.isoformat()} .. {w.end.isoformat()}, "
            f"mid-time {w.mid.isoformat()}, write stall {w.write_stall_ms:.1f} ms"
        ),
    )
    create_link_artifact(
        key=artifact_key(point.site, "catalog-entry"),
        link=_link(catalog.manifest_location(point.site, point.id)),
        link_text=f"{point.site} / {point.id} (manifest)",
        description=f"catalog entry of restore point {point.id}",
    )


class ProgressArtifact:
    """A progress bar in the UI, fed from the copy threads (updates are throttled). Updates go
    out one at a time and only upwards: copy threads finishing together must not leave an
    earlier, lower value showing last."""

    def __init__(self, site: str, point_id: str, tracker: CaptureProgress):
        self.tracker = tracker
        self._lock = threading.Lock()
        self._shown = 0.0
        self.id: UUID = create_progress_artifact(  # type: ignore[assignment]
            progress=0.0,
            key=artifact_key(site, "capture-progress"),
            description=f"copying the stores of restore point {point_id}",
        )

    def _show(self, percent: float | None) -> None:
        if percent is not None and percent > self._shown:
            update_progress_artifact(self.id, progress=round(percent, 1))
            self._shown = percent

    def copied(self, store: str, n_bytes: int) -> None:
        with self._lock:
            self._show(self.tracker.copied(store, n_bytes))

    def done(self, store: str) -> None:
        with self._lock:
            self._show(self.tracker.done(store))


@step(name="publish-restore-report")
def publish_restore_report(
    point: RestorePoint,
    checks: list[tuple[str, bool, str]],
    scalardb: list[ScalarDbCheck] | None = None,
) -> None:
    create_markdown_artifact(
        key=artifact_key(point.site, "restore"),
        markdown=restore_markdown(point, checks, scalardb),
        description=f"restore of {point.id}",
    )
