"""Helpers shared by the store kinds that run external dump/restore tools.

- tools: find a program (config ``bin_dir`` or PATH) or say which Debian package installs it
- processes: start a tool with secrets kept out of argv, keep a tail of its stderr for errors
- streaming: a tool's stdout into a (compressed) artifact, hashed on the way; a file
  or a stream into a tool's stdin, in bursts
- artifacts: sha256 of files (parallel), verification before a restore
- progress: a thread that reports bytes written so far
- fingerprints: per-row hash sums (in SQL or over rows read here), folded into one hex value
- ServerStore: what the two client/server kinds (postgres, mysql) share beyond ``Store``
"""

from __future__ import annotations

import array
import collections
import contextlib
import errno
import fcntl
import hashlib
import operator
import os
import re
import select
import shutil
import signal
import subprocess
import termios
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from pausepoint.errors import (
    CorruptArtifactError,
    InternalError,
    PausepointError,
    RestoreError,
    ToolMissingError,
)
from pausepoint.stores.base import (
    Artifact,
    CaptureDetails,
    CaptureHandle,
    ProgressFn,
    Store,
    StoreCapture,
)

CHUNK = 1 << 20  # 1 MiB: large enough that hashlib/zlib release the GIL and syscalls are few


# --- point-in-time captures ------------------------------------------------------------------


def pitr_capture(
    store: Store,
    h: CaptureHandle,
    *,
    method: str,
    at: datetime,
    details: CaptureDetails,
    artifact: str,
    payload: bytes,
    progress: ProgressFn | None,
) -> StoreCapture:
    """What a point-in-time kind records after the window: one small artifact (what the point
    restores from, checksummed like any other, so a damaged point is refused before a restore)
    and no fingerprint: the data at the point cannot be read at capture time."""
    with h.ctx.sink.open(artifact) as out:
        out.write(payload)
        written = out.close()
    if progress is not None:
        progress(store.name, written.size)
    return StoreCapture(
        name=store.name,
        kind=store.kind,
        method=method,
        artifacts=[written],
        fingerprint={},
        fingerprint_method=store.fingerprint_method,
        snapshot_established_at=h.opened_at,
        pitr_timestamp=at,
        details=details,
    )


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
            raise InternalError("refusing to start a tool with a secret on its command line")


