"""moto's server on loopback: the local endpoint for the real boto3 (DynamoDB, RDS, S3).

One process per test session (``moto_server`` from the venv), on 127.0.0.1 and a free port. What
such an endpoint cannot prove is listed in FACTS.md §8; tests that use it say which part they
prove (the calls and their order) and which they cannot (provider timing, windows, checksums).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness.processes import HOST, free_port, log_tail, stop_child
from harness.servers import ServerStartError, ServerUnavailable

REPO = Path(__file__).resolve().parents[1]

# Any non-empty values: moto accepts every key. Given to boto3 through the environment or a
# session, never on a command line.
ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"  # moto accepts any key
REGION = "us-east-1"


@dataclass
class MotoServer:
    endpoint: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    log: Path

    def client(self, service: str):
        """A boto3 client for ``service`` on this endpoint with moto's fake credentials."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def reset(self) -> None:
        """Forget every resource (moto's reset API): tests start from an empty account."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=30):
            pass

    def stop(self) -> None:
        stop_child(self.process, signal.SIGTERM, timeout=10)


def _executable() -> Path:
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.is_file():
        raise ServerUnavailable(
            f"moto's server is not installed at {exe}: run `make setup` (moto[server] is a dev "
            "dependency in the lock file)"
        )
    return exe


def start_moto(
    base: Path, port: int | None = None, timeout: float = 60.0, *, serial: bool = False
) -> MotoServer:
    """Start ``moto_server`` on 127.0.0.1 and wait until it answers. ``serial``: moto's
    application behind one lock (harness/moto_serial.py), so that a conditional write is atomic
    as on AWS: needed by ScalarDB's Consensus Commit with several writers."""
    exe = _executable()
    base.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = base / "moto.log"
    argv = [str(exe), "-H", HOST, "-p", str(port)]
    if serial:
        argv = [sys.executable, "-m", "harness.moto_serial", "-H", HOST, "-p", str(port)]
    env = dict(os.environ)
    # moto's server must never reach out: no AWS settings of the machine leak into it.
    for name in list(env):
        if name.startswith("AWS_"):
            del env[name]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=REPO,  # `-m harness.moto_serial` is found from the checkout
        )
    endpoint = f"http://{HOST}:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServerStartError(
                f"moto_server exited with {proc.returncode}:\n{log_tail(log, 20)}"
            )
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return MotoServer(endpoint, proc, log)
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            stop_child(proc, signal.SIGKILL, timeout=5)
            raise ServerStartError(
                f"moto_server did not answer in {timeout:.0f} s:\n{log_tail(log, 20)}"
            )
        time.sleep(0.2)
