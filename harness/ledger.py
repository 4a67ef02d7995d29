"""A real ScalarDL Ledger on loopback, for tests and the demo.

The Java side is fetched once by ``scripts/fetch-scalardl.sh`` into ``.cache/scalardl``:

- ``lib/``: ScalarDB's schema loader (and ScalarDB core, JDBC drivers), the client SDK;
- ``ledger-lib/``: the Ledger server's class path, when the registry serves it (otherwise
  ``ledger-unavailable.txt`` says why and :func:`require_ledger` raises :class:`LedgerUnavailable`);
- ``contracts/``: the SmallBank contracts of ``harness/ledger/contracts``, compiled.

Storage is ScalarDB multi-storage over two databases: by default the Ledger's namespace on MariaDB
and ScalarDB's coordinator namespace on PostgreSQL, so every Ledger transaction spans both.
:meth:`LedgerStorage.swapped` gives the mirror image (for a second Ledger standing in for the
Auditor). Namespaces, and ScalarDB's metadata schema, can be renamed so that several Ledgers can
share two database servers without sharing tables.

Processes are started with ``start_new_session`` and stopped only by the pid this module started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.processes import HOST, free_port, log_tail, stop_child

REPO = Path(__file__).resolve().parents[1]
SCALARDL_VERSION = "3.12.5"  # keep in step with harness/ledger/pom.xml
SCALARDB_VERSION = "3.16.1"
LEDGER_MAIN = "com.scalar.dl.ledger.server.LedgerServer"
SCHEMA_LOADER_MAIN = "com.scalar.db.schemaloader.SchemaLoader"
CONTRACT_PACKAGE = "pausepoint.smallbank"
SMALLBANK_CONTRACTS = ("CreateAccount", "Transfer", "Balance")


class LedgerUnavailable(RuntimeError):
    """Java, or the fetched jars, are missing: tests skip (or fail in CI) with this reason."""


class LedgerError(RuntimeError):
    """A Java step ran and failed; the message carries its output or log tail."""


def scalardl_home() -> Path:
    """Where fetch-scalardl.sh put the jars (``PAUSEPOINT_SCALARDL_HOME`` overrides)."""
    return Path(os.environ.get("PAUSEPOINT_SCALARDL_HOME", REPO / ".cache" / "scalardl"))


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise LedgerUnavailable("`java` not found on PATH (Java 17 runs ScalarDL 3.12)")
    return java


def _jar_dir(name: str) -> Path:
    path = scalardl_home() / name
    if not (path / ".stamp").is_file() or not any(path.glob("*.jar")):
        raise LedgerUnavailable(
            f"{path} is missing: run `bash scripts/fetch-scalardl.sh` (needs Maven, once)"
        )
    return path


def require_tools() -> Path:
    """The class path folder of the schema loader and client SDK, or LedgerUnavailable."""
    _java()
    return _jar_dir("lib")


def require_ledger() -> Path:
    """The Ledger server's class path folder, or LedgerUnavailable saying why it is missing."""
    _java()
    home = scalardl_home()
    note = home / "ledger-unavailable.txt"
    if not (home / "ledger-lib" / ".stamp").is_file() and note.is_file():
        lines = note.read_text(errors="replace").splitlines()
        detail = " ".join(line.strip() for line in lines[2:] if line.strip())
        raise LedgerUnavailable(
            f"ScalarDL Ledger {SCALARDL_VERSION} could not be fetched: {detail} "
            "(.cache/scalardl/ledger-unavailable.txt; FETCH_SCALARDL_RETRY=1 "
            "bash scripts/fetch-scalardl.sh tries again)"
        )
    return _jar_dir("ledger-lib")


def require_contracts() -> Path:
    path = scalardl_home() / "contracts"
    if not (path / ".stamp").is_file():
        raise LedgerUnavailable(f"{path} is missing: run `bash scripts/fetch-scalardl.sh`")
    return path


