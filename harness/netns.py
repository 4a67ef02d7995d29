"""Hosts as Linux network namespaces, for the many-machines tests (test support, never shipped).

A :class:`Network` is a bridge in the test's own namespace with the address ``127.100.N.1``;
each :class:`Host` is a network namespace joined to it by a veth pair, with its own address
``127.100.N.k``. Every address is in 127.0.0.0/8: no traffic leaves the machine. Two kernel
details make loopback-range addresses work off the ``lo`` device:

- ``route_localnet=1`` on the bridge and veths (the kernel drops 127/8 packets on other
  devices otherwise);
- a ``127.100.N.0/24`` unicast route in the LOCAL routing table of each side: the kernel's
  ``local 127.0.0.0/8 dev lo`` route would otherwise claim those addresses as the host's own.
  Only that /24 is affected; the rest of 127/8 (the servers, the Cassandra nodes) is untouched.

The servers of the test session listen on 127.0.0.1 in the test's namespace; a host reaches
one through :meth:`Network.forward`, a TCP relay on the bridge's address (like a load balancer
in front of a database). :meth:`Host.cut` takes a host's route to an address away (a broken
network path) and :meth:`Host.mend` gives it back; :meth:`Host.kill_all` ends every process in
the host (a machine that died), by the pids the kernel lists for that namespace: only processes
this harness started live there.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class NetnsUnavailable(RuntimeError):
    """This kernel or user cannot create network namespaces (tests skip, or fail in CI)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and r.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {r.stderr.strip()}")
    return r


def _sysctl(netns: str | None, key: str, value: str) -> None:
    cmd = ["sysctl", "-q", "-w", f"{key}={value}"]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    subprocess.run(cmd, check=True, capture_output=True)


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    for tool in ("ip", "sysctl", "unshare"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            return f"`{tool}` is not installed (iproute2 / procps / util-linux)"
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"the kernel refused a network namespace: {r.stderr.strip()}"
    return None


class _Relay(threading.Thread):
    """One TCP relay: accepts on (listen_host, port), pipes each connection to ``target``."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]):
        super().__init__(name=f"relay-{listen[0]}:{listen[1]}", daemon=True)
        self.target = target
        self.sock = socket.create_server(listen, reuse_port=False)
        self.address = self.sock.getsockname()
        self._halt = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._halt.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.2)
            if not ready:
                continue
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns |= {client, upstream}
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        pair = {a: b, b: a}
        try:
            while not self._halt.is_set():
                ready, _, _ = select.select(list(pair), [], [], 0.5)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    pair[s].sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._conns -= {a, b}

    def stop(self) -> None:
        self._halt.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        with self._lock:
            for s in list(self._conns):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        self.join(timeout=5)


@dataclass
class Host:
    """One machine: a network namespace with its own address on the network."""

    name: str
    netns: str
    address: str
    veth: str  # the test side's end
    network: Network
    procs: list[subprocess.Popen] = field(default_factory=list)

    def popen(
        self,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log: Path | None = None,
    ) -> subprocess.Popen:
        """Start ``cmd`` on this host (its own session, output to ``log``)."""
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *cmd],
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        self.procs.append(proc)
        return proc

    def run(self, cmd: Sequence[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            **kw,
        )

    def pids(self) -> list[int]:
        out = _ip("netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]

    def kill_all(self) -> list[int]:
        """SIGKILL every process in this host (the machine died); returns their pids."""
        killed = self.pids()
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        return killed

    def cut(self, address: str) -> None:
        """This host loses its route to ``address`` (packets to it are refused at once)."""
        _ip("-n", self.netns, "route", "add", "prohibit", f"{address}/32")

    def mend(self, address: str) -> None:
        _ip("-n", self.netns, "route", "del", "prohibit", f"{address}/32", check=False)


@dataclass
class Network:
    """A bridge at 127.100.``index``.1 and the hosts on it (see the module's docstring)."""

    index: int
    hosts: dict[str, Host] = field(default_factory=dict)
    relays: list[_Relay] = field(default_factory=list)
    bridge: str = ""
    _up: bool = False

    @property
    def subnet(self) -> str:
        return f"127.100.{self.index}.0/24"

    @property
    def address(self) -> str:
        """The test side's address on the network: where hosts reach forwarded servers."""
        return f"127.100.{self.index}.1"

    @classmethod
    def free(cls) -> Network:
        """A network on a 127.100.N.0/24 that no bridge of this machine uses (parallel test
        sessions each get their own)."""
        used = _ip("-o", "-4", "addr", "show", check=False).stdout
        for index in [*range(os.getpid() % 200 + 20, 250), *range(20, 250)]:
            if f" 127.100.{index}." not in used:
                return cls(index)
        raise NetnsUnavailable("every 127.100.N.0/24 network is in use")

    def up(self) -> Network:
        why = available()
        if why:
            raise NetnsUnavailable(why)
        self.bridge = f"ppbr{self.index}"
        _ip("link", "add", self.bridge, "type", "bridge")
        self._up = True
        _ip("link", "set", self.bridge, "up")
        _ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
        _sysctl(None, f"net.ipv4.conf.{self.bridge}.route_localnet", "1")
        _ip("route", "add", "table", "local", self.subnet, "dev", self.bridge, "scope", "link",
            "src", self.address)  # fmt: skip
        return self

    def host(self, name: str) -> Host:
        k = len(self.hosts) + 2
        netns = f"pp{os.getpid()}-{self.index}-{name}"
        veth = f"ppv{self.index}x{k}"
        address = f"127.100.{self.index}.{k}"
        _ip("netns", "add", netns)
        host = Host(name, netns, address, veth, self)
        self.hosts[name] = host
        _ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}h")
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        _sysctl(None, f"net.ipv4.conf.{veth}.route_localnet", "1")
        _ip("link", "set", f"{veth}h", "netns", netns)
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "link", "set", f"{veth}h", "name", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _sysctl(netns, "net.ipv4.conf.all.route_localnet", "1")
        _sysctl(netns, "net.ipv4.conf.eth0.route_localnet", "1")
        _ip("-n", netns, "route", "add", "table", "local", self.subnet, "dev", "eth0", "scope",
            "link", "src", address)  # fmt: skip
        return host

    def add_address(self, k: int) -> str:
        """Another address of the test side, 127.100.N.``k``: a service of its own that one
        host's route can be cut from (``Host.cut``) without cutting the others."""
        address = f"127.100.{self.index}.{k}"
        _ip("addr", "add", f"{address}/32", "dev", self.bridge)
        return address

    def forward(
        self, port: int, target: tuple[str, int] | None = None, address: str | None = None
    ) -> tuple[str, int]:
        """Serve ``target`` (default 127.0.0.1:``port``) to the hosts at (``address`` or the
        network's address, port)."""
        relay = _Relay((address or self.address, port), target or ("127.0.0.1", port))
        relay.start()
        self.relays.append(relay)
        return relay.address

    def down(self) -> None:
        """Stop every host's processes, remove the hosts, the relays and the bridge."""
        for relay in self.relays:
            with contextlib.suppress(Exception):  # the hosts go whatever a relay does
                relay.stop()
        self.relays.clear()
        for host in list(self.hosts.values()):
            try:
                host.kill_all()
            finally:
                _ip("link", "del", host.veth, check=False)
                _ip("netns", "del", host.netns, check=False)
        self.hosts.clear()
        if self._up:
            _ip("route", "del", "table", "local", self.subnet, "dev", self.bridge, check=False)
            _ip("link", "del", self.bridge, check=False)
            self._up = False

    def __enter__(self) -> Network:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()
