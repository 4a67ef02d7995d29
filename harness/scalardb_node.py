"""ScalarDB-backed nodes on loopback: real ScalarDB Consensus Commit under a real scalar-admin
pause gate, for tests and the demo (the registry here does not serve the ScalarDL Ledger).

The Java side (``harness/scalardb_node``) is built once by ``scripts/fetch-scalardb-node.sh``
into ``.cache/scalardb-node`` (``lib/`` class path, ``classes/``). One Java main,
``pausepoint.node.Node``: ``serve`` (the admin gRPC service from scalar-admin 2.2.1 with a
Ledger's pause gate, and a JSON-lines request port), ``schema`` and ``check`` (everything read
through one ScalarDB transaction, so lazy recovery runs).

A **component** (``ledger`` or ``auditor``) has its own databases (:class:`ComponentDbs`):
- on MariaDB, the namespace ``<prefix>_<component>_my`` (a database) holding the ``my-*``
  accounts, and ScalarDB's table metadata in the database ``<prefix>_<component>_meta``;
- on PostgreSQL, the database ``<prefix>_<component>`` with the schema ``<component>_pg`` (the
  ``pg-*`` accounts and every request record), ``coordinator`` (ScalarDB's ``state`` table) and
  ``<prefix>_<component>_meta`` (the metadata: one metadata namespace name in both storages, as
  a site file's ``scalardb: metadata_namespace`` declares it).
Every transfer moves an amount between a ``my-`` and a ``pg-`` account, so each commit spans
both databases, with the coordinator on PostgreSQL.

Or, the storage choice :class:`DynamoDbs`, a component on a DynamoDB endpoint (moto's server in
the tests): ScalarDB's DynamoDB adapter with the component's own table prefix; the ``my-`` and
``pg-`` accounts in two namespaces (two sets of tables, so a transfer still spans two), the
coordinator and ScalarDB's metadata under the same prefix. Node, workload and checker are the
same for both; only ``properties()`` (and the stores a site declares) differ.

Secrets: each node's properties file (database passwords, AWS keys) is written 0600 and passed by
path.
Processes are stopped only through the process objects this module started.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.processes import HOST, free_port, log_tail, stop_child

REPO = Path(__file__).resolve().parents[1]
NODE_MAIN = "pausepoint.node.Node"
RELEASES = ("3.13", "3.14")
COMPONENTS = ("ledger", "auditor")
# A small heap and the client compiler only: four JVMs share two cores in tests.
JVM_OPTS = ("-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
# `check` holds a whole component in memory as JSON (every request and history row): 384 MB ran
# out at ~80k requests (13 minutes of 8 clients), which gson reports as "Failed parsing JSON
# source". One short-lived JVM at a time, so it may take more.
CHECK_HEAP = "-Xmx2g"


class NodeUnavailable(RuntimeError):
    """Java or the built node is missing: tests skip (or fail in CI) with this reason."""


class NodeError(RuntimeError):
    """A node step ran and failed; the message carries its output or log tail."""


def node_home() -> Path:
    """Where fetch-scalardb-node.sh put the build (``PAUSEPOINT_SCALARDB_NODE_HOME`` overrides)."""
    return Path(os.environ.get("PAUSEPOINT_SCALARDB_NODE_HOME", REPO / ".cache" / "scalardb-node"))


def build() -> None:
    """Run scripts/fetch-scalardb-node.sh (a no-op when the build is current)."""
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "fetch-scalardb-node.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise NodeError(f"fetch-scalardb-node.sh failed:\n{(r.stdout + r.stderr)[-3000:]}")


def require_node() -> str:
    """The node's Java class path, or NodeUnavailable saying what to run."""
    if shutil.which("java") is None:
        raise NodeUnavailable("`java` not found on PATH (Java 17 runs the ScalarDB node)")
    home = node_home()
    for part in ("lib", "classes"):
        if not (home / part / ".stamp").is_file():
            raise NodeUnavailable(
                f"{home / part} is missing: run `make scalardb-node` "
                "(bash scripts/fetch-scalardb-node.sh; needs Maven, once)"
            )
    return f"{home / 'classes'}:{home / 'lib' / '*'}"


