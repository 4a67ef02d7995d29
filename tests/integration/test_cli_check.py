"""`pausepoint check` against real servers (PostgreSQL, MariaDB, TLS admin nodes found by DNS SRV
through the site's resolver), the check flow, and the pause lock's timeout on a slow Prefect API:
all through the real command, as a subprocess (issue 15)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from prefect.settings import PREFECT_API_URL

from harness.bank_app import create_schema
from harness.gate_server import start_gate_cluster
from harness.sites import SiteDbs
from pausepoint.pause_lock import lock_name
from tests.support.dns_server import TinyDnsServer
from tests.support.tls import make_pki

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SRV = "_scalardl-admin._tcp.ledger.check.test"
_n = itertools.count()  # one set of databases per test: names must not collide


def pausepoint(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pausepoint.cli", *args],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=300,
    )


def _verdicts(report: dict) -> dict[str, str]:
    return {c["check"]: c["verdict"] for c in report["checks"]}


@pytest.fixture
def tls_site(pg_server, mysql_server, prefect_api, tmp_path, monkeypatch) -> Iterator[dict]:
    """Ledger: 2 TLS nodes found by SRV through the site file's resolver, verified against the
    system trust store; auditor: 1 TLS node whose CA comes by secret reference."""
    pki = make_pki(dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    ca_file = tmp_path / "test-ca.pem"
    ca_file.write_bytes(pki.ca_pem)
    dbs = SiteDbs(pg_server, mysql_server, monkeypatch, prefix=f"chk{next(_n)}")
    ledger_dbs = [dbs.database("ledger_c", "postgres"), dbs.database("ledger_s", "mysql")]
    auditor_dbs = [dbs.database("auditor_c", "postgres")]
    for db in dbs.all():
        create_schema(db.live)
    with (
        start_gate_cluster(2, tls=pki.server) as ledger,
        start_gate_cluster(1, tls=pki.server) as auditor,
    ):
        records = [f"0 10 {t.port} localhost." for t in ledger.targets]
        with TinyDnsServer(srv={f"{SRV}.": records}) as dns:
            data = dbs.site_dict(
                {"ledger": ledger.targets, "auditor": auditor.targets},
                {"ledger": ledger_dbs, "auditor": auditor_dbs},
            )
            data["ledger"]["targets"] = {"srv": SRV, "resolver": dns.address, "tls": True}
            data["auditor"]["targets"] = {
                "static": [f"localhost:{auditor.targets[0].port}"],
                "tls": {"ca_pem": {"env": "CHK_AUDITOR_CA"}},
            }
            site = tmp_path / "site.yaml"
            site.write_text(yaml.safe_dump(data, sort_keys=False))
            env = {
                **os.environ,
                "PREFECT_API_URL": str(PREFECT_API_URL.value()),
                "SSL_CERT_FILE": str(ca_file),  # the "system" trust store of this process
                "CHK_AUDITOR_CA": pki.ca_pem.decode(),
            }
            yield {"site": site, "env": env, "ledger": ledger, "auditor": auditor, "dbs": dbs}


def test_check_passes_every_line_with_tls_from_the_trust_store_and_srv_from_the_site(tls_site):
    site, env = tls_site["site"], tls_site["env"]
    proc = pausepoint("check", "--site", str(site), "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    ledger, auditor = tls_site["ledger"], tls_site["auditor"]
    nodes = [
        f"node ledger/localhost:{t.port}" for t in sorted(ledger.targets, key=lambda t: t.port)
    ]
    nodes.append(f"node auditor/localhost:{auditor.targets[0].port}")
    stores = [f"store {c}/{db.store_name}" for c, db in [
        ("ledger", tls_site["dbs"].all()[0]), ("ledger", tls_site["dbs"].all()[1]),
        ("auditor", tls_site["dbs"].all()[2]),
    ]]  # fmt: skip
    assert [c["check"] for c in report["checks"]] == [
        *nodes, "TLS ledger", "TLS auditor", *stores, "clock bound", "catalog", "pause lock",
    ]  # fmt: skip
    assert report["verdict"] == "PASS"
    detail = {c["check"]: c["detail"] for c in report["checks"]}
    assert (
        detail["TLS ledger"]
        == "2 node(s) answered over TLS, verified against the system trust store"
    )
    assert detail["TLS auditor"] == (
        "1 node(s) answered over TLS, verified against CA PEM from the environment variable "
        "CHK_AUDITOR_CA"
    )
    assert detail["pause lock"] == "free (not created yet: the first backup creates it)"
    for store in stores:  # version and tools, as the store's check() reports them
        facts = next(c["facts"] for c in report["checks"] if c["check"] == store)
        assert facts["server_version"]
    assert _verdicts(report)["clock bound"] == "SKIP"
    # The same as a table for people: a header, a verdict per line, the overall verdict.
    table = pausepoint("check", "--site", str(site), env=env)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "VERDICT", "DETAIL"]
    assert lines[-1] == f"site {yaml.safe_load(site.read_text())['site']}: PASS"


def test_check_fails_the_nodes_whose_ca_the_trust_store_lacks_and_a_paused_node(tls_site):
    site, env = tls_site["site"], dict(tls_site["env"])
    env["SSL_CERT_FILE"] = "/etc/ssl/certs/ca-certificates.crt"  # no test CA in there
    proc = pausepoint("check", "--site", str(site), "--json", env=env)
    assert proc.returncode == 3
    verdicts = _verdicts(json.loads(proc.stdout))
    ledger_nodes = [f"node ledger/localhost:{t.port}" for t in tls_site["ledger"].targets]
    assert {verdicts[n] for n in ledger_nodes} == {"FAIL"}
    assert verdicts["TLS ledger"] == "FAIL" and verdicts["TLS auditor"] == "PASS"

    paused = tls_site["auditor"].servers[0]
    paused.gate.pause(wait_outstanding=True, max_wait_ms=1000)
    try:
        proc = pausepoint("check", "--site", str(site), "--json", env=tls_site["env"])
    finally:
        paused.gate.unpause()
    assert proc.returncode == 3
    report = json.loads(proc.stdout)
    node = f"node auditor/localhost:{paused.target.port}"
    line = next(c for c in report["checks"] if c["check"] == node)
    assert line["verdict"] == "FAIL" and line["detail"].startswith("reports PAUSED")
    assert report["verdict"] == "FAIL"


def test_the_check_flow_runs_the_same_checks(tls_site, monkeypatch):
    from flows.check import check
    from pausepoint.requests import CheckRequest

    for key in ("SSL_CERT_FILE", "CHK_AUDITOR_CA"):
        monkeypatch.setenv(key, tls_site["env"][key])
    result = check(CheckRequest(site_file=str(tls_site["site"])))
    cli = json.loads(
        pausepoint("check", "--site", str(tls_site["site"]), "--json", env=tls_site["env"]).stdout
    )
    assert result["verdict"] == cli["verdict"] == "PASS"
    assert _verdicts(result) == _verdicts(cli)


# --- the pause lock on a slow Prefect API ----------------------------------------------------


class _BusyLockProxy(ThreadingHTTPServer):
    """The Prefect API on loopback, except that every request for a concurrency slot gets
    503 (an overloaded server): the lock is free, yet never granted."""

    daemon_threads = True

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.client = httpx.Client(timeout=30)
        self.refused = 0
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _BusyLockProxy

    def log_message(self, *args) -> None:  # quiet
        pass

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/concurrency_limits/increment-with-lease"):
            self.server.refused += 1
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = self.path.removeprefix("/api")
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
        }
        r = self.server.client.request(
            self.command, self.server.upstream + path, content=body, headers=headers
        )
        self.send_response(r.status_code)
        for k, v in r.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "content-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward


def test_a_lock_the_api_is_too_busy_to_grant_is_not_blamed_on_another_run(prefect_api, tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(
        yaml.safe_dump(
            {
                "site": "slowlock",
                "catalog": {"path": "catalog"},
                "pause": {"lock_timeout_s": 3},
                "ledger": {
                    "targets": {"static": ["127.0.0.1:1"]},
                    "stores": [{"kind": "postgres", "name": "pg", "user": "u", "database": "d"}],
                },
            }
        )
    )
    proxy = _BusyLockProxy(str(PREFECT_API_URL.value()))
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            **os.environ,
            "PREFECT_API_URL": proxy.url,
            "PREFECT_CLIENT_MAX_RETRIES": "0",  # the 503 reaches the lock's code at once
        }
        proc = pausepoint("backup", "--site", str(site), env=env)
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(10)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert proxy.refused >= 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        f"pausepoint: error: the pause lock {lock_name('slowlock')!r} of site 'slowlock' was not "
        "granted within pause.lock_timeout_s=3; nothing was paused. The lock was free when the "
        "wait ended and no other run of the site is running: the Prefect API was too slow or "
        "unreachable to grant it (its last answer: HTTP 503 Service Unavailable). Check the "
        "Prefect server's health and load, then start the run again (or raise "
        "pause.lock_timeout_s)."
    )
    assert "Traceback" not in proc.stderr
