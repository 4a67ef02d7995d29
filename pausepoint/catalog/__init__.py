"""The catalog: restore points, their artifacts and leases (see ``base.Catalog``).

``open_catalog`` picks the driver from the site's catalog settings, so flows and the CLI never
name a back end. Today that is a local directory; an S3 driver plugs in beside ``LocalDriver``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pausepoint.catalog.base import Catalog, LeaseScan, PendingPoint, PointScan, Unreadable
from pausepoint.catalog.drills import DrillCheck, DrillRecord
from pausepoint.catalog.driver import CatalogDriver, FileInfo
from pausepoint.catalog.lease import Lease, LeaseState
from pausepoint.catalog.local import LocalDriver
from pausepoint.catalog.manifest import RestorePoint

if TYPE_CHECKING:
    from pausepoint.site import CatalogSettings

__all__ = [
    "Catalog",
    "CatalogDriver",
    "DrillCheck",
    "DrillRecord",
    "FileInfo",
    "Lease",
    "LeaseScan",
    "LeaseState",
    "LocalDriver",
    "PendingPoint",
    "PointScan",
    "RestorePoint",
    "Unreadable",
    "open_catalog",
]


def open_catalog(settings: CatalogSettings) -> Catalog:
    """The catalog a site's settings describe."""
    return Catalog(LocalDriver(settings.path))
