"""Reading back what a flow run left in the Prefect API: artifacts, events, and (over REST) a
flow run's final state and logs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, LogFilter
from prefect.settings import PREFECT_API_URL

from pausepoint.site import load_site

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}  # flow run state types that end it


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


def create_flow_run_over_rest(api: httpx.Client, deployment: dict, parameters: dict) -> str:
    """POST /api/deployments/{id}/create_flow_run: returns the new flow run's id at once."""
    r = api.post(
        f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def wait_final(api: httpx.Client, flow_run_id: str, timeout_s: float = 300) -> dict:
    """GET /api/flow_runs/{id} until its state is final; the flow run as the API returns it."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = api.get(f"/flow_runs/{flow_run_id}").json()
        if run["state"] and run["state"]["type"] in FINAL:
            return run
        assert time.monotonic() < deadline, f"flow run {flow_run_id} still {run['state']}"
        time.sleep(0.5)


def run_logs(api: httpx.Client, flow_run_id: str) -> str:
    """A flow run's log messages, oldest first."""
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC"}
    return "\n".join(x["message"] for x in api.post("/logs/filter", json=body).json())


def everything_stored(site_file: Path, since: datetime, events: list[str]) -> dict[str, str]:
    """The text of every place a run stores what it was given, by place: the site's catalog
    files, the flow runs (parameters, state), the task runs, the logs, the artifacts and the
    ``events`` emitted since ``since`` (for a test that no secret was written anywhere)."""
    site = load_site(site_file)
    stored = {
        str(p): p.read_bytes().decode("latin-1")
        for p in site.catalog.path.rglob("*")
        if p.is_file()
    }
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
        stored["flow runs"] = "\n".join(
            f"{r.name} {json.dumps(r.parameters, default=str)} "
            f"{r.state.message if r.state else ''} {r.state.data if r.state else ''}"
            for r in runs
        )
        tasks = client.read_task_runs(limit=200)
        stored["task runs"] = "\n".join(
            f"{t.name} {t.state.message if t.state else ''} {t.task_inputs}" for t in tasks
        )
        stored["logs"] = "\n".join(log.message for log in client.read_logs(LogFilter(), limit=200))
        stored["artifacts"] = "\n".join(
            f"{a.key} {a.description} {a.data}" for a in client.read_artifacts(limit=200)
        )
    stored["events"] = json.dumps([read_events(n, since) for n in events])
    return stored
