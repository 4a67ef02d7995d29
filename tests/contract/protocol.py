"""Every call the contract suite makes into a store, in one place.

The suite never calls a Store method directly: when the store protocol changes, this module
is the one change. Today's protocol (pausepoint.stores.base): check, prepare_capture(ctx),
open_capture(ctx, prepared), finish_capture(handle, progress), abort_capture(handle),
check_restorable(capture), check_restore_target(capture, replace), restore(capture,
source_dir, replace, verified=, journal=), reapply_settings(capture), fingerprint(tables).
``ctx`` is a CaptureContext over a local staging directory (LocalStagingSink), with the pause
window of a capture without pause set before finish.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pausepoint.stores.base import (
    CaptureContext,
    CaptureHandle,
    CaptureWindow,
    Fingerprint,
    PreparedCapture,
    Store,
    StoreCapture,
)


def context(store: Store, workdir: Path) -> CaptureContext:
    """The capture context of a capture into ``workdir`` (a local staging directory)."""
    return CaptureContext.local(workdir, store=store.name, component="ledger", site="contract")


def check(store: Store) -> dict[str, Any]:
    return store.check()


def prepare(store: Store, workdir: Path) -> PreparedCapture:
    return store.prepare_capture(context(store, workdir))


def release(prepared: PreparedCapture) -> None:
    prepared.release()


def open_(store: Store, workdir: Path, prepared: PreparedCapture | None = None) -> CaptureHandle:
    """Establish the snapshot (what runs inside the pause window)."""
    return store.open_capture(
        prepared.ctx if prepared is not None else context(store, workdir), prepared
    )


def finish(
    store: Store, handle: CaptureHandle, progress: Callable[[int], None] | None = None
) -> StoreCapture:
    """Copy the established snapshot; ``progress`` gets the bytes copied so far. The window
    closed at the handle's opening (no pause), as the flow sets it before finish."""
    ctx = getattr(handle, "ctx", None)
    if ctx is not None and ctx.window is None:
        at = handle.opened_at
        ctx.window = CaptureWindow(start=at, end=at, mid=at, paused=False)
    return store.finish_capture(handle, None if progress is None else lambda _s, n: progress(n))


def abort(store: Store, handle: CaptureHandle) -> None:
    store.abort_capture(handle)


def capture(store: Store, workdir: Path) -> StoreCapture:
    """A whole capture without a pause window: prepare, open, finish."""
    return finish(store, open_(store, workdir, prepare(store, workdir)))


def check_target(store: Store, capture: StoreCapture, replace: bool = False) -> None:
    store.check_restorable(capture)
    store.check_restore_target(capture, replace=replace)


def restore(
    store: Store,
    capture: StoreCapture,
    workdir: Path,
    *,
    replace: bool = False,
    verified: bool = False,
) -> None:
    store.restore(capture, workdir, replace=replace, verified=verified)
    store.reapply_settings(capture)


def fingerprint(store: Store, tables: list[str] | None = None) -> Fingerprint:
    return store.fingerprint(tables)


def artifact_path(capture: StoreCapture, workdir: Path, artifact: Any) -> Path:
    """Where one of the capture's artifacts lies (relative to the capture's directory)."""
    return workdir / artifact.path
