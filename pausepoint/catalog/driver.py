"""What a catalog back end must provide: a few primitives over '/'-separated keys.

Like Medusa's abstract_storage: the facade (``pausepoint.catalog.base.Catalog``) owns the catalog
logic (finish marker, verification, sweeping, leases) and each driver fills in only these.
A driver raises CatalogError for failures an operator must act on (permissions, full disk);
``read_bytes`` and ``sha256`` raise FileNotFoundError for a key that does not exist.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True)
class FileInfo:
    key: str
    size: int
    modified: datetime  # UTC


class CatalogDriver(ABC):
    """One storage back end (local directory now; S3 later)."""

    # True when fetch_dir() hands out the very files that stat() and sha256() read (the local
    # driver), so a restore that verified a point needs no second check of its fetched copy.
    fetches_in_place: ClassVar[bool] = False

    @abstractmethod
    def location(self, key: str) -> str:
        """Where ``key`` lives, for messages: a path, or an s3:// URL."""

    @abstractmethod
    def reserve(self, prefix: str) -> bool:
        """Claim a fresh prefix for a new point. False when it is already taken."""

    @abstractmethod
    def staging_dir(self, prefix: str) -> Path:
        """A local directory, created, where the files to publish under ``prefix`` are written.

        The local driver writes in place; a remote one would spool here and upload in publish.
        """

    @abstractmethod
    def publish(self, prefix: str) -> None:
        """Make every staged file under ``prefix`` durable in the catalog."""

    @abstractmethod
    def fetch_dir(self, prefix: str) -> Path:
        """A local directory holding the files under ``prefix`` (for restore)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def stat(self, key: str) -> FileInfo | None:
        """Size and modification time of one file, None when it does not exist."""

    @abstractmethod
    def sha256(self, key: str) -> str:
        """Hex SHA-256 of one file's content."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def write_atomic(self, key: str, data: bytes) -> None:
        """Write one file so readers see either the old content or all of the new, even after a
        crash or power loss at any moment."""

    @abstractmethod
    def list_children(self, prefix: str) -> list[str]:
        """Names of the directories (sub-prefixes) directly under ``prefix``."""

    @abstractmethod
    def list_files(self, prefix: str) -> list[FileInfo]:
        """Every file under ``prefix``, recursively."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one file; no error when it is already gone."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Delete everything under ``prefix``; no error when nothing is there."""

    def move(self, src: str, dst: str) -> None:
        """Move one file to a key that does not exist yet. FileNotFoundError when ``src`` is
        gone. This fallback copies, then deletes; a driver that can rename atomically should."""
        self.write_atomic(dst, self.read_bytes(src))
        self.delete(src)
