"""Helpers shared by the store kinds that run external dump/restore tools.

- tools: find a program (config ``bin_dir`` or PATH) or say which Debian package installs it
- processes: start a tool with secrets kept out of argv, keep a tail of its stderr for errors
- streaming: a tool's stdout into a (compressed) artifact, hashed on the way
- artifacts: sha256 of files (parallel), verification before a restore
- progress: a thread that reports bytes written so far
- fingerprints: fold the per-row hash sum computed by SQL into one hex value
- ServerStore: what the two client/server kinds (postgres, mysql) share
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from pausepoint.errors import CorruptArtifactError, PausepointError, ToolMissingError
from pausepoint.stores.base import Artifact, CaptureHandle, ProgressFn, Store, StoreCapture

CHUNK = 1 << 20  # 1 MiB: large enough that hashlib/zlib release the GIL and syscalls are few


# --- tools ----------------------------------------------------------------------------------


def find_tool(names: Sequence[str], *, bin_dir: str | None, package: str, store: str) -> Path:
    """The first of ``names`` found in ``bin_dir`` (when set) or else on PATH."""
    for name in names:
        if bin_dir:
            candidate = Path(bin_dir) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        else:
            found = shutil.which(name)
            if found:
                return Path(found)
    where = f"in bin_dir {bin_dir}" if bin_dir else "on PATH"
    raise ToolMissingError(
        f"store {store}: {' / '.join(names)} not found {where}; install the Debian package "
        f"`{package}` (apt-get install {package}) or point bin_dir at the folder that has it"
    )


def tool_version(tool: Path) -> str:
    """First line of ``tool --version`` (e.g. 'pg_dump (PostgreSQL) 15.18 (Debian ...)')."""
    out = subprocess.run(
        [str(tool), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def major_version(text: str) -> int | None:
    """The first ``N.`` or ``N`` number in a version line (15 of '... 15.18 ...')."""
    m = re.search(r"(?<![\w.])(\d+)(?:\.\d+)+", text) or re.search(r"\b(\d+)\b", text)
    return int(m.group(1)) if m else None


# --- processes ------------------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def _refuse_secrets_in_argv(argv: Sequence[str], secrets: Iterable[str]) -> None:
    # A programming error, not an operator's: argv is visible to every user of the machine.
    for s in secrets:
        if s and any(s in a for a in argv):
            raise ValueError("refusing to start a tool with a secret on its command line")


class ToolProcess:
    """A running tool: stdout as given, stderr tail kept in memory for the error message."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.DEVNULL,
        tail_lines: int = 20,
    ):
        self._secrets = [s for s in secrets if s]
        _refuse_secrets_in_argv(argv, self._secrets)
        self.argv = list(argv)
        self.name = Path(argv[0]).name
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            # Own process group: a kill reaches the tool only, never our own process.
            start_new_session=True,
        )
        self._stderr_thread = threading.Thread(
            target=self._drain_stderr, name=f"{self.name}-stderr", daemon=True
        )
        self._stderr_thread.start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._tail.append(raw.decode(errors="replace").rstrip())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        rc = self.proc.wait(timeout)
        self._stderr_thread.join(timeout=5)
        return rc

    def stderr_tail(self) -> str:
        return redact("\n".join(self._tail), self._secrets)

    def failure(self, what: str) -> str:
        """'<what>: <tool> exited with N: <stderr tail>' for an error message."""
        rc = self.proc.returncode
        how = f"was killed by signal {-rc}" if rc is not None and rc < 0 else f"exited with {rc}"
        tail = self.stderr_tail() or "(no output on stderr)"
        return f"{what}: {self.name} {how}: {tail}"

    def kill(self) -> None:
        """Stop the tool (SIGTERM, then SIGKILL); only this pid, never by name."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(timeout=10)
        self._stderr_thread.join(timeout=5)


def run_tool(
    argv: Sequence[str],
    *,
    error: type[PausepointError],
    what: str,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    timeout: float | None = None,
) -> None:
    """Run a tool to completion; raise ``error`` with its stderr tail when it fails."""
    tool = ToolProcess(argv, env=env, secrets=secrets)
    try:
        rc = tool.wait(timeout)
    except subprocess.TimeoutExpired as exc:
        tool.kill()
        raise error(f"{what}: {tool.name} did not finish within {timeout:.0f} s") from exc
    except BaseException:
        tool.kill()
        raise
    if rc != 0:
        raise error(tool.failure(what))


def make_private_dir(prefix: str) -> Path:
    """A 0700 temporary directory for files that hold secrets (remove_private_dir after)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def remove_private_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def private_dir(prefix: str) -> Iterator[Path]:
    """make_private_dir for the length of a ``with`` block."""
    path = make_private_dir(prefix)
    try:
        yield path
    finally:
        remove_private_dir(path)


