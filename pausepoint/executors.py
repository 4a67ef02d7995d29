"""Node executors: one way to run commands on a database node, wherever it is.

A store whose work happens on the database's own machines (Cassandra: its snapshot files,
``nodetool``, stopping and starting the node) runs every command through a ``NodeExecutor``:

- ``local``: the node is this machine; commands run as child processes.
- ``ssh``: the system's OpenSSH client (no Python SSH library). The private key comes from a
  secret reference (``key: {env: VAR}`` or ``{block: NAME}``) and reaches ``ssh`` as
  ``/proc/<our pid>/fd/N``, an anonymous memory file of ours (never on a disk, never on a
  command line); the
  server's host key is checked against the ``known_hosts`` file given (``StrictHostKeyChecking
  yes``: an unknown or changed host key refuses the connection); no agent, no user config.
- ``kubernetes``: ``kubectl exec -i`` into the node's pod (container optional). Not exercised
  by the tests here: there is no Kubernetes on the test machine; its command line is checked.

Every executor gives: ``run(command)`` (wait for it, bytes out), ``spawn(command)`` (a running
process with pipes: the store's resident JMX agent, a ``tar`` stream) and ``describe()``.
Commands are argument lists; a remote executor quotes them for the remote shell.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pausepoint.errors import ConfigError, NodeCommandError
from pausepoint.secrets import SecretRef

# --- settings (part of a store's site-file entry) ------------------------------------------


class _ExecutorBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class LocalExecutorConfig(_ExecutorBase):
    kind: Literal["local"] = "local"


class SshExecutorConfig(_ExecutorBase):
    kind: Literal["ssh"] = "ssh"
    host: str = Field(description="the node's SSH host name or address")
    port: int = Field(22, gt=0, lt=65536)
    user: str = Field(description="the SSH user (it must be able to read Cassandra's files)")
    key: SecretRef = Field(description="the private key (OpenSSH format), by reference")
    known_hosts: str = Field(
        description="a known_hosts file holding the node's host key; the key is checked"
    )
    connect_timeout_s: int = Field(10, ge=1, le=300)
    ssh: str = Field("ssh", description="the OpenSSH client program")


class KubernetesExecutorConfig(_ExecutorBase):
    kind: Literal["kubernetes"] = "kubernetes"
    pod: str
    namespace: str = "default"
    container: str | None = None
    context: str | None = Field(None, description="kubectl context; default: the current one")
    kubectl: str = "kubectl"


ExecutorConfig = Annotated[
    LocalExecutorConfig | SshExecutorConfig | KubernetesExecutorConfig,
    Field(discriminator="kind"),
]


# --- executors ------------------------------------------------------------------------------


class NodeExecutor(ABC):
    """Runs commands on one node. ``close()`` drops what it holds (a key in memory)."""

    @abstractmethod
    def describe(self) -> str:
        """Where commands run, for messages."""

    @abstractmethod
    def _argv(self, command: Sequence[str]) -> list[str]:
        """The local command line that runs ``command`` on the node."""

    def _pass_fds(self) -> tuple[int, ...]:
        return ()

    def spawn(
        self,
        command: Sequence[str],
        *,
        stdin: int | None = subprocess.PIPE,
        stdout: int | None = subprocess.PIPE,
        stderr: int | None = subprocess.PIPE,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen:
        """Start ``command`` on the node; the caller owns the process (and its pipes)."""
        try:
            return subprocess.Popen(
                self._argv(command), stdin=stdin, stdout=stdout, stderr=stderr,
                pass_fds=self._pass_fds(), env=None if env is None else dict(env),
            )  # fmt: skip
        except OSError as exc:
            raise NodeCommandError(
                f"{self.describe()}: cannot start {command[0]!r}: {exc.strerror or exc}; "
                "install it or fix its path in the store's node settings"
            ) from None

    def run(
        self,
        command: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float = 300.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``command`` to its end; NodeCommandError (with its stderr's tail) when it
        fails and ``check``."""
        proc = self.spawn(command, stdin=subprocess.PIPE if input is not None else None)
        try:
            out, err = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise NodeCommandError(
                f"{self.describe()}: {shlex.join(command)[:200]} did not finish within "
                f"{timeout:.0f} s; it was killed"
            ) from None
        result = subprocess.CompletedProcess(list(command), proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise NodeCommandError(
                f"{self.describe()}: {shlex.join(command)[:200]} failed (exit "
                f"{proc.returncode}): {_tail(err)}"
            )
        return result

    def close(self) -> None:  # noqa: B027 (most executors hold nothing)
        """Drop what the executor holds."""

    def __enter__(self) -> NodeExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tail(err: bytes | None, limit: int = 600) -> str:
    text = (err or b"").decode(errors="replace").strip()
    return text[-limit:] or "(nothing on stderr)"


class LocalExecutor(NodeExecutor):
    def describe(self) -> str:
        return "local node"

    def _argv(self, command: Sequence[str]) -> list[str]:
        return list(command)


class SshExecutor(NodeExecutor):
    """OpenSSH with the key in a memory file and the host key checked (see the module)."""

    def __init__(self, config: SshExecutorConfig, key: str):
        from pausepoint.stores._common import SecretFile  # memfd helper shared with the stores

        if not Path(config.known_hosts).is_file():
            raise ConfigError(
                f"ssh executor for {config.host}: known_hosts file {config.known_hosts} does "
                "not exist; put the node's host key there (ssh-keyscan, checked against the "
                "node) so that pausepoint can tell it is talking to that node"
            )
        self.config = config
        # OpenSSH refuses a key without its final newline ("invalid format").
        self._key = SecretFile(key if key.endswith("\n") else key + "\n", "pausepoint-ssh-key")

    def describe(self) -> str:
        c = self.config
        return f"ssh {c.user}@{c.host}:{c.port}"

    def _argv(self, command: Sequence[str]) -> list[str]:
        c = self.config
        return [
            c.ssh,
            "-F", "/dev/null",  # no user or system config decides for us
            "-i", self._key_path(),
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={c.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "UpdateHostKeys=no",
            "-o", f"ConnectTimeout={c.connect_timeout_s}",
            "-o", "ServerAliveInterval=15",
            "-o", "LogLevel=ERROR",
            "-p", str(c.port),
            "-l", c.user,
            c.host,
            "--",
            shlex.join(command),
        ]  # fmt: skip

    def _key_path(self) -> str:
        # ssh closes every inherited descriptor above stderr before reading its identity file,
        # so /dev/fd/N would be gone: it opens our own descriptor through /proc instead (same
        # user; the memory file lives as long as this executor).
        return f"/proc/{os.getpid()}/fd/{self._key.fd}"

    def close(self) -> None:
        self._key.close()


class KubernetesExecutor(NodeExecutor):
    """``kubectl exec -i`` into the node's pod. Not tested against a cluster here (none runs
    on the test machine); the command line is."""

    def __init__(self, config: KubernetesExecutorConfig):
        self.config = config

    def describe(self) -> str:
        c = self.config
        return f"kubernetes pod {c.namespace}/{c.pod}" + (
            f" ({c.container})" if c.container else ""
        )

    def _argv(self, command: Sequence[str]) -> list[str]:
        c = self.config
        argv = [c.kubectl]
        if c.context:
            argv += ["--context", c.context]
        argv += ["-n", c.namespace, "exec", "-i", c.pod]
        if c.container:
            argv += ["-c", c.container]
        return [*argv, "--", *command]


def open_executor(config: Any, resolve: Any) -> NodeExecutor:
    """The executor of a node's ``executor`` settings; ``resolve`` turns the ssh key's
    reference into its value (pausepoint.secrets.SecretResolver)."""
    if isinstance(config, LocalExecutorConfig):
        return LocalExecutor()
    if isinstance(config, SshExecutorConfig):
        key = resolve(config.key)
        if key is None:
            raise ConfigError(f"ssh executor for {config.host}: no key")
        return SshExecutor(config, key.get_secret_value())
    if isinstance(config, KubernetesExecutorConfig):
        return KubernetesExecutor(config)
    raise ConfigError(f"unknown node executor {config!r}")


__all__ = [
    "ExecutorConfig",
    "KubernetesExecutor",
    "KubernetesExecutorConfig",
    "LocalExecutor",
    "LocalExecutorConfig",
    "NodeExecutor",
    "SshExecutor",
    "SshExecutorConfig",
    "open_executor",
]
