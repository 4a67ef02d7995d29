"""Adapters of the catalog driver contract suite (tests/contract/test_catalog_driver_contract.py).

One adapter per driver: how to make a fresh, empty driver in a test's private directory. A new
driver is done when its adapter passes the suite. ``make`` must be a module-level function: the
suite calls it in other processes (spawned) to race them against each other.

The workers below run in those processes; they stay here so a spawned child can import them.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    fixture: str | None = None  # a fixture the driver needs (its server), requested first


def local_driver(tmp: Path) -> CatalogDriver:
    return LocalDriver(tmp / "catalog")


# --- S3 on moto's server ------------------------------------------------------------------------

# The endpoint reaches spawned racers through the environment (``use_s3_endpoint``); the keys
# too, by reference, as a site file gives them.
S3_ENDPOINT_ENV = "PAUSEPOINT_TEST_S3_ENDPOINT"
S3_KEY_ENV = "PAUSEPOINT_TEST_S3_KEY_ID"
S3_SECRET_ENV = "PAUSEPOINT_TEST_S3_SECRET"
S3_BUCKET = "pausepoint-contract"
S3_PART_MIB = 5  # S3's smallest part: a 48 MiB artifact is ten parts


def s3_settings(tmp: Path, **overrides: object) -> dict[str, Any]:
    """The site file's ``catalog:`` of an S3 catalog on the test endpoint, private to ``tmp``
    (its own prefix and spool)."""
    tag = hashlib.sha256(str(tmp).encode()).hexdigest()[:16]
    return {
        "driver": "s3",
        "bucket": S3_BUCKET,
        "prefix": f"contract/{tag}",
        "region": "us-east-1",
        "endpoint_url": os.environ[S3_ENDPOINT_ENV],
        "addressing_style": "path",
        "part_size_mib": S3_PART_MIB,
        "spool_dir": str(tmp / "s3-spool"),
        "credentials": {
            "source": "keys",
            "access_key_id": {"env": S3_KEY_ENV},
            "secret_access_key": {"env": S3_SECRET_ENV},
        },
        **overrides,
    }


def s3_config(tmp: Path, **overrides: object):
    """``s3_settings`` validated: the driver's settings model."""
    from pausepoint.catalog.config import S3CatalogConfig

    return S3CatalogConfig.model_validate(s3_settings(tmp, **overrides))


def ensure_bucket(driver: CatalogDriver) -> None:
    """Create the driver's bucket unless it exists (another test may have reset moto)."""
    client = driver._client  # type: ignore[attr-defined]
    try:
        client.head_bucket(Bucket=driver.bucket)  # type: ignore[attr-defined]
    except Exception:
        client.create_bucket(Bucket=driver.bucket)  # type: ignore[attr-defined]


def s3_driver(tmp: Path) -> CatalogDriver:
    from pausepoint.catalog.s3 import S3Driver

    driver = S3Driver.from_config(s3_config(tmp))
    ensure_bucket(driver)
    return driver


@contextmanager
def use_s3_endpoint(moto: Any) -> Iterator[None]:
    """Point ``s3_driver`` (in this process and in the racers it spawns) at moto's server."""
    from harness.moto_server import ACCESS_KEY, SECRET_KEY

    saved = {k: os.environ.get(k) for k in (S3_ENDPOINT_ENV, S3_KEY_ENV, S3_SECRET_ENV)}
    os.environ.update(
        {S3_ENDPOINT_ENV: moto.endpoint, S3_KEY_ENV: ACCESS_KEY, S3_SECRET_ENV: SECRET_KEY}
    )
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


ADAPTERS = [
    DriverAdapter("local", local_driver),
    DriverAdapter("s3", s3_driver, fixture="s3_endpoint"),
]


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


# --- registrations racing (tests/integration/test_s3catalog.py) --------------------------------


def restore_point(site: str, point_id: str, artifacts: list[Any], version: str) -> Any:
    """A minimal restore point of one PostgreSQL store holding ``artifacts``."""
    from pausepoint.catalog.manifest import ComponentRecord, PauseWindowRecord, RestorePoint
    from pausepoint.stores.base import StoreCapture

    t0 = datetime(2026, 11, 28, 0, 31, 19, tzinfo=UTC)
    capture = StoreCapture(name="pg", kind="postgres", method="pg_dump", artifacts=artifacts)
    return RestorePoint(
        id=point_id,
        site=site,
        created_at=t0,
        pausepoint_version=version,
        window=PauseWindowRecord(
            start=t0, end=t0, mid=t0, hold_ms=0, drain_ms=0, unpause_ms=0, write_stall_ms=0
        ),
        components={"ledger": ComponentRecord(targets=[], stores=[capture])},
    )


def race_registrations(
    make: Callable[[Path], CatalogDriver],
    tmp: Path,
    site: str,
    points: list[tuple[str, list[Any]]],
    me: str,
    barrier: Any,
    results: Any,
) -> None:
    """For each (point id, artifacts): wait for every racer, then register it as ``me``."""
    from pausepoint.catalog import PendingPoint, layout
    from pausepoint.errors import CatalogError

    catalog = Catalog(make(tmp))
    for point_id, artifacts in points:
        staging = catalog.driver.staging_dir(layout.point_key(site, point_id))
        pending = PendingPoint(site, point_id, staging)
        barrier.wait()
        try:
            catalog.register(pending, restore_point(site, point_id, artifacts, me))
            results.put((point_id, me, "won"))
        except CatalogError as exc:  # a conflict, or found registered already
            results.put((point_id, me, f"lost: {exc}"))
