"""`make demo`'s site template and restore target say what the ScalarDB-backed nodes do
(harness/scalardb_node.py names the databases; harness/scalardb_site.py the restore), and the
point figures the demo and the e2e test print come from the pause's timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from demo.run import PREFIX, ROOT, SUFFIX
from harness.scalardb_node import COMPONENTS, Cluster, ComponentDbs, Login
from harness.scalardb_site import PointFigures, target_data
from harness.scalardb_workload import Entry
from pausepoint.catalog.manifest import PauseWindowRecord, TimelineEvent
from pausepoint.scalardb import coverage_problems
from pausepoint.site import load_site

LOGIN = Login("127.0.0.1", 1, "u", "p")


def _cluster() -> Cluster:
    dbs = {c: ComponentDbs.named(c, PREFIX, LOGIN, LOGIN) for c in COMPONENTS}
    return Cluster(dbs, {}, Path())


def _demo_site(tmp_path: Path):
    text = (
        (ROOT / "demo" / "site.yaml.tmpl")
        .read_text()
        .format(
            pg_port=5432,
            my_port=3306,
            ledger_node_1="127.0.0.1:50051",
            ledger_node_2="127.0.0.1:50052",
            auditor_node_1="127.0.0.1:50061",
            auditor_node_2="127.0.0.1:50062",
        )
    )
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_site(path)


def test_the_demo_site_declares_what_the_nodes_keep_where(tmp_path):
    site = _demo_site(tmp_path)
    cluster = _cluster()
    for name, comp in site.components().items():
        d = cluster.dbs[name]
        assert comp.scalardb is not None
        assert comp.scalardb.model_dump() == {
            "namespaces": d.scalardb_info()["namespaces"],
            "coordinator_namespace": d.coordinator,
            "metadata_namespace": d.mysql_metadata,
        }
        stores = {s.kind: s for s in comp.stores}
        assert stores["mysql"].databases == d.mysql_databases
        assert stores["postgres"].database == d.pg_database
        assert coverage_problems(name, comp) == []
    # the stores and declarations the e2e test generates are the demo's
    generated = cluster.site_dict("demo", {"mysql": "M", "postgres": "P"})
    for name in COMPONENTS:
        assert generated[name]["scalardb"] == site.components()[name].scalardb.model_dump()


def test_the_demo_target_is_the_restore_the_checker_reads_back():
    target = yaml.safe_load((ROOT / "demo" / "target.yaml").read_text())
    assert target == target_data(_cluster(), SUFFIX)
    restored = _cluster().dbs["ledger"].copy_named(SUFFIX)
    assert target["stores"]["ledger-pg"] == {"database": restored.pg_database}


def _at(base: datetime, ms: float) -> datetime:
    return base + timedelta(milliseconds=ms)


def test_point_figures_take_the_stall_span_from_the_timeline():
    t0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    window = PauseWindowRecord(
        start=_at(t0, 100),
        end=_at(t0, 300),
        mid=_at(t0, 200),
        hold_ms=150,
        drain_ms=90,
        unpause_ms=20,
        write_stall_ms=330,
        timeline=[
            TimelineEvent(at=_at(t0, ms), component=comp, node=comp, event=event)
            for ms, comp, event in [
                (10, "ledger", "pause_sent"),
                (5, "auditor", "pause_sent"),
                (320, "ledger", "unpause_confirmed"),
                (335, "auditor", "unpause_confirmed"),
            ]
        ],
    )

    class Point:  # the two fields PointFigures reads
        id = "p1"

    Point.window = window
    fig = PointFigures.of(Point)  # type: ignore[arg-type]
    base = t0.timestamp()
    assert fig.window == (base + 0.1, base + 0.3)
    assert fig.stall_span == (base + 0.005, base + 0.335)
    assert (fig.write_stall_ms, fig.window_ms, fig.drain_ms) == (330, 200, 90)
    log = [
        Entry("before", "transfer", "my-0", "pg-0", 1, base - 0.1, acked=base + 0.0),
        Entry("held", "transfer", "my-0", "pg-0", 1, base + 0.2, acked=base + 0.34),
        Entry("held2", "transfer", "my-0", "pg-0", 1, base + 0.01, acked=base + 0.33),
        Entry("after", "transfer", "my-0", "pg-0", 1, base + 0.4, acked=base + 0.41),
    ]
    clients = fig.clients(log)
    assert clients.requests == 2
    assert round(clients.max_ms) == 320
