"""The ScalarDB-backed nodes (harness/scalardb_node.py) as a pausepoint site: the site file with
``scalardb:`` for both components, restore targets into fresh databases, backups through the
backup flow while the workload runs, each point restored through the restore flow and checked.
Shared by the end-to-end test (tests/integration/test_scalardb_e2e.py), ``make demo`` and
bench/scalardb_stall.py, so the three measure and check the same way.

The restore target puts every store into FRESH databases on the same servers: PostgreSQL's
database under another name (its schemas, hence ScalarDB's namespaces, keep their names) and
MariaDB's namespace and metadata databases mapped to new names, which makes the restore rewrite
ScalarDB's restored metadata (docs/stores.md "Restoring under other names"). The checker then
reads the restored databases through ScalarDB under those names.

Flows are imported when called (the module itself imports no Prefect).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from harness import scalardb_node as sn
from harness.scalardb_checker import Verdict
from harness.scalardb_checker import check as check_copy
from harness.scalardb_workload import Entry, Stall, stall

if TYPE_CHECKING:
    from pausepoint.catalog.manifest import RestorePoint
    from pausepoint.scalardb_restore import ScalarDbCheck

PASSWORD_ENVS = {"mysql": "PP_SDB_MY_PASSWORD", "postgres": "PP_SDB_PG_PASSWORD"}
SCALARDB_CHECK = "ScalarDB transactions "  # the restore flow's check name, then the component


def write_yaml(path: Path, data: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path


def site_data(cluster: sn.Cluster, name: str, catalog: Path | str, **extra: Any) -> dict:
    """The site file (as a dict): both components ScalarDB-managed, catalog a local directory."""
    return cluster.site_dict(
        name, PASSWORD_ENVS, catalog={"driver": "local", "path": str(catalog)}, **extra
    )


def copies(cluster: sn.Cluster, suffix: str) -> dict[str, sn.ComponentDbs]:
    """Both components under the names a restore (or a copy) with ``suffix`` gives them."""
    return {c: d.copy_named(suffix) for c, d in cluster.dbs.items()}


def target_data(cluster: sn.Cluster, suffix: str) -> dict:
    """A restore target (as a dict) into fresh databases named with ``suffix``."""
    stores: dict[str, dict] = {}
    for comp, d in cluster.dbs.items():
        c = d.copy_named(suffix)
        stores[f"{comp}-pg"] = {"database": c.pg_database}
        stores[f"{comp}-my"] = {
            "database_map": {
                d.mysql_namespace: c.mysql_namespace,
                d.mysql_metadata: c.mysql_metadata,
            }
        }
    return {"stores": stores}


def drop_copies(cluster: sn.Cluster, suffix: str) -> None:
    """Drop what a restore or copy with ``suffix`` created (keeps the servers small)."""
    from harness.kinds import MysqlKind, PostgresKind

    any_dbs = next(iter(cluster.dbs.values()))
    my, pg = MysqlKind(any_dbs.mysql), PostgresKind(any_dbs.postgres)
    for c in copies(cluster, suffix).values():
        for db in c.mysql_databases:
            my.drop_db(db)
        pg.drop_db(c.pg_database)


# --- one restore point --------------------------------------------------------------------------


def _unix(t: datetime) -> float:
    return t.timestamp()


@dataclass(frozen=True)
class PointFigures:
    """What pausepoint recorded of one backup's pause, in Unix seconds and ms."""

    point_id: str
    window: tuple[float, float]  # last Pause confirmed -> first Unpause sent (the checker's)
    stall_span: tuple[float, float]  # first Pause sent -> last Unpause confirmed
    write_stall_ms: float  # pausepoint's own figure (the span's length)
    window_ms: float
    drain_ms: float

    @classmethod
    def of(cls, point: RestorePoint) -> PointFigures:
        w = point.window
        sent = [e.at for e in w.timeline if e.event == "pause_sent"]
        done = [e.at for e in w.timeline if e.event == "unpause_confirmed"]
        first = _unix(min(sent)) if sent else _unix(w.start) - w.drain_ms / 1000
        last = _unix(max(done)) if done else _unix(w.end) + w.unpause_ms / 1000
        return cls(
            point.id,
            (_unix(w.start), _unix(w.end)),
            (first, last),
            w.write_stall_ms,
            w.length_ms,
            w.drain_ms,
        )

    def clients(self, log: Iterable[Entry]) -> Stall:
        """The write stall the clients saw: requests sent from the first Pause to the last
        Unpause confirmed (they arrived during the pause)."""
        return stall(log, *self.stall_span)


