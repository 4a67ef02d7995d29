"""The store protocol: what every database kind offers, so flows never branch on kind.

A kind is one entry of ``pausepoint.stores.registry`` (config model, store class, capabilities,
capture-details model, locations). Its store class implements the small primitives below; the
ownership rules every kind shares (prepare, take, open, abort) live here once.

Lifecycle of one backup, per store (``ctx``: a ``CaptureContext``):

    store.check()                      preflight, before any pause; raises StoreCheckError
    prepared = store.prepare_capture(ctx)
                                       just BEFORE the pause (kind primitive ``_prepare``):
                                       connections opened and authenticated, tools and paths
                                       resolved, option files written; prepared.release() frees
                                       it if open_capture never runs
    handle = store.open_capture(ctx, prepared)
                                       INSIDE the pause window (kind primitive ``_open``); short,
                                       independent of data size; returns once the snapshot is
                                       ESTABLISHED (a PITR kind: notes the time). Takes the
                                       prepared resources over; without ``prepared`` it prepares
    (the flow sets ctx.window: the pause window and its mid-time, once it closed)
    capture = store.finish_capture(handle)   AFTER unpause (kind primitive ``_finish``): copies
                                       the snapshot into ``ctx.sink`` (artifacts: size, sha256),
                                       fingerprint, versions; a PITR kind records its timestamp
                                       at the window's mid-time (``ctx.point_time``)
    store.abort_capture(handle)        on any failure and after finish (kind primitive
                                       ``_release``, run once): kills helpers, frees the snapshot

Restore, per store (every hook but ``restore`` has a no-op default for snapshot kinds):

    store.check_restorable(capture)                PITR: the point lies inside the store's
                                                   restorable window now (PitrWindowError)
    store.check_restore_target(capture, replace)   refuses a non-empty target unless replace
    store.restore(capture, source_dir, replace, verified=False, journal=None)
                                                   checks the artifacts unless the caller did,
                                                   brings the target back to the captured
                                                   state; a long restore records its steps in
                                                   ``journal`` and resumes from them
    store.reapply_settings(capture)                settings a provider's restore resets
    store.fingerprint(tables)                      of the live database, compared afterwards

``capture`` and ``open_capture`` also take a bare ``Path`` (a local staging directory), as
before the capture context existed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from pausepoint.errors import CaptureError, InternalError, PitrWindowError, RestoreError
from pausepoint.secrets import SecretRef

if TYPE_CHECKING:
    from pausepoint.clock import ClockBound


class StoreConfigBase(BaseModel):
    """Fields every store kind has. Each kind subclasses this with ``kind: Literal[...]`` and is
    registered in ``pausepoint.stores.registry`` (which also says whether it is transactional).

    pydantic's own error text never repeats the input (``hide_input_in_errors``): the outer
    model's setting decides that, and a kind's config may embed credentials (a secret pasted
    inline where a reference belongs)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="unique within the site")
    kind: str

    def retarget(self, overrides: Mapping[str, Any]) -> StoreConfigBase:
        """This config with a restore target's ``overrides`` applied, validated (raises
        pydantic's ValidationError). A kind whose settings do not simply replace each other
        overrides this."""
        return type(self).model_validate({**self.model_dump(), **overrides})


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


class CaptureDetails(BaseModel):
    """What a kind records about one capture for its restore (``StoreCapture.details``). Each
    kind declares a subclass in the registry; a manifest is read back into it by ``kind``.

    Settings written by earlier versions and no longer used are kept (``extra="allow"``) so an
    old manifest stays readable. Item access (``details["toc"]``) reads a field, for callers
    written against the dict it replaced."""

    model_config = ConfigDict(frozen=True, extra="allow")

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.model_dump()

    def get(self, key: str, default: Any = None) -> Any:
        return self.model_dump().get(key, default)

    def items(self) -> Iterable[tuple[str, Any]]:
        return self.model_dump().items()