def write_private_file(path: Path, text: str) -> Path:
    """Create ``path`` with mode 0600 before any byte of ``text`` is written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


# --- artifacts ------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _workers(count: int) -> int:
    return max(1, min(count, os.cpu_count() or 1, 8))


def list_artifacts(root: Path, paths: Iterable[Path] | None = None) -> list[Artifact]:
    """Artifacts (path relative to ``root``, size, sha256) of the files under ``root``.

    Hashes run in a thread pool: hashlib releases the GIL on large buffers, so big dumps are
    hashed on every core.
    """
    files = sorted(paths if paths is not None else (p for p in root.rglob("*") if p.is_file()))
    with ThreadPoolExecutor(max_workers=_workers(len(files))) as pool:
        digests = list(pool.map(sha256_file, files))
    return [
        Artifact(path=f.relative_to(root).as_posix(), size=f.stat().st_size, sha256=d)
        for f, d in zip(files, digests, strict=True)
    ]


def verify_artifacts(root: Path, artifacts: Sequence[Artifact], *, store: str) -> None:
    """Refuse a restore whose files are missing, truncated or altered (before any change)."""
    if not artifacts:
        raise CorruptArtifactError(
            f"store {store}: the capture lists no artifacts, so there is nothing to restore; "
            "pick another restore point"
        )

    def check(a: Artifact) -> str | None:
        path = root / a.path
        if not path.is_file():
            return f"{a.path} is missing"
        size = path.stat().st_size
        if size != a.size:
            return f"{a.path} has {size} bytes, the manifest says {a.size}"
        if sha256_file(path) != a.sha256:
            return f"{a.path} has a wrong sha256 checksum"
        return None

    with ThreadPoolExecutor(max_workers=_workers(len(artifacts))) as pool:
        problems = [p for p in pool.map(check, artifacts) if p]
    if problems:
        raise CorruptArtifactError(
            f"store {store}: artifact {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + f" under {root}; nothing was changed on the target. Fetch the files again from "
            "the catalog or restore from another restore point"
        )


# --- streaming a tool's stdout into an artifact ---------------------------------------------

F_SETPIPE_SZ = 1031  # fcntl command (Linux); a 1 MiB pipe means fewer wake-ups per MB


class PipeToFile:
    """Copies a pipe into a file from a thread, optionally gzip-compressed, hashing on the way.

    Reads into one preallocated buffer (no allocation per read) and hashes and compresses the
    bytes as they are written, so the artifact needs no second pass. zlib and hashlib release
    the GIL on 1 MiB blocks, so the thread runs beside the caller's work.
    """

    def __init__(self, source: IO[bytes], path: Path, *, gzip_level: int = 0, name: str = "dump"):
        self.path = path
        self.bytes_in = 0  # bytes read from the pipe
        self.bytes_written = 0  # bytes in the artifact so far
        self.error: BaseException | None = None
        self._digest = hashlib.sha256()
        self._source = source
        self._gzip_level = gzip_level
        with contextlib.suppress(OSError, ValueError):
            fcntl.fcntl(source.fileno(), F_SETPIPE_SZ, CHUNK)
        self._thread = threading.Thread(target=self._run, name=f"{name}-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # wbits 31: a gzip container, readable by gzip(1) and Python's gzip module.
        comp = zlib.compressobj(self._gzip_level, zlib.DEFLATED, 31) if self._gzip_level else None
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        fd = self._source.fileno()
        try:
            with open(self.path, "wb", buffering=0) as out:
                while n := os.readv(fd, [buf]):
                    self.bytes_in += n
                    self._emit(out, comp.compress(view[:n]) if comp else view[:n])
                if comp:
                    self._emit(out, comp.flush())
        except BaseException as exc:
            self.error = exc
        finally:
            self._source.close()

    def _emit(self, out: IO[bytes], data: bytes | memoryview) -> None:
        if len(data):
            self._digest.update(data)
            out.write(data)
            self.bytes_written += len(data)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


# --- progress -------------------------------------------------------------------------------


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):  # a file may vanish or be renamed meanwhile
                total += os.stat(os.path.join(dirpath, f)).st_size
    return total


class ProgressPoller:
    """Reports ``measure()`` to ``progress`` every ``interval`` seconds from a daemon thread."""

    def __init__(
        self,
        store: str,
        progress: ProgressFn | None,
        measure: Callable[[], int],
        interval: float = 0.5,
    ):
        self._store, self._progress, self._measure = store, progress, measure
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{store}-progress", daemon=True)

    def _report(self) -> None:
        if self._progress is not None:
            with contextlib.suppress(Exception):  # progress is advisory; never fail a capture
                self._progress(self._store, self._measure())

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._report()

    def __enter__(self) -> ProgressPoller:
        if self._progress is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._report()  # the final number


# --- fingerprints ---------------------------------------------------------------------------


def fold_row_hashes(total: int | Decimal | None) -> str:
    """The table hash: the SQL sum of every row's 64-bit md5 prefix, modulo 2^64, as hex.

    A sum is order-independent, so the same rows give the same hash whatever order a scan or a
    restore produces. Databases sum these values exactly (PostgreSQL in 128-bit, MySQL in
    DECIMAL), and signed (PostgreSQL bigint) and unsigned (MySQL) readings of the same 64 bits
    agree modulo 2^64.
    """
    return f"{int(total or 0) % (1 << 64):016x}"


# --- the shared shape of server-backed stores -----------------------------------------------

H = TypeVar("H", bound=CaptureHandle)


class ServerStore(Store[Any], Generic[H]):
    """Base of the kinds that reach a database server as host:port/user/password and run its
    dump tools. Subclasses implement ``_finish`` and ``abort_capture``; finish always releases
    the snapshot, whatever happens."""

    product: str  # for messages: "PostgreSQL", "MySQL/MariaDB"
    handle_type: type[H]

    @property
    def _where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def _password(self) -> str | None:
        secret = self._resolve(self.config.password)
        return secret.get_secret_value() if secret is not None else None

    def _auth_failed(self, detail: str) -> str:
        """The message for a rejected password: says so, names where it comes from, no value."""
        ref = self.config.password
        where = f"the {ref.describe()}" if ref is not None else "the site file (none is set)"
        return (
            f"store {self.name}: {self.product} at {self._where} rejected the password of user "
            f"{self.config.user!r} ({detail}); put the right password in {where} or fix `user`"
        )

    def _unreachable(self, cause: str) -> str:
        return (
            f"store {self.name}: {self.product} at {self._where} cannot be reached as user "
            f"{self.config.user!r}: {cause}; check host, port, and that the server runs and "
            "accepts this client"
        )

    def _own(self, handle: CaptureHandle) -> H:
        if not isinstance(handle, self.handle_type):
            raise TypeError(f"store {self.name}: not a {self.kind} capture handle: {handle!r}")
        return handle

    def finish_capture(
        self, handle: CaptureHandle, progress: ProgressFn | None = None
    ) -> StoreCapture:
        h = self._own(handle)
        try:
            return self._finish(h, progress)
        finally:
            self.abort_capture(h)

    def _finish(self, handle: H, progress: ProgressFn | None) -> StoreCapture:
        raise NotImplementedError
