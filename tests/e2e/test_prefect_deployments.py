"""The deployments of prefect.yaml on a real Prefect server, run by a real process worker.

What an operator does, end to end: `prefect deploy --all --no-prompt`, a worker on the pool,
then backup and restore triggered through the flow-run API both ways docs/flow-run-api.md shows
(`run_deployment` from Python, and a plain HTTP POST to /api/deployments/{id}/create_flow_run),
the restore point id read back from the API, the server refusing a bad request (HTTP 409), a
backup killed with SIGKILL under the worker and cleaned up by the watchdog deployment, and the
backup's flow run page rendered in headless Chromium (docs/img/backup-flow-run.png).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from harness.prefect_server import REPO, Chromium, PrefectServer, PrefectWorker
from pausepoint.catalog import open_catalog
from pausepoint.site import load_site
from tests.support.prefect_api import (
    FINAL,
    create_flow_run_over_rest,
    run_logs,
    wait_final,
    wait_for,
)
from tests.support.small_site import SmallSite

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("prefect_worker", "prefect_logs_on_failure"),
]

POINT_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{4}")
WATCHDOG_PERIOD = timedelta(minutes=1)  # the watchdog deployment's schedule (prefect.yaml)
FAR_PAST = datetime(2020, 1, 1, tzinfo=UTC)
SCREENSHOT = REPO / "docs" / "img" / "backup-flow-run.png"


# --- the two ways to start a run (docs/flow-run-api.md) -------------------------------------


def trigger_with_run_deployment(server: PrefectServer, name: str, parameters: dict) -> str:
    """`run_deployment` from Python code: returns the flow run id once the run is final."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.url}):
        flow_run = run_deployment(
            name=f"{name}/{name}", parameters=parameters, timeout=300, poll_interval=1
        )
    return str(flow_run.id)


def assert_completed(api: httpx.Client, flow_run_id: str) -> dict:
    run = wait_final(api, flow_run_id)
    state = run["state"]
    assert state["type"] == "COMPLETED", (
        f"{run['name']}: {state['type']}: {state['message']}\n{run_logs(api, flow_run_id)[-6000:]}"
    )
    return run


# --- reading a run's outcome back through the API ---------------------------------------------


def artifacts_of(api: httpx.Client, flow_run_id: str) -> dict[str, dict]:
    """The run's artifacts by key (POST /api/artifacts/filter)."""
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
    r = api.post("/artifacts/filter", json=body)
    r.raise_for_status()
    return {a["key"]: a for a in r.json() if a["key"]}


def point_id_from_event(api: httpx.Client, flow_run_id: str) -> str:
    """The restore point a backup run registered: `payload.point_id` of its
    pausepoint.backup.completed event (POST /api/events/filter, related to the flow run).

    The flow returns the id, but flows do not persist results: the API keeps the run's state,
    not the value (the Completed state's `data` is null), so the event and the artifact below
    are how a caller reads it back."""
    [event] = wait_for(
        lambda: events(
            api, "pausepoint.backup.completed", FAR_PAST, f"prefect.flow-run.{flow_run_id}"
        )
    )
    return event["payload"]["point_id"]


def restore_point_id(api: httpx.Client, flow_run_id: str, site: str) -> str:
    """The same id from the run's `<site>-restore-point` markdown artifact (its description is
    `restore point <id>`), for a person or script that reads artifacts rather than events."""
    artifact = artifacts_of(api, flow_run_id)[f"{site}-restore-point"]
    assert artifact["type"] == "markdown"
    m = re.search(rf"Restore point `({POINT_ID.pattern})`", artifact["data"])
    assert m, artifact["data"][:500]
    assert artifact["description"] == f"restore point {m[1]}"
    return m[1]


def events(api: httpx.Client, name: str, since: datetime, resource_id: str) -> list[dict]:
    body = {
        "filter": {
            "event": {"name": [name]},
            "occurred": {"since": since.isoformat(), "until": datetime.now(UTC).isoformat()},
            "related": {"resources_in_roles": [[resource_id, "flow-run"]]},
        },
        "limit": 10,
    }
    r = api.post("/events/filter", json=body)
    r.raise_for_status()
    return r.json()["events"]


