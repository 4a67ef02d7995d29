"""The site file's ``catalog:`` settings, one model per driver (``driver: local`` today).

Light on purpose: ``pausepoint.site`` imports these to validate a site file, and must not import
a driver's client library (an S3 driver's boto3) to do so. The registry
(``pausepoint.catalog.registry``) pairs each model with its driver class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pausepoint.errors import InternalError


class CatalogConfigBase(BaseModel):
    """What every driver's settings offer the code that is not the driver."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def describe(self) -> str:
        """Where the catalog is, for people (a directory, an s3:// URL). Never a secret."""
        raise InternalError(f"catalog settings {type(self).__name__} implement no describe()")

    def relative_to(self, base: Path) -> CatalogConfigBase:
        """These settings with paths made absolute against ``base`` (the site file's
        directory). Drivers without local paths return themselves."""
        return self


class LocalCatalogConfig(CatalogConfigBase):
    """A catalog in a local (or mounted) directory: ``catalog: {driver: local, path: DIR}``.

    ``catalog: {path: DIR}``, the form before drivers, means the same."""

    driver: Literal["local"] = "local"
    path: Path = Field(description="catalog directory (restore points, artifacts, leases)")

    def describe(self) -> str:
        return str(self.path)

    def relative_to(self, base: Path) -> LocalCatalogConfig:
        if self.path.is_absolute():
            return self
        return self.model_copy(update={"path": (base / self.path).resolve()})
