"""What a test session must not leave behind: processes, admin nodes (paused or not), temp files.

``Baseline.take()`` runs when the session starts and ``Baseline.leftovers()`` once every fixture
is torn down (``pytest_sessionfinish`` in tests/conftest.py), so a finding fails ``make test``.

Processes are ours when they descend from the pytest process or carry the session's marker in
their environment (``MARKER``): a process orphaned by a killed parent (a ``pg_dump`` under a
backup killed with SIGKILL) is re-parented to init and only the marker still names it.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "PAUSEPOINT_TEST_SESSION"
# Names of what pausepoint and its test support create in the system temp directory.
TEMP_PREFIXES = ("pausepoint-", "pp-")


def _proc_ids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[1])


def _has_marker(pid: int, token: str) -> bool:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARKER}={token}".encode() in env.split(b"\0")


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:160] or "?"


def our_processes(token: str) -> dict[int, str]:
    """Live (not zombie) processes of this session other than pytest itself: pid -> cmdline."""
    me = os.getpid()
    stats = {pid: s for pid in _proc_ids() if (s := _stat(pid)) is not None}
    ours: dict[int, str] = {}
    for pid, (state, _) in stats.items():
        if pid == me or state == "Z":
            continue
        ancestor, hops = pid, 0
        while ancestor > 1 and ancestor != me and hops < 64:
            ancestor = stats.get(ancestor, ("", 0))[1]
            hops += 1
        if ancestor == me or _has_marker(pid, token):
            ours[pid] = _cmdline(pid)
    return ours


@dataclass
class Baseline:
    token: str
    started: float
    temp_dir: Path
    temp_before: set[str] = field(default_factory=set)

    @classmethod
    def take(cls) -> Baseline:
        token = os.environ.setdefault(MARKER, uuid.uuid4().hex)
        temp_dir = Path(tempfile.gettempdir())
        return cls(token, time.time(), temp_dir, set(os.listdir(temp_dir)))

    def new_temp_entries(self) -> list[str]:
        found = []
        for name in sorted(set(os.listdir(self.temp_dir)) - self.temp_before):
            if not name.startswith(TEMP_PREFIXES):
                continue
            try:
                # Created by this session, not by another one running beside it.
                if (self.temp_dir / name).lstat().st_mtime >= self.started - 1:
                    found.append(str(self.temp_dir / name))
            except OSError:
                continue
        return found

    def leftovers(self, live_nodes: list[str], grace_s: float = 15.0) -> list[str]:
        """Everything left behind, as lines; waits up to ``grace_s`` for exiting processes."""
        deadline = time.monotonic() + grace_s
        procs = our_processes(self.token)
        while procs and time.monotonic() < deadline:
            time.sleep(0.2)
            procs = our_processes(self.token)
        lines = [f"process {pid} still running: {cmd}" for pid, cmd in sorted(procs.items())]
        lines += [f"admin node still serving: {n}" for n in live_nodes]
        lines += [f"temp file or directory left: {p}" for p in self.new_temp_entries()]
        lines += [f"network namespace left (harness/netns.py): {n}" for n in our_namespaces()]
        return lines


def our_namespaces() -> list[str]:
    """Network namespaces this session's harness made (harness/netns.py names them pp<pid>-)."""
    import subprocess

    try:
        out = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"pp{os.getpid()}-")]
