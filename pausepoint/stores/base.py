"""The store protocol: what every database kind offers, so flows never branch on kind.

Lifecycle of one backup, per store:

    store.check()                      preflight, before any pause; raises StoreCheckError
    prepared = store.prepare_capture(dir)
                                       just BEFORE the pause: everything open_capture needs that
                                       need not happen inside the window (connections opened
                                       and authenticated, tools and paths resolved, option
                                       files written); prepared.release() frees it if
                                       open_capture never runs
    handle = store.open_capture(dir, prepared)
                                       INSIDE the pause window; short, independent of data size;
                                       returns once the snapshot is ESTABLISHED. Takes the
                                       prepared resources over (into the handle, or frees them
                                       when it fails); without ``prepared`` it prepares itself
    capture = store.finish_capture(handle)   AFTER unpause: copies the snapshot into ``dir``,
                                       records artifacts (size, sha256), fingerprint, versions
    store.abort_capture(handle)        on any failure: kills helpers, releases the snapshot

Restore, per store:

    store.check_restore_target(capture, replace)   refuses a non-empty target unless replace
    store.restore(capture, source_dir, replace, verified=False)
                                                   checks the artifacts unless the caller did,
                                                   brings the target back to the captured state
    store.fingerprint(tables)                      of the live database, compared afterwards
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pausepoint.secrets import SecretRef


class StoreConfigBase(BaseModel):
    """Fields every store kind has. Each kind subclasses this with ``kind: Literal[...]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="unique within the site")
    kind: str
    # True when the database alone gives a transactionally consistent snapshot (PostgreSQL,
    # MySQL). A site whose components all live in ONE such store needs no pause.
    transactional: ClassVar[bool] = True


class Artifact(BaseModel):
    """One file a capture wrote, relative to the store's capture directory."""

    model_config = ConfigDict(frozen=True)

    path: str
    size: int
    sha256: str


class TableFingerprint(BaseModel):
    model_config = ConfigDict(frozen=True)

    rows: int
    hash: str  # order-independent content hash, hex


Fingerprint = dict[str, TableFingerprint]  # "schema.table" -> fingerprint


class StoreCapture(BaseModel):
    """What one store contributed to a restore point (goes into the manifest)."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    method: str  # e.g. "pg_dump-directory", "mariadb-dump-single-transaction", "pitr"
    artifacts: list[Artifact] = []
    fingerprint: Fingerprint = {}
    # How `fingerprint` was computed (Store.fingerprint_method); "" in points made before it was
    # recorded. Fingerprints compare only when made the same way.
    fingerprint_method: str = ""
    tool_versions: dict[str, str] = {}
    snapshot_established_at: datetime | None = None
    pitr_timestamp: datetime | None = None
    details: dict[str, Any] = {}

    @property
    def total_bytes(self) -> int:
        return sum(a.size for a in self.artifacts)


C = TypeVar("C", bound=StoreConfigBase)

# Progress reporting: (store name, bytes copied so far). Called from copying threads.
ProgressFn = Callable[[str, int], None]
# Resolves a store's secret reference to its value (see pausepoint.secrets.SecretResolver).
ResolveFn = Callable[[SecretRef | None], SecretStr | None]


class PreparedCapture:
    """What ``Store.prepare_capture`` set up before the pause for ONE ``open_capture``.

    Ownership: ``open_capture`` calls ``take()`` first and from then on owns the resources (it
    moves them into its handle, or frees them itself when it fails). ``release()`` frees them
    when open_capture never took them (the window closed early, a pause failed); it is safe to
    call twice, after ``take()`` (then it does nothing) and from another thread. A ``take()``
    after ``release()`` raises: a late open_capture never runs on freed resources.
    """

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self._state_lock = threading.Lock()
        self._state = "prepared"  # -> "taken" | "released"

    @property
    def state(self) -> str:
        return self._state

    def take(self) -> None:
        with self._state_lock:
            if self._state != "prepared":
                raise RuntimeError(f"this prepared capture was already {self._state}")
            self._state = "taken"

    def release(self) -> None:
        with self._state_lock:
            if self._state != "prepared":
                return
            self._state = "released"
        self.free()

    def free(self) -> None:
        """Close and remove what was prepared. Kinds override; must be idempotent."""


class CaptureHandle(ABC):
    """State held between open_capture and finish_capture (open snapshot, running dump)."""

    opened_at: datetime


class Store(ABC, Generic[C]):
    """One database of a component. Subclasses implement the primitives of their kind."""

    kind: ClassVar[str]
    # Names how fingerprint() renders and hashes rows; recorded in every capture.
    fingerprint_method: ClassVar[str]
    # Methods of earlier versions that fingerprint() still computes on request, so that a point
    # made by one of them is still compared after its restore.
    earlier_fingerprint_methods: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: C, resolve: ResolveFn):
        self.config = config
        self._resolve = resolve

    @property
    def name(self) -> str:
        return self.config.name

    @abstractmethod
    def check(self) -> dict[str, Any]:
        """Preflight: connect, check tools, versions and permissions. Returns facts to log."""

    def prepare_capture(self, workdir: Path) -> PreparedCapture:
        """Before the pause: do what open_capture can do ahead (connect, resolve, write files),
        so that only what must happen inside the window is left for it."""
        return PreparedCapture(workdir)

    @abstractmethod
    def open_capture(self, workdir: Path, prepared: PreparedCapture | None = None) -> CaptureHandle:
        """Establish the snapshot. Runs inside the pause window: must be short. Takes
        ``prepared`` over (see PreparedCapture); without it, prepares first."""

    @abstractmethod
    def finish_capture(
        self, handle: CaptureHandle, progress: ProgressFn | None = None
    ) -> StoreCapture:
        """Copy the established snapshot into the handle's workdir and describe it."""

    @abstractmethod
    def abort_capture(self, handle: CaptureHandle) -> None:
        """Release everything open_capture holds. Safe to call twice and after finish."""

    @abstractmethod
    def check_restore_target(self, capture: StoreCapture, replace: bool) -> None:
        """Raise TargetNotEmptyError when the target holds data and replace is False."""

    @abstractmethod
    def restore(
        self, capture: StoreCapture, source_dir: Path, replace: bool, *, verified: bool = False
    ) -> None:
        """Bring this store (the restore target) back to the captured state.

        The artifacts' sha256 are checked first, before any change, unless ``verified`` says the
        caller has just checked these very files (then only their presence and sizes are).
        """

    @abstractmethod
    def fingerprint(
        self, tables: list[str] | None = None, method: str | None = None
    ) -> Fingerprint:
        """Row count and order-independent hash per table of the live database, by
        fingerprint_method or, when named, one of earlier_fingerprint_methods."""
