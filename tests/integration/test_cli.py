"""The `pausepoint` command: backup, points list/show, restore, unpause, and its exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from harness.bank_app import create_schema, read_state
from harness.gate_server import start_gate_cluster
from harness.sites import SiteDbs
from pausepoint.cli import run

pytestmark = [pytest.mark.integration]


def test_cli_backup_list_show_restore_round_trip(
    pg_server, mysql_server, prefect_api, tmp_path, monkeypatch, capsys
):
    dbs = SiteDbs(pg_server, mysql_server, monkeypatch, prefix="cli")
    stores = {"ledger": [dbs.database("ledger_c", "postgres"), dbs.database("ledger_s", "mysql")]}
    for db in dbs.all():
        create_schema(db.live)
    with start_gate_cluster(2) as nodes:
        site = dbs.write_site(tmp_path, {"ledger": nodes.targets}, stores)
        assert run(["backup", "--site", str(site)]) == 0
        out = capsys.readouterr().out
        point_id = out.strip().splitlines()[-1].removeprefix("restore point: ")
        assert "**write stall**" in out and point_id in out

        assert run(["points", "list", "--site", str(site)]) == 0
        assert point_id in capsys.readouterr().out
        assert run(["points", "show", point_id, "--site", str(site), "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["id"] == point_id and set(shown["components"]) == {"ledger"}

        target = tmp_path / "target.yaml"
        target.write_text(
            yaml.safe_dump({"stores": {db.store_name: db.restore_override for db in dbs.all()}})
        )
        assert (
            run(["restore", "--site", str(site), "--point", point_id, "--target", str(target)]) == 0
        )
        out = capsys.readouterr().out
        assert "FAIL" not in out and f"restored point {point_id}" in out
        for db in dbs.all():
            assert read_state(db.restored) == read_state(db.live)

        # emergency unpause: only the node that reports paused is unpaused
        nodes.servers[1].gate.pause(wait_outstanding=True, max_wait_ms=1000)
        unpauses_before = nodes.servers[0].calls.get("Unpause", 0)
        assert run(["unpause", "--site", str(site)]) == 0
        out = capsys.readouterr().out
        assert f"ledger/{nodes.targets[1]}: PAUSED" in out
        assert not nodes.servers[1].gate.check_paused()
        assert nodes.servers[0].calls.get("Unpause", 0) == unpauses_before


def test_cli_malformed_site_exits_2_with_field_named_and_no_prefect(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("site: demo\ncatalog: {path: c}\nledger: {targets: {static: [x]}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    proc = subprocess.run(
        [sys.executable, "-m", "pausepoint.cli", "backup", "--site", str(site)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "ledger.targets.static: 'x' is not host:port" in proc.stderr
    assert "ledger.stores: is required" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_unknown_point_exits_8_and_lists_points(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(
        yaml.safe_dump(
            {
                "site": "demo",
                "catalog": {"path": "c"},
                "ledger": {
                    "targets": {"static": ["127.0.0.1:1"]},
                    "stores": [{"kind": "postgres", "name": "pg", "user": "u", "database": "d"}],
                },
            }
        )
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pausepoint.cli",
            "points",
            "show",
            "20200101T000000Z-beef",
            "--site",
            str(site),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 8, proc.stderr
    assert "20200101T000000Z-beef" in proc.stderr
