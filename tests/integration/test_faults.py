"""Faults during a backup, through the real flow: a clear error, nothing left paused or leased,
nothing registered or half-registered, no tool process or temp file left behind.

- a database server killed (SIGKILL) while its dump streams, after the unpause;
- the catalog's disk full while the stores copy (a 2 MB tmpfs as the catalog);
- the catalog unwritable (a read-only bind mount) or removed at each of its writes;
- the Prefect API down when `pausepoint backup` starts.

The tests are root-only where they mount (tmpfs, bind mounts): they skip elsewhere. Every
mount is undone in the test's teardown.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from flows.backup import backup
from harness import servers
from harness.bank_app import create_schema
from harness.gate_server import start_gate_cluster
from harness.sites import SiteDb, SiteDbs
from pausepoint.backup import BackupRun
from pausepoint.catalog import local, open_catalog
from pausepoint.errors import CaptureError, CatalogError, RestorePointNotFoundError
from pausepoint.requests import BackupRequest
from pausepoint.site import load_site
from tests.support import hygiene
from tests.support.small_site import SmallSite, pause_calls

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
DUMP_TOOLS = ("pg_dump", "mariadb-dump", "mysqldump")
_n = itertools.count()


# --- helpers ------------------------------------------------------------------------------


def bulk(db: SiteDb, rows: int) -> None:
    """A table of ``rows`` rows of 128 hex characters (compresses to about half, not less)."""
    conn = db.live.connect()
    try:
        cur = conn.cursor()
        if db.kind == "postgres":
            cur.execute(
                "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || md5(g::text || 'a') || "
                "md5(g::text || 'b') || md5(g::text || 'c') AS pad "
                f"FROM generate_series(1, {rows}) g"
            )
        else:
            cur.execute("CREATE TABLE bulk (id INT PRIMARY KEY, pad VARCHAR(128))")
            cur.execute(
                "INSERT INTO bulk SELECT seq, CONCAT(MD5(seq), MD5(seq + 1), MD5(seq + 2), "
                f"MD5(seq + 3)) FROM seq_1_to_{rows}"
            )
        conn.commit()
    finally:
        conn.close()


def dump_processes(port: int | None = None) -> dict[int, list[str]]:
    """Dump tools running under this test process (pausepoint starts them as our children),
    pid -> argv; with ``port``, only those dumping the server on that port."""
    found = {}
    for pid in hygiene.our_processes(os.environ[hygiene.MARKER]):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            if Path(argv[0]).name not in DUMP_TOOLS:
                continue
            if port is None or str(port) in argv or f"--port={port}" in argv:
                found[pid] = argv
    return found


@pytest.fixture
def temp_dir(tmp_path, monkeypatch) -> Path:
    """This process's temp directory for the test (other sessions share the system's): where
    pausepoint's private directories (the MySQL option files) are made."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def assert_clean_failure(site: SmallSite, temp_dir: Path) -> None:
    """After a failed backup: no node paused, the lease released, nothing registered or staged,
    no dump tool running, no private temp directory left."""
    site.assert_nothing_paused_or_registered()
    loaded = load_site(site.path)
    leases = open_catalog(loaded.catalog).list_leases(loaded.site)
    assert [(lease.state, lease.broken_reason) for lease in leases] == [("released", None)]
    assert dump_processes() == {}
    assert list(temp_dir.iterdir()) == []


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def mount_or_skip(cmd: list[str]) -> None:
    r = run(cmd)
    if r.returncode != 0:
        pytest.skip(f"`{' '.join(cmd)}` is not permitted here: {r.stderr.strip()}")


def unmount(path: Path) -> None:
    if run(["umount", str(path)]).returncode != 0:
        run(["umount", "-l", str(path)])  # busy: detach now, the kernel frees it when idle


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    """Paths a test mounted on; each is unmounted at teardown, newest first."""
    mounted: list[Path] = []
    yield mounted
    for path in reversed(mounted):
        unmount(path)


def read_only(path: Path, mounted: list[Path]) -> None:
    """Make ``path`` read-only for everyone, root included: a read-only bind mount over it."""
    mount_or_skip(["mount", "--bind", str(path), str(path)])
    mounted.append(path)
    mount_or_skip(["mount", "-o", "remount,bind,ro", str(path)])


