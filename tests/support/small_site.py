"""The small test site of the flow-level tests: ledger (2 admin nodes; PostgreSQL + MariaDB) and
auditor (1 admin node; PostgreSQL), on the real database servers and test admin nodes over gRPC.
The fixture that builds one per test is ``small_site`` in tests/integration/conftest.py."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness.bank_app import create_schema
from harness.gate_server import GateCluster, GateServer, start_gate_cluster
from harness.sites import SiteDbs
from pausepoint.catalog import open_catalog
from pausepoint.site import load_site


@dataclass
class SmallSite:
    path: Path
    dbs: SiteDbs
    ledger: GateCluster
    auditor: GateCluster

    @property
    def servers(self):
        return self.ledger.servers + self.auditor.servers

    def edit(self, fn) -> None:
        data = yaml.safe_load(self.path.read_text())
        fn(data)
        self.path.write_text(yaml.safe_dump(data, sort_keys=False))

    def points(self) -> list:
        site = load_site(self.path)
        return open_catalog(site.catalog).list_points(site.site)

    def staged(self) -> list[Path]:
        """Anything left in the catalog that is not a registered point."""
        site = load_site(self.path)
        root = site.catalog.path / site.site / "points"
        if not root.exists():
            return []
        return [p for p in root.iterdir() if not (p / "manifest.json").exists()]

    @contextmanager
    def node_down(self) -> Iterator[GateServer]:
        """The first ledger node stopped for the block (a backup then fails its preflight)."""
        dead = self.ledger.servers[0]
        dead.stop()
        try:
            yield dead
        finally:
            dead.start()

    def wait_until_paused(self, child: subprocess.Popen, log: Path) -> None:
        """Until every node reports paused by the backup ``child`` (whose output is in ``log``);
        fails the test, with the log's tail, when it ends or takes 180 s first."""
        t0 = time.monotonic()
        while not all(s.gate.check_paused() for s in self.servers):
            if child.poll() is not None:
                pytest.fail(f"the backup ended before pausing:\n{log.read_text()[-4000:]}")
            if time.monotonic() - t0 > 180:
                pytest.fail(f"the backup did not pause within 180 s:\n{log.read_text()[-4000:]}")
            time.sleep(0.02)

    def assert_nothing_paused_or_registered(self) -> None:
        assert [s.target for s in self.servers if s.gate.check_paused()] == []
        assert self.points() == []
        assert self.staged() == []


@contextmanager
def start_small_site(dbs: SiteDbs, directory: Path) -> Iterator[SmallSite]:
    stores = {
        "ledger": [dbs.database("ledger_c", "postgres"), dbs.database("ledger_s", "mysql")],
        "auditor": [dbs.database("auditor_c", "postgres")],
    }
    for db in dbs.all():
        create_schema(db.live)
    with start_gate_cluster(2) as ledger, start_gate_cluster(1) as auditor:
        path = dbs.write_site(
            directory, {"ledger": ledger.targets, "auditor": auditor.targets}, stores
        )
        yield SmallSite(path, dbs, ledger, auditor)


def pause_calls(site: SmallSite) -> int:
    return sum(s.calls.get("Pause", 0) for s in site.servers)
