"""The real scalar-admin 2.2.1 from Python: its ``AdminCommand`` CLI, and a node on its server stub.

scripts/fetch-scalar-admin.sh (``make scalar-admin``) puts the class path resolved from
harness/admin_cli/pom.xml into ``.cache/scalar-admin/lib`` and compiles harness/admin_cli/src into
``.cache/scalar-admin/classes``; nothing here touches the network.

- ``run_admin_command(Command.PAUSE, addresses=[...])`` runs the CLI once and returns a
  ``CliResult``. The CLI sets no deadline on its calls (a node that never answers hangs it), so
  every run has a timeout; a run that hits it is killed and reported ``timed_out``.
  CHECK_PAUSED's answer (``{"host:port": "true"}``, strings) is parsed into ``CliResult.paused``.
- ``EchoAdminNode`` starts ``pausepoint.harness.EchoAdminServer``, a node built on the library's
  generated ``AdminGrpc.AdminImplBase`` with a Ledger release's pause semantics, for pausepoint's
  own client to drive.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from harness.processes import HOST, stop_child
from pausepoint.site import Target

REPO = Path(__file__).resolve().parent.parent
SCALAR_ADMIN_VERSION = "2.2.1"
MAIN_CLASS = "com.scalar.admin.AdminCommand"
ECHO_CLASS = "pausepoint.harness.EchoAdminServer"
RELEASES = ("3.12.3", "3.13.0", "3.14.0")  # what EchoAdminServer can behave as


class AdminCliUnavailable(RuntimeError):
    """Java or the fetched class path is missing: tests skip (or fail in CI) with this reason."""


class Command(StrEnum):
    PAUSE = "PAUSE"
    UNPAUSE = "UNPAUSE"
    CHECK_PAUSED = "CHECK_PAUSED"


def home() -> Path:
    """Where fetch-scalar-admin.sh put it (env PAUSEPOINT_SCALAR_ADMIN_HOME overrides)."""
    return Path(os.environ.get("PAUSEPOINT_SCALAR_ADMIN_HOME", REPO / ".cache" / "scalar-admin"))


def java() -> str:
    path = shutil.which("java")
    if path is None:
        raise AdminCliUnavailable("`java` not found on PATH (scalar-admin needs Java 8 or later)")
    return path


def class_path() -> str:
    """The fetched class path (jars and the compiled harness classes), or AdminCliUnavailable."""
    java()
    lib, classes = home() / "lib", home() / "classes"
    for part in (lib, classes):
        if not (part / ".stamp").is_file():
            raise AdminCliUnavailable(
                f"{part} is missing: run `bash scripts/fetch-scalar-admin.sh` (needs Maven, once)"
            )
    if not any(lib.glob(f"scalar-admin-{SCALAR_ADMIN_VERSION}.jar")):
        raise AdminCliUnavailable(
            f"{lib} holds no scalar-admin-{SCALAR_ADMIN_VERSION}.jar: run "
            "`bash scripts/fetch-scalar-admin.sh` again"
        )
    return f"{lib}/*{os.pathsep}{classes}"


# --- the CLI ---------------------------------------------------------------------------------

# "Caused by: io.grpc.StatusRuntimeException: INVALID_ARGUMENT: max_pause_wait_time must be ..."
_STATUS = re.compile(r"io\.grpc\.StatusRuntimeException: ([A-Z_]+)(?:: ([^\n]*))?")


@dataclass(frozen=True)
class CliResult:
    """One run of ``AdminCommand``.

    ``ok``: exit status 0 (the CLI exits 1 when any node failed, 2 on bad arguments).
    ``paused``: CHECK_PAUSED's answer per ``host:port`` as the CLI printed it (None otherwise).
    ``status_code`` / ``status_detail``: the gRPC status of the first failed call, as the CLI's
    stack trace names it (None when no call failed, or the run failed before any call).
    """

    command: Command
    argv: list[str]
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    paused: dict[str, bool] | None = None
    status_code: str | None = None
    status_detail: str | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> CliResult:
        """This result, or RuntimeError with the CLI's output when the run failed."""
        if self.ok:
            return self
        what = "timed out" if self.timed_out else f"exited {self.returncode}"
        status = f" ({self.status_code}: {self.status_detail})" if self.status_code else ""
        raise RuntimeError(
            f"scalar-admin {self.command} {what}{status}; output:\n{self.output[-4000:]}"
        )

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def parse_check_paused(stdout: str) -> dict[str, bool]:
    """CHECK_PAUSED's JSON object (logged across lines, values "true"/"false") as booleans."""
    start, end = stdout.find("{"), stdout.rfind("}")
    if start < 0 or end < start:
        raise ValueError(f"no JSON object in the CLI's output: {stdout[-500:]!r}")
    raw = json.loads(stdout[start : end + 1])
    paused: dict[str, bool] = {}
    for address, value in raw.items():
        if value not in ("true", "false"):
            raise ValueError(f'{address}: expected "true" or "false", got {value!r}')
        paused[address] = value == "true"
    return paused


