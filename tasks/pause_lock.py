"""One pause at a time per site: a Prefect global concurrency limit named after the site.

Backups hold it from preflight to the end of their lease, restores for the whole restore, so two
backups (or a backup and a restore) of one site never overlap, whichever deployment, schedule,
API call or CLI started them. The limit is created with one slot when missing and refused when
someone widened or disabled it.

The slot is taken with a lease (LEASE_S) renewed in the background, so a run killed with SIGKILL
frees it when its lease lapses. Prefect's server keeps leases in memory by default: a server
restart forgets them while the taken slot stays counted in its database, for ever. So:

- before waiting for the lock a run tags its flow run (``pausepoint.pause_lock.lock_tag``): the
  runs that may hold the lock are the tagged ones not in a final state;
- while it waits, a run frees a slot that no run of the site could hold (none is running and
  none ended within QUIET_S; ``LockView.orphaned``) and says so in its log;
- the release after the work is best effort: bounded (RELEASE_WAIT_S), never raised over the
  run's own outcome (a good window's restore point is registered); a failure is a warning and
  the event ``pausepoint.pause-lock.release-failed``;
- a timeout says who holds the lock, or that no run does and how to free it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx
from prefect import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import ConcurrencyLeaseHolder, FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from pausepoint.errors import PauseLockError
from pausepoint.pause_lock import (
    LEASE_S,
    QUIET_S,
    LockRun,
    LockView,
    lock_name,
    lock_tag,
    unknown_holder_message,
)
from pausepoint.site import Site
from tasks import events

__all__ = ["LEASE_S", "lock_name", "lock_tag", "lock_view", "site_pause_lock"]

POLL_S = 10  # between two attempts while the slot is taken; each one checks for an orphan
RELEASE_WAIT_S = 20  # the release never holds the run longer than this
FINAL = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]


def _ensure_limit(name: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            # Another run of this site may have created it a moment ago.
            with suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )
            return
    if limit.limit != 1 or not limit.active:
        raise PauseLockError(
            f"the global concurrency limit {name!r} is "
            f"{'inactive' if not limit.active else f'set to {limit.limit} slots'}; it must be "
            f"active with exactly 1 slot or two pauses of the site could overlap. Fix it with "
            f"`prefect gcl update {name} --limit 1` and `prefect gcl enable {name}`."
        )


def _lock_run(run: FlowRun) -> LockRun:
    state = run.state.name if run.state is not None else "no state"
    return LockRun(id=str(run.id), name=run.name, state=state)


def lock_view(site: str, me: UUID | None = None) -> LockView:
    """The lock's slot and the site's runs that may hold it, as the Prefect API shows them
    (the run ``me`` left out: it is the one asking)."""
    tagged = FlowRunFilterTags(all_=[lock_tag(site)])
    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(lock_name(site))
        live = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=tagged,
                state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=FINAL)),
            ),
            limit=20,
        )
        ended = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=tagged, end_time=FlowRunFilterEndTime(after_=now - timedelta(seconds=QUIET_S))
            ),
            sort=FlowRunSort.END_TIME_DESC,
            limit=5,
        )
    ends = [r.end_time for r in ended if r.id != me and r.end_time is not None]
    return LockView(
        site=site,
        active_slots=limit.active_slots,
        live=tuple(_lock_run(r) for r in live if r.id != me),
        last_end=max(ends) if ends else None,
        now=now,
    )


def _tag_run(run_id: UUID, tag: str) -> None:
    """Name this run as one that may hold the lock, BEFORE it asks for the slot: a run that is
    granted the slot is then always seen by the others."""
    with get_client(sync_client=True) as client:
        tags = list(client.read_flow_run(run_id).tags)
        if tag not in tags:
            client.update_flow_run(run_id, tags=[*tags, tag])


def _free_if_orphaned(site: str, me: UUID | None, logger) -> bool:
    """Free the slot when no run of the site could hold it; True when it did."""
    try:
        view = lock_view(site, me)
        if not view.orphaned():
            return False
        with get_client(sync_client=True) as client:
            client.update_global_concurrency_limit(
                view.name, GlobalConcurrencyLimitUpdate(active_slots=0)
            )
    except Exception as exc:  # a busy API: keep waiting, check again later
        logger.info("could not check the pause lock's holders: %s: %s", type(exc).__name__, exc)
        return False
    logger.warning("%s", view.freed_message())
    events.emit(
        events.PAUSE_LOCK_FREED,
        site,
        {"lock": view.name, "last_end": view.last_end.isoformat() if view.last_end else None},
    )
    return True


def _acquire(site: Site, me: UUID | None, logger) -> UUID:
    """The lease id of the slot, once granted; PauseLockError after pause.lock_timeout_s."""
    name = lock_name(site.site)
    timeout = site.pause.lock_timeout_s
    deadline = time.monotonic() + timeout
    holder = ConcurrencyLeaseHolder(type="flow_run", id=me) if me is not None else None
    api_error: str | None = None  # the API's last failure to answer: a slow server, not a holder
    with get_client(sync_client=True) as client:
        while True:
            try:
                granted = client.increment_concurrency_slots_with_lease(
                    names=[name], slots=1, mode="concurrency", lease_duration=LEASE_S,
                    holder=holder,
                )  # fmt: skip
            except httpx.HTTPStatusError as exc:
                code = exc.response.status_code
                if code != 423 and not _busy(code):  # 423 Locked: the slot is taken
                    raise
                api_error = f"HTTP {code} {exc.response.reason_phrase}" if code != 423 else None
                retry_after = float(exc.response.headers.get("Retry-After", POLL_S))
            except httpx.TransportError as exc:  # no answer in time, connection dropped
                api_error = f"{type(exc).__name__}: {str(exc)[:200] or 'no answer'}"
                retry_after = 1.0
            else:
                body = granted.json()
                if not body.get("limits"):
                    raise PauseLockError(
                        f"the global concurrency limit {name!r} disappeared while taking it; "
                        "start the run again (it creates the limit)."
                    )
                return UUID(body["lease_id"])
            if api_error is None and _free_if_orphaned(site.site, me, logger):
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise PauseLockError(_timeout_message(site.site, me, timeout, api_error))
            if api_error is not None:
                logger.info("the Prefect API did not grant the pause lock yet (%s)", api_error)
            time.sleep(min(max(retry_after, 0.5), POLL_S, left))


def _busy(status: int) -> bool:
    """An answer that says the server is overloaded or restarting, not that the slot is taken."""
    return status == 429 or status >= 500


def _timeout_message(site: str, me: UUID | None, timeout: int, api_error: str | None) -> str:
    """Say what the wait saw: the runs that hold the slot, or that none does (and the API's last
    failure, when it failed to answer)."""
    try:
        view = lock_view(site, me)
    except Exception as exc:  # the API too slow to say: say that, not "someone holds it"
        return unknown_holder_message(
            site, timeout, api_error or f"{type(exc).__name__}: {str(exc)[:200]}"
        )
    return view.timeout_message(timeout, api_error)


class _Renewal:
    """Renews the slot's lease until stopped. A failed renewal never stops the run (its pause is
    bounded by its own lease and deadline timer); it is logged once."""

    def __init__(self, lease_id: UUID, logger):
        self.lease_id, self.logger = lease_id, logger
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pause-lock-renewal", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        warned = False
        while not self.stop.wait(LEASE_S / 2):
            try:
                with get_client(sync_client=True) as client:
                    client.renew_concurrency_lease(self.lease_id, lease_duration=LEASE_S)
            except Exception as exc:  # logged; the run goes on
                if self.stop.is_set():
                    return
                if not warned:
                    self.logger.warning(
                        "could not renew the pause lock's lease %s (%s: %s); the run goes on, "
                        "a later run frees the slot if its lease is lost",
                        self.lease_id, type(exc).__name__, str(exc)[:300],
                    )  # fmt: skip
                    warned = True


def _release(site: str, lease_id: UUID, logger) -> bool:
    """Give the slot back, waiting at most RELEASE_WAIT_S; never raises. A release that did not
    happen leaves the slot to its lease (or to the next run, when the lease is lost)."""
    outcome: list[BaseException | None] = []

    def release() -> None:
        try:
            with get_client(sync_client=True) as client:
                client.release_concurrency_slots_with_lease(lease_id)
            outcome.append(None)
        except BaseException as exc:  # reported by the waiting thread
            outcome.append(exc)

    worker = threading.Thread(target=release, name="pause-lock-release", daemon=True)
    worker.start()
    worker.join(RELEASE_WAIT_S)
    if outcome and outcome[0] is None:
        return True
    why = (
        f"{type(outcome[0]).__name__}: {str(outcome[0])[:300]}"
        if outcome
        else f"no answer from the Prefect API within {RELEASE_WAIT_S} s"
    )
    name = lock_name(site)
    logger.warning(
        "could not release the pause lock %r (%s); the run's outcome stands. The slot is freed "
        "when its lease lapses, or by the next run of the site once no run of it is running",
        name, why,
    )  # fmt: skip
    events.emit(events.PAUSE_LOCK_RELEASE_FAILED, site, {"lock": name, "error": why})
    return False


@contextmanager
def site_pause_lock(site: Site, purpose: str) -> Iterator[None]:
    """Hold the site's pause lock; PauseLockError if it is not granted within
    pause.lock_timeout_s (the message says who holds it, or that nobody does)."""
    name = lock_name(site.site)
    _ensure_limit(name)
    logger = get_run_logger()
    raw_id = flow_run.get_id()
    me = UUID(raw_id) if raw_id else None
    if me is not None:
        _tag_run(me, lock_tag(site.site))
    logger.info(
        "%s: taking the pause lock %r (waits up to %d s)", purpose, name, site.pause.lock_timeout_s
    )
    lease_id = _acquire(site, me, logger)
    logger.info("%s: holding the pause lock %r", purpose, name)
    renewal = _Renewal(lease_id, logger)
    try:
        yield
    finally:
        renewal.stop.set()
        if _release(site.site, lease_id, logger):
            logger.info("%s: released the pause lock %r", purpose, name)