# --- 1. a database server killed while its dump streams -----------------------------------


@pytest.fixture
def private_servers(servers_dir: Path) -> Iterator[Callable[[str], object]]:
    """start(kind) -> a server of its own for one test (it is killed; the session's stay up)."""
    started: list[tuple[object, Path]] = []

    def start(kind: str):
        base = servers_dir / f"private-{kind}-{next(_n)}"
        try:
            server = (servers.start_postgres if kind == "postgres" else servers.start_mariadb)(base)
        except servers.ServerUnavailable as exc:
            pytest.skip(str(exc))
        started.append((server, base))
        return server

    yield start
    for server, base in started:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def kill_server(server) -> None:
    """SIGKILL the server's processes: PostgreSQL's postmaster and its backends (their process
    group, which the fixture started in a session of its own), MariaDB's one process."""
    proc = server._proc
    if isinstance(server, servers.PostgresServer):
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    proc.wait(timeout=30)


class KillWhenStreaming(threading.Thread):
    """Kills ``server`` once a dump file of ``store_dir`` holds bytes (the copy after the
    unpause is streaming) and notes whether the dump tool was still running at that moment."""

    def __init__(self, site: SmallSite, component: str, store: str, server):
        super().__init__(name="kill-when-streaming", daemon=True)
        loaded = load_site(site.path)
        self.points = loaded.catalog.path / loaded.site / "points"
        self.component, self.store, self.server = component, store, server
        self.stop = threading.Event()
        self.killed_while: dict[int, str] | None = None  # dump tools running at the kill

    def _streaming(self) -> bool:
        for f in self.points.glob(f"*/{self.component}/{self.store}/**/*"):
            with contextlib.suppress(OSError):
                if f.is_file() and f.stat().st_size > 0:
                    return True
        return False

    def run(self) -> None:
        while not self.stop.is_set():
            if self._streaming():
                self.killed_while = dump_processes(self.server.port)
                kill_server(self.server)
                return
            time.sleep(0.002)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_database_killed_mid_copy_fails_cleanly(
    kind, private_servers, pg_server, mysql_server, prefect_api, tmp_path, monkeypatch, temp_dir
):
    victim_server = private_servers(kind)
    pg = victim_server if kind == "postgres" else pg_server
    my = victim_server if kind == "mysql" else mysql_server
    dbs = SiteDbs(pg, my, monkeypatch, prefix=f"kill{next(_n)}")
    victim = dbs.database("ledger_v", kind)
    other = dbs.database("auditor_o", "mysql" if kind == "postgres" else "postgres")
    for db in dbs.all():
        create_schema(db.live)
    # ~50 MB in two tables: the dump cannot finish in the moment between its first bytes
    # and the kill (checked below, not assumed).
    bulk(victim, 200_000)
    with victim.live.connect() as conn:
        conn.cursor().execute(
            "CREATE TABLE bulk2 AS SELECT * FROM bulk"
            if kind == "postgres"
            else "CREATE TABLE bulk2 SELECT * FROM bulk"
        )
        conn.commit()
    with start_gate_cluster(1) as ledger, start_gate_cluster(1) as auditor:
        path = dbs.write_site(
            tmp_path,
            {"ledger": ledger.targets, "auditor": auditor.targets},
            {"ledger": [victim], "auditor": [other]},
        )
        site = SmallSite(path, dbs, ledger, auditor)
        killer = KillWhenStreaming(site, "ledger", victim.store_name, victim_server)
        killer.start()
        try:
            with pytest.raises(CaptureError) as e:
                backup(BackupRequest(site_file=str(path)))
        finally:
            killer.stop.set()
            killer.join(timeout=60)
        assert killer.killed_while, "the dump had ended before the server was killed"
        assert victim.store_name in str(e.value)
        assert "no restore point was registered" in str(e.value).lower()
        assert "Traceback" not in str(e.value)
        # both nodes were paused once and unpaused before the copy began
        for node in ledger.servers + auditor.servers:
            assert node.calls.get("Pause", 0) == 1 and node.calls.get("Unpause", 0) >= 1
        assert_clean_failure(site, temp_dir)
        assert not set(killer.killed_while) & set(dump_processes())


