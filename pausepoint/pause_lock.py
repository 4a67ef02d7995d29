"""Who holds a site's pause lock, and when its slot has no holder left (pure; no Prefect).

The lock is a Prefect global concurrency limit with one slot (``tasks/pause_lock.py``). Prefect
counts the taken slot in its database but keeps the lease that frees it (when its holder stops
renewing) in the server's memory by default: a server restart forgets the lease and the slot
stays taken for ever. Every run that takes the lock first tags its flow run, so the runs that may
hold it are known: :class:`LockView` is what the API said about them, and decides whether the
slot is orphaned (taken, and no run of the site could hold it) and what a timeout says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

LEASE_S = 60  # the slot's lease (Prefect's shortest); its holder renews it in the background
REPOSSESS_S = 15  # how often Prefect's server frees the slots of expired leases (its default)
# A run of the site that ended this long ago has had its lease expired and repossessed: a slot
# still taken then is held by no lease (the margin covers clock differences with the server).
QUIET_S = LEASE_S + REPOSSESS_S + 30


def lock_name(site: str) -> str:
    """The global concurrency limit of the site's pause lock."""
    return f"pausepoint-pause-{site}"


def lock_tag(site: str) -> str:
    """The tag of every flow run that takes (or took) the site's pause lock."""
    return f"pausepoint-pause-lock:{site}"


def free_command(site: str) -> str:
    """The operator's command that frees the slot by hand."""
    return f"prefect gcl update {lock_name(site)} --active-slots 0"


@dataclass(frozen=True)
class LockRun:
    """A flow run of the site that takes or took the pause lock."""

    id: str
    name: str
    state: str

    def describe(self) -> str:
        return f"flow run {self.name!r} ({self.id}, {self.state})"


@dataclass(frozen=True)
class LockView:
    """The lock as the Prefect API showed it at ``now``, without the run that asks."""

    site: str
    active_slots: int
    live: tuple[LockRun, ...]  # runs of the site not in a final state: each may hold the slot
    last_end: datetime | None  # newest end of a run of the site within QUIET_S; None: none
    now: datetime

    @property
    def name(self) -> str:
        return lock_name(self.site)

    def orphaned(self) -> bool:
        """Taken, and no run of the site could hold it: none is running, and none ended
        recently enough for its lease to be still waiting for the server to expire it."""
        if self.active_slots < 1 or self.live:
            return False
        return self.last_end is None or (self.now - self.last_end).total_seconds() >= QUIET_S

    def freed_message(self) -> str:
        ended = (
            f"; the last one ended at {self.last_end.isoformat(timespec='seconds')}"
            if self.last_end is not None
            else ""
        )
        return (
            f"freed the slot of the pause lock {self.name!r}: it was taken, yet no run of site "
            f"{self.site!r} is running{ended}, so no lease can hold it (a Prefect server restart "
            "forgets the leases of taken slots)"
        )

    def timeout_message(self, timeout_s: int, api_error: str | None = None) -> str:
        """What the wait saw: who holds the slot, or that nobody does and why it was not
        granted (``api_error``: the Prefect API's last failure to answer the request)."""
        head = _head(self.site, timeout_s)
        if self.live:
            runs = ", ".join(r.describe() for r in self.live)
            return head + (
                f"It is held (or waited for) by {runs}: wait for that run in the Prefect UI, "
                "or raise the timeout."
            )
        if self.active_slots < 1:
            return head + (
                "The lock was free when the wait ended and no other run of the site is "
                f"running: {_slow(api_error)}"
            )
        if self.last_end is not None:
            ended = (
                f"the site's last run ended at {self.last_end.isoformat(timespec='seconds')}, "
                f"so its slot is freed automatically {QUIET_S} s after that"
            )
        else:
            ended = "the next run of the site frees it automatically"
        return head + (
            "No run of the site is running, yet the lock's slot is taken: its holder is no run "
            "of the site, or no longer exists (a Prefect server restart forgets the leases of "
            f"taken slots); {ended}. To "
            "free it now, make sure no backup or restore of the site is running and run "
            f"`{free_command(self.site)}`."
        )


def _head(site: str, timeout_s: int) -> str:
    return (
        f"the pause lock {lock_name(site)!r} of site {site!r} was not granted within "
        f"pause.lock_timeout_s={timeout_s}; nothing was paused. "
    )


def _slow(api_error: str | None) -> str:
    said = f" (its last answer: {api_error})" if api_error else ""
    return (
        f"the Prefect API was too slow or unreachable to grant it{said}. Check the Prefect "
        "server's health and load, then start the run again (or raise pause.lock_timeout_s)."
    )


def unknown_holder_message(site: str, timeout_s: int, api_error: str) -> str:
    """The timeout when the Prefect API could not even say who holds the slot."""
    return _head(site, timeout_s) + (
        "Whether another run holds it is unknown: the Prefect API did not answer the request "
        f"for the slot nor the question who holds it; {_slow(api_error)}"
    )
