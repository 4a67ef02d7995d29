"""The `pausepoint` command as a newcomer meets it, driven as a subprocess (issue 15): answers
that need no Prefect come before Prefect starts, one line per error with its documented exit
code, tables and JSON fit for people and pipes, YAML errors with the parser's words, the
command on PATH, and a demo that installs only what it uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pausepoint.catalog import Catalog
from pausepoint.catalog.local import LocalDriver
from tests.unit.test_catalog import make_point

ROOT = Path(__file__).resolve().parents[2]
UNKNOWN = "20200101T000000Z-beef"
SITE = """\
site: demo
catalog: {path: catalog}
ledger:
  targets: {static: ["127.0.0.1:1"]}
  stores:
    - {kind: postgres, name: ledger-pg, user: u, database: d, password: {env: FH_PG_PASSWORD}}
"""


def pausepoint(
    *args: str, env: dict[str, str] | None = None, tmp: Path
) -> subprocess.CompletedProcess[str]:
    """The real command, without PREFECT_API_URL (a flow would start a temporary API)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    base.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(tmp / "prefect"), FH_PG_PASSWORD="x")
    return subprocess.run(
        [sys.executable, "-m", "pausepoint.cli", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=300,
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    return path


def test_a_restore_of_an_unknown_point_is_refused_before_prefect_starts(site, tmp_path):
    proc = pausepoint("restore", "--site", str(site), "--point", UNKNOWN, tmp=tmp_path)
    assert proc.returncode == 8
    # One line: the catalog's message, no traceback, no temporary Prefect API started for it.
    assert proc.stderr == (
        f"pausepoint: error: site 'demo' has no restore point {UNKNOWN}. The site has no "
        f"restore points in {tmp_path}/catalog/demo/points: run a backup first, or check "
        "catalog.path in the site file.\n"
    )
    assert proc.stdout == ""


def test_a_backup_whose_password_variable_is_unset_is_refused_before_prefect_starts(site, tmp_path):
    site.write_text(SITE.replace("FH_PG_PASSWORD", "FH_NOT_SET_ANYWHERE"))
    proc = pausepoint("backup", "--site", str(site), tmp=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        "pausepoint: error: the environment variable FH_NOT_SET_ANYWHERE is not set; export it "
        "in the environment that runs pausepoint (the worker's, for deployments) or use a "
        "Prefect Secret block\n"
    )


def test_debug_shows_the_traceback_of_the_same_error(site, tmp_path):
    proc = pausepoint("restore", "--site", str(site), "--point", UNKNOWN, "--debug", tmp=tmp_path)
    assert proc.returncode == 8
    assert "Traceback (most recent call last)" in proc.stderr
    assert "RestorePointNotFoundError" in proc.stderr
    assert proc.stderr.endswith("catalog.path in the site file.\n")


def test_a_yaml_error_keeps_the_parsers_explanation_and_its_line(site, tmp_path):
    site.write_text(SITE.replace('["127.0.0.1:1"]}', '["127.0.0.1:1"}'))
    proc = pausepoint("points", "list", "--site", str(site), tmp=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"pausepoint: error: site file {site} is not valid YAML at line 4, column 35: expected "
        "',' or ']', but got '}' (while parsing a flow sequence from line 4, column 21); fix "
        "the syntax\n"
    )
    site.write_text(SITE)
    target = tmp_path / "target.yaml"
    target.write_text("stores:\n  ledger-pg: {database: [a, b}\n")
    proc = pausepoint(
        "restore", "--site", str(site), "--point", UNKNOWN, "--target", str(target), tmp=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        f"pausepoint: error: restore target file {target} is not valid YAML at line 2, column "
        "30: expected ',' or ']', but got '}' (while parsing a flow sequence from line 2, column "
        "25); fix the syntax\n"
    )


def test_points_list_json_into_a_closed_pipe_ends_quietly(site, tmp_path):
    catalog = Catalog(LocalDriver(tmp_path / "catalog"))
    for _ in range(40):  # more JSON than a pipe holds
        make_point(catalog)
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    child = subprocess.Popen(
        [sys.executable, "-m", "pausepoint.cli", "points", "list", "--site", str(site), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**base, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.read(10)  # as `head -c 10`: read a little, then go away
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 0
    assert err == ""


def test_points_list_has_a_header_and_aligned_columns_and_json(site, tmp_path):
    catalog = Catalog(LocalDriver(tmp_path / "catalog"))
    points = [make_point(catalog) for _ in range(3)]
    proc = pausepoint("points", "list", "--site", str(site), tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == [
        "POINT", "MID-TIME", "(UTC)", "STALL", "ms", "COMPONENTS", "STORES", "SIZE", "MB",
        "RESTORABLE",
    ]  # fmt: skip
    assert len(lines) == 4
    # Snapshot points have no point-in-time store to ask: "-" (pausepoint.readiness).
    assert {line.split()[-1] for line in lines[1:]} == {"-"}
    # Columns aligned: each header starts where its values start (left) or ends where they end.
    assert {line.index("2026-11-28") for line in lines[1:]} == {lines[0].index("MID-TIME")}
    assert {line.index(" ledger+auditor") for line in lines[1:]} == {lines[0].index(" COMPONENTS")}
    ends = {lines[0].index("STALL ms") + len("STALL ms")}
    assert {line.index("5015.0") + len("5015.0") for line in lines[1:]} == ends
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(p.id for p in points)
    listed = json.loads(
        pausepoint("points", "list", "--site", str(site), "--json", tmp=tmp_path).stdout
    )
    assert sorted(p["id"] for p in listed) == sorted(p.id for p in points)
    shown = pausepoint("points", "show", points[0].id, "--site", str(site), "--json", tmp=tmp_path)
    assert json.loads(shown.stdout)["id"] == points[0].id


def test_check_reports_a_table_and_json_and_exits_3_when_a_check_fails(site, tmp_path):
    proc = pausepoint("check", "--site", str(site), tmp=tmp_path)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "VERDICT", "DETAIL"]
    rows = {line[: lines[0].index("VERDICT")].strip(): line for line in lines[1:] if line}
    verdict_at = lines[0].index("VERDICT")
    verdicts = {name: row[verdict_at:].split()[0] for name, row in rows.items() if " " in row}
    assert verdicts["node ledger/127.0.0.1:1"] == "FAIL"
    assert verdicts["TLS ledger"] == "SKIP"
    assert verdicts["store ledger/ledger-pg"] == "FAIL"
    assert verdicts["catalog"] == "PASS"
    assert verdicts["pause lock"] == "SKIP"
    assert lines[-1] == "site demo: FAIL (2 failed)"
    report = json.loads(pausepoint("check", "--site", str(site), "--json", tmp=tmp_path).stdout)
    assert report["verdict"] == "FAIL"
    by_name = {c["check"]: c for c in report["checks"]}
    assert by_name["catalog"]["detail"] == f"{tmp_path}/catalog: writable; 0 restore point(s)"
    assert by_name["pause lock"]["detail"].startswith("PREFECT_API_URL is not set")
    assert list(tmp_path.joinpath("catalog", "demo").iterdir()) == []  # the probe is gone


def test_make_install_puts_pausepoint_on_the_path(tmp_path):
    venv = Path(sys.executable).parent.parent
    bindir = tmp_path / "bin"
    subprocess.run(
        # -o: the environment is synced already; never re-sync the shared one from a test
        ["make", "-s", "-o", f"{venv}/.synced", "install", f"VENV={venv}", f"BINDIR={bindir}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    env = {**os.environ, "PATH": f"{bindir}:/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        ["pausepoint", "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0
    assert "check" in proc.stdout and "Exit codes: 0 done" in proc.stdout


def test_the_demo_installs_only_what_it_uses_and_summarises_it(tmp_path):
    demo = subprocess.run(
        ["bash", "scripts/install-servers.sh", "--demo", "--print"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    full = subprocess.run(
        ["bash", "scripts/install-servers.sh", "--print"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert "chromium" in full and "chromium" not in demo
    assert set(demo) == {"postgresql", "mariadb-client", "mariadb-server", "gcc", "libxxhash-dev"}
    recipe = subprocess.run(
        ["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "install-servers.sh --demo" in recipe and "quietly.sh" in recipe
    # The wrapper: one line for 300 lines of output, the whole output in the log.
    log = tmp_path / "log" / "noisy.log"
    noisy = ["bash", "-c", "for i in $(seq 300); do echo line $i; done"]
    proc = subprocess.run(
        ["bash", "scripts/quietly.sh", "noisy step", str(log), *noisy],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == "==> noisy step ..."
    assert proc.stdout.splitlines()[1].startswith("==> noisy step: done in ")
    assert proc.stdout.splitlines()[1].endswith(f"(300 lines of output in {log})")
    assert len(log.read_text().splitlines()) == 300
    failing = ["bash", "-c", "echo why it failed; exit 7"]
    proc = subprocess.run(
        ["bash", "scripts/quietly.sh", "bad step", str(log), *failing],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 7
    assert "why it failed" in proc.stderr and f"full output: {log}" in proc.stderr