def site_name(site: SmallSite) -> str:
    return load_site(site.path).site


def write_restore_target(site: SmallSite, directory: Path) -> Path:
    """Every store of the site into new databases beside the live ones (nodes keep running)."""
    path = directory / "target.yaml"
    path.write_text(
        yaml.safe_dump({"stores": {db.store_name: db.restore_override for db in site.dbs.all()}})
    )
    return path


# --- the tests ----------------------------------------------------------------------------------


def test_prefect_yaml_deploys_every_flow(deployments):
    """`prefect deploy --all --no-prompt` made the deployments on the pool, each taking ONE
    `request` parameter and enforcing its schema; the pull step is left to the worker."""
    assert {"backup", "restore", "watchdog"} <= set(deployments)
    for name in ("backup", "restore", "watchdog"):
        d = deployments[name]
        assert d["work_pool_name"] == "pausepoint"
        assert set(d["parameter_openapi_schema"]["properties"]) == {"request"}
        assert set(d["parameters"]) <= {"request"}, d["parameters"]
        assert d["enforce_parameter_schema"] is True
        [step] = d["pull_steps"]
        assert step["prefect.deployments.steps.set_working_directory"]["directory"] == (
            "{{ $PAUSEPOINT_HOME }}"
        )


def test_invalid_requests_are_refused_over_rest(api, deployments, e2e_site):
    """The server checks a run's parameters against the deployment's schema before anything
    starts: HTTP 409 with the schema's message, and no flow run is created."""
    site_file = str(e2e_site.path)
    before = api.post("/flow_runs/count", json={}).json()

    bad_id = {"site_file": site_file, "point_id": "latest", "confirm": "latest"}
    r = api.post(
        f"/deployments/{deployments['restore']['id']}/create_flow_run",
        json={"parameters": {"request": bad_id}},
    )
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "point_id" in detail and "'latest' does not match" in detail, detail

    missing = {"site_file": site_file, "point_id": "20261128T003119Z-3f9a"}  # no confirm
    r = api.post(
        f"/deployments/{deployments['restore']['id']}/create_flow_run",
        json={"parameters": {"request": missing}},
    )
    assert r.status_code == 409 and "'confirm' is a required property" in r.json()["detail"]

    unknown = {"site_file": site_file, "label": {"reason": "typo"}}  # `labels` misspelt
    r = api.post(
        f"/deployments/{deployments['backup']['id']}/create_flow_run",
        json={"parameters": {"request": unknown}},
    )
    assert r.status_code == 409 and "'label' was unexpected" in r.json()["detail"], r.text

    bad_key = {"site_file": site_file, "labels": {"Bad Key": "x"}}  # label keys are lowercase
    r = api.post(
        f"/deployments/{deployments['backup']['id']}/create_flow_run",
        json={"parameters": {"request": bad_key}},
    )
    assert r.status_code == 409 and "'Bad Key' does not match" in r.json()["detail"], r.text

    assert api.post("/flow_runs/count", json={}).json() == before


