"""`make demo`: back up and restore a local site on real PostgreSQL and MariaDB.

1. starts a private PostgreSQL and MariaDB on loopback (data under var/demo/);
2. starts three admin nodes (2 ledger, 1 auditor). In this version they are pausepoint's TEST
   admin server, which follows ScalarDL's pause semantics, in front of a small bank application
   whose transfers span two databases per component; a real ScalarDL Ledger comes next;
3. runs the bank application under load, runs the backup flow, lets the load go on;
4. restores the restore point into NEW databases and checks: fingerprints equal, no torn
   transfer, balances intact, every transfer acknowledged before the pause present, nothing
   sent after it present;
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
from datetime import timedelta
from pathlib import Path

from pausepoint.requests import BackupRequest, RestoreRequest

ROOT = Path(__file__).resolve().parent.parent
# PAUSEPOINT_DEMO_DIR: another directory for the demo's servers and catalog (the tests use one).
BASE = Path(os.environ.get("PAUSEPOINT_DEMO_DIR") or ROOT / "var" / "demo")
CATALOG = BASE / "catalog"  # as demo/site.yaml.tmpl's catalog.path, relative to the site file


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo.run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep-running", action="store_true", help="keep the servers up after the verdict"
    )
    args = parser.parse_args(argv)
    from harness import servers
    from harness.bank_app import BankApp, Db, check_consistent, create_schema
    from harness.gate_server import start_gate_cluster
    from harness.sites import SiteDbs

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

    say("starting PostgreSQL and MariaDB on 127.0.0.1 (data in var/demo/)")
    pg = servers.start_postgres(BASE / "postgres")
    my = servers.start_mariadb(BASE / "mariadb")
    print(f"    PostgreSQL {pg.version} on port {pg.port}; MariaDB {my.version} on port {my.port}")
    ledger = auditor = app = None
    try:
        say("starting admin nodes: 2 ledger + 1 auditor")
        print("    NOTE: these are pausepoint's TEST admin servers (ScalarDL pause semantics, gRPC")
        print("    rpc.Admin on loopback), not ScalarDL itself; the next step of the project puts")
        print("    real ScalarDL Ledger nodes here.")
        ledger, auditor = start_gate_cluster(2), start_gate_cluster(1)

        class _MP:  # SiteDbs sets env vars through a monkeypatch-like object
            @staticmethod
            def setenv(k, v):
                os.environ[k] = v

        dbs = SiteDbs(pg, my, _MP(), prefix="demo")
        live = {}
        for name, kind, db in [
            ("ledger-coordinator", "postgres", "ledger_coordinator"),
            ("ledger-scalar", "mysql", "ledger_scalar"),
            ("auditor-coordinator", "postgres", "auditor_coordinator"),
            ("auditor-scalar", "mysql", "auditor_scalar"),
        ]:
            server = dbs.kinds[kind]
            server.create_db(db)
            live[name] = (server.db(db), server.db(f"{db}_restored"))
            create_schema(live[name][0])

        site_file = BASE / "site.yaml"
        template = (ROOT / "demo" / "site.yaml.tmpl").read_text()
        site_file.write_text(
            template.format(
                pg_port=pg.port,
                my_port=my.port,
                ledger_node_1=ledger.targets[0],
                ledger_node_2=ledger.targets[1],
                auditor_node_1=auditor.targets[0],
            )
        )
        print(f"    site file: {_shown(site_file)} (from demo/site.yaml.tmpl)")

        pairs = {
            "ledger": (live["ledger-coordinator"], live["ledger-scalar"]),
            "auditor": (live["auditor-coordinator"], live["auditor-scalar"]),
        }
        gates = {"ledger": ledger, "auditor": auditor}
        app = BankApp(
            components=[
                ([s.gate for s in gates[c].servers], [(p[0][0], p[1][0])]) for c, p in pairs.items()
            ],
            writers=4,
        ).start()
        say("bank application running: 4 writers, each transfer spans PostgreSQL and MariaDB")
        time.sleep(3)
        print(f"    {len(app.acks)} transfers acknowledged so far")

        say("backup flow")
        from flows.backup import backup
        from pausepoint.catalog import open_catalog
        from pausepoint.report import restore_point_markdown
        from pausepoint.site import load_site

        point_id = backup(BackupRequest(site_file=str(site_file)))
        time.sleep(2)
        app.stop()
        site = load_site(site_file)
        point = open_catalog(site.catalog).get_point(site.site, point_id)
        say(f"restore point {point_id}")
        print(restore_point_markdown(point))
        stall_start = point.window.start - timedelta(milliseconds=point.window.drain_ms)
        during = [a for a in app.acks if stall_start <= a.sent_at <= point.window.end]
        if during:
            lat = sorted(a.latency_ms for a in during)
            print(
                f"\n    transfers sent during the pause: {len(lat)}, their latency "
                f"p50 {lat[len(lat) // 2]:.1f} ms, max {lat[-1]:.1f} ms"
            )

        say("restore flow: every store into NEW databases (demo/target.yaml)")
        from flows.restore import restore

        result = restore(
            RestoreRequest(
                site_file=str(site_file),
                point_id=point_id,
                confirm=point_id,
                target_file=str(ROOT / "demo" / "target.yaml"),
            )
        )
        for name, ok, detail in result["checks"]:
            print(f"    {'PASS' if ok else 'FAIL'}  {name}: {detail}")

        say("consistency of the restored databases")
        restored_pairs: list[tuple[Db, Db]] = [(p[0][1], p[1][1]) for p in pairs.values()]
        verdict = check_consistent(restored_pairs, app.acks, point.window.start, point.window.end)
        for key in (
            "transfers",
            "acked_before_window",
            "torn",
            "bad_totals",
            "missing_acked_before_window",
            "present_sent_after_window",
        ):
            print(f"    {key}: {verdict[key]}")
        ok = verdict["ok"] and all(c[1] for c in result["checks"])
        say(
            f"VERDICT: {'CONSISTENT' if ok else 'INCONSISTENT'} — restore point {point_id}, "
            f"write stall {point.window.write_stall_ms:.1f} ms"
        )
        print("\n" + "\n".join(next_commands(site_file, point_id, args.keep_running)), flush=True)
        if args.keep_running:
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("\nstopping the demo's servers", flush=True)
        return 0 if ok else 1
    finally:
        if app is not None:
            app.stop()
        for cluster in (ledger, auditor):
            if cluster is not None:
                cluster.close()
        my.stop()
        pg.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
