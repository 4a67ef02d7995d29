"""A real Cassandra cluster for tests, the bench and a demo variant: N nodes started from the
jars that scripts/fetch-cassandra.sh put in .cache/cassandra/lib, on 127.0.0.1, 127.0.0.2, ...

Every node has its own directory (cassandra.yaml, data, commitlog, hints, saved caches, logs),
its own JMX port (JMX binds 127.0.0.1 whatever the node's address), a small heap and the
start-up waits shortened. Each node gets fixed tokens (``initial_token``) and no bootstrap, so
all nodes start at once (nothing to stream into an empty cluster) and a restore into "another
cluster" can reuse the recorded tokens. ``nodetool`` runs from the same jars (``bin/nodetool``).

Control: ``CassandraCluster.start()`` starts every node and waits until each sees all others
up and NORMAL; ``stop()`` stops the nodes it started (by their process objects) or, after a
node was restarted through the node's start command (``python -m harness.cassandra_cluster
start NODE_DIR``, what the cassandra store's restore runs), by the pid that command recorded,
checked against the node's own command line. Never by name.

    cluster = CassandraCluster(root)      # root: a private directory
    cluster.start()                       # ~1 GB RSS per node
    cluster.store_settings(["scalar"])    # a cassandra store's site-file settings (local executor)
    cluster.stop()
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.processes import log_tail

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "cassandra"
ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
MAIN = "org.apache.cassandra.service.CassandraDaemon"
NODETOOL_MAIN = "org.apache.cassandra.tools.NodeTool"

# conf/jvm17-server.options of Cassandra 5.0 (the JPMS part): what the daemon needs on Java 17.
JVM17_SERVER = [
    "-Djdk.attach.allowAttachSelf=true",
    *(
        f"--add-exports={m}=ALL-UNNAMED"
        for m in (
            "java.base/jdk.internal.misc",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
            "java.base/java.lang.ref",
            "jdk.unsupported/sun.misc",
            "jdk.compiler/com.sun.tools.javac.file",
            "jdk.attach/sun.tools.attach",
        )
    ),
    *(
        f"--add-opens={m}=ALL-UNNAMED"
        for m in (
            "java.base/java.lang.module",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.util.jar",
            "jdk.management/com.sun.management.internal",
            "java.base/sun.nio.ch",
            "java.base/java.io",
            "java.base/java.lang.reflect",
            "jdk.compiler/com.sun.tools.javac",
            "java.base/java.lang",
            "java.base/java.util",
            "java.base/java.util.concurrent",
            "java.base/java.util.concurrent.atomic",
            "java.base/java.math",
            "java.base/java.net",
            "java.base/java.nio",
        )
    ),
    "-Dio.netty.tryReflectionSetAccessible=true",
]

LOGBACK = """<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
  <logger name="org.apache.cassandra" level="INFO"/>
