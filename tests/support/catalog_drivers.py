"""Adapters of the catalog driver contract suite (tests/contract/test_catalog_driver_contract.py).

One adapter per driver: how to make a fresh, empty driver in a test's private directory. A new
driver is done when its adapter passes the suite. ``make`` must be a module-level function: the
suite calls it in other processes (spawned) to race them against each other.

The workers below run in those processes; they stay here so a spawned child can import them.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pausepoint.catalog import Catalog, CatalogDriver, LocalDriver
from pausepoint.errors import CatalogConflictError, LeaseError


@dataclass(frozen=True)
class DriverAdapter:
    name: str
    make: Callable[[Path], CatalogDriver]  # a fresh driver over a private place under the path


def local_driver(tmp: Path) -> CatalogDriver:
    return LocalDriver(tmp / "catalog")


ADAPTERS = [DriverAdapter("local", local_driver)]


# --- workers (run in threads or spawned processes) --------------------------------------------


def race_creates(
    make: Callable[[Path], CatalogDriver],
    tmp: Path,
    keys: list[str],
    me: str,
    barrier: Any,
    results: Any,
) -> None:
    """For each key: wait for every racer, then try to create it holding ``me``."""
    driver = make(tmp)
    for key in keys:
        barrier.wait()
        try:
            driver.create_if_absent(key, me.encode())
            results.put((key, me, "won"))
        except CatalogConflictError:
            results.put((key, me, "lost"))


def race_replaces(
    make: Callable[[Path], CatalogDriver],
    tmp: Path,
    key: str,
    rounds: int,
    me: str,
    barrier: Any,
    results: Any,
) -> None:
    """Each round: every racer reads the same version, then all try to replace it."""
    driver = make(tmp)
    for n in range(rounds):
        barrier.wait()  # the previous round's writes are done
        version = driver.read_versioned(key).version
        barrier.wait()
        try:
            driver.replace_if_unchanged(key, f"{n}:{me}".encode(), version)
            results.put((n, me, "won"))
        except CatalogConflictError:
            results.put((n, me, "lost"))


def race_lease_ends(
    make: Callable[[Path], CatalogDriver],
    tmp: Path,
    site: str,
    run_ids: list[str],
    who: str,
    barrier: Any,
    results: Any,
) -> None:
    """The run (release) or the watchdog (mark broken) ending each lease at once."""
    catalog = Catalog(make(tmp))
    for run_id in run_ids:
        barrier.wait()
        try:
            if who == "run":
                lease = catalog.release_lease(site, run_id, now=datetime.now(UTC))
            else:
                lease = catalog.mark_broken(site, run_id, "the watchdog unpaused 1 node")
            results.put((run_id, who, lease.model_dump_json()))
        except LeaseError as exc:
            results.put((run_id, who, f"error: {exc}"))


def write_half_then_die(make: Callable[[Path], CatalogDriver], tmp: Path, key: str) -> None:
    """Stream half an artifact, then be killed outright (no cleanup runs)."""
    driver = make(tmp)
    with driver.open_write(key) as out:
        for _ in range(8):
            out.write(b"x" * (1 << 20))
        os.kill(os.getpid(), signal.SIGKILL)