@pytest.mark.parametrize("how", ["run_deployment", "rest"])
def test_backup_then_restore_through_the_worker(
    how, prefect_server, api, deployments, e2e_site, tmp_path
):
    def trigger(name: str, request: dict) -> str:
        if how == "run_deployment":
            return trigger_with_run_deployment(prefect_server, name, {"request": request})
        return create_flow_run_over_rest(api, deployments[name], {"request": request})

    site = site_name(e2e_site)
    started = datetime.now(UTC)
    backup_request = {"site_file": str(e2e_site.path), "labels": {"trigger": how.replace("_", "-")}}
    backup_id = trigger("backup", backup_request)
    backup_run = assert_completed(api, backup_id)
    assert backup_run["deployment_id"] == deployments["backup"]["id"]
    assert backup_run["parameters"] == {"request": backup_request}

    # The flow's return value is not kept by the API:
    assert backup_run["state"]["data"] is None
    point_id = point_id_from_event(api, backup_id)
    assert restore_point_id(api, backup_id, site) == point_id
    [point] = e2e_site.points()
    assert point.id == point_id and point.flow_run_id == backup_id
    assert point.labels == backup_request["labels"]
    assert [s.target for s in e2e_site.servers if s.gate.check_paused()] == []
    assert (
        f"Restore point `{point_id}`"
        in artifacts_of(api, backup_id)[f"{site}-restore-point"]["data"]
    )
    _check_backup_extras(api, backup_id, e2e_site, point_id, started)

    target = write_restore_target(e2e_site, tmp_path)
    restore_request = {
        "site_file": str(e2e_site.path),
        "point_id": point_id,
        "confirm": point_id,
        "target_file": str(target),
    }
    restore_id = trigger("restore", restore_request)
    assert_completed(api, restore_id)
    report = artifacts_of(api, restore_id)[f"{site}-restore"]
    assert report["type"] == "markdown"
    assert f"Restore of `{point_id}`" in report["data"] and "FAIL" not in report["data"]
    _check_restore_extras(api, restore_id, site, point_id, started)
    # The restored databases hold what the live ones held at the point (nothing wrote since).
    for db in e2e_site.dbs.all():
        assert _table_counts(db.restored) == _table_counts(db.live), db.store_name


def _table_counts(db) -> dict[str, int]:
    with db.connect() as conn:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM account")
        accounts = cur.fetchone()[0]
        cur.execute("SELECT COUNT(*) FROM transfer")
        return {"accounts": accounts, "transfers": cur.fetchone()[0]}


def _check_backup_extras(
    api, flow_run_id: str, e2e_site: SmallSite, point_id: str, since: datetime
) -> None:
    """What else a backup run publishes, read through the API: the per-store table, the copy's
    progress (done), the catalog link, and the event pausepoint.backup.completed."""
    site = site_name(e2e_site)
    arts = artifacts_of(api, flow_run_id)
    table = arts[f"{site}-restore-point-stores"]
    assert table["type"] == "table"
    assert table["description"].startswith(f"restore point {point_id}: window ")
    for db in e2e_site.dbs.all():
        assert db.store_name in table["data"], (db.store_name, table["data"][:500])
    progress = arts[f"{site}-capture-progress"]
    assert progress["type"] == "progress" and progress["description"].endswith(point_id)
    # Complete, also when the stores' copy threads finish together (updates only go upwards).
    assert float(progress["data"]) == 100.0
    link = arts[f"{site}-catalog-entry"]  # a link artifact; the API stores it as markdown
    assert point_id in link["data"] and "manifest" in link["data"], link["data"]
    [event] = wait_for(
        lambda: events(api, "pausepoint.backup.completed", since, f"prefect.flow-run.{flow_run_id}")
    )
    assert event["resource"]["prefect.resource.id"] == f"pausepoint.site.{site}"
    assert event["payload"]["point_id"] == point_id
    related = {r["prefect.resource.id"] for r in event["related"]}
    assert f"pausepoint.restore-point.{site}.{point_id}" in related


def _check_restore_extras(api, flow_run_id: str, site: str, point_id: str, since) -> None:
    """The restore's event, pausepoint.restore.completed, with every check passed."""
    [event] = wait_for(
        lambda: events(
            api, "pausepoint.restore.completed", since, f"prefect.flow-run.{flow_run_id}"
        )
    )
    assert event["payload"]["point_id"] == point_id
    assert event["payload"]["checks"] and all(c["passed"] for c in event["payload"]["checks"])
    assert event["resource"]["prefect.resource.id"] == f"pausepoint.site.{site}"