def require_tools() -> Path:
    """The class path folder of ScalarDB's schema loader and JDBC drivers (``tools/`` of the
    build, its own class path), or NodeUnavailable saying what to run."""
    if shutil.which("java") is None:
        raise NodeUnavailable("`java` not found on PATH (Java 17 runs ScalarDB's schema loader)")
    tools = node_home() / "tools"
    if not (tools / ".stamp").is_file():
        raise NodeUnavailable(
            f"{tools} is missing: run `make scalardb-node` "
            "(bash scripts/fetch-scalardb-node.sh; needs Maven, once)"
        )
    return tools


# --- databases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    """Where a database server listens and who logs in (password never printed)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)

    @classmethod
    def of(cls, server: Any) -> Login:
        """From a harness.servers PostgresServer / MysqlServer (or any host/port/user/password)."""
        return cls(server.host, server.port, server.user, server.password)


@dataclass(frozen=True)
class ComponentDbs:
    """The databases of one component, and ScalarDB's names for them."""

    component: str
    mysql: Login
    postgres: Login
    mysql_namespace: str  # a MariaDB database: the my-* accounts
    mysql_metadata: str  # a MariaDB database: ScalarDB's table metadata for that storage
    pg_database: str  # the PostgreSQL database of the component
    pg_namespace: str  # a schema in pg_database: the pg-* accounts and the request records
    coordinator: str = "coordinator"  # a schema in pg_database
    pg_metadata: str = "scalardb"  # a schema in pg_database (named(): as mysql_metadata)

    @classmethod
    def named(cls, component: str, prefix: str, mysql: Login, postgres: Login) -> ComponentDbs:
        return cls(
            component=component,
            mysql=mysql,
            postgres=postgres,
            mysql_namespace=f"{prefix}_{component}_my",
            mysql_metadata=f"{prefix}_{component}_meta",
            pg_database=f"{prefix}_{component}",
            pg_namespace=f"{component}_pg",
            # ScalarDB's metadata has ONE name in both storages (jdbc.table_metadata.schema per
            # storage), as pausepoint's `scalardb: metadata_namespace` declares it.
            pg_metadata=f"{prefix}_{component}_meta",
        )

    def prepare(self) -> None:
        """What ScalarDB does not create itself: the PostgreSQL database."""
        create_databases(self)

    def site_stores(self, password_envs: Mapping[str, str]) -> list[dict[str, Any]]:
        """The site file's stores of this component: MariaDB (the namespace and metadata
        databases) and PostgreSQL (the component's database); ``password_envs`` maps
        "mysql"/"postgres" to the environment variable holding the password."""
        comp = self.component
        return [
            {
                "kind": "mysql",
                "name": f"{comp}-my",
                "host": self.mysql.host,
                "port": self.mysql.port,
                "user": self.mysql.user,
                "password": {"env": password_envs["mysql"]},
                "databases": self.mysql_databases,
            },
            {
                "kind": "postgres",
                "name": f"{comp}-pg",
                "host": self.postgres.host,
                "port": self.postgres.port,
                "user": self.postgres.user,
                "password": {"env": password_envs["postgres"]},
                "database": self.pg_database,
            },
        ]

    @property
    def mysql_databases(self) -> list[str]:
        """What a MariaDB store of this component must capture."""
        return [self.mysql_namespace, self.mysql_metadata]

    def properties(self) -> dict[str, str]:
        """ScalarDB's settings (multi-storage, Consensus Commit) and the node's namespaces."""
        props = {
            "scalar.db.transaction_manager": "consensus-commit",
            "scalar.db.storage": "multi-storage",
            "scalar.db.consensus_commit.coordinator.namespace": self.coordinator,
            "scalar.db.cross_partition_scan.enabled": "true",
            "scalar.db.multi_storage.storages": "mysql,postgres",
            "scalar.db.multi_storage.namespace_mapping": (
                f"{self.mysql_namespace}:mysql,{self.pg_namespace}:postgres,"
                f"{self.coordinator}:postgres"
            ),
            "scalar.db.multi_storage.default_storage": "postgres",
            "pausepoint.node.namespace.mysql": self.mysql_namespace,
            "pausepoint.node.namespace.postgres": self.pg_namespace,
        }
        storages = {
            "mysql": (
                self.mysql,
                f"jdbc:mariadb://{self.mysql.host}:{self.mysql.port}/",
                self.mysql_metadata,
            ),
            "postgres": (
                self.postgres,
                f"jdbc:postgresql://{self.postgres.host}:{self.postgres.port}/{self.pg_database}",
                self.pg_metadata,
            ),
        }
        for name, (login, url, metadata) in storages.items():
            p = f"scalar.db.multi_storage.storages.{name}."
            props |= {
                p + "storage": "jdbc",
                p + "contact_points": url,
                p + "username": login.user,
                p + "password": login.password,
                p + "jdbc.table_metadata.schema": metadata,
                p + "jdbc.connection_pool.min_idle": "2",
                p + "jdbc.connection_pool.max_total": "40",
            }
        return props

    def copy_named(self, suffix: str) -> ComponentDbs:
        """The same component restored into databases named with ``suffix``: the PostgreSQL
        database and both MariaDB databases (the MariaDB namespace IS a database, so ScalarDB's
        metadata in the copy must be rewritten: :func:`rewrite_mysql_metadata`)."""
        return replace(
            self,
            mysql_namespace=f"{self.mysql_namespace}_{suffix}",
            mysql_metadata=f"{self.mysql_metadata}_{suffix}",
            pg_database=f"{self.pg_database}_{suffix}",
        )

    def scalardb_info(self) -> dict[str, Any]:
        """The component's ``scalardb:`` block of a pausepoint site file (docs/stores.md): its
        namespaces on both storages, the coordinator namespace and the metadata namespace."""
        if self.pg_metadata != self.mysql_metadata:
            raise ValueError(
                f"{self.component}: ScalarDB's metadata is {self.mysql_metadata!r} on MariaDB "
                f"and {self.pg_metadata!r} on PostgreSQL; a site file declares one name"
            )
        return {
            "namespaces": [self.mysql_namespace, self.pg_namespace],
            "coordinator_namespace": self.coordinator,
            "metadata_namespace": self.mysql_metadata,
        }


