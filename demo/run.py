"""`make demo`: back up and restore a ScalarDB-backed site on real PostgreSQL and MariaDB.

1. starts a private PostgreSQL and MariaDB on loopback (data under var/demo/);
2. starts the ScalarDB-backed nodes (harness/scalardb_node.py, built by `make scalardb-node`):
   2 ledger + 2 auditor, each serving scalar-admin 2.2.1's real admin service with a Ledger's
   pause gate and executing requests as ScalarDB Consensus Commit transactions across MariaDB
   and PostgreSQL (the registry here does not serve the ScalarDL Ledger itself);
3. runs 8 clients against them, runs the backup flow (the site file declares both components
   ScalarDB-managed: demo/site.yaml.tmpl), lets the clients go on;
4. restores the restore point through the restore flow into NEW databases (demo/target.yaml;
   the restore rewrites ScalarDB's metadata for the renamed MariaDB namespaces) and prints the
   restore's checks (fingerprints, ScalarDB's transaction metadata), then reads everything back
   through ScalarDB and prints the checker's verdict.
5. ends with the verdict and the commands to try next. Restore points of earlier demos are kept
   (var/demo/catalog; it says how many); `rm -rf var/demo` starts afresh. With --keep-running
   (`make demo-up`) the servers stay up after the verdict until Ctrl-C, so those commands can
   reach them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.scalardb_node import Cluster
    from harness.scalardb_site import Checked, PointFigures
    from harness.scalardb_workload import Stall

ROOT = Path(__file__).resolve().parent.parent
# PAUSEPOINT_DEMO_DIR: another directory for the demo's servers and catalog (the tests use one).
BASE = Path(os.environ.get("PAUSEPOINT_DEMO_DIR") or ROOT / "var" / "demo")
CATALOG = BASE / "catalog"  # as demo/site.yaml.tmpl's catalog.path, relative to the site file
PREFIX = "demo"  # the databases' prefix, as demo/site.yaml.tmpl and demo/target.yaml name them
SUFFIX = "restored"  # the restored databases' suffix, as demo/target.yaml names them
CLIENTS = 8


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _earlier_points() -> int:
    root = CATALOG / "demo" / "points"
    return sum(1 for p in root.glob("*/manifest.json")) if root.is_dir() else 0


def _fresh_servers() -> None:
    """Every demo starts its servers afresh; the catalog of earlier demos stays."""
    BASE.mkdir(parents=True, exist_ok=True)
    BASE.chmod(0o711)  # PostgreSQL runs as the postgres user and must reach its data dir
    for child in BASE.iterdir():
        if child != CATALOG:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def next_commands(site_file: Path, point_id: str, keep_running: bool) -> list[str]:
    site = _shown(site_file)
    target = (ROOT / "demo" / "target.yaml").relative_to(ROOT)
    lines = [
        "next, from this directory (`make install` puts pausepoint on PATH):",
        f"  . {_shown(BASE / 'env')}    # the password variables the site file names",
        f"  pausepoint points list --site {site}",
        f"  pausepoint points show --site {site} {point_id}",
    ]
    live = [
        f"  pausepoint check --site {site}",
        f"  pausepoint restore --site {site} --point {point_id} --target {target} --replace",
        f"  pausepoint backup --site {site}",
    ]
    if keep_running:
        lines += [*live, "the servers stay up until Ctrl-C."]
    else:
        lines += [
            "with the demo's servers up (`make demo-up` keeps them after the verdict):",
            *live,
        ]
    lines += [
        "the Prefect UI: `prefect server start`, then run these with "
        "PREFECT_API_URL=http://127.0.0.1:4200/api and open http://127.0.0.1:4200",
    ]
    return lines


# --- printing (one function per block, so the output can change without touching the run) -------


def print_servers(pg, my) -> None:
    print(f"    PostgreSQL {pg.version} on port {pg.port}; MariaDB {my.version} on port {my.port}")


def print_nodes(cluster: Cluster, seconds: float) -> None:
    for comp in ("ledger", "auditor"):
        d = cluster.dbs[comp]
        print(
            f"    {comp}: admin {', '.join(cluster.targets(comp))}; ScalarDB namespaces "
            f"{d.mysql_namespace} (MariaDB), {d.pg_namespace} + coordinator (PostgreSQL "
            f"{d.pg_database}), metadata {d.mysql_metadata}"
        )
    print(f"    schema + 4 JVMs up in {seconds:.0f} s")


def print_point(site_file: Path, figures: PointFigures) -> None:
    from harness.scalardb_site import load_point
    from pausepoint.report import restore_point_markdown

    print(restore_point_markdown(load_point(site_file, figures.point_id)))


def print_stall(figures: PointFigures, clients: Stall) -> None:
    print("\n    write stall (requests that arrived while the nodes were pausing or paused):")
    if clients.requests:
        print(
            f"      clients:    {clients.requests} requests, latency p50 {clients.p50_ms:.0f} ms, "
            f"p95 {clients.p95_ms:.0f} ms, max {clients.max_ms:.0f} ms"
        )
    else:
        print("      clients:    no request arrived during the pause")
    print(
        f"      pausepoint: {figures.write_stall_ms:.0f} ms from the first Pause sent to the last "
        f"Unpause confirmed (pause window {figures.window_ms:.0f} ms, drain "
        f"{figures.drain_ms:.0f} ms)"
    )


def print_restore(checked: Checked) -> None:
    for name, ok, detail in checked.checks:
        print(f"    {'PASS' if ok else 'FAIL'}  {name}: {detail}")


def print_scalardb_check(checked: Checked) -> None:
    for comp, (ok, detail) in checked.scalardb.items():
        print(f"    {comp}: {'PASS' if ok else 'FAIL'}  {detail}")


def print_verdict(checked: Checked) -> None:
    print("    " + checked.verdict.summary().replace("\n", "\n    "))


def print_final(checked: Checked, figures: PointFigures) -> None:
    say(
        f"VERDICT: {'CONSISTENT' if checked.ok else 'INCONSISTENT'} — restore point "
        f"{figures.point_id}, write stall {figures.write_stall_ms:.0f} ms"
    )


# --- the run -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo.run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep-running", action="store_true", help="keep the servers up after the verdict"
    )
    args = parser.parse_args(argv)
    from harness import scalardb_node as sn
    from harness import scalardb_site as ss
    from harness import servers
    from harness.scalardb_workload import Workload, create_accounts

    earlier = _earlier_points()
    _fresh_servers()
    if earlier:
        say(
            f"keeping {earlier} restore point(s) of earlier demos in "
            f"{_shown(CATALOG)} (`rm -rf {_shown(BASE)}` starts afresh)"
        )
    else:
        say(f"starting afresh: no earlier demo restore points in {_shown(CATALOG)}")
    from pausepoint.cli import _prefect

    # Announces the temporary Prefect API (with progress) unless PREFECT_API_URL is set.
    _prefect(debug=False)
    os.environ["DEMO_PG_PASSWORD"] = servers.PASSWORD
    os.environ["DEMO_MY_PASSWORD"] = servers.PASSWORD
    # The site file names these variables; the commands the demo suggests read them from here
    # (a file only its owner reads, never the screen).
    env_file = BASE / "env"
    env_file.touch(mode=0o600)
    env_file.write_text(
        "".join(
            f"export {k}={servers.PASSWORD}\n" for k in ("DEMO_PG_PASSWORD", "DEMO_MY_PASSWORD")
        )
    )
    sn.require_node()  # before any server starts: says to run `make scalardb-node`

    say("starting PostgreSQL and MariaDB on 127.0.0.1 (data in var/demo/)")
    pg = servers.start_postgres(BASE / "postgres")
    my = servers.start_mariadb(BASE / "mariadb")
    print_servers(pg, my)
    cluster = workload = None
    try:
        say("starting the ScalarDB-backed nodes: 2 ledger + 2 auditor")
        print("    Each node serves scalar-admin 2.2.1's own admin service with a Ledger's pause")
        print("    gate and runs every request as a ScalarDB Consensus Commit transaction across")
        print("    MariaDB and PostgreSQL (the ScalarDL Ledger itself is not served here).")
        t0 = time.monotonic()
        cluster = sn.start_cluster(pg, my, PREFIX, BASE / "nodes")
        print_nodes(cluster, time.monotonic() - t0)
        creations = create_accounts(cluster.addresses("ledger"), cluster.addresses("auditor"))

        site_file = BASE / "site.yaml"
        template = (ROOT / "demo" / "site.yaml.tmpl").read_text()
        ledger, auditor = cluster.targets("ledger"), cluster.targets("auditor")
        site_file.write_text(
            template.format(
                pg_port=pg.port,
                my_port=my.port,
                ledger_node_1=ledger[0],
                ledger_node_2=ledger[1],
                auditor_node_1=auditor[0],
                auditor_node_2=auditor[1],
            )
        )
        print(f"    site file: {_shown(site_file)} (from demo/site.yaml.tmpl)")

        workload = Workload(
            cluster.addresses("ledger"), cluster.addresses("auditor"), clients=CLIENTS
        ).start()
        say(f"{CLIENTS} clients running: each transfer spans MariaDB and PostgreSQL")
        workload.wait_for(50)
        time.sleep(2)
        print(f"    {workload.acked()} requests acknowledged by ledger and auditor so far")

        say("backup flow (Prefect; a temporary local API starts first)")
        figures = ss.backup(site_file)
        workload.wait_for(workload.acked() + 40)  # held requests completed, new ones too
        log = creations + workload.stop()
        workload = None
        say(f"restore point {figures.point_id}")
        print_point(site_file, figures)
        print_stall(figures, figures.clients(log))

        say("restore flow: every store into NEW databases (demo/target.yaml)")
        checked = ss.restore_and_check(
            cluster,
            site_file,
            figures,
            log,
            SUFFIX,
            BASE / "nodes",
            target_file=ROOT / "demo" / "target.yaml",
        )
        print_restore(checked)
        say("ScalarDB check: transaction metadata of the restored databases")
        print_scalardb_check(checked)
        say("checker: the restored databases read through ScalarDB")
        print_verdict(checked)
        print_final(checked, figures)
        print(
            "\n" + "\n".join(next_commands(site_file, figures.point_id, args.keep_running)),
            flush=True,
        )
        if args.keep_running:
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("\nstopping the demo's servers", flush=True)
        return 0 if checked.ok else 1
    finally:
        if workload is not None:
            workload.stop()
        if cluster is not None:
            cluster.stop()
        my.stop()
        pg.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
