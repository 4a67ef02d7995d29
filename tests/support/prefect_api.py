"""Reading back what a flow run left in the Prefect API: artifacts and events."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.settings import PREFECT_API_URL


def latest_artifact(key: str):
    """The newest artifact with this key (every artifact type)."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert found, f"no artifact with key {key!r}"
    return max(found, key=lambda a: a.created)


def read_events(name: str, since: datetime, limit: int = 50) -> list[dict]:
    body = {
        "filter": {
            "event": {"name": [name]},
            "occurred": {"since": since.isoformat(), "until": datetime.now(UTC).isoformat()},
        },
        "limit": limit,
    }
    r = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json=body, timeout=10)
    r.raise_for_status()
    return r.json()["events"]


def wait_for(fetch: Callable[[], list], timeout_s: float = 30) -> list:
    """Poll until ``fetch`` returns something: events reach the API through Prefect's events
    worker a moment after they are emitted."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = fetch()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)