def test_refused_backup_fails_its_run_and_says_why(api, deployments, e2e_site):
    """A node already paused by someone else: the run fails in preflight (nothing paused by us,
    nothing registered) and pausepoint.backup.failed carries the reason."""
    site = site_name(e2e_site)
    busy = e2e_site.ledger.servers[0]
    busy.gate.pause()
    started = datetime.now(UTC)
    request = {"request": {"site_file": str(e2e_site.path)}}
    flow_run_id = create_flow_run_over_rest(api, deployments["backup"], request)
    run = wait_final(api, flow_run_id)
    assert run["state"]["type"] == "FAILED", run["state"]
    assert "already report PAUSED" in run["state"]["message"], run["state"]["message"]
    [event] = wait_for(
        lambda: events(api, "pausepoint.backup.failed", started, f"prefect.flow-run.{flow_run_id}")
    )
    assert event["resource"]["prefect.resource.id"] == f"pausepoint.site.{site}"
    assert "already report PAUSED" in event["payload"]["error"]
    assert [s.target for s in e2e_site.servers if s.gate.check_paused()] == [busy.target]
    busy.gate.unpause()
    e2e_site.assert_nothing_paused_or_registered()


def test_backup_flow_run_page_shows_the_task_graph_and_the_restore_point(
    prefect_server, api, e2e_site, chromium, tmp_path
):
    """Headless Chromium opens the backup's flow run page in the server's UI: the task graph is
    drawn and the Artifacts tab lists the restore point. The screenshot is docs/img's."""
    site = site_name(e2e_site)
    request = {"site_file": str(e2e_site.path), "labels": {"reason": "ui-check"}}
    flow_run_id = trigger_with_run_deployment(prefect_server, "backup", {"request": request})
    assert_completed(api, flow_run_id)
    point_id = restore_point_id(api, flow_run_id, site)

    shot = tmp_path / "backup-flow-run.png"
    with Chromium(tmp_path / "chromium", width=1440, height=1200) as page:
        page.open(f"{prefect_server.ui_url}/runs/flow-run/{flow_run_id}")
        # The tabs appear once the run is loaded; Artifacts is shown for a finished run.
        page.wait_for(_tab("Artifacts") + " !== undefined", "the run's tabs")
        page.evaluate(_tab("Artifacts") + ".click()")
        card = page.wait_for(
            f"""(() => {{
                const cards = [...document.querySelectorAll('.artifact-card')];
                const c = cards.find(c => c.querySelector('.artifact-card__title')
                    ?.textContent.trim() === {site + "-restore-point"!r});
                const text = c ? c.textContent.replace(/\\s+/g, ' ').trim() : '';
                if (!text.includes({"restore point " + point_id!r})) return null;
                return {{text, bottom: c.getBoundingClientRect().bottom,
                         height: window.innerHeight}};
            }})()""",
            "the restore point artifact card",
        )
        assert f"restore point {point_id}" in card["text"] and "markdown" in card["text"].lower()
        assert card["bottom"] <= card["height"], "the restore point card is below the screenshot"
        graph = page.wait_for(
            """(() => {
                const c = document.querySelector('.flow-run-graph .run-graph__stage canvas');
                if (!c) return null;
                const r = c.getBoundingClientRect();
                return r.width > 300 && r.height > 200
                    ? {x: r.x, y: r.y, width: r.width, height: r.height} : null;
            })()""",
            "the task graph's canvas",
        )
        # The graph draws each Completed task run as a green bar: wait until they are drawn.
        green = 0
        deadline = time.monotonic() + 30
        while green < 2000 and time.monotonic() < deadline:
            time.sleep(0.5)
            green = _green_pixels(page, page.screenshot(tmp_path / "graph.png", clip=graph))
        assert green >= 2000, f"the task graph drew {green} green pixels"
        header = page.evaluate("document.querySelector('.page-heading, header')?.textContent")
        assert "Completed" in (header or page.dom())
        page.screenshot(shot)
    if os.environ.get("PAUSEPOINT_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def _tab(label: str) -> str:
    return f"[...document.querySelectorAll('.p-tab')].find(t => t.textContent.trim() === {label!r})"


def _green_pixels(page: Chromium, png: bytes) -> int:
    """Pixels of a PNG that are clearly green, counted by the browser itself (no image library)."""
    import base64

    data = base64.b64encode(png).decode()
    return page.evaluate(
        f"""(async () => {{
            const img = new Image();
            img.src = 'data:image/png;base64,{data}';
            await img.decode();
            const c = document.createElement('canvas');
            c.width = img.width; c.height = img.height;
            const ctx = c.getContext('2d');
            ctx.drawImage(img, 0, 0);
            const px = ctx.getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < px.length; i += 4) {{
                const [r, g, b] = [px[i], px[i + 1], px[i + 2]];
                if (g > 110 && g > r + 50 && g > b + 30) n++;
            }}
            return n;
        }})()"""
    )


# --- SIGKILL under the worker ----------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def test_backup_killed_under_the_worker_is_unpaused_by_the_watchdog(
    prefect_server, prefect_worker: PrefectWorker, api, deployments, e2e_site
):
    """SIGKILL the flow-run process the worker spawned, inside the backup's hold: the worker
    reports the run Crashed, the watchdog deployment unpauses every node once the lease's
    deadline passed (within one watchdog period of it), and no restore point is registered."""
    e2e_site.edit(
        lambda d: d["pause"].update(
            min_hold_ms=15_000,
            drain_timeout_ms=2000,
            open_capture_timeout_ms=5000,
            lease_margin_ms=1000,
        )
    )
    site = load_site(e2e_site.path)
    catalog = open_catalog(site.catalog)
    started = datetime.now(UTC)
    request = {"request": {"site_file": str(e2e_site.path)}}
    flow_run_id = create_flow_run_over_rest(api, deployments["backup"], request)

    # Wait for the pause, then find the run's process: the API names it (infrastructure_pid), and
    # it must be one the worker this test started spawned.
    deadline = time.monotonic() + 120
    while not all(s.gate.check_paused() for s in e2e_site.servers):
        run = api.get(f"/flow_runs/{flow_run_id}").json()
        assert run["state"]["type"] not in FINAL, f"ended before pausing: {run['state']}"
        assert time.monotonic() < deadline, "the backup did not pause within 120 s"
        time.sleep(0.05)
    run = api.get(f"/flow_runs/{flow_run_id}").json()
    assert run["state"]["type"] == "RUNNING"
    pid = int(str(run["infrastructure_pid"]).rpartition(":")[2])
    assert pid in _descendants(prefect_worker.pid), "not a process of our worker"
    doomed = [pid, *_descendants(pid)]  # the flow run and the dump tools it runs
    for p in doomed:
        os.kill(p, signal.SIGKILL)

    [lease] = catalog.list_leases(site.site, state="active")
    assert lease.run_id == flow_run_id
    assert all(s.gate.check_paused() for s in e2e_site.servers), "killed inside the window"
    # Under a worker the run does not stay RUNNING: the worker sees its process die.
    crashed = wait_final(api, flow_run_id, timeout_s=60)
    assert crashed["state"]["type"] == "CRASHED", crashed["state"]

    # The watchdog deployment's next run after the deadline (the schedule runs it every minute;
    # the test server has no scheduler, so the test starts that run).
    left = (lease.deadline - datetime.now(UTC)).total_seconds()
    if left > 0:
        time.sleep(left + 0.2)
    watchdog_id = trigger_with_run_deployment(
        prefect_server, "watchdog", {"request": {"site_file": str(e2e_site.path)}}
    )
    assert_completed(api, watchdog_id)
    unpaused_at = datetime.now(UTC)

    assert [s.target for s in e2e_site.servers if s.gate.check_paused()] == []
    assert unpaused_at <= lease.deadline + WATCHDOG_PERIOD, unpaused_at - lease.deadline
    stored = catalog.get_lease(site.site, lease.run_id)
    assert stored.state == "broken" and "the watchdog unpaused" in (stored.broken_reason or "")
    assert e2e_site.points() == []
    # Announced by the watchdog's run, naming the killed run.
    [event] = wait_for(
        lambda: events(api, "pausepoint.pause.orphaned", started, f"prefect.flow-run.{watchdog_id}")
    )
    assert f"prefect.flow-run.{flow_run_id}" in {r["prefect.resource.id"] for r in event["related"]}
    assert event["resource"]["prefect.resource.id"] == f"pausepoint.site.{site.site}"
