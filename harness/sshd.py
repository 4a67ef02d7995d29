"""A private OpenSSH server on loopback, for the ssh node executor's tests.

Its own host key, client key, authorized_keys and config in a directory the caller gives; runs
in the foreground (``sshd -D``) as our child and is stopped by that process object. Logs in as
the user running the tests (root here) with the generated key only.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.processes import HOST, free_port, log_tail, stop_child


class SshdUnavailable(RuntimeError):
    """sshd or ssh-keygen is not installed (scripts/install-servers.sh installs them)."""


def _sshd() -> str:
    for candidate in (shutil.which("sshd"), "/usr/sbin/sshd"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise SshdUnavailable("sshd not found: install openssh-server (scripts/install-servers.sh)")


@dataclass
class Sshd:
    dir: Path
    port: int
    user: str
    process: subprocess.Popen

    @property
    def client_key(self) -> str:
        """The private key the tests hand the executor through a secret reference."""
        return (self.dir / "client_key").read_text()

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    def executor_settings(self, key_env: str) -> dict:
        return {"kind": "ssh", "host": HOST, "port": self.port, "user": self.user,
                "key": {"env": key_env}, "known_hosts": str(self.known_hosts)}  # fmt: skip

    def stop(self) -> None:
        stop_child(self.process, signal.SIGTERM, 10)


def start_sshd(directory: Path) -> Sshd:
    sshd = _sshd()
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise SshdUnavailable("ssh-keygen not found: install openssh-client")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    for name in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                       check=True, capture_output=True)  # fmt: skip
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    port = free_port()
    user = getpass.getuser()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress {HOST}\nHostKey {d / 'host_key'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nX11Forwarding no\n"
        "AllowTcpForwarding no\nPrintMotd no\nMaxStartups 50\nMaxSessions 50\n"
        f"AllowUsers {user}\n"
    )
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[{HOST}]:{port} {host_pub[0]} {host_pub[1]}\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    log = d / "sshd.log"
    proc = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(d / "sshd_config")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(log, "wb"),  # noqa: SIM115
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited at start:\n{log_tail(log, 20)}")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                break
        if time.monotonic() > deadline:
            stop_child(proc, signal.SIGTERM, 10)
            raise RuntimeError(f"sshd did not listen in time:\n{log_tail(log, 20)}")
        time.sleep(0.1)
    return Sshd(d, port, user, proc)
