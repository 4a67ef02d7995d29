"""What a catalog back end must provide: a few primitives over '/'-separated keys.

Like Medusa's abstract_storage: the facade (``pausepoint.catalog.base.Catalog``) owns the catalog
logic (finish marker, verification, sweeping, leases) and each driver fills in only these.
Every driver passes ``tests/contract/test_catalog_driver_contract.py``.

The operations a remote store needs, and what each promises:

- **conditional writes**: ``create_if_absent`` (exactly one of any number of racing creators
  wins) and ``replace_if_unchanged`` (given the opaque ``version`` a ``read_versioned`` returned;
  refused when anyone wrote or removed the key since). Both raise CatalogConflictError when they
  lose and never overwrite. Registration creates the manifest; every lease write is conditional.
- **streaming**: ``open_write`` takes chunks and hashes them on the way (no whole-file buffer);
  the key appears complete at the end of the ``with`` block or not at all. ``open_read`` is a
  file-like object read in chunks.
- **listing by prefix**: a prefix is a key without a trailing '/', and names every key below it
  (``list_files``) or the next segment of those keys (``list_children``).
- **no operation downloads what it is about to delete**: ``delete``, ``delete_prefix`` and
  ``move`` work on names only.

A driver raises CatalogError for failures an operator must act on (permissions, full disk);
``read_versioned``, ``read_bytes``, ``open_read`` and ``sha256`` raise FileNotFoundError for a
key that does not exist.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ClassVar

if TYPE_CHECKING:
    from pausepoint.stores.base import ArtifactSink

CHUNK = 1 << 20  # what streaming reads and hashing take at a time


@dataclass(frozen=True)
class FileInfo:
    key: str
    size: int
    modified: datetime  # UTC


@dataclass(frozen=True)
class Versioned:
    """A key's content and the token that names this very content for a conditional write."""

    data: bytes
    version: str  # opaque: only ever handed back to replace_if_unchanged


class ArtifactWriter:
    """The file-like end of ``open_write``: counts and hashes every chunk on its way to ``sink``.

    ``size`` and ``sha256`` are final once the ``with`` block has ended without an error."""

    def __init__(self, key: str, sink: Callable[[bytes], object]):
        self.key = key
        self._sink = sink
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        chunk = bytes(data) if not isinstance(data, bytes) else data
        self._sink(chunk)
        self._digest.update(chunk)
        self.size += len(chunk)
        return len(chunk)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        """Nothing to do: the driver makes the content durable when the block ends."""

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


class CatalogDriver(ABC):
    """One storage back end (local directory now; S3 later)."""

    # True when fetch_dir() hands out the very files that stat() and sha256() read (the local
    # driver), so a restore that verified a point needs no second check of its fetched copy.
    fetches_in_place: ClassVar[bool] = False

    @abstractmethod
    def location(self, key: str) -> str:
        """Where ``key`` lives, for messages: a path, or an s3:// URL."""

    # --- a point's staging ------------------------------------------------------------------

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

    def artifact_sink(self, prefix: str, local_dir: Path) -> ArtifactSink:
        """Where one store's capture writes its artifacts (keys under ``prefix``).

        ``local_dir`` is the store's part of ``staging_dir``: the local driver writes there in
        place; a remote driver streams what a kind writes through ``open`` straight to the
        catalog and uses ``local_dir`` only for what a tool must write as a local file."""
        from pausepoint.stores.base import LocalStagingSink  # stores.base imports no catalog

        return LocalStagingSink(local_dir)

    def pending_writes(self, prefix: str) -> list[datetime]:
        """When each write still under way below ``prefix`` began, for writes a listing does
        not show yet (an object store's unfinished multipart uploads). A sweep counts them as
        activity; the local driver's are visible files already."""
        return []

    @abstractmethod
    def fetch_dir(self, prefix: str) -> Path:
        """A local directory holding the files under ``prefix`` (for restore)."""

    # --- reading ----------------------------------------------------------------------------

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def stat(self, key: str) -> FileInfo | None:
        """Size and modification time of one file, None when it does not exist."""

    @abstractmethod
    def read_versioned(self, key: str) -> Versioned:
        """A small record's content and its version token (for ``replace_if_unchanged``)."""

    def read_bytes(self, key: str) -> bytes:
        return self.read_versioned(key).data

    @abstractmethod
    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A file-like object over one key's content, to read in chunks (never all at once)."""

    def sha256(self, key: str) -> str:
        """Hex SHA-256 of one file's content, streamed."""
        digest = hashlib.sha256()
        with self.open_read(key) as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    # --- writing ----------------------------------------------------------------------------

    @abstractmethod
    def write_atomic(self, key: str, data: bytes) -> None:
        """Write one file so readers see either the old content or all of the new, even after a
        crash or power loss at any moment. Unconditional: records that two writers may race
        on use create_if_absent or replace_if_unchanged."""

    @abstractmethod
    def create_if_absent(self, key: str, data: bytes) -> str:
        """Write ``key`` only when it does not exist, atomically; returns its version.
        CatalogConflictError when it exists (whoever created it first keeps it)."""

    @abstractmethod
    def replace_if_unchanged(self, key: str, data: bytes, version: str) -> str:
        """Write ``key`` only when its content is still the one ``version`` names; returns the
        new version. CatalogConflictError when it was rewritten or removed since."""

    @abstractmethod
    def open_write(self, key: str) -> AbstractContextManager[ArtifactWriter]:
        """Stream one artifact in: chunks go out as they come, hashed on the way. The key
        becomes visible, complete, when the block ends; an error inside it (or a crash) leaves
        no trace under ``key``. Replaces an existing ``key``."""

    # --- listing ----------------------------------------------------------------------------

    @abstractmethod
    def list_children(self, prefix: str) -> list[str]:
        """Names of the sub-prefixes directly under ``prefix`` (directories, for the local
        driver), sorted."""

    @abstractmethod
    def list_files(self, prefix: str) -> list[FileInfo]:
        """Every file under ``prefix``, recursively, sorted by key."""

    # --- removing ---------------------------------------------------------------------------

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one file; no error when it is already gone. Never reads it."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Delete everything under ``prefix``; no error when nothing is there. Never reads."""

    @abstractmethod
    def move(self, src: str, dst: str) -> None:
        """Move one file to a key that does not exist yet, without reading it (a rename; a
        server-side copy and delete on an object store). FileNotFoundError when ``src`` is
        gone; CatalogConflictError when ``dst`` exists."""