@dataclass(frozen=True)
class DynamoDbs:
    """The tables of one component on a DynamoDB endpoint, and ScalarDB's names for them.

    ScalarDB's DynamoDB adapter names a table ``<table_prefix><namespace>.<table>``; each
    component has its own prefix, so both components' coordinator (``coordinator.state``) and
    metadata (``scalardb.metadata``) tables live side by side on one endpoint. The credentials
    go into the node's 0600 properties file (``scalar.db.username``/``password``), never into
    a command line."""

    component: str
    endpoint: str  # http://127.0.0.1:PORT (scalar.db.dynamo.endpoint_override)
    region: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    table_prefix: str  # scalar.db.dynamo.namespace.prefix
    mysql_namespace: str  # the my-* accounts (the name is the account prefix, not a server)
    pg_namespace: str  # the pg-* accounts and every request record
    coordinator: str = "coordinator"
    metadata: str = "scalardb"  # ScalarDB's default scalar.db.dynamo.table_metadata.namespace

    @classmethod
    def named(
        cls,
        component: str,
        prefix: str,
        endpoint: str,
        region: str,
        access_key: str,
        secret_key: str,
    ) -> DynamoDbs:
        return cls(
            component=component,
            endpoint=endpoint,
            region=region,
            access_key=access_key,
            secret_key=secret_key,
            table_prefix=f"{prefix}_{component}_",
            mysql_namespace=f"{component}_my",
            pg_namespace=f"{component}_pg",
        )

    @property
    def namespaces(self) -> list[str]:
        """The component's data namespaces (a site's ``scalardb: namespaces``)."""
        return [self.mysql_namespace, self.pg_namespace]

    def prepare(self) -> None:
        """Nothing: ScalarDB creates every table (PITR on, auto scaling registered)."""

    def properties(self) -> dict[str, str]:
        """ScalarDB's settings (DynamoDB, Consensus Commit) and the node's namespaces."""
        return {
            "scalar.db.transaction_manager": "consensus-commit",
            "scalar.db.storage": "dynamo",
            "scalar.db.contact_points": self.region,
            "scalar.db.username": self.access_key,
            "scalar.db.password": self.secret_key,
            "scalar.db.dynamo.endpoint_override": self.endpoint,
            "scalar.db.dynamo.namespace.prefix": self.table_prefix,
            "scalar.db.dynamo.table_metadata.namespace": self.metadata,
            "scalar.db.consensus_commit.coordinator.namespace": self.coordinator,
            "scalar.db.cross_partition_scan.enabled": "true",
            "pausepoint.node.namespace.mysql": self.mysql_namespace,
            "pausepoint.node.namespace.postgres": self.pg_namespace,
        }

    def with_prefix(self, table_prefix: str) -> DynamoDbs:
        """The same component's tables under another prefix (restored side by side): ScalarDB
        finds them by the prefix alone, its metadata names no prefix."""
        return replace(self, table_prefix=table_prefix)

    def site_stores(self, credential_envs: Mapping[str, str]) -> list[dict[str, Any]]:
        """The site file's store of this component: one ``dynamodb`` store holding its
        namespaces, coordinator and metadata under its prefix; ``credential_envs`` maps
        "access_key_id"/"secret_access_key" to the environment variables holding them."""
        return [
            {
                "kind": "dynamodb",
                "name": f"{self.component}-ddb",
                "region": self.region,
                "endpoint_url": self.endpoint,
                "credentials": {
                    "source": "keys",
                    "access_key_id": {"env": credential_envs["access_key_id"]},
                    "secret_access_key": {"env": credential_envs["secret_access_key"]},
                },
                "namespaces": self.namespaces,
                "coordinator_namespace": self.coordinator,
                "metadata_namespace": self.metadata,
                "table_prefix": self.table_prefix,
            }
        ]

    def scalardb_info(self) -> dict[str, Any]:
        """As ``ComponentDbs.scalardb_info``: the component's ``scalardb:`` in a site file."""
        return self.scalardb_settings()

    def scalardb_settings(self) -> dict[str, Any]:
        """The component's ``scalardb:`` in a site file."""
        return {
            "namespaces": self.namespaces,
            "coordinator_namespace": self.coordinator,
            "metadata_namespace": self.metadata,
        }


