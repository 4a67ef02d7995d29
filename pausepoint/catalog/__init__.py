"""The catalog: restore points, their artifacts and leases (see ``base.Catalog``).

``open_catalog`` picks the driver from the site's catalog settings (``catalog: {driver: ...}``,
``registry.DRIVERS``), so flows and the CLI never name a back end.
"""

from __future__ import annotations

from pausepoint.catalog.base import Catalog, LeaseScan, PendingPoint, PointScan, Unreadable
from pausepoint.catalog.config import CatalogConfigBase, LocalCatalogConfig
from pausepoint.catalog.drills import DrillCheck, DrillRecord
from pausepoint.catalog.driver import ArtifactWriter, CatalogDriver, FileInfo, Versioned
from pausepoint.catalog.lease import Lease, LeaseState
from pausepoint.catalog.local import LocalDriver
from pausepoint.catalog.manifest import RestorePoint
from pausepoint.catalog.registry import CatalogConfig, open_driver
from pausepoint.secrets import SecretResolver

__all__ = [
    "ArtifactWriter",
    "Catalog",
    "CatalogConfig",
    "CatalogConfigBase",
    "CatalogDriver",
    "DrillCheck",
    "DrillRecord",
    "FileInfo",
    "Lease",
    "LeaseScan",
    "LeaseState",
    "LocalCatalogConfig",
    "LocalDriver",
    "PendingPoint",
    "PointScan",
    "RestorePoint",
    "Unreadable",
    "Versioned",
    "open_catalog",
]


def open_catalog(settings: CatalogConfigBase, resolve: SecretResolver | None = None) -> Catalog:
    """The catalog a site's settings describe, over the driver they name. ``resolve`` is the
    run's SecretResolver (a remote catalog's credentials); without it, the environment's."""
    return Catalog(open_driver(settings, resolve))
