"""Pieces the flows share: gathering parallel results, and the restore's steps (the restore flow
and the drill run the same ones)."""

from __future__ import annotations

from pausepoint.admin.client import AdminClient
from pausepoint.errors import most_severe
from pausepoint.restore import RestoreRun
from tasks.restore_steps import (
    check_nodes_stopped,
    check_target,
    restore_store,
    validate_point,
    verify_store,
)

Check = tuple[str, bool, str]  # (what was checked, passed, detail)


def results(futures) -> list[BaseException]:
    """Wait for every future; every failure, in order (the worst is chosen by the caller)."""
    errors: list[BaseException] = []
    for f in futures:
        try:
            f.result()
        except BaseException as exc:  # collect every failure; the worst is chosen later
            errors.append(exc)
    return errors


def _all_or_worst(futures) -> None:
    errors = results(futures)
    if errors:
        raise most_severe(errors)  # type: ignore[misc]


def restore_and_check(
    run: RestoreRun, checks: list[Check], client: AdminClient | None = None
) -> None:
    """Validate, (with ``client``) check the nodes are stopped, check the targets, restore and
    compare fingerprints; each check is appended to ``checks`` as it passes, so a failure leaves
    the ones that ran. Fingerprint differences are appended as failed checks, not raised."""
    checks.append(("restore point complete and intact", True, validate_point(run)))
    if client is not None:
        checks.append(("ScalarDL nodes", True, check_nodes_stopped(run, client)))
    _all_or_worst([check_target.submit(run, s) for s in run.slots])
    replaced = ", replaced" if run.target.replace else ""
    checks.append(("targets ready", True, f"{len(run.slots)} stores{replaced}"))
    _all_or_worst([restore_store.submit(run, s) for s in run.slots])
    checks.append(("restored", True, f"{len(run.slots)} stores"))
    for s in run.slots:
        # A kind that restores into a NEW account or instance says where: the user switches
        # ScalarDB/ScalarDL to it.
        where = ", ".join(f"{k} {v}" for k, v in s.store.restored_to().items() if v)
        if where:
            checks.append((f"restored into {s.component}/{s.store.name}", True, where))
    _all_or_worst([verify_store.submit(run, s) for s in run.slots])
    for s in run.slots:
        ok = not s.fingerprint_problems
        detail = (
            f"{len(s.capture.fingerprint)} tables, "
            f"{sum(f.rows for f in s.capture.fingerprint.values())} rows match"
            if ok
            else "; ".join(s.fingerprint_problems)
        )
        checks.append((f"fingerprint {s.component}/{s.store.name}", ok, detail))