# --- storage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DbEndpoint:
    """One database server as ScalarDB's JDBC storage sees it.

    ``kind`` is ScalarDB's name of the JDBC database ("postgres", "mariadb": the JDBC URL scheme
    and the multi-storage name), not a pausepoint store kind, so it is not asked of
    ``harness/kinds.py`` (whose kinds are "postgres" and "mysql")."""

    kind: str  # "postgres" or "mariadb"
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str = "postgres"  # PostgreSQL only: namespaces become schemas of this database

    def jdbc_url(self) -> str:
        if self.kind == "postgres":
            return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"
        if self.kind == "mariadb":
            # On MariaDB/MySQL a ScalarDB namespace is a database: no database in the URL.
            return f"jdbc:mariadb://{self.host}:{self.port}/"
        raise ValueError(f"unknown database kind {self.kind!r}")

    @classmethod
    def of(cls, server, kind: str) -> DbEndpoint:
        """From a harness.servers PostgresServer / MysqlServer."""
        return cls(kind, server.host, server.port, server.user, server.password)


@dataclass(frozen=True)
class LedgerStorage:
    """ScalarDB multi-storage for one Ledger: its namespace on one server, the coordinator on the
    other. Every name here is also what a backup of this Ledger has to capture."""

    postgres: DbEndpoint
    mariadb: DbEndpoint
    ledger_namespace: str = "scalar"
    coordinator_namespace: str = "coordinator"
    metadata_schema: str = "scalardb"  # ScalarDB's table metadata, in BOTH databases
    ledger_on: str = "mariadb"  # "mariadb" or "postgres"; the coordinator goes on the other

    def __post_init__(self) -> None:
        if self.ledger_on not in ("mariadb", "postgres"):
            raise ValueError("ledger_on must be 'mariadb' or 'postgres'")

    @property
    def coordinator_on(self) -> str:
        return "postgres" if self.ledger_on == "mariadb" else "mariadb"

    def swapped(self, **changes) -> LedgerStorage:
        """The same two servers with the mapping swapped (ledger on PostgreSQL, coordinator on
        MariaDB), e.g. for the Ledger that stands in for the Auditor; rename namespaces with
        ``changes`` when it shares servers with another Ledger."""
        return replace(self, ledger_on=self.coordinator_on, **changes)

    def scalardb_properties(self) -> dict[str, str]:
        props = {
            "scalar.db.storage": "multi-storage",
            "scalar.db.transaction_manager": "consensus-commit",
            "scalar.db.consensus_commit.coordinator.namespace": self.coordinator_namespace,
            "scalar.db.multi_storage.storages": "mariadb,postgres",
            "scalar.db.multi_storage.namespace_mapping": (
                f"{self.ledger_namespace}:{self.ledger_on},"
                f"{self.coordinator_namespace}:{self.coordinator_on}"
            ),
            "scalar.db.multi_storage.default_storage": self.ledger_on,
        }
        for name, db in (("mariadb", self.mariadb), ("postgres", self.postgres)):
            prefix = f"scalar.db.multi_storage.storages.{name}."
            props |= {
                prefix + "storage": "jdbc",
                prefix + "contact_points": db.jdbc_url(),
                prefix + "username": db.user,
                prefix + "password": db.password,
                prefix + "jdbc.table_metadata.schema": self.metadata_schema,
                # Small pools: tests run several JVMs on two cores.
                prefix + "jdbc.connection_pool.min_idle": "1",
                prefix + "jdbc.connection_pool.max_total": "50",
            }
        return props

    def schema(self) -> dict:
        """The Ledger's tables (ScalarDL 3.12 ``schema-loader/ledger-schema.json``) in this
        storage's namespace, as a ScalarDB schema-loader document."""
        return ledger_schema(self.ledger_namespace)


def _table(pk: list[str], ck: list[str], columns: dict[str, str], tx: bool) -> dict:
    return {"transaction": tx, "partition-key": pk, "clustering-key": ck, "columns": columns}


