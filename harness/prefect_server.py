"""A real Prefect server and process worker on loopback, for the end-to-end tests and bench/.

:func:`start_server` runs ``prefect server start`` (a PREFECT_HOME of its own, host 127.0.0.1,
a free port, analytics off) on PostgreSQL when given a database (:func:`postgres_database`: the
production shape; its URL, password included, goes in the server's environment only) or on
SQLite in its PREFECT_HOME, and returns once ``/api/health`` answers.
:meth:`PrefectServer.start_worker` runs ``prefect worker start --pool POOL`` against it, with
``PAUSEPOINT_HOME`` set to the checkout the deployments' pull step changes into.
:meth:`PrefectServer.cli` runs any other ``prefect`` command against the server;
:meth:`PrefectServer.start_again` starts a stopped server again on its port and database.

Every process is started in a session of its own and stopped by the pid this module started
(SIGTERM, then SIGKILL to that process's own group: a worker's flow-run processes go with it).
Logs go to files; :meth:`log_tail` reads them for failure messages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from harness.processes import HOST, free_port, log_tail

REPO = Path(__file__).resolve().parents[1]

# Settings of every process this module starts; the caller's own PREFECT_* settings never leak in.
_QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    "PREFECT_CLI_PROMPT": "false",
    "PREFECT_CLI_COLORS": "false",
    "PREFECT_CLI_WRAP_LINES": "false",
    "PREFECT_LOGGING_LEVEL": "INFO",
}


class PrefectUnavailable(RuntimeError):
    """The ``prefect`` command is missing: tests skip (or fail in CI) with this reason."""


class PrefectProcessError(RuntimeError):
    """A server or worker did not start, or a CLI command failed; carries its output."""


def prefect_executable() -> str:
    """The ``prefect`` next to this interpreter (the project's venv), else on PATH."""
    here = Path(sys.executable).parent / "prefect"
    if here.is_file():
        return str(here)
    found = shutil.which("prefect")
    if found is None:
        raise PrefectUnavailable("`prefect` not found next to the interpreter or on PATH")
    return found


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(_QUIET)
    env.update(extra)
    return env


@dataclass
class _Process:
    """A process this module started (its own session), with its log file."""

    name: str
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return log_tail(self.log, lines)

    def _spawn(self, cmd: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                list(cmd), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM our process; SIGKILL its group (the one it was started in) if it lingers,
        and once it is gone, anything of its group that outlived it."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        # The group id is the pid we started (start_new_session): only our own processes.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)


@dataclass
class PrefectWorker(_Process):
    pool: str = ""

    def __enter__(self) -> PrefectWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class PrefectServer(_Process):
    """``prefect server start`` on ``HOST:port`` with its own PREFECT_HOME (and, unless it was
    given a PostgreSQL database, its SQLite database in it)."""

    home: Path = field(default_factory=Path)
    port: int = 0
    # How it was started, so start_again() can start it once more on the same port and database.
    command: list[str] = field(default_factory=list)
    server_env: dict[str, str] = field(default_factory=dict)
    cwd: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        """The API URL (``PREFECT_API_URL``)."""
        return f"http://{HOST}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a client of this server (CLI, worker, flow run, test code)."""
        return _clean_env(
            {
                "PREFECT_HOME": str(self.home / "client"),
                "PREFECT_API_URL": self.url,
                **extra,
            }
        )

    def healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        return False

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if not self.running():
                code = self.proc.returncode if self.proc else None
                raise PrefectProcessError(
                    f"prefect server exited with {code} before answering /api/health:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise PrefectProcessError(
                    f"prefect server did not answer {self.url}/health within {timeout:.0f} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.25)

    def start_again(self, timeout: float = 180) -> None:
        """Start the stopped server again: same command, port, PREFECT_HOME and database (a
        restart, as an operator's upgrade or a crashed host does); returns once healthy."""
        if self.running():
            raise PrefectProcessError("the prefect server is still running: stop() it first")
        self._spawn(self.command, self.server_env, cwd=self.cwd)
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def cli(
        self,
        *args: str,
        cwd: Path = REPO,
        env: Mapping[str, str] | None = None,
        unset: Sequence[str] = (),
        timeout: float = 300,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``prefect ARGS`` against this server (``env`` added, ``unset`` removed from the
        environment); output captured, and raised with it on failure unless ``check=False``."""
        cmd = [prefect_executable(), *args]
        run_env = {k: v for k, v in self.env(**(env or {})).items() if k not in unset}
        result = subprocess.run(
            cmd, cwd=cwd, env=run_env, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=timeout,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise PrefectProcessError(
                f"`prefect {' '.join(args)}` exited with {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def start_worker(
        self,
        pool: str,
        checkout: Path,
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> PrefectWorker:
        """``prefect worker start --pool POOL`` with PAUSEPOINT_HOME=checkout; returns once the
        worker has polled the pool (its heartbeat is visible in the API)."""
        worker = PrefectWorker(name=f"worker-{pool}", log=log, pool=pool)
        name = f"e2e-{os.getpid()}-{free_port()}"
        worker._spawn(
            [prefect_executable(), "worker", "start", "--pool", pool, "--name", name],
            self.env(PAUSEPOINT_HOME=str(checkout), **(env or {})),
            cwd=checkout,
        )
        try:
            self._wait_worker(worker, name, timeout)
        except BaseException:
            worker.stop()
            raise
        return worker

    def _wait_worker(self, worker: PrefectWorker, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.url}/work_pools/{worker.pool}/workers/filter"
        while True:
            if not worker.running():
                raise PrefectProcessError(
                    f"prefect worker exited with {worker.proc.returncode}:\n{worker.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.post(url, json={}, timeout=5)
                if r.status_code == 200 and any(w["name"] == name for w in r.json()):
                    return
            if time.monotonic() > deadline:
                raise PrefectProcessError(
                    f"prefect worker did not register with pool {worker.pool!r} within "
                    f"{timeout:.0f} s:\n{worker.log_tail()}"
                )
            time.sleep(0.5)

    def __enter__(self) -> PrefectServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def postgres_database(pg_server, name: str) -> str:
    """A fresh database ``name`` on the test PostgreSQL ``pg_server`` (harness/servers.py) for a
    Prefect server; returns its SQLAlchemy URL (asyncpg), which holds the password: give it to
    :func:`start_server` (environment only), never to a command line or a log."""
    with pg_server.connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return (
        f"postgresql+asyncpg://{pg_server.user}:{pg_server.password}@{pg_server.host}:"
        f"{pg_server.port}/{name}"
    )


def start_server(
    directory: Path,
    *,
    port: int | None = None,
    scheduler: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = 180,
    database_url: str | None = None,
) -> PrefectServer:
    """Start ``prefect server start`` with PREFECT_HOME under ``directory`` (its log there too)
    on ``database_url`` (PostgreSQL: :func:`postgres_database`) or, without one, on SQLite in
    PREFECT_HOME, and return once ``/api/health`` answers.

    The scheduler is off unless asked for: the tests trigger every run themselves, and a
    deployment's schedule must not start runs of its own against the test server."""
    directory.mkdir(parents=True, exist_ok=True)
    home = directory / "home"
    home.mkdir(exist_ok=True)
    server = PrefectServer(
        name="prefect-server", log=directory / "server.log", home=home, port=port or free_port()
    )
    server_env = _clean_env(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_DATABASE_CONNECTION_URL": (
                database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}"
            ),
            "PREFECT_SERVER_API_HOST": HOST,
            "PREFECT_SERVER_API_PORT": str(server.port),
            "PREFECT_UI_API_URL": server.url,
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": str(scheduler).lower(),
            **(env or {}),
        }
    )
    cmd = [
        prefect_executable(), "server", "start", "--host", HOST, "--port", str(server.port),
        "--analytics-off", "--scheduler" if scheduler else "--no-scheduler",
    ]  # fmt: skip
    server.command, server.server_env, server.cwd = cmd, server_env, directory
    server._spawn(cmd, server_env, cwd=directory)
    try:
        server._wait_healthy(timeout)
    except BaseException:
        server.stop()
        raise
    return server


# --- The server's UI in headless Chromium (Debian's /usr/bin/chromium; no browser download) ------


class BrowserUnavailable(RuntimeError):
    """No Chromium on this machine (scripts/install-servers.sh installs Debian's)."""


def chromium_executable() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserUnavailable("`chromium` not found on PATH: run scripts/install-servers.sh")


class Chromium(_Process):
    """Headless Chromium driven over the DevTools protocol (a websocket on loopback): open a
    page, wait for what it renders, click, read the DOM, take screenshots."""

    def __init__(self, workdir: Path, *, width: int = 1440, height: int = 1300):
        super().__init__(name="chromium", log=workdir / "chromium.log")
        self.workdir, self.width, self.height = workdir, width, height
        self._ws = None
        self._next_id = 0

    def start(self, timeout: float = 60) -> Chromium:
        profile = self.workdir / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        cmd = [
            chromium_executable(), "--headless", "--no-sandbox", "--disable-gpu",
            "--hide-scrollbars", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--mute-audio", f"--window-size={self.width},{self.height}",
            f"--user-data-dir={profile}", f"--remote-debugging-address={HOST}",
            "--remote-debugging-port=0", "about:blank",
        ]  # fmt: skip
        self._spawn(cmd, _clean_env({}), cwd=self.workdir)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if not self.running() or time.monotonic() > deadline:
                self.stop()
                raise PrefectProcessError(f"chromium did not start:\n{self.log_tail()}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        pages = httpx.get(f"http://{HOST}:{port}/json/list", timeout=10).json()
        page = next(p for p in pages if p.get("type") == "page")
        from websockets.sync.client import connect

        self._ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self.call("Page.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=self.width, height=self.height, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        return self

    def call(self, method: str, timeout: float = 60, **params):
        """One DevTools command; returns its result (events in between are skipped)."""
        import json

        self._next_id += 1
        mid = self._next_id
        self._ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise PrefectProcessError(f"chromium {method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str, timeout: float = 60):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate", timeout=timeout, expression=expression,
            returnByValue=True, awaitPromise=True,
        )  # fmt: skip
        if "exceptionDetails" in result:
            raise PrefectProcessError(f"in the page: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, what: str, timeout: float = 60):
        """Evaluate ``expression`` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"the page did not render {what} within {timeout:.0f} s")
            time.sleep(0.25)

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def screenshot(self, path: Path, clip: Mapping[str, float] | None = None) -> bytes:
        import base64

        params: dict = {"format": "png", "captureBeyondViewport": False}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def stop(self, timeout: float = 10) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None
        super().stop(timeout=timeout)

    def __enter__(self) -> Chromium:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