class ToolProcess:
    """A running tool: stdout as given, stderr tail kept in memory for the error message.

    ``on_stderr``, when given, sees every stderr line as it arrives (from the draining thread);
    a line for which it returns True is the tool's progress talk, not kept in the tail.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.DEVNULL,
        tail_lines: int = 20,
        on_stderr: Callable[[str], bool] | None = None,
        pass_fds: Sequence[int] = (),
    ):
        self._secrets = [s for s in secrets if s]
        _refuse_secrets_in_argv(argv, self._secrets)
        self.argv = list(argv)
        self.name = Path(argv[0]).name
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._on_stderr = on_stderr
        self.proc = subprocess.Popen(
            self.argv,
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            pass_fds=tuple(pass_fds),  # a SecretFile's descriptor, under the same number
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
            line = raw.decode(errors="replace").rstrip()
            if self._on_stderr is not None:
                try:
                    if self._on_stderr(line):
                        continue
                except Exception:  # a watcher's bug must not stop the draining
                    self._on_stderr = None
            self._tail.append(line)

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


class SecretFile:
    """Secret text a tool reads as the file ``/dev/fd/N``, never written to any disk: an
    anonymous memory file (memfd). It exists while a descriptor to it is open, ours or the
    tool's, so a run that fails, is cancelled or is killed with SIGKILL leaves nothing behind
    (a file in the temp directory would stay: nothing sweeps it). Give the tool ``fd`` in
    ``pass_fds``; the tool opens the path anew (from the start) as often as it likes.
    ``close()`` (or the ``with`` block) drops our descriptor."""

    def __init__(self, text: str, name: str = "pausepoint-secret"):
        # Close-on-exec: only a tool given it in pass_fds inherits it, never another child.
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            # A memfd starts as mode 0777; MariaDB/MySQL tools ignore a world-writable option
            # file ("World-writable config file ... is ignored"), and nobody else needs it.
            os.fchmod(fd, 0o600)
            data = memoryview(text.encode())
            while data:
                data = data[os.write(fd, data) :]
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise InternalError("the secret file is closed")
        return self._fd

    @property
    def path(self) -> str:
        return f"/dev/fd/{self.fd}"

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> SecretFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def verify_artifacts(
    root: Path, artifacts: Sequence[Artifact], *, store: str, checksums: bool = True
) -> None:
    """Refuse a restore whose files are missing, truncated or altered (before any change).

    ``checksums=False`` checks presence and sizes only: for a caller that has just verified the
    sha256 of these very files (the restore flow's validate step), hashing them again would
    cost a full read of every artifact (1 GB: ~0.6 s of CPU here) for nothing.
    """
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
        if checksums and sha256_file(path) != a.sha256:
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


@contextlib.contextmanager
def artifacts_checked_beside(
    root: Path, artifacts: Sequence[Artifact], *, store: str, checksums: bool = True
) -> Iterator[Callable[[], None]]:
    """verify_artifacts in a thread while the caller does what changes nothing (connect, check
    the target); yields ``checked``, which the caller calls before its first change and which
    raises the verification's error. A restore of 10 MB into PostgreSQL spent 4.5 ms hashing
    and 7 ms connecting, one after the other, against a 0.13 s pg_restore.

    The verification's error wins: a corrupt artifact is what the user hears of, even when a
    target check failed meanwhile.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{store}-verify")
    verification = pool.submit(verify_artifacts, root, artifacts, store=store, checksums=checksums)
    try:
        yield verification.result
        verification.result()
    except BaseException:
        error = verification.exception()
        if error is not None:
            raise error from None
        raise
    finally:
        pool.shutdown()


# --- streaming a tool's stdout into an artifact ---------------------------------------------

F_SETPIPE_SZ = 1031  # fcntl commands (Linux)
F_GETPIPE_SZ = 1032
PIPE_MAX = 16 << 20


def enlarge_pipe(fd: int) -> int:
    """Make a pipe as large as allowed (up to PIPE_MAX; 1 MiB, /proc/sys/fs/pipe-max-size, for
    users without CAP_SYS_RESOURCE); returns its size, 0 if unknown. A tool reading a 64 KiB
    pipe that we fill runs slower than on a file: `mariadb < dump` of 100 MB, medians of 3,
    1.64 s from the file, 1.72 s through a 64 KiB pipe, 1.66 s through a 1 MiB one."""
    for size in (PIPE_MAX, CHUNK):
        try:
            return fcntl.fcntl(fd, F_SETPIPE_SZ, size)
        except (OSError, ValueError):
            continue
    try:
        return fcntl.fcntl(fd, F_GETPIPE_SZ)
    except OSError:
        return 0


def read_pipe(source: IO[bytes], sink: Callable[[memoryview], None]) -> int:
    """Read a pipe to its end in blocks of up to CHUNK, handing each to ``sink`` (the view is
    reused: copy what you keep). Returns the number of bytes read.

    Dump tools write a few KB at a time, and reading each piece as it comes costs a system call
    and a thread wake-up per piece. After a short read this waits 1 ms, so the pipe fills
    meanwhile. Measured with mariadb-dump of 1 GB (2 cores, sha256 and a file write per
    block): ~200k reads of ~5 KB and 2.6 s of CPU without the wait, ~3k reads of ~350 KB and
    1.1 s with it, at the same wall time. The pipe is made as large as allowed (up to 16 MiB;
    1 MiB for unprivileged users by default) so that the tool does not wait on a reader that
    lost its core for a moment; the wait needs a pipe of at least 1 MiB.
    """
    fd = source.fileno()
    short = CHUNK // 4 if enlarge_pipe(fd) >= CHUNK else 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    while n := os.readv(fd, [buf]):
        total += n
        sink(view[:n])
        if n < short:
            time.sleep(0.001)
    return total


class PipeWriter:
    """Feeds a pipe that a tool reads (the dump into ``mariadb``), in bursts.

    A client reading its input 4 KiB at a time from a full pipe wakes the writer on every read
    to refill one page: ~250k wake-ups per GB. Refilling only once the pipe is down to a
    quarter keeps the tool as fast as when it reads a file. Measured, `mariadb db` loading a
    100 MB dump, medians of 5: from the file 1.37 s; through a 1 MiB pipe written as fast as it
    drains 1.49 s; in bursts 1.37 s. Without a pipe of at least 1 MiB, or without FIONREAD,
    it writes as the pipe takes it.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self.size = enlarge_pipe(fd)
        self._errors = select.poll()
        self._errors.register(fd, select.POLLERR)
        self.paced = self.size >= CHUNK and self._unread() is not None

    def _unread(self) -> int | None:
        count = array.array("i", [0])
        try:
            fcntl.ioctl(self.fd, termios.FIONREAD, count)
        except OSError:
            return None
        return count[0]

    def _room(self) -> int:
        """Wait until the reader has drained the pipe to a quarter; the free space then."""
        if not self.paced:
            return CHUNK
        while (unread := self._unread() or 0) > self.size // 4:
            if self._errors.poll(0):  # POLLERR: the reader is gone
                raise BrokenPipeError(errno.EPIPE, "the reading end of the pipe closed")
            time.sleep(0.001)
        return self.size - unread

    def send_file(self, in_fd: int, start: int, end: int) -> None:
        """Bytes start..end of file ``in_fd``, copied by the kernel (sendfile)."""
        while start < end:
            sent = os.sendfile(self.fd, in_fd, start, min(end - start, self._room()))
            if sent == 0:
                raise RestoreError(
                    f"copying {end} bytes into a restore tool stopped at byte {start} (the "
                    "file is shorter than it was): check that nothing changes the catalog's "
                    "artifacts during a restore, then run it again with --replace"
                )
            start += sent

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view[: self._room()]) :]


@contextlib.contextmanager
def feeding(tool: ToolProcess) -> Iterator[PipeWriter]:
    """A tool's stdin as a PipeWriter; afterwards stdin is closed and the tool waited for. A
    tool that stops reading ends the feed quietly (its exit status and stderr say why); any
    other failure kills it."""
    assert tool.proc.stdin is not None
    try:
        yield PipeWriter(tool.proc.stdin.fileno())
    except BrokenPipeError:
        pass
    except BaseException:
        tool.kill()
        raise
    with contextlib.suppress(BrokenPipeError):
        tool.proc.stdin.close()
    tool.wait()


class PipeToFile:
    """Copies a pipe into a file from a thread, optionally gzip-compressed, hashing on the way.

    Reads into one preallocated buffer (no allocation per read) and hashes and compresses the
    bytes as they are written, so the artifact needs no second pass. zlib and hashlib release
    the GIL on large blocks, so the thread runs beside the caller's work. ``tap``, when given,
    sees every block of the uncompressed stream (as bytes) in the same pass; if it raises, its
    error is kept in ``tap_error`` and the copy goes on without it. With ``start=False`` nothing
    is read until :meth:`start`: the writer runs until the pipe is full, then waits.
    """

    def __init__(
        self,
        source: IO[bytes],
        path: Path,
        *,
        gzip_level: int = 0,
        name: str = "dump",
        tap: Callable[[bytes], None] | None = None,
        start: bool = True,
    ):
        self.path = path
        self.bytes_in = 0  # bytes read from the pipe
        self.bytes_written = 0  # bytes in the artifact so far
        self.error: BaseException | None = None
        self.tap_error: BaseException | None = None
        self._digest = hashlib.sha256()
        self._source = source
        self._gzip_level = gzip_level
        self._tap = tap
        self._thread = threading.Thread(target=self._run, name=f"{name}-writer", daemon=True)
        self._state_lock = threading.Lock()
        self._state = "new"  # -> "copying" (start) or "closed" (join before start)
        if start:
            self.start()

    def start(self) -> None:
        """Start copying (once). Until then the writer's pipe fills and the writer waits on it."""
        with self._state_lock:
            if self._state != "new":
                return
            self._state = "copying"
        self._thread.start()

    def _run(self) -> None:
        # wbits 31: a gzip container, readable by gzip(1) and Python's gzip module.
        comp = zlib.compressobj(self._gzip_level, zlib.DEFLATED, 31) if self._gzip_level else None
        try:
            with open(self.path, "wb", buffering=0) as out:

                def block(data: memoryview) -> None:
                    self.bytes_in += len(data)
                    if self._tap is not None:
                        try:
                            self._tap(bytes(data))
                        except Exception as exc:
                            self.tap_error, self._tap = exc, None
                    self._emit(out, comp.compress(data) if comp else data)

                read_pipe(self._source, block)
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
        with self._state_lock:
            if self._state != "copying":  # never started: nothing will read the pipe
                if self._state == "new":
                    self._source.close()
                self._state = "closed"
                return
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


_digest = operator.methodcaller("digest")


def sum_row_hashes(rows: Iterable[bytes]) -> int:
    """The sum of every row's hash, where a row's hash is its sha256 read as a number; fold the
    sum with fold_row_hashes, which keeps its low 64 bits (the digests' last 8 bytes).

    All in C (map over hashlib), no Python bytecode per row, but a hash object, a digest and a
    number are made per row: 0.36 us per 40-byte row, 0.84 us per 1 KB row on the 2-core test
    machine (which has the SHA extensions). The per-row method of points made before xxh3.
    """
    return sum(map(int.from_bytes, map(_digest, map(hashlib.sha256, rows))))


def fold_row_hashes(total: int | Decimal | None) -> str:
    """The table hash: the sum of every row's hash (in SQL, or from sum_row_hashes), modulo
    2^64, as hex.

    A sum is order-independent, so the same rows give the same hash whatever order a scan or a
    restore produces. PostgreSQL sums its signed bigint row hashes exactly (as numeric) and
    Python's integers are exact; signed and unsigned readings of the same 64 bits agree modulo
    2^64.
    """
    return f"{int(total or 0) % (1 << 64):016x}"


# --- failures -------------------------------------------------------------------------------


def out_of_space(exc: BaseException) -> bool:
    """Did ``exc``, or an error that caused it, fail for want of space? Our own writes say so by
    errno, a tool by its words (its stderr tail is in the message)."""
    seen: BaseException | None = exc
    for _ in range(16):  # causes chain; a cycle must not loop forever
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return os.strerror(errno.ENOSPC) in str(exc)


# --- the shared shape of server-backed stores -----------------------------------------------

H = TypeVar("H", bound=CaptureHandle)


class ServerStore(Store[Any], Generic[H]):
    """Base of the kinds that reach a database server as host:port/user/password and run its
    dump tools: tool versions, the password, and the messages of a failed connection. The
    capture's ownership rules are ``Store``'s."""

    product: str  # for messages: "PostgreSQL", "MySQL/MariaDB"

    def __init__(self, config: Any, resolve: Any):
        super().__init__(config, resolve)
        self._versions: dict[Path, str] = {}

    def _tool_version(self, tool: Path) -> str:
        """``tool --version``, run once per store: each run is a process start (~10-30 ms),
        which is a few percent of a 10 MB capture."""
        if tool not in self._versions:
            self._versions[tool] = tool_version(tool)
        return self._versions[tool]

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
