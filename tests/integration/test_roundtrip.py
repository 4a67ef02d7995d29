"""Backup under concurrent writes, restore into fresh databases: exactly the data as of the pause.

A site with a ledger and an auditor component, two admin nodes each (the test gate server),
every component's data spread over two databases so each transfer spans two commits. Runs the
real backup and restore flows (under a temporary Prefect API) against real PostgreSQL/MariaDB.
"""

from __future__ import annotations

import itertools

import pytest
import yaml

from flows.backup import backup
from flows.restore import restore
from harness.bank_app import BankApp, check_consistent, create_schema
from harness.gate_server import start_gate_cluster
from harness.sites import SiteDbs
from pausepoint.catalog import open_catalog
from pausepoint.requests import BackupRequest, RestoreRequest
from pausepoint.site import load_site
from tests.support.prefect_api import latest_artifact

pytestmark = [pytest.mark.integration]

_counter = itertools.count()

# (debit kind, credit kind) of the two databases each component writes to
LAYOUTS = {
    "postgres+mysql": ("postgres", "mysql"),
    "postgres-only": ("postgres", "postgres"),
    "mysql-only": ("mysql", "mysql"),
}


def artifact_markdown(key: str) -> str:
    return str(latest_artifact(key).data)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_backup_under_load_restores_exactly_the_paused_state(
    layout, pg_server, mysql_server, prefect_api, tmp_path, monkeypatch
):
    n = next(_counter)
    dbs = SiteDbs(pg_server, mysql_server, monkeypatch, prefix=f"rt{n}")
    kinds = LAYOUTS[layout]
    comps = {
        comp: [dbs.database(f"{comp}_{i}", kind) for i, kind in enumerate(kinds)]
        for comp in ("ledger", "auditor")
    }
    for db in itertools.chain.from_iterable(comps.values()):
        create_schema(db.live)

    with start_gate_cluster(2) as ledger_nodes, start_gate_cluster(2) as auditor_nodes:
        nodes = {"ledger": ledger_nodes, "auditor": auditor_nodes}
        site_file = dbs.write_site(tmp_path, {c: nodes[c].targets for c in comps}, comps)
        app = BankApp(
            components=[
                ([s.gate for s in nodes[c].servers], [(comps[c][0].live, comps[c][1].live)])
                for c in comps
            ],
            writers=4,
        ).start()
        try:
            app.wait_for_acks(40)
            point_id = backup(BackupRequest(site_file=str(site_file)))
            acked_at_backup = len(app.acks)
            app.wait_for_acks(acked_at_backup + 40)  # writes go on after the unpause
        finally:
            app.stop()
        for server in ledger_nodes.servers + auditor_nodes.servers:
            assert not server.gate.check_paused(), "a node was left paused"

    site = load_site(site_file)
    point = open_catalog(site.catalog).get_point(site.site, point_id)
    assert set(point.components) == {"ledger", "auditor"}
    assert point.window.paused and point.window.start < point.window.end

    target_file = tmp_path / "target.yaml"
    target_file.write_text(
        yaml.safe_dump({"stores": {db.store_name: db.restore_override for db in dbs.all()}})
    )
    result = restore(
        RestoreRequest(
            site_file=str(site_file),
            point_id=point_id,
            confirm=point_id,
            target_file=str(target_file),
        )
    )
    assert all(ok for _, ok, _ in result["checks"]), result["checks"]

    # What a person sees in the Prefect UI: the restore point and the restore report.
    point_md = artifact_markdown(f"{site.site}-restore-point")
    assert f"Restore point `{point_id}`" in point_md and "write stall" in point_md
    report_md = artifact_markdown(f"{site.site}-restore")
    assert f"Restore of `{point_id}`" in report_md and "FAIL" not in report_md

    restored_pairs = [(comps[c][0].restored, comps[c][1].restored) for c in comps]
    verdict = check_consistent(restored_pairs, app.acks, point.window.start, point.window.end)
    assert verdict["ok"], verdict
    assert verdict["acked_before_window"] >= 40
    # The live databases moved on after the window: the restore really went back in time.
    live_pairs = [(comps[c][0].live, comps[c][1].live) for c in comps]
    live = check_consistent(live_pairs, app.acks, point.window.start, point.window.end)
    assert any(
        live["transfers"][a.name] > verdict["transfers"][r.name]
        for (a, _), (r, _) in zip(live_pairs, restored_pairs, strict=True)
    )