def ledger_schema(namespace: str = "scalar") -> dict:
    """ScalarDL Ledger 3.12's tables. Only ``asset`` and ``asset_metadata`` are written through
    consensus-commit transactions; the registries (certificates, secrets, contracts, functions)
    and ``tx_state`` are plain storage tables."""
    text, integer, bigint, blob = "TEXT", "INT", "BIGINT", "BLOB"
    tables = {
        "asset": _table(
            ["id"], ["age"],
            {"id": text, "age": integer, "argument": text, "contract_id": text, "hash": blob,
             "input": text, "output": text, "prev_hash": blob, "signature": blob},
            tx=True,
        ),
        "asset_metadata": _table(
            ["asset_id"], [], {"asset_id": text, "latest_age": integer}, tx=True
        ),
        "contract": _table(
            ["cert_holder_id"], ["cert_version", "id"],
            {"id": text, "cert_holder_id": text, "cert_version": integer, "binary_name": text,
             "properties": text, "registered_at": bigint, "signature": blob},
            tx=False,
        ),
        "contract_class": _table(
            ["binary_name"], [], {"binary_name": text, "byte_code": blob}, tx=False
        ),
        "function": _table(
            ["id"], [],
            {"id": text, "binary_name": text, "byte_code": blob, "registered_at": bigint},
            tx=False,
        ),
        "certificate": _table(
            ["holder_id"], ["version"],
            {"holder_id": text, "version": integer, "pem": text, "registered_at": bigint},
            tx=False,
        ),
        "secret": _table(
            ["entity_id"], ["key_version"],
            {"entity_id": text, "key_version": integer, "secret_key": blob,
             "registered_at": bigint},
            tx=False,
        ),
        "tx_state": _table(
            ["id"], [], {"id": text, "state": integer, "created_at": bigint}, tx=False
        ),
    }  # fmt: skip
    return {f"{namespace}.{name}": spec for name, spec in tables.items()}