Storage = ComponentDbs | DynamoDbs  # where a component's ScalarDB keeps its data


def _escape(value: str) -> str:
    """A java.util.Properties value (the file is read with Properties.load)."""
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    out = out.replace("=", "\\=").replace(":", "\\:").replace("#", "\\#").replace("!", "\\!")
    return "\\ " + out[1:] if out.startswith(" ") else out


def write_config(path: Path, props: Mapping[str, str]) -> Path:
    """Write a properties file readable by its owner only (it holds database passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for key, value in props.items():
            f.write(f"{key}={_escape(str(value))}\n")
    os.chmod(path, 0o600)
    return path


def create_databases(dbs: ComponentDbs) -> None:
    """Create the component's PostgreSQL database (ScalarDB creates the schemas and the MariaDB
    databases itself)."""
    from harness.servers import connect_postgres

    with connect_postgres(dbs.postgres, "postgres", autocommit=True) as conn:
        if conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (dbs.pg_database,)
        ).fetchone():
            return
        conn.execute(f'CREATE DATABASE "{dbs.pg_database}"')


def _java(
    args: list[str], config: Path, timeout: float, *extra_opts: str
) -> subprocess.CompletedProcess:
    cp = require_node()
    env = {**os.environ, "LANG": "C.UTF-8"}
    return subprocess.run(
        ["java", *JVM_OPTS, *extra_opts, "-cp", cp, NODE_MAIN, *args, str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def create_schema(dbs: Storage, workdir: Path) -> None:
    """What ScalarDB does not create itself (the PostgreSQL database), then ScalarDB's
    coordinator tables, namespaces and tables."""
    dbs.prepare()
    config = write_config(workdir / f"{dbs.component}-schema.properties", dbs.properties())
    r = _java(["schema"], config, timeout=180)
    if r.returncode != 0:
        raise NodeError(f"creating the {dbs.component} schema failed:\n{r.stderr[-3000:]}")


def check(dbs: Storage, workdir: Path, timeout: float = 240) -> dict[str, Any]:
    """Everything of one component, read through one ScalarDB transaction (lazy recovery runs
    on prepared records): ``{"accounts": {id: {namespace, latest_age, balance, hash, chain}},
    "requests": {rid: {kind, src, dst, amount, result, proof, node}}}``."""
    config = write_config(workdir / f"{dbs.component}-check.properties", dbs.properties())
    r = _java(["check"], config, timeout, CHECK_HEAP)  # the later -Xmx wins
    if r.returncode != 0:
        raise NodeError(f"checking {dbs.component} failed:\n{r.stderr[-3000:]}")
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise NodeError(f"checking {dbs.component} printed no JSON:\n{r.stdout[-2000:]}")
    return json.loads(lines[-1])


def rewrite_mysql_metadata(mysql: Login, copy: ComponentDbs, original: ComponentDbs) -> None:
    """Point ScalarDB's metadata in a copied MariaDB metadata database at the copy's namespace
    (on MariaDB a namespace is a database, so a copy under another name is otherwise invisible
    to ScalarDB: its metadata still names the original)."""
    from harness.servers import connect_mysql

    old, new = original.mysql_namespace, copy.mysql_namespace
    with connect_mysql(mysql, copy.mysql_metadata, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE metadata SET full_table_name = CONCAT(%s, SUBSTRING(full_table_name, %s)) "
            "WHERE full_table_name LIKE %s",
            (new, len(old) + 1, old + ".%"),
        )
        cur.execute("SHOW TABLES LIKE 'namespaces'")
        if cur.fetchall():
            cur.execute(
                "UPDATE namespaces SET namespace_name = %s WHERE namespace_name = %s", (new, old)
            )


# --- nodes -------------------------------------------------------------------------------------


@dataclass
class NodeProcess:
    """One running node (a JVM this module started)."""

    name: str
    component: str
    release: str
    admin_port: int
    request_port: int
    config: Path
    log: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)
    start_seconds: float = 0.0  # from exec to the request port answering

    @property
    def admin_target(self) -> str:
        return f"{HOST}:{self.admin_port}"

    @property
    def request_address(self) -> tuple[str, int]:
        return (HOST, self.request_port)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ping(self, timeout: float = 5) -> dict[str, Any]:
        """The node's gate state (not gated): paused, inflight, held."""
        return request(self.request_address, {"op": "ping"}, timeout=timeout)

    def start(self, timeout: float = 120) -> None:
        cp = require_node()
        env = {**os.environ, "LANG": "C.UTF-8"}
        t0 = time.monotonic()
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                ["java", *JVM_OPTS, "-cp", cp, NODE_MAIN, "serve", str(self.config)],
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                raise NodeError(
                    f"node {self.name} exited with {self.proc.returncode}:\n"
                    f"{log_tail(self.log, 40)}"
                )
            try:
                self.ping(timeout=2)
                self.start_seconds = time.monotonic() - t0
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise NodeError(
                        f"node {self.name} did not answer on {HOST}:{self.request_port} within "
                        f"{timeout:.0f} s:\n{log_tail(self.log, 40)}"
                    ) from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            stop_child(self.proc, signal.SIGTERM, timeout=20)


