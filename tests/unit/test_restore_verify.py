"""RestoreRun's use of the stores: verified artifacts are not hashed twice; fingerprints compare
only when made by the same method."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from pausepoint.restore import RestoreRun, RestoreSlot, RestoreTarget
from pausepoint.stores.base import StoreCapture, TableFingerprint


class FakeStore:
    name = "s1"
    fingerprint_method = "m-2"
    earlier_fingerprint_methods = ("m-1",)

    def __init__(self, live):
        self.live = live
        self.restored: list[dict] = []
        self.methods: list[str | None] = []

    def restore(self, capture, source_dir, replace, *, verified=False, journal=None):
        self.restored.append({"replace": replace, "verified": verified})

    def reapply_settings(self, capture):  # a snapshot kind: nothing to re-apply
        pass

    def fingerprint(self, tables=None, method=None):
        self.methods.append(method)
        return {k: v for k, v in self.live.items() if tables is None or k in tables}


FP = {"a.t": TableFingerprint(rows=2, hash="00000000000000ff")}


def run_and_slot(store, method="m-2", verified=False):
    capture = StoreCapture(
        name="s1", kind="x", method="x", fingerprint=FP, fingerprint_method=method
    )
    run = RestoreRun(
        site=SimpleNamespace(),  # type: ignore[arg-type]
        catalog=SimpleNamespace(),  # type: ignore[arg-type]
        point=SimpleNamespace(),  # type: ignore[arg-type]
        target=RestoreTarget(),
        resolver=SimpleNamespace(),  # type: ignore[arg-type]
        artifacts_verified=verified,
    )
    slot = RestoreSlot("ledger", capture, store, Path("/nowhere"), in_place=False)  # type: ignore[arg-type]
    return run, slot


def test_restore_passes_on_whether_validate_verified_the_artifacts():
    for verified in (False, True):
        store = FakeStore(FP)
        run, slot = run_and_slot(store, verified=verified)
        run.restore(slot)
        assert store.restored == [{"replace": False, "verified": verified}]


def test_verify_compares_fingerprints_of_the_same_method():
    run, slot = run_and_slot(FakeStore(FP))
    assert run.verify(slot) == []
    changed = {"a.t": TableFingerprint(rows=2, hash="00000000000000fe")}
    run, slot = run_and_slot(FakeStore(changed))
    assert run.verify(slot) == [
        "s1: table a.t differs (captured 2 rows/00000000000000ff, restored 2 rows/00000000000000fe)"
    ]


def test_verify_compares_a_point_of_an_earlier_method_by_that_method():
    store = FakeStore(FP)
    run, slot = run_and_slot(store, method="m-1")
    assert run.verify(slot) == []
    assert store.methods == ["m-1"]


def test_verify_refuses_fingerprints_of_another_method():
    for method, shown in (("m-0", "m-0"), ("", "(unrecorded, an earlier version)")):
        run, slot = run_and_slot(FakeStore(FP), method=method)
        [problem] = run.verify(slot)
        assert f"made with method {shown} and this version makes m-2" in problem