def _details_model(kind: str) -> type[CaptureDetails]:
    from pausepoint.stores import registry  # the registry imports this module

    entry = registry.find(kind)
    return entry.details if entry is not None else CaptureDetails


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
    # The kind's typed model (registry entry ``details``); the JSON is the same object as the
    # free dict of earlier versions, so manifests of format 1 read back unchanged.
    details: SerializeAsAny[CaptureDetails] = CaptureDetails()

    @field_validator("details", mode="wrap")
    @classmethod
    def _typed_details(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """Read ``details`` into the kind's model (a dict from a manifest, or a model of
        another type); errors then name ``details.<field>``."""
        kind = info.data.get("kind")
        if not isinstance(kind, str):
            return handler(value)
        model = _details_model(kind)
        if isinstance(value, CaptureDetails) and not isinstance(value, model):
            value = value.model_dump()
        if not value:
            return CaptureDetails()  # none recorded: the kind's restore refuses it by name
        if isinstance(value, dict):
            return model.model_validate(value)
        return handler(value)

    @property
    def total_bytes(self) -> int:
        return sum(a.size for a in self.artifacts)


C = TypeVar("C", bound=StoreConfigBase)

# Progress reporting: (store name, bytes copied so far). Called from copying threads.
ProgressFn = Callable[[str, int], None]
# Resolves a store's secret reference to its value (see pausepoint.secrets.SecretResolver).
ResolveFn = Callable[[SecretRef | None], SecretStr | None]


# --- where a capture writes: the artifact sink -------------------------------------------------

_CHUNK = 1 << 20


class ArtifactWriter:
    """A stream into one artifact, hashed on the way; ``close()`` returns its Artifact."""

    def __init__(self, name: str, out: IO[bytes]):
        self.name = name
        self._out = out
        self._digest = hashlib.sha256()
        self.size = 0
        self.artifact: Artifact | None = None

    def write(self, data: bytes | memoryview) -> None:
        self._digest.update(data)
        self._out.write(data)
        self.size += len(data)

    def close(self) -> Artifact:
        if self.artifact is None:
            self._out.close()
            self.artifact = Artifact(
                path=self.name, size=self.size, sha256=self._digest.hexdigest()
            )
        return self.artifact

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._out.close()


class ArtifactSink(ABC):
    """Where one store's capture writes its files, and how they are named and hashed.

    Artifact names are '/'-separated and relative to the store's place in the point. A kind
    streams into ``open(name)`` (hashed on the way); a tool that must write a file or a
    directory itself (pg_dump -Fd) is given a local ``spool`` path, whose files ``collect``
    then describes. A remote catalog implements the same interface by streaming ``open`` and
    uploading what ``collect`` names."""

    # The local directory the artifacts land in, for kinds whose tools need one (else None).
    local_root: Path | None = None

    @abstractmethod
    def open(self, name: str) -> ArtifactWriter:
        """A new artifact ``name``, written through the returned writer."""

    @abstractmethod
    def spool(self, name: str) -> Path:
        """A local path (file or directory) for a tool to write artifact(s) ``name`` into."""

    @abstractmethod
    def collect(self, paths: Iterable[Path]) -> list[Artifact]:
        """The artifacts of files written under spool paths (path, size, sha256)."""

    def written(self, path: Path, size: int, sha256: str) -> Artifact:
        """The artifact of a spool file the caller hashed itself while writing it."""
        return Artifact(path=self.name_of(path), size=size, sha256=sha256)

    @abstractmethod
    def name_of(self, path: Path) -> str:
        """The artifact name of a spool path."""

    @abstractmethod
    def size(self) -> int:
        """Bytes written so far (for the copy's progress)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the artifacts go, for messages (a directory, a bucket prefix)."""


class LocalStagingSink(ArtifactSink):
    """The store's staging directory of a pending point (``PendingPoint.store_dir``)."""

    def __init__(self, root: Path):
        self.root = root  # made when the first artifact is written
        self.local_root = root

    def _path(self, name: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / name
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise InternalError(f"artifact name {name!r} leaves the store's directory")
        return path

    def open(self, name: str) -> ArtifactWriter:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return ArtifactWriter(name, open(path, "wb"))

    def spool(self, name: str) -> Path:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def collect(self, paths: Iterable[Path]) -> list[Artifact]:
        from pausepoint.stores._common import list_artifacts  # hashing helpers live there

        return list_artifacts(self.root, paths)

    def name_of(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def size(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                with contextlib.suppress(OSError):  # a file may vanish or be renamed meanwhile
                    total += os.stat(os.path.join(dirpath, f)).st_size
        return total

    def describe(self) -> str:
        return str(self.root)


# --- the capture context -------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureWindow:
    """The pause window as the capture sees it (from ``PauseWindowRecord``)."""

    start: datetime
    end: datetime
    mid: datetime
    paused: bool = True


@dataclass
class CaptureContext:
    """Everything a store's capture steps are given, instead of a bare directory.

    ``window`` is known only once the window closed: the flow sets it before finish_capture.
    """

    sink: ArtifactSink
    point_id: str = ""
    site: str = ""
    component: str = ""
    store: str = ""
    clock: ClockBound | None = None
    window: CaptureWindow | None = None

    @classmethod
    def local(cls, workdir: Path, **fields: Any) -> CaptureContext:
        """A context over a local directory (tests, tools, the no-catalog path)."""
        return cls(sink=LocalStagingSink(workdir), **fields)

    @property
    def workdir(self) -> Path:
        """The local staging directory, for kinds whose tools need one."""
        if self.sink.local_root is None:
            raise InternalError(f"store {self.store}: the artifact sink has no local directory")
        return self.sink.local_root

    def point_time(self, granularity_ms: int) -> datetime:
        """The point's time for a PITR kind: the window's mid-time rounded to the nearest step
        of ``granularity_ms`` (``clock.required_hold_ms`` derives the hold that keeps it inside
        the window)."""
        if self.window is None:
            raise CaptureError(
                f"store {self.store}: the pause window's mid-time is not known yet; a "
                "point-in-time capture is finished only after the window closed"
            )
        if granularity_ms <= 1:
            return self.window.mid
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        us = (self.window.mid - epoch) // timedelta(microseconds=1)
        step = granularity_ms * 1000
        return epoch + timedelta(microseconds=((us + step // 2) // step) * step)


def as_context(where: CaptureContext | Path, store: str = "") -> CaptureContext:
    """A capture context; a bare directory (the protocol before contexts) becomes a local one."""
    if isinstance(where, CaptureContext):
        return where
    return CaptureContext.local(Path(where), store=store)


class PreparedCapture:
    """What ``Store.prepare_capture`` set up before the pause for ONE ``open_capture``.

    Ownership: ``open_capture`` calls ``take()`` first and from then on owns the resources (it
    moves them into its handle, or frees them itself when it fails). ``release()`` frees them
    when open_capture never took them (the window closed early, a pause failed); it is safe to
    call twice, after ``take()`` (then it does nothing) and from another thread. A ``take()``
    after ``release()`` raises: a late open_capture never runs on freed resources.
    """

    def __init__(self, ctx: CaptureContext | Path):
        self.ctx = as_context(ctx)
        self._state_lock = threading.Lock()
        self._state = "prepared"  # -> "taken" | "released"

    @property
    def workdir(self) -> Path:
        return self.ctx.workdir

    @property
    def state(self) -> str:
        return self._state

    def take(self) -> None:
        with self._state_lock:
            if self._state != "prepared":
                raise CaptureError(f"this prepared capture was already {self._state}")
            self._state = "taken"

    def release(self) -> None:
        with self._state_lock:
            if self._state != "prepared":
                return
            self._state = "released"
        self.free()

    def free(self) -> None:
        """Close and remove what was prepared. Kinds override; must be idempotent."""


@dataclass(kw_only=True)
class CaptureHandle:
    """State held between open_capture and finish_capture (open snapshot, running dump).

    Owns the ``prepared`` resources it was opened on: ``Store.abort_capture`` runs the kind's
    ``_release`` and then frees them, once."""

    ctx: CaptureContext
    prepared: PreparedCapture
    opened_at: datetime
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def workdir(self) -> Path:
        return self.ctx.workdir


# --- restore: the journal of a long restore ------------------------------------------------


class StoreJournal(ABC):
    """One store's part of a restore journal: the step a long restore reached, persisted in the
    catalog beside the point, so a restore of the same point into the same target resumes from
    it after a crash (``RestoreRun`` writes it; see ``pausepoint.catalog.restores``)."""

    @property
    @abstractmethod
    def step(self) -> str | None:
        """The last step recorded (by this run or the one it resumes), or None."""

    @property
    @abstractmethod
    def data(self) -> dict[str, Any]:
        """What was recorded with that step (e.g. the last offset applied)."""

    @abstractmethod
    def record(self, step: str, data: Mapping[str, Any] | None = None) -> None:
        """Persist that ``step`` was reached (with ``data``) before going on."""


# --- the store ------------------------------------------------------------------------------


class Store(ABC, Generic[C]):
    """One database of a component. Subclasses implement the primitives of their kind."""

    kind: ClassVar[str]
    # Names how fingerprint() renders and hashes rows; recorded in every capture.
    fingerprint_method: ClassVar[str]
    # Methods of earlier versions that fingerprint() still computes on request, so that a point
    # made by one of them is still compared after its restore.
    earlier_fingerprint_methods: ClassVar[tuple[str, ...]] = ()
    # The kind's PreparedCapture and CaptureHandle types (checked when handed back).
    prepared_type: ClassVar[type[PreparedCapture]] = PreparedCapture
    handle_type: ClassVar[type[CaptureHandle]] = CaptureHandle

    def __init__(self, config: C, resolve: ResolveFn):
        self.config = config
        self._resolve = resolve

    @property
    def name(self) -> str:
        return self.config.name

    @abstractmethod
    def check(self) -> dict[str, Any]:
        """Preflight: connect, check tools, versions and permissions. Returns facts to log."""

    def check_pitr(self) -> dict[str, Any] | None:
        """Preflight of a point-in-time kind: ask the store whether it can restore to a time
        (log retention, backups, archiving on) and return those settings; raise
        StoreCheckError naming the setting and its fix when it cannot. None: the kind has no
        point-in-time settings (every snapshot kind; `pausepoint check` shows no line)."""
        return None

    # --- capture: the shared ownership rules ------------------------------------------------

    def prepare_capture(self, ctx: CaptureContext | Path) -> PreparedCapture:
        """Before the pause: do what open_capture can do ahead (connect, resolve, write files),
        so that only what must happen inside the window is left for it."""
        return self._prepare(as_context(ctx, self.name))

    def open_capture(
        self, ctx: CaptureContext | Path, prepared: PreparedCapture | None = None
    ) -> CaptureHandle:
        """Establish the snapshot. Runs inside the pause window: must be short. Takes
        ``prepared`` over (see PreparedCapture); without it, prepares first."""
        p = prepared if prepared is not None else self.prepare_capture(ctx)
        if not isinstance(p, self.prepared_type):
            raise InternalError(f"store {self.name}: not a {self.kind} prepared capture: {p!r}")
        try:
            p.take()
        except CaptureError as exc:
            raise CaptureError(f"store {self.name}: cannot open the capture: {exc}") from None
        try:
            return self._open(p)
        except BaseException:
            p.free()
            raise

    def finish_capture(
        self, handle: CaptureHandle, progress: ProgressFn | None = None
    ) -> StoreCapture:
        """Copy the established snapshot into the handle's sink and describe it; the snapshot
        is released afterwards, whatever happens."""
        h = self._own(handle)
        try:
            return self._finish(h, progress)
        except Exception as exc:
            # A full disk reads as a tool's or a write's failure; say what it is and what to do.
            if _out_of_space(exc):
                raise CaptureError(
                    f"store {self.name}: the catalog's disk is full: no space left on device "
                    f"for {h.ctx.sink.describe()} while copying the snapshot; no restore point "
                    "was registered. Free space there (`pausepoint prune --site FILE` deletes "
                    "old restore points) or point catalog.path at a larger disk, then back up "
                    f"again. ({exc})"
                ) from exc
            raise
        finally:
            self.abort_capture(h)

    def abort_capture(self, handle: CaptureHandle) -> None:
        """Release everything open_capture holds. Safe to call twice and after finish."""
        h = self._own(handle)
        with h.lock:
            if h.closed:
                return
            h.closed = True
            try:
                self._release(h)
            finally:
                h.prepared.free()

    def _own(self, handle: CaptureHandle) -> Any:
        if not isinstance(handle, self.handle_type):
            raise InternalError(f"store {self.name}: not a {self.kind} capture handle: {handle!r}")
        return handle

    # --- capture: the kind's primitives -----------------------------------------------------

    def _prepare(self, ctx: CaptureContext) -> PreparedCapture:
        """Before the pause; a kind without anything to prepare inherits this."""
        return PreparedCapture(ctx)

    def _open(self, prepared: Any) -> CaptureHandle:
        """Inside the window, on the taken ``prepared`` (freed by the caller when this raises;
        stop anything started here before raising): establish the snapshot, return the handle
        that owns ``prepared``. Every kind implements it (or overrides open_capture)."""
        raise InternalError(f"store kind {self.kind!r} implements no _open")

    def _finish(self, handle: Any, progress: ProgressFn | None) -> StoreCapture:
        """After the unpause: copy into ``handle.ctx.sink``, describe the capture. Every kind
        implements it (or overrides finish_capture)."""
        raise InternalError(f"store kind {self.kind!r} implements no _finish")

    def _release(self, handle: Any) -> None:
        """Stop what the handle runs (a dump). Called once; ``handle.prepared`` is freed after.
        Under ``handle.lock``."""

    # --- restore ------------------------------------------------------------------------------

    def captured_details(self, capture: StoreCapture) -> Any:
        """``capture.details`` as this kind's typed model (registry entry ``details``); a
        capture of another kind, or one whose details were replaced by a plain dict, is read
        into it. RestoreError when it does not fit."""
        from pausepoint.stores import registry

        model = registry.get(self.kind).details
        details: Any = capture.details
        if isinstance(details, model):
            return details
        raw = details.model_dump() if isinstance(details, BaseModel) else details
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'details'}: {e['msg']}"
                for e in exc.errors(include_url=False)[:3]
            )
            raise RestoreError(
                f"store {self.name}: the capture's details do not fit the {self.kind} store kind "
                f"({problems}); it was not made by the {self.kind} store kind. Restore a point "
                "this store captured"
            ) from None

    def restorable_window(self, capture: StoreCapture) -> tuple[datetime, datetime] | None:
        """PITR kinds: the span of times the captured source can be restored to now (a
        provider's retention of the source's backups: ``capture`` names the source). None:
        any point whose artifacts are intact (snapshot kinds)."""
        return None

    def check_restorable(self, capture: StoreCapture) -> None:
        """Before any change: refuse a point the store can no longer restore (its time is
        outside the restorable window), naming the window."""
        at = capture.pitr_timestamp
        if at is None:
            return
        window = self.restorable_window(capture)
        if window is None:
            return
        oldest, newest = window
        if not oldest <= at <= newest:
            raise PitrWindowError(
                f"store {self.name}: the restore point's time {at.isoformat()} is outside the "
                f"store's restorable window {oldest.isoformat()} .. {newest.isoformat()} now, so "
                "it cannot be restored to it; nothing was changed. Pick a restore point inside "
                "that window (`pausepoint points list`), or lengthen the store's retention of "
                "point-in-time recovery so later points stay restorable."
            )

    @abstractmethod
    def check_restore_target(self, capture: StoreCapture, replace: bool) -> None:
        """Raise TargetNotEmptyError when the target holds data and replace is False."""

    @abstractmethod
    def restore(
        self,
        capture: StoreCapture,
        source_dir: Path,
        replace: bool,
        *,
        verified: bool = False,
        journal: StoreJournal | None = None,
    ) -> None:
        """Bring this store (the restore target) back to the captured state.

        The artifacts' sha256 are checked first, before any change, unless ``verified`` says the
        caller has just checked these very files (then only their presence and sizes are). A
        kind whose restore is long records its steps in ``journal`` and, given a journal with a
        step, resumes from it; others ignore it.
        """

    def restored_to(self) -> dict[str, str]:
        """After restore: where the data now is when that is not the target's configured
        address (a kind that restores into a NEW account, instance or cluster reports its
        name and endpoint here; the restore report shows it). Empty for the others."""
        return {}

    def reapply_settings(self, capture: StoreCapture) -> None:
        """After restore, before fingerprints: re-apply what a provider's restore resets
        (a snapshot kind restores everything itself: nothing to do)."""

    @abstractmethod
    def fingerprint(
        self, tables: list[str] | None = None, method: str | None = None
    ) -> Fingerprint:
        """Row count and order-independent hash per table of the live database, by
        fingerprint_method or, when named, one of earlier_fingerprint_methods."""


def _out_of_space(exc: BaseException) -> bool:
    from pausepoint.stores._common import out_of_space

    return out_of_space(exc)


__all__ = [
    "Artifact",
    "ArtifactSink",
    "ArtifactWriter",
    "CaptureContext",
    "CaptureDetails",
    "CaptureHandle",
    "CaptureWindow",
    "Fingerprint",
    "LocalStagingSink",
    "PreparedCapture",
    "Store",
    "StoreCapture",
    "StoreConfigBase",
    "StoreJournal",
    "TableFingerprint",
    "as_context",
]
