"""The site file's ``catalog:`` settings, one model per driver (``driver: local``, ``driver: s3``).

Light on purpose: ``pausepoint.site`` imports these to validate a site file, and must not import
a driver's client library (an S3 driver's boto3) to do so. The registry
(``pausepoint.catalog.registry``) pairs each model with its driver class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pausepoint.credentials import AwsCredentials
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


# --- S3 ------------------------------------------------------------------------------------------

_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
_PREFIX = r"^([A-Za-z0-9][A-Za-z0-9_.=-]{0,127})(/[A-Za-z0-9][A-Za-z0-9_.=-]{0,127})*$"


class S3CatalogConfig(CatalogConfigBase):
    """A catalog in an S3 bucket (or an S3-compatible endpoint): ``catalog: {driver: s3,
    bucket: NAME, prefix: pausepoint, region: eu-west-1}``. Credentials by reference only
    (``credentials: {source: default}`` is boto3's chain: instance role, environment, profile).

    Several machines' workers share one catalog this way: registration and leases are
    conditional writes, which S3 makes atomic (docs/operations.md, "S3 catalog")."""

    # Errors never quote the input: a key pasted where a reference belongs is a secret.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    driver: Literal["s3"] = "s3"
    bucket: str = Field(pattern=_BUCKET, description="the bucket (must exist)")
    prefix: str = Field(
        "",
        pattern=rf"{_PREFIX}|^$",
        description="key prefix of the catalog inside the bucket, without leading or trailing /",
    )
    region: str | None = Field(
        None,
        pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$",
        description="the bucket's region, e.g. eu-west-1 (default: the credentials' region)",
    )
    endpoint_url: str | None = Field(
        None,
        pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+(:\d+)?/?$",
        description="an S3-compatible endpoint (a local test endpoint, MinIO); default: AWS",
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="'path' for endpoints that serve buckets by path (local ones)"
    )
    part_size_mib: int = Field(
        16, ge=5, le=5120, description="multipart part size; S3 needs at least 5 MiB"
    )
    spool_dir: Path | None = Field(
        None,
        description="local directory for spooled captures and fetched artifacts (default: the "
        "system's temp directory); needs room for the largest store's dump",
    )
    credentials: AwsCredentials = Field(
        default_factory=lambda: AwsCredentials(source="default"),
        description="how to reach AWS (pausepoint.credentials): never a key inline",
    )

    @field_validator("endpoint_url")
    @classmethod
    def _no_userinfo(cls, value: str | None) -> str | None:
        # The pattern already refuses user:pass@; say why instead of only "does not match".
        if value is not None and "@" in value:
            raise ValueError("endpoint_url must not hold credentials; use 'credentials:'")
        return value

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where

    def relative_to(self, base: Path) -> S3CatalogConfig:
        if self.spool_dir is None or self.spool_dir.is_absolute():
            return self
        return self.model_copy(update={"spool_dir": (base / self.spool_dir).resolve()})