def request(address: tuple[str, int], body: Mapping[str, Any], timeout: float = 60) -> dict:
    """One request on a fresh connection (clients that send many keep a NodeConnection)."""
    with NodeConnection(address, timeout) as conn:
        return conn.call(body)


class NodeConnection:
    """A client connection to a node's request port: one JSON line out, one back."""

    def __init__(self, address: tuple[str, int], timeout: float | None = 120):
        self.address = address
        self._sock = socket.create_connection(address, timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self._sock.makefile("rwb")

    def call(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._file.write(json.dumps(body).encode() + b"\n")
        self._file.flush()
        line = self._file.readline()
        if not line:
            raise ConnectionError(f"node {self.address[0]}:{self.address[1]} closed the connection")
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> NodeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def node_process(dbs: Storage, name: str, workdir: Path, release: str = "3.14") -> NodeProcess:
    """A node of ``dbs``'s component with its own 0600 config (not started yet)."""
    if release not in RELEASES:
        raise ValueError(f"release must be one of {RELEASES}, got {release!r}")
    admin_port, request_port = free_port(), free_port()
    config = write_config(
        workdir / f"{name}.properties",
        {
            **dbs.properties(),
            "pausepoint.node.name": name,
            "pausepoint.node.release": release,
            "pausepoint.node.admin_port": str(admin_port),
            "pausepoint.node.request_port": str(request_port),
        },
    )
    return NodeProcess(
        name, dbs.component, release, admin_port, request_port, config, workdir / f"{name}.log"
    )


def set_release(node: NodeProcess, release: str) -> None:
    """Change the release a (stopped) node plays when it starts next."""
    if release not in RELEASES:
        raise ValueError(f"release must be one of {RELEASES}, got {release!r}")
    text = node.config.read_text(encoding="utf-8").splitlines()
    lines = [
        f"pausepoint.node.release={release}" if t.startswith("pausepoint.node.release=") else t
        for t in text
    ]
    write_config_lines(node.config, lines)
    node.release = release


def write_config_lines(path: Path, lines: Iterable[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


# --- a cluster: two components of two nodes ----------------------------------------------------


@dataclass
class Cluster:
    """The ``ledger`` and ``auditor`` components, two nodes each, on the two test servers."""

    dbs: dict[str, Storage]
    nodes: dict[str, list[NodeProcess]]
    workdir: Path

    def all_nodes(self) -> list[NodeProcess]:
        return [n for comp in COMPONENTS for n in self.nodes.get(comp, [])]

    def targets(self, component: str | None = None) -> list[str]:
        comps = [component] if component else list(COMPONENTS)
        return [n.admin_target for c in comps for n in self.nodes.get(c, [])]

    def addresses(self, component: str) -> list[tuple[str, int]]:
        return [n.request_address for n in self.nodes[component]]

    def start(self, timeout: float = 180) -> None:
        """Start every node not running, in parallel (a JVM start costs seconds)."""
        todo = [n for n in self.all_nodes() if not n.alive()]
        with concurrent.futures.ThreadPoolExecutor(len(todo) or 1) as pool:
            errors = [f.exception() for f in [pool.submit(n.start, timeout) for n in todo]]
        if any(errors):
            self.stop()
            raise next(e for e in errors if e is not None)

    def stop(self) -> None:
        for n in self.all_nodes():
            n.stop()

    def check(self) -> dict[str, dict[str, Any]]:
        """Both components read through ScalarDB: {component: check output}."""
        return {c: check(self.dbs[c], self.workdir) for c in COMPONENTS}

    def site_dict(
        self, name: str, password_envs: Mapping[str, str], *, scalardb: bool = True, **extra: Any
    ) -> dict[str, Any]:
        """A pausepoint site file (as a dict): per component its admin targets and its stores
        (``Storage.site_stores``: MariaDB + PostgreSQL, or one DynamoDB store).
        ``password_envs`` maps "mysql"/"postgres" (or, on DynamoDB, "access_key_id"/
        "secret_access_key") to the environment variables holding them; ``extra`` is merged at
        the top level (catalog, pause settings, clock). With ``scalardb`` (the default) each
        component declares itself ScalarDB-managed."""
        data: dict[str, Any] = {
            "site": name,
            "catalog": {"path": "catalog"},
            "pause": {"call_timeout_ms": 5000, "drain_timeout_ms": 10000},
        }
        for comp in COMPONENTS:
            if comp not in self.dbs:
                continue
            data[comp] = {
                "targets": {"static": self.targets(comp)},
                "stores": self.dbs[comp].site_stores(password_envs),
            }
            if scalardb:
                data[comp]["scalardb"] = self.dbs[comp].scalardb_info()
        data.update(extra)
        return data


def start_cluster(
    pg: Any,
    my: Any,
    prefix: str,
    workdir: Path,
    *,
    release: str = "3.14",
    nodes_per_component: int = 2,
) -> Cluster:
    """Create both components' schemas on the test servers and start their nodes.

    ``pg``/``my``: harness.servers servers (or anything with host/port/user/password);
    ``prefix`` keeps the databases apart from other tests' on the same servers."""
    require_node()
    mysql, postgres = Login.of(my), Login.of(pg)
    dbs: dict[str, Storage] = {
        c: ComponentDbs.named(c, prefix, mysql, postgres) for c in COMPONENTS
    }
    return start_cluster_on(dbs, workdir, release=release, nodes_per_component=nodes_per_component)


def start_dynamo_cluster(
    endpoint: str,
    region: str,
    access_key: str,
    secret_key: str,
    prefix: str,
    workdir: Path,
    *,
    release: str = "3.14",
    nodes_per_component: int = 1,
) -> Cluster:
    """Both components on one DynamoDB endpoint (moto's server on loopback in the tests), each
    under its own table prefix ``<prefix>_<component>_``; the keys go into 0600 files only."""
    require_node()
    dbs: dict[str, Storage] = {
        c: DynamoDbs.named(c, prefix, endpoint, region, access_key, secret_key) for c in COMPONENTS
    }
    return start_cluster_on(dbs, workdir, release=release, nodes_per_component=nodes_per_component)


def start_cluster_on(
    dbs: Mapping[str, Storage],
    workdir: Path,
    *,
    release: str = "3.14",
    nodes_per_component: int = 2,
) -> Cluster:
    """Create the schema of each component of ``dbs`` (on whatever storage it names) and start
    ``nodes_per_component`` nodes of each."""
    require_node()
    workdir.mkdir(parents=True, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(len(dbs)) as pool:
        for f in [pool.submit(create_schema, d, workdir) for d in dbs.values()]:
            f.result()
    nodes = {
        c: [node_process(dbs[c], f"{c}-{i}", workdir, release) for i in range(nodes_per_component)]
        for c in dbs
    }
    cluster = Cluster(dict(dbs), nodes, workdir)
    cluster.start()
    return cluster


# --- copies (the negative control and restore checks) -----------------------------------------


def copy_mysql(my: Any, dbs: ComponentDbs, copy: ComponentDbs, workdir: Path) -> float:
    """Copy the component's MariaDB databases (namespace and metadata) with
    ``mariadb-dump --single-transaction`` into ``copy``'s names (fresh databases) and point the
    copied metadata at the copied namespace. Returns when the namespace dump STARTED (time.time():
    its snapshot is taken right then)."""
    from harness.kinds import MysqlKind

    kind = MysqlKind(my)
    taken = time.time()
    pairs = ((dbs.mysql_namespace, copy.mysql_namespace), (dbs.mysql_metadata, copy.mysql_metadata))
    for src, dst in pairs:
        dump = kind.raw_dump(src, workdir / f"copy-{dst}")
        kind.drop_db(dst)
        kind.create_db(dst)
        kind.raw_restore(dump, dst)
        dump.unlink()
    rewrite_mysql_metadata(Login.of(my), copy, dbs)
    return taken


def copy_postgres(pg: Any, dbs: ComponentDbs, copy: ComponentDbs, workdir: Path) -> float:
    """Copy the component's PostgreSQL database with ``pg_dump`` into ``copy.pg_database``
    (fresh; same schema names, so ScalarDB's metadata needs no change). Returns when the dump
    started (time.time())."""
    from harness.kinds import PostgresKind

    kind = PostgresKind(pg)
    taken = time.time()
    dump = kind.raw_dump(dbs.pg_database, workdir / f"copy-{copy.pg_database}")
    kind.drop_db(copy.pg_database)
    kind.create_db(copy.pg_database)
    kind.raw_restore(dump, copy.pg_database)
    shutil.rmtree(dump, ignore_errors=True)
    return taken