def load_point(site_file: Path, point_id: str) -> RestorePoint:
    from pausepoint.catalog import open_catalog
    from pausepoint.site import load_site

    site = load_site(site_file)
    return open_catalog(site.catalog).get_point(site.site, point_id)


def backup(site_file: Path) -> PointFigures:
    """One backup through the backup flow; the point's figures."""
    from flows.backup import backup as backup_flow
    from pausepoint.requests import BackupRequest

    point_id = backup_flow(BackupRequest(site_file=str(site_file)))
    return PointFigures.of(load_point(site_file, point_id))


@dataclass
class Checked:
    """A point restored through the restore flow and read back through ScalarDB."""

    point_id: str
    checks: list[tuple[str, bool, str]]  # the restore flow's checks
    scalardb: dict[str, tuple[bool, str]]  # component -> its ScalarDB transaction check
    verdict: Verdict
    dumps: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return (
            self.verdict.ok
            and all(ok for _, ok, _ in self.checks)
            and bool(self.scalardb)
            and all(ok for ok, _ in self.scalardb.values())
        )


def restore_and_check(
    cluster: sn.Cluster,
    site_file: Path,
    figures: PointFigures,
    log: Iterable[Entry],
    suffix: str,
    workdir: Path,
    target_file: Path | None = None,
) -> Checked:
    """Restore the point into fresh databases (``suffix``) through the restore flow, then read
    both components through ScalarDB and run the checker with the point's window. The restore
    raises (ScalarDbTransactionError, FingerprintMismatchError) when its own checks fail.
    ``target_file``: a restore target file saying what target_data(cluster, suffix) says (the
    demo's); else one is written."""
    from flows.restore import restore
    from pausepoint.requests import RestoreRequest

    target = target_file or write_yaml(
        workdir / f"target-{suffix}.yaml", target_data(cluster, suffix)
    )
    result = restore(
        RestoreRequest(
            site_file=str(site_file),
            point_id=figures.point_id,
            confirm=figures.point_id,
            target_file=str(target),
        )
    )
    checks = [(str(n), bool(ok), str(detail)) for n, ok, detail in result["checks"]]
    scalardb = {
        n.removeprefix(SCALARDB_CHECK): (ok, detail)
        for n, ok, detail in checks
        if n.startswith(SCALARDB_CHECK)
    }
    dumps = {c: sn.check(d, workdir) for c, d in copies(cluster, suffix).items()}
    verdict = check_copy(dumps, log, figures.window)
    return Checked(figures.point_id, checks, scalardb, verdict, dumps)


# --- copies made without pausepoint (the negative control) --------------------------------------


def scalardb_check_copies(site_file: Path, target: Mapping[str, Any]) -> list[ScalarDbCheck]:
    """pausepoint's post-restore ScalarDB transaction check (the restore flow's), run on
    databases that something else copied where ``target`` says, e.g. the negative control's
    copies taken at two moments. Run it before anything reads them through ScalarDB: lazy
    recovery writes to the coordinator table."""
    from pausepoint.restore import RestoreSlot, RestoreTarget, place_stores
    from pausepoint.scalardb_restore import check_transactions
    from pausepoint.secrets import SecretResolver
    from pausepoint.site import load_site
    from pausepoint.stores import open_store

    site = load_site(site_file)
    places = place_stores(site, RestoreTarget.model_validate(target), what="the copies")
    resolver = SecretResolver()
    slots = [
        RestoreSlot(
            component=p.component,
            capture=None,  # type: ignore[arg-type]  # the check reads only the databases
            store=open_store(p.config, resolver),
            source_dir=Path(),
            in_place=p.in_place,
            place=p,
        )
        for p in places
    ]
    return [
        check_transactions(site, name, slots)
        for name, comp in site.components().items()
        if comp.scalardb is not None
    ]


# --- printing (demo, bench) ----------------------------------------------------------------------


def stall_line(figures: PointFigures, clients: Stall) -> str:
    """Clients' stall next to pausepoint's own figure, one line."""
    ours = (
        f"pausepoint: write stall {figures.write_stall_ms:.0f} ms "
        f"(window {figures.window_ms:.0f} ms, drain {figures.drain_ms:.0f} ms)"
    )
    if not clients.requests:
        return f"clients: no request arrived during the pause; {ours}"
    return (
        f"clients: {clients.requests} requests arrived during the pause, latency "
        f"p50 {clients.p50_ms:.0f} ms, p95 {clients.p95_ms:.0f} ms, max {clients.max_ms:.0f} ms; "
        + ours
    )