def admin_command_argv(
    command: Command | str,
    *,
    addresses: Sequence[Target | str] = (),
    srv: str | None = None,
    dns_server: str | None = None,
    no_wait: bool = False,
    max_wait_ms: int | None = None,
    tls: bool = False,
    ca_root_cert_path: Path | None = None,
    ca_root_cert_pem: str | None = None,
    override_authority: str | None = None,
) -> list[str]:
    """The command line of one CLI run (see ``run_admin_command``)."""
    command = Command(command)
    if bool(addresses) == bool(srv):
        raise ValueError("give either addresses or srv (the CLI takes one of -a and -s)")
    argv = [java()]
    if dns_server is not None:
        argv.append(f"-Ddns.server={dns_server}")  # dnsjava's resolver, for -s
    argv += ["-cp", class_path(), MAIN_CLASS, "-c", command.value]
    if addresses:
        argv += ["-a", ",".join(str(a) for a in addresses)]
    else:
        argv += ["-s", str(srv)]
    if no_wait:
        argv.append("-n")
    if max_wait_ms is not None:
        argv += ["-m", str(max_wait_ms)]
    if tls:
        argv.append("--tls")
    if ca_root_cert_path is not None:
        argv.append(f"--ca-root-cert-path={ca_root_cert_path}")
    if ca_root_cert_pem is not None:
        argv.append(f"--ca-root-cert-pem={ca_root_cert_pem}")
    if override_authority is not None:
        argv.append(f"--override-authority={override_authority}")
    return argv


def run_admin_command(
    command: Command | str,
    *,
    addresses: Sequence[Target | str] = (),
    srv: str | None = None,
    dns_server: str | None = None,
    no_wait: bool = False,
    max_wait_ms: int | None = None,
    tls: bool = False,
    ca_root_cert_path: Path | None = None,
    ca_root_cert_pem: str | None = None,
    override_authority: str | None = None,
    timeout_s: float = 60,
) -> CliResult:
    """Run ``AdminCommand`` once against ``addresses`` (``-a``) or an SRV name (``-s``, resolved
    through ``dns_server`` "host:port" when given) and return what it did.

    The CLI has no call deadline and does not roll back a partial pause: a run killed at
    ``timeout_s`` may have paused some nodes (the caller unpauses them).
    """
    command = Command(command)
    argv = admin_command_argv(
        command,
        addresses=addresses,
        srv=srv,
        dns_server=dns_server,
        no_wait=no_wait,
        max_wait_ms=max_wait_ms,
        tls=tls,
        ca_root_cert_path=ca_root_cert_path,
        ca_root_cert_pem=ca_root_cert_pem,
        override_authority=override_authority,
    )
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed and reaped the JVM
        return CliResult(
            command,
            argv,
            None,
            _text(exc.stdout),
            _text(exc.stderr),
            timed_out=True,
        )
    status = _STATUS.search(done.stdout + done.stderr)
    paused = None
    if command is Command.CHECK_PAUSED and done.returncode == 0:
        paused = parse_check_paused(done.stdout)
    return CliResult(
        command,
        argv,
        done.returncode,
        done.stdout,
        done.stderr,
        paused=paused,
        status_code=status.group(1) if status else None,
        status_detail=status.group(2) if status else None,
    )


def _text(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


# --- a node on the real server stub ----------------------------------------------------------


@dataclass
class EchoAdminNode:
    """``EchoAdminServer`` (harness/admin_cli/src) in a JVM of its own, on 127.0.0.1.

    ``release`` picks the Ledger pause semantics ("3.12.3", "3.13.0", "3.14.0"); ``drain_ms``
    keeps a stand-in request in flight that long after each waiting Pause starts; ``cert_pem`` and
    ``key_pem`` (PKCS#8) turn on TLS. The JVM ends when ``close()`` closes its standard input.
    """

    workdir: Path
    release: str = "3.14.0"
    drain_ms: int = 0
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    port: int = 0
    _proc: subprocess.Popen[str] | None = field(default=None, repr=False)

    @property
    def target(self) -> Target:
        return Target(host=HOST, port=self.port)

    def start(self, timeout_s: float = 60) -> EchoAdminNode:
        if self.release not in RELEASES:
            raise ValueError(f"release must be one of {RELEASES}, got {self.release!r}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [java(), "-cp", class_path(), ECHO_CLASS, "--port", str(self.port)]
        argv += ["--release", self.release, "--drain-ms", str(self.drain_ms)]
        if self.cert_pem is not None:
            if self.key_pem is None:
                raise ValueError("TLS needs both cert_pem and key_pem")
            cert, key = self.workdir / "server.pem", self.workdir / "server.key"
            cert.write_bytes(self.cert_pem)
            key.write_bytes(self.key_pem)
            key.chmod(0o600)
            argv += ["--cert", str(cert), "--key", str(key)]
        log = (self.workdir / "echo-admin.log").open("w")
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
        )
        log.close()
        try:
            line = _read_line(self._proc, timeout_s)
        except BaseException:
            self.close()
            raise
        if not line.startswith("LISTENING "):
            tail = (self.workdir / "echo-admin.log").read_text(errors="replace")[-2000:]
            self.close()
            raise RuntimeError(f"EchoAdminServer did not start: {line!r}; log:\n{tail}")
        self.port = int(line.split()[1])
        return self

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()  # its signal to stop
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stop_child(proc, signal.SIGTERM, 10)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> EchoAdminNode:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _read_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The child's first stdout line, waiting at most timeout_s (a JVM that hangs is killed)."""
    box: list[str] = []
    reader = threading.Thread(
        target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""), daemon=True
    )
    reader.start()
    reader.join(timeout_s)
    if not box:
        raise RuntimeError(f"EchoAdminServer printed nothing within {timeout_s} s")
    return box[0].strip()