# --- 2. the catalog's disk full while the stores copy -------------------------------------


@pytest.fixture
def small_disk(tmp_path, mounts) -> Path:
    """A 2 MB tmpfs: a real filesystem that fills (ENOSPC) for every writer, tools included."""
    path = tmp_path / "small-disk"
    path.mkdir()
    mount_or_skip(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "pp-small", str(path)])
    mounts.append(path)
    return path


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_catalog_disk_full_mid_copy_fails_cleanly(kind, small_site, small_disk, temp_dir):
    # ~5 MB (compressed about half) into a 2 MB catalog: the copy runs out of space.
    big = next(db for db in small_site.dbs.all() if db.kind == kind)
    bulk(big, 40_000)
    catalog = small_disk / "catalog"
    small_site.edit(lambda d: d["catalog"].update(path=str(catalog)))
    with pytest.raises((CaptureError, CatalogError)) as e:
        backup(BackupRequest(site_file=str(small_site.path)))
    # Every store writes to the full disk; the big one's failure is the error or a note of it.
    messages = [str(e.value), *getattr(e.value, "__notes__", [])]
    full = [m for m in messages if "No space left on device" in m]
    assert full and any(big.store_name in m for m in full), messages
    for msg in full:
        assert "the catalog's disk is full" in msg and str(catalog) in msg, msg
        assert "no restore point was registered" in msg, msg
    assert_clean_failure(small_site, temp_dir)
    # the partial files are gone: only the (released) lease is left on the disk (beside the
    # local driver's lock file of the leases directory, which holds no data)
    site = load_site(small_site.path)
    left = [
        p.relative_to(catalog)
        for p in catalog.rglob("*")
        if p.is_file() and p.name != local.LOCK_NAME
    ]
    assert len(left) == 1 and left[0].parent == Path(site.site, "leases"), left


# --- 3. the catalog unwritable or removed at each write -------------------------------------


def test_catalog_unwritable_at_staging_pauses_nothing(small_site, mounts, temp_dir):
    """Before any pause the run reserves its point's directory: a catalog that refuses it
    (here: the site's catalog directory read-only) stops the run there."""
    site = load_site(small_site.path)
    site_dir = site.catalog.path / site.site
    site_dir.mkdir(parents=True)
    read_only(site_dir, mounts)
    with pytest.raises(CatalogError) as e:
        backup(BackupRequest(site_file=str(small_site.path)))
    msg = str(e.value)
    assert str(site_dir / "points") in msg and "Read-only file system" in msg, msg
    assert pause_calls(small_site) == 0
    unmount(mounts.pop())
    small_site.assert_nothing_paused_or_registered()
    assert open_catalog(site.catalog).list_leases(site.site) == []  # none was taken
    assert list(temp_dir.iterdir()) == []


def test_catalog_points_path_is_a_file_pauses_nothing(small_site, temp_dir):
    site = load_site(small_site.path)
    points = site.catalog.path / site.site / "points"
    points.parent.mkdir(parents=True)
    points.write_text("a file where the points directory should be")
    with pytest.raises(CatalogError) as e:
        backup(BackupRequest(site_file=str(small_site.path)))
    assert str(points) in str(e.value), str(e.value)
    assert pause_calls(small_site) == 0
    points.unlink()
    small_site.assert_nothing_paused_or_registered()
    assert list(temp_dir.iterdir()) == []


def break_staging(how: str, run: BackupRun, mounted: list[Path]) -> Path:
    """The run's staging directory made read-only (bind mount) or removed, now."""
    assert run.pending is not None
    staging = run.pending.staging
    if how == "read-only":
        read_only(staging, mounted)
    else:
        shutil.rmtree(staging)
    return staging


def break_staging_at(
    monkeypatch: pytest.MonkeyPatch, step: str, how: str, mounted: list[Path], *, after: bool
) -> list[Path]:
    """BackupRun.<step> patched to break the run's staging (break_staging) just before it runs,
    or just after it with ``after``; the list returned receives the broken directory."""
    broken: list[Path] = []
    original = getattr(BackupRun, step)

    def patched(run: BackupRun):
        if not after:
            broken.append(break_staging(how, run, mounted))
        result = original(run)
        if after:
            broken.append(break_staging(how, run, mounted))
        return result

    monkeypatch.setattr(BackupRun, step, patched)
    return broken


