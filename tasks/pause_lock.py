"""One pause at a time per site: a Prefect global concurrency limit named after the site.

Backups hold it from preflight to the end of their lease, restores for the whole restore, so two
backups (or a backup and a restore) of one site never overlap, whichever deployment, schedule,
API call or CLI started them. The limit is created with one slot when missing and refused when
someone widened or disabled it. Prefect keeps the slot on a lease it renews while we run: a run
killed with SIGKILL frees the slot when its lease lapses (LEASE_S), not never.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_run_logger

from pausepoint.errors import PauseLockError
from pausepoint.site import Site

LEASE_S = 60  # the shortest slot lease Prefect's server accepts; renewed in the background


def lock_name(site: str) -> str:
    return f"pausepoint-pause-{site}"


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


@contextmanager
def site_pause_lock(site: Site, purpose: str) -> Iterator[None]:
    """Hold the site's pause lock; PauseLockError if another run holds it past the timeout."""
    name = lock_name(site.site)
    _ensure_limit(name)
    logger = get_run_logger()
    timeout = site.pause.lock_timeout_s
    logger.info("%s: taking the pause lock %r (waits up to %d s)", purpose, name, timeout)
    held = False
    try:
        # Never let a lapsed renewal kill a run mid-window: the lease and its timer bound it.
        with concurrency(
            name,
            occupy=1,
            timeout_seconds=timeout,
            lease_duration=LEASE_S,
            strict=True,
            raise_on_lease_renewal_failure=False,
        ):
            held = True
            logger.info("%s: holding the pause lock %r", purpose, name)
            yield
    except TimeoutError:
        if held:
            raise  # the run's own timeout, not the wait for the lock
        raise PauseLockError(
            f"another backup or restore of site {site.site!r} held the pause lock {name!r} for "
            f"more than pause.lock_timeout_s={timeout}; nothing was paused. Look for the running "
            "flow run of this site in the Prefect UI, wait for it, or raise the timeout."
        ) from None
