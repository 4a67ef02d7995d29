"""The resident JMX client of one Cassandra node (``NodeAgent.java``), driven over its stdin.

Started through the node's executor BEFORE the pause (``java -cp DIR NodeAgent HOST PORT``:
locally, over the SSH session that stays open, or inside ``kubectl exec -i``), so that a
snapshot inside the window is one line written and one line read: no JVM starts, no SSH
handshake. JMX credentials go on its stdin, never on a command line.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any

from pausepoint.errors import NodeCommandError
from pausepoint.executors import LocalExecutor, NodeExecutor

SOURCE = Path(__file__).with_name("NodeAgent.java")
CLASS = "NodeAgent"


def source_sha() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]


def local_agent_dir() -> Path:
    """A folder with NodeAgent.class for this version of the source: PAUSEPOINT_CASSANDRA_AGENT
    (a folder), else a per-version cache compiled with ``javac`` on first use."""
    if env := os.environ.get("PAUSEPOINT_CASSANDRA_AGENT"):
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    target = cache / "pausepoint" / f"cassandra-agent-{source_sha()}"
    if (target / f"{CLASS}.class").is_file():
        return target
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        out = subprocess.run(
            ["javac", "--release", "11", "-nowarn", "-d", str(tmp), str(SOURCE)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    except OSError as exc:
        raise NodeCommandError(
            f"cannot compile the Cassandra node agent: javac not found ({exc.strerror}); "
            "install a JDK 11+ where pausepoint runs, or set PAUSEPOINT_CASSANDRA_AGENT to a "
            "folder holding NodeAgent.class"
        ) from None
    if out.returncode != 0:
        raise NodeCommandError(f"cannot compile the Cassandra node agent: {out.stderr[-500:]}")
    with contextlib.suppress(OSError):
        tmp.rename(target)
    return target


def ensure_agent(executor: NodeExecutor, agent_dir: str | None) -> str:
    """The folder ON THE NODE that holds NodeAgent.class: the given one, pausepoint's own for
    a local node, else the class is uploaded into ~/.cache/pausepoint/cassandra-agent-<sha>."""
    if agent_dir:
        return agent_dir
    local = local_agent_dir()
    if isinstance(executor, LocalExecutor):
        return str(local)
    remote = f".cache/pausepoint/cassandra-agent-{source_sha()}"
    data = (local / f"{CLASS}.class").read_bytes()
    script = (
        f"mkdir -p {remote} && test -s {remote}/{CLASS}.class || "
        f"{{ cat > {remote}/{CLASS}.class.tmp && mv {remote}/{CLASS}.class.tmp "
        f"{remote}/{CLASS}.class; }}"
    )
    executor.run(["sh", "-c", script], input=data, timeout=120)
    return remote


class Agent:
    """One running NodeAgent; ``call`` sends a command and waits for its answer line."""

    def __init__(
        self,
        executor: NodeExecutor,
        *,
        address: str,
        java: str,
        agent_dir: str,
        jmx_host: str,
        jmx_port: int,
        credentials: tuple[str, str] | None = None,
        timeout: float = 60.0,
    ):
        self.address = address
        self.executor = executor
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._lock = threading.Lock()
        argv = [java, "-Xmx64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-cp", agent_dir, CLASS, jmx_host, str(jmx_port)]  # fmt: skip
        self.proc = executor.spawn(argv)
        threading.Thread(target=self._read, daemon=True, name=f"agent-{address}").start()
        threading.Thread(target=self._drain, daemon=True, name=f"agent-err-{address}").start()
        auth = "auth" if credentials is None else "auth\t" + "\t".join(credentials)
        try:
            self._send(auth)
            self._answer("connect", timeout)
        except BaseException:
            self.close()
            raise

    def describe(self) -> str:
        return f"node {self.address} ({self.executor.describe()})"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode(errors="replace").rstrip("\n"))
        self._lines.put(None)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._stderr.append(raw.decode(errors="replace").rstrip())

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            raise NodeCommandError(
                f"{self.describe()}: the JMX agent is gone ({self._why()})"
            ) from None

    def _why(self) -> str:
        code = self.proc.poll()
        tail = " | ".join(list(self._stderr)[-3:])
        return f"exit {code}" + (f": {tail}" if tail else "") if code is not None else tail

    def _answer(self, what: str, timeout: float) -> Any:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise NodeCommandError(
                f"{self.describe()}: no answer to {what} within {timeout:.0f} s"
            ) from None
        if line is None:
            raise NodeCommandError(
                f"{self.describe()}: the JMX agent ended during {what} ({self._why()}); check "
                "the node's JMX port and that Java runs on the node"
            )
        status, _, body = line.partition("\t")
        if status != "ok":
            raise NodeCommandError(f"{self.describe()}: {what} failed: {body}")
        return json.loads(body)

    def call(self, *words: str, timeout: float = 600.0) -> Any:
        with self._lock:
            self._send("\t".join(words))
            return self._answer(words[0], timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                if pipe is not None:
                    pipe.close()