def assert_left_unregistered(small_site: SmallSite, how: str, staging: Path, mounts) -> None:
    """Nothing registered; a read-only staging directory could not be discarded by the run:
    it has no manifest, is never listed, and sweep_orphans removes it."""
    if how == "read-only":
        unmount(mounts.pop())
        assert small_site.staged() == [staging]
        assert not (staging / "manifest.json").exists()
        site = load_site(small_site.path)
        catalog = open_catalog(site.catalog)
        with pytest.raises(RestorePointNotFoundError, match="unfinished"):
            catalog.get_point(site.site, staging.name)
        assert catalog.sweep_orphans(site.site, older_than=timedelta(0)) == [staging]
    small_site.assert_nothing_paused_or_registered()
    site = load_site(small_site.path)
    leases = open_catalog(site.catalog).list_leases(site.site)
    assert [lease.state for lease in leases] == ["released"]


@pytest.mark.parametrize("how", ["read-only", "removed"])
def test_catalog_unwritable_at_artifact_write_fails_cleanly(
    how, small_site, mounts, temp_dir, monkeypatch
):
    """After the unpause, before the stores copy, the staging directory breaks."""
    broken = break_staging_at(monkeypatch, "end_lease", how, mounts, after=True)
    with pytest.raises(CaptureError) as e:
        backup(BackupRequest(site_file=str(small_site.path)))
    msg = str(e.value)
    assert "no restore point was registered" in msg.lower(), msg
    assert str(broken[0]) in msg, msg
    reason = "Read-only file system" if how == "read-only" else "No such file or directory"
    assert reason in msg, msg
    assert all(s.calls.get("Unpause", 0) >= 1 for s in small_site.servers)
    assert dump_processes() == {}
    assert list(temp_dir.iterdir()) == []
    assert_left_unregistered(small_site, how, broken[0], mounts)


@pytest.mark.parametrize("how", ["read-only", "removed"])
def test_catalog_unwritable_at_registration_never_half_registers(
    how, small_site, mounts, temp_dir, monkeypatch
):
    """Every store copied; then the point's directory breaks just before the manifest."""
    broken = break_staging_at(monkeypatch, "register", how, mounts, after=False)
    with pytest.raises(CatalogError) as e:
        backup(BackupRequest(site_file=str(small_site.path)))
    msg = str(e.value)
    assert "NOT registered" in msg or "Read-only file system" in msg, msg
    if how == "read-only":
        assert str(broken[0] / "manifest.json") in msg, msg
    else:
        assert "artifact problem" in msg and "missing" in msg, msg
    assert not (broken[0] / "manifest.json").exists()  # a manifest never without its files
    assert dump_processes() == {}
    assert list(temp_dir.iterdir()) == []
    assert_left_unregistered(small_site, how, broken[0], mounts)


# --- 4. the Prefect API down ----------------------------------------------------------------


def test_cli_backup_with_prefect_api_down_names_it_and_pauses_nothing(
    pg_server, mysql_server, tmp_path, monkeypatch
):
    dbs = SiteDbs(pg_server, mysql_server, monkeypatch, prefix=f"noapi{next(_n)}")
    stores = {"ledger": [dbs.database("ledger_c", "postgres"), dbs.database("ledger_s", "mysql")]}
    for db in dbs.all():
        create_schema(db.live)
    url = f"http://127.0.0.1:{servers.free_port()}/api"  # nothing listens there
    env = {**os.environ, "PREFECT_API_URL": url}
    with start_gate_cluster(2) as nodes:
        site = dbs.write_site(tmp_path, {"ledger": nodes.targets}, stores)
        proc = subprocess.run(
            [sys.executable, "-m", "pausepoint.cli", "backup", "--site", str(site)],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=300,
        )
        assert proc.returncode == 3, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert url in proc.stderr and "PREFECT_API_URL" in proc.stderr
        assert "prefect server start" in proc.stderr and "nothing was paused" in proc.stderr
        assert all(n.calls.get("Pause", 0) == 0 for n in nodes.servers)
        assert not any(n.gate.check_paused() for n in nodes.servers)
    assert not (tmp_path / "catalog").exists()  # no lease, no staging