</configuration>
"""


class CassandraUnavailable(RuntimeError):
    """The jars are not fetched (run scripts/fetch-cassandra.sh, or `make cassandra`)."""


class CassandraStartError(RuntimeError):
    """A node did not come up; the message carries its log tail."""


def lib_dir() -> Path:
    lib = Path(os.environ.get("PAUSEPOINT_CASSANDRA_LIB", CACHE / "lib"))
    if not any(lib.glob("cassandra-all-*.jar")):
        raise CassandraUnavailable(
            f"no Cassandra jars in {lib}: run `bash scripts/fetch-cassandra.sh` (make test does)"
        )
    return lib


def agent_dir() -> Path:
    """The compiled node agent (scripts/fetch-cassandra.sh)."""
    return CACHE / "agent"


def classpath(lib: Path) -> str:
    return ":".join(str(p) for p in sorted(lib.glob("*.jar")))


def free_port_on(addresses: tuple[str, ...], avoid: set[int] = frozenset()) -> int:  # type: ignore[assignment]
    """A port free on every address (the nodes share storage and CQL ports)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in avoid:
            continue
        ok = True
        for a in addresses:
            with socket.socket() as s:
                try:
                    s.bind((a, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise CassandraStartError("no port free on every node address")


def spread_tokens(nodes: int, per_node: int) -> list[list[int]]:
    """Evenly spread Murmur3 tokens, interleaved: node i gets every nodes-th token."""
    total = nodes * per_node
    step = 2**64 // total
    tokens = [-(2**63) + step * k + step // 2 for k in range(total)]
    return [tokens[i::nodes] for i in range(nodes)]


@dataclass
class Node:
    index: int
    address: str
    dir: Path
    jmx_port: int
    tokens: list[int]
    process: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.dir / "logs" / "system.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "pid"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def commitlog_dir(self) -> Path:
        return self.dir / "commitlog"

    @property
    def hints_dir(self) -> Path:
        return self.dir / "hints"

    @property
    def saved_caches_dir(self) -> Path:
        return self.dir / "saved_caches"

    def pid(self) -> int | None:
        """The node's live process (recorded pid, checked against its command line)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if str(self.dir).encode() not in cmd or MAIN.encode() not in cmd:
            return None  # the pid was reused by another process
        return pid

    def running(self) -> bool:
        if self.process is not None and self.process.poll() is None:
            return True
        return self.pid() is not None


@dataclass
class CassandraCluster:
    root: Path
    addresses: tuple[str, ...] = ADDRESSES
    heap_mb: int = 384
    tokens_per_node: int = 4
    cluster_name: str = "pausepoint"
    tokens: list[list[int]] | None = None  # per node; default: spread evenly
    nodes: list[Node] = field(default_factory=list)
    native_port: int = 0
    storage_port: int = 0
    start_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.lib = lib_dir()
        tokens = self.tokens or spread_tokens(len(self.addresses), self.tokens_per_node)
        self.storage_port = free_port_on(self.addresses)
        self.native_port = free_port_on(self.addresses, {self.storage_port})
        used = {self.storage_port, self.native_port}
        for i, address in enumerate(self.addresses):
            jmx = free_port_on(("127.0.0.1",), used)
            used.add(jmx)
            self.nodes.append(Node(i, address, self.root / f"node{i + 1}", jmx, tokens[i]))
        self._write_nodetool()
        for node in self.nodes:
            self._write_node(node)

    # --- files ----------------------------------------------------------------------------

    def _write_nodetool(self) -> None:
        """bin/nodetool: Cassandra's NodeTool from the same jars (each call starts a JVM)."""
        bin_dir = self.root / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        script = bin_dir / "nodetool"
        flags = " ".join(shlex.quote(f) for f in JVM17_SERVER)
        logback = shlex.quote(str(bin_dir / "logback-tools.xml"))
        script.write_text(
            "#!/bin/sh\n"
            f"exec java -Xmx128m -XX:TieredStopAtLevel=1 {flags} "
            f"-Dlogback.configurationFile={logback} "
            f'-cp {shlex.quote(classpath(self.lib))} {NODETOOL_MAIN} "$@"\n'
        )
        script.chmod(0o755)
        (bin_dir / "logback-tools.xml").write_text(
            '<configuration><appender name="E" class="ch.qos.logback.core.ConsoleAppender">'
            "<target>System.err</target><encoder><pattern>%msg%n</pattern></encoder></appender>"
            '<root level="WARN"><appender-ref ref="E"/></root></configuration>\n'
        )

    def seeds(self) -> str:
        return ",".join(f"{a}:{self.storage_port}" for a in self.addresses)

    def _write_node(self, node: Node) -> None:
        d = node.dir
        for sub in ("data", "commitlog", "hints", "saved_caches", "cdc_raw", "logs", "conf"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        yaml = {
            "cluster_name": self.cluster_name,
            "num_tokens": len(node.tokens),
            "initial_token": ",".join(str(t) for t in node.tokens),
            "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
            "data_file_directories": [str(node.data_dir)],
            "commitlog_directory": str(node.commitlog_dir),
            "hints_directory": str(node.hints_dir),
            "saved_caches_directory": str(node.saved_caches_dir),
            "cdc_raw_directory": str(d / "cdc_raw"),
            "commitlog_sync": "periodic",
            "commitlog_sync_period": "10000ms",
            "commitlog_segment_size": "8MiB",
            "seed_provider": [
                {
                    "class_name": "org.apache.cassandra.locator.SimpleSeedProvider",
                    "parameters": [{"seeds": self.seeds()}],
                }
            ],
            "listen_address": node.address,
            "rpc_address": node.address,
            "storage_port": self.storage_port,
            "native_transport_port": self.native_port,
            "start_native_transport": True,
            "endpoint_snitch": "SimpleSnitch",
            "auto_bootstrap": False,
            "concurrent_compactors": 1,
            "memtable_heap_space": "64MiB",
            "memtable_offheap_space": "64MiB",
            "key_cache_size": "8MiB",
            "counter_cache_size": "0MiB",
            "authenticator": "AllowAllAuthenticator",
            "authorizer": "AllowAllAuthorizer",
            "read_request_timeout": "20000ms",
            "write_request_timeout": "20000ms",
            "range_request_timeout": "30000ms",
            "request_timeout": "30000ms",
            "disk_failure_policy": "stop",
            "commit_failure_policy": "stop",
            "snapshot_before_compaction": False,
            "auto_snapshot": False,
        }
        # JSON is YAML: no YAML writer needed.
        (d / "conf" / "cassandra.yaml").write_text(json.dumps(yaml, indent=1))
        (d / "conf" / "logback.xml").write_text(LOGBACK)
        jamm = next(self.lib.glob("jamm-*.jar"))
        argv = [
            "java",
            f"-Xms{self.heap_mb}m",
            f"-Xmx{self.heap_mb}m",
            "-Xmn64m",
            "-Xss512k",
            "-XX:+UseG1GC",
            "-XX:MaxDirectMemorySize=256m",
            "-XX:CICompilerCount=2",
            "-XX:+UseStringDeduplication",
            *JVM17_SERVER,
            f"-javaagent:{jamm}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.config=file://{d / 'conf' / 'cassandra.yaml'}",
            f"-Dcassandra.storagedir={d}",
            f"-Dcassandra.logdir={d / 'logs'}",
            f"-Dlogback.configurationFile={d / 'conf' / 'logback.xml'}",
            f"-Dcassandra.jmx.local.port={node.jmx_port}",
            "-Dcom.sun.management.jmxremote.authenticate=false",
            "-Dcassandra.ring_delay_ms=1000",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.consistent.rangemovement=false",
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-Dcassandra.max_local_pause_in_ms=30000",
            f"-Dpausepoint.node={d}",
            "-cp",
            classpath(self.lib),
            MAIN,
        ]
        (d / "launch.json").write_text(json.dumps({"argv": argv}))

    # --- control ----------------------------------------------------------------------------

    def start(self, timeout: float = 300.0) -> float:
        """Start every node at once; wait until every node sees all up and NORMAL. Returns the
        seconds it took (also ``start_seconds``)."""
        began = time.monotonic()
        for node in self.nodes:
            if not node.running():
                node.process = launch(node.dir)
        try:
            for node in self.nodes:
                wait_up(node, self.native_port, began + timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self.start_seconds

    def stop(self, timeout: float = 60.0) -> None:
        """Stop every node: SIGTERM to all, then wait (escalating to SIGKILL)."""
        for node in self.nodes:
            stop_node(node.dir, wait=False, process=node.process)
        for node in self.nodes:
            stop_node(node.dir, wait=True, process=node.process, timeout=timeout)
            node.process = None

    def wipe(self) -> None:
        """Every node stopped, every file of it gone: a new, empty cluster on the same
        addresses and tokens (what a restore into another cluster starts from)."""
        import shutil

        self.stop()
        for node in self.nodes:
            for sub in ("data", "commitlog", "hints", "saved_caches", "cdc_raw"):
                shutil.rmtree(node.dir / sub, ignore_errors=True)
                (node.dir / sub).mkdir()

    def nodetool(self, node: Node, *args: str, timeout: float = 300) -> str:
        out = subprocess.run(
            [str(self.root / "bin" / "nodetool"), "-h", "127.0.0.1", "-p", str(node.jmx_port),
             *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"nodetool {' '.join(args)}: {out.stderr.strip()[-2000:]}")
        return out.stdout

    # --- what a cassandra store's site entry says ----------------------------------------------

    def node_settings(self, node: Node, executor: dict[str, Any] | None = None) -> dict[str, Any]:
        py = sys.executable
        ctl = [py, "-m", "harness.cassandra_cluster"]
        return {
            "address": node.address,
            "jmx_port": node.jmx_port,
            "executor": executor or {"kind": "local"},
            "hints_dir": str(node.hints_dir),
            "agent_dir": str(agent_dir()),
            "nodetool": [
                str(self.root / "bin" / "nodetool"),
                "-h",
                "127.0.0.1",
                "-p",
                str(node.jmx_port),
            ],
            "stop_command": [*ctl, "stop", str(node.dir)],
            "start_command": [*ctl, "start", str(node.dir)],
        }

    def store_settings(
        self, keyspaces: list[str], executors: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        return {
            "kind": "cassandra",
            "contact_points": [n.address for n in self.nodes],
            "port": self.native_port,
            "keyspaces": keyspaces,
            "nodes": [
                self.node_settings(n, executors[n.index] if executors else None) for n in self.nodes
            ],
        }


def launch(node_dir: Path) -> subprocess.Popen:
    """Start the node of ``node_dir`` in its own session; its pid goes to ``node_dir/pid``."""
    spec = json.loads((node_dir / "launch.json").read_text())
    out = open(node_dir / "logs" / "stdout.log", "ab")  # noqa: SIM115 (the child keeps it)
    env = {**os.environ, "CASSANDRA_HOME": str(node_dir)}
    try:
        proc = subprocess.Popen(
            spec["argv"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=node_dir, env=env, start_new_session=True,
        )  # fmt: skip
    finally:
        out.close()
    (node_dir / "pid").write_text(str(proc.pid))
    return proc


def _node_of(node_dir: Path) -> Node:
    return Node(0, "", node_dir, 0, [])


def stop_node(
    node_dir: Path,
    *,
    wait: bool = True,
    process: subprocess.Popen | None = None,
    timeout: float = 60.0,
) -> None:
    """SIGTERM the node (its process object when we hold it, else its recorded and checked
    pid); with ``wait``, wait for it to exit and SIGKILL it after ``timeout``."""
    node = _node_of(Path(node_dir))
    pid = process.pid if process is not None and process.poll() is None else node.pid()
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        if process is not None and process.pid == pid:
            process.send_signal(signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    if not wait:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid, process):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
        time.sleep(0.2)
    with contextlib.suppress(OSError):
        (Path(node_dir) / "pid").unlink()


def _alive(pid: int, process: subprocess.Popen | None) -> bool:
    if process is not None and process.pid == pid:
        return process.poll() is None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_up(node: Node, native_port: int, deadline: float) -> None:
    """Until the node answers CQL and its log says it serves clients."""
    while True:
        proc_dead = node.process is not None and node.process.poll() is not None
        if proc_dead or (node.process is None and node.pid() is None):
            raise CassandraStartError(
                f"Cassandra node {node.address} exited while starting:\n{log_tail(node.log, 40)}"
                f"\n{log_tail(node.dir / 'logs' / 'stdout.log', 20)}"
            )
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((node.address, native_port)) == 0:
                return
        if time.monotonic() > deadline:
            raise CassandraStartError(
                f"Cassandra node {node.address} not serving CQL in time:\n{log_tail(node.log, 40)}"
            )
        time.sleep(0.5)


def _main(argv: list[str]) -> int:
    """``start NODE_DIR`` / ``stop NODE_DIR``: the node commands a cassandra store runs on
    restore. ``start`` returns once the node was launched (the store waits for CQL)."""
    if len(argv) != 2 or argv[0] not in {"start", "stop"}:
        print("usage: python -m harness.cassandra_cluster start|stop NODE_DIR", file=sys.stderr)
        return 2
    node_dir = Path(argv[1])
    if argv[0] == "stop":
        stop_node(node_dir)
        return 0
    node = _node_of(node_dir)
    if node.pid() is None:
        launch(node_dir)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
