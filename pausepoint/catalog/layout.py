"""Every name in the catalog, in one place (like Medusa's storage/node_backup.py).

Keys are '/'-separated and relative to the catalog's root, the same for every driver::

    <site>/points/<point id>/manifest.json                  the finish marker, written last
    <site>/points/<point id>/<component>/<store>/<artifact>  what one store captured
    <site>/points/<point id>/drills/<UTC time>.json         one drill (test restore) of the point
    <site>/points/<point id>/restores/<restore id>.json      how far a restore into one target got
    <site>/leases/<run id>.json                             which nodes a run paused, until when
    <site>/leases/quarantine/<run id>.json.<UTC time>       a damaged lease, moved aside for people

Point ids are ``20261128T003119Z-3f9a``: the UTC second the backup began (so ids sort by time)
and a random suffix (so two runs in the same second do not collide).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from pathlib import PurePosixPath

from pausepoint.errors import CatalogError, InternalError, RestorePointNotFoundError

MANIFEST = "manifest.json"
LEASE_SUFFIX = ".json"
QUARANTINE = "quarantine"  # never a run id's file: lease files end with LEASE_SUFFIX
DRILLS = "drills"  # never a component name: components are ledger and auditor
RESTORES = "restores"  # idem

_POINT_ID = re.compile(r"^(?P<time>\d{8}T\d{6}Z)-(?P<suffix>[0-9a-f]{4})$")
_ID_TIME = "%Y%m%dT%H%M%SZ"
_SITE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # as pausepoint.site.Site.site
_DRILL_TIME = "%Y%m%dT%H%M%S.%fZ"  # microseconds: two drills in one second do not collide
_DRILL_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z\.json$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def new_point_id(now: datetime | None = None) -> str:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now.strftime(_ID_TIME)}-{secrets.token_hex(2)}"


def is_point_id(text: str) -> bool:
    return _POINT_ID.match(text) is not None


def point_id_time(point_id: str) -> datetime:
    """When the backup with this id began (to the second)."""
    m = _POINT_ID.match(point_id)
    if not m:
        raise InternalError(f"{point_id!r} is not a restore point id")
    return datetime.strptime(m["time"], _ID_TIME).replace(tzinfo=UTC)


def check_site(site: str) -> str:
    if not _SITE.match(site):
        raise CatalogError(
            f"{site!r} is not a site name (lowercase letters, digits and '-'); "
            "use the 'site:' value of the site file"
        )
    return site


def is_segment(name: str) -> bool:
    return _SEGMENT.match(name) is not None and name.strip(".") != ""


def check_segment(kind: str, name: str) -> str:
    """A component, store or run id used as one path segment: never '..', '/' or empty."""
    if not is_segment(name):
        raise CatalogError(
            f"{kind} name {name!r} cannot be used in the catalog: use letters, digits, '.', '_' "
            "and '-' only"
        )
    return name


def safe_relative(path: str) -> bool:
    """True when an artifact path stays inside its store directory."""
    p = PurePosixPath(path)
    return bool(path) and not p.is_absolute() and ".." not in p.parts and "\\" not in path


def points_prefix(site: str) -> str:
    return f"{check_site(site)}/points"


def check_point_id(point_id: str) -> str:
    if not is_point_id(point_id):
        raise RestorePointNotFoundError(
            f"{point_id!r} is not a restore point id (they look like 20261128T003119Z-3f9a); "
            "list the points with `pausepoint points list`"
        )
    return point_id


def point_key(site: str, point_id: str) -> str:
    return f"{points_prefix(site)}/{check_point_id(point_id)}"


def manifest_key(site: str, point_id: str) -> str:
    return f"{point_key(site, point_id)}/{MANIFEST}"


def store_key(site: str, point_id: str, component: str, store: str) -> str:
    return (
        f"{point_key(site, point_id)}/{check_segment('component', component)}/"
        f"{check_segment('store', store)}"
    )


def leases_prefix(site: str) -> str:
    return f"{check_site(site)}/leases"


def lease_key(site: str, run_id: str) -> str:
    return f"{leases_prefix(site)}/{check_segment('run id', run_id)}{LEASE_SUFFIX}"


def lease_run_id(name: str) -> str | None:
    """The run id of a lease file's name (directly under the leases prefix), or None for
    anything else: a temp file of an atomic write (dot-prefixed), the quarantine, not ours."""
    run_id = name.removesuffix(LEASE_SUFFIX)
    if run_id == name or "/" in name or not is_segment(run_id):
        return None
    return run_id


def lease_quarantine_key(site: str, run_id: str, at: datetime) -> str:
    """Where a damaged lease file is moved: kept for people, never read as a lease again (the
    name does not end in LEASE_SUFFIX and lies below the leases prefix)."""
    stamp = at.astimezone(UTC).strftime(_DRILL_TIME)
    name = f"{check_segment('run id', run_id)}{LEASE_SUFFIX}.{stamp}"
    return f"{leases_prefix(site)}/{QUARANTINE}/{name}"


def drills_prefix(site: str, point_id: str) -> str:
    return f"{point_key(site, point_id)}/{DRILLS}"


def drill_key(site: str, point_id: str, started_at: datetime) -> str:
    name = started_at.astimezone(UTC).strftime(_DRILL_TIME)
    return f"{drills_prefix(site, point_id)}/{name}.json"


def restore_journal_key(site: str, point_id: str, restore_id: str) -> str:
    name = check_segment("restore id", restore_id)
    return f"{point_key(site, point_id)}/{RESTORES}/{name}.json"


def is_drill_name(name: str) -> bool:
    """A drill record's file name (not a temp file of an atomic write, not anything else)."""
    return _DRILL_NAME.match(name) is not None