def _write_properties(path: Path, props: Mapping[str, str]) -> Path:
    # Values here are plain (ports, names, URLs, test passwords): no escaping beyond backslashes.
    lines = [f"{k}={str(v).replace(chr(92), chr(92) * 2)}" for k, v in props.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def _run_java(
    classpath: str, main: str, args: list[str], *, cwd: Path, timeout: float, heap_mb: int = 256
) -> subprocess.CompletedProcess:
    cmd = [_java(), f"-Xmx{heap_mb}m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
           "-cp", classpath, main, *args]  # fmt: skip
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def create_schema(storage: LedgerStorage, workdir: Path, *, timeout: float = 180) -> None:
    """Create the Ledger's tables and the coordinator table with ScalarDB's schema loader.

    Re-running over existing tables is harmless (the loader skips what exists)."""
    lib = require_tools()
    workdir.mkdir(parents=True, exist_ok=True)
    config = _write_properties(workdir / "schema-loader.properties", storage.scalardb_properties())
    schema = workdir / "ledger-schema.json"
    schema.write_text(json.dumps(storage.schema(), indent=2))
    r = _run_java(
        f"{lib}/*", SCHEMA_LOADER_MAIN,
        ["--config", str(config), "--schema-file", str(schema), "--coordinator"],
        cwd=workdir, timeout=timeout,
    )  # fmt: skip
    output = (r.stdout + r.stderr).strip()
    (workdir / "schema-loader.log").write_text(output + "\n")
    if r.returncode != 0 or "ERROR" in output:
        raise LedgerError(f"schema loader failed ({r.returncode}):\n{output[-3000:]}")


# --- the Ledger node ----------------------------------------------------------------------


@dataclass
class LedgerNode:
    """One ScalarDL Ledger process on loopback ports (server, privileged, admin).

    Authentication is HMAC: clients register a secret and sign requests with it, which needs no
    certificates. Proof (Auditor) is off. Start with :meth:`start`, stop with :meth:`stop`."""

    storage: LedgerStorage
    workdir: Path
    name: str = "ledger-1"
    host: str = HOST
    port: int = 0
    privileged_port: int = 0
    admin_port: int = 0
    heap_mb: int = 384
    hmac_cipher_key: str = field(default="pausepoint-harness-cipher-key", repr=False)
    extra_properties: Mapping[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.privileged_port = self.privileged_port or free_port()
        self.admin_port = self.admin_port or free_port()

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def admin_address(self) -> str:
        return f"{self.host}:{self.admin_port}"

    def properties(self) -> dict[str, str]:
        p = "scalar.dl.ledger."
        return {
            **self.storage.scalardb_properties(),
            p + "name": self.name,
            p + "namespace": self.storage.ledger_namespace,
            p + "server.port": str(self.port),
            p + "server.privileged_port": str(self.privileged_port),
            p + "server.admin_port": str(self.admin_port),
            p + "server.prometheus_exporter_port": "-1",
            p + "authentication.method": "hmac",
            p + "authentication.hmac.cipher_key": self.hmac_cipher_key,
            p + "proof.enabled": "false",
            p + "auditor.enabled": "false",
            **self.extra_properties,
        }

    def start(self, timeout: float = 120) -> LedgerNode:
        """Start the JVM and return once the server and admin ports accept connections and the
        admin interface answers CheckPaused."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        lib = require_ledger()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = _write_properties(self.workdir / f"{self.name}.properties", self.properties())
        cmd = [
            _java(), f"-Xmx{self.heap_mb}m", "-XX:+UseSerialGC", "-Duser.language=en",
            "-cp", f"{lib}/*", LEDGER_MAIN, "--config", str(config),
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        from pausepoint.admin.grpc_client import GrpcAdminClient
        from pausepoint.site import Target

        deadline = time.monotonic() + timeout
        target = Target.parse(self.admin_address)
        with GrpcAdminClient() as admin:
            while True:
                if self._proc.poll() is not None:
                    code = self._proc.returncode
                    raise LedgerError(f"Ledger {self.name} exited with {code}:\n{self.log_tail()}")
                if _accepts(self.host, self.port) and _accepts(self.host, self.admin_port):
                    with contextlib.suppress(Exception):
                        admin.check_paused(target, timeout_s=2)
                        return
                if time.monotonic() > deadline:
                    raise LedgerError(
                        f"Ledger {self.name} not ready within {timeout:.0f} s:\n{self.log_tail()}"
                    )
                time.sleep(0.2)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM our own JVM (the Ledger drains and exits), SIGKILL if it does not."""
        if self._proc is not None:
            stop_child(self._proc, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL (a crash), for restart tests."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=30)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> LedgerNode:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _accepts(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


# --- the client side (SDK command-line tools) ---------------------------------------------


@dataclass
class LedgerClient:
    """One HMAC client identity, driving the SDK's tools (one short JVM per call: fine for setup
    and checks, not for load)."""

    node: LedgerNode
    workdir: Path
    entity_id: str = "pausepoint-harness"
    secret_key: str = field(default="pausepoint-harness-secret", repr=False)
    key_version: int = 1

    def properties(self) -> dict[str, str]:
        p = "scalar.dl.client."
        return {
            p + "server.host": self.node.host,
            p + "server.port": str(self.node.port),
            p + "server.privileged_port": str(self.node.privileged_port),
            p + "authentication_method": "hmac",
            p + "entity.id": self.entity_id,
            p + "entity.identity.hmac.secret_key": self.secret_key,
            p + "entity.identity.hmac.secret_key_version": str(self.key_version),
        }

    def _tool(self, tool: str, *args: str, timeout: float = 120) -> str:
        lib = require_ledger()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = _write_properties(self.workdir / "client.properties", self.properties())
        r = _run_java(
            f"{lib}/*", f"com.scalar.dl.client.tool.{tool}", ["--config", str(config), *args],
            cwd=self.workdir, timeout=timeout,
        )  # fmt: skip
        if r.returncode != 0:
            raise LedgerError(f"{tool} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
        return r.stdout

    def register_secret(self) -> None:
        self._tool("SecretRegistration")

    def register_smallbank(self) -> None:
        classes = require_contracts()
        for name in SMALLBANK_CONTRACTS:
            class_file = classes / CONTRACT_PACKAGE.replace(".", "/") / f"{name}.class"
            self._tool(
                "ContractRegistration",
                "--contract-id", name,
                "--contract-binary-name", f"{CONTRACT_PACKAGE}.{name}",
                "--contract-class-file", str(class_file),
            )  # fmt: skip

    def execute(self, contract_id: str, argument: Mapping) -> dict | None:
        out = self._tool(
            "ContractExecution",
            "--contract-id", contract_id,
            "--contract-argument", json.dumps(argument),
            "--deserialization-format", "JACKSON",
        )  # fmt: skip
        return _contract_result(out)


def _contract_result(stdout: str) -> dict | None:
    """The JSON after "Contract result:" in ContractExecution's output, if any."""
    marker = stdout.find("Contract result:")
    if marker < 0:
        return None
    body = stdout[marker + len("Contract result:") :].strip()
    end = body.find("Function result:")
    if end >= 0:
        body = body[:end].strip()
    return json.loads(body) if body else None
