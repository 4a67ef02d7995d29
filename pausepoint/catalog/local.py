"""The local-directory catalog driver: keys are paths under one root directory.

Durability: a file that counts (a manifest, a lease) is written to a temporary file in the same
directory (dot-prefixed, never taken for a record by a listing), fsynced, then linked or renamed
to its name and the directory fsynced, so after a crash or power loss it is either absent (or the
previous version) or complete. Artifacts are fsynced in ``publish`` before the manifest that
lists them is written; a streamed artifact (``open_write``) is fsynced before its rename.

Conditional writes:

- ``create_if_absent`` links the synced temp file to its name (``link(2)`` fails when the name
  exists): exactly one creator wins, without a lock, on one host and on NFS. A file system
  without hard links gets the lock below and an existence check instead.
- ``replace_if_unchanged``: the version is the SHA-256 of the content (records are small), so
  it does not depend on inode numbers (reused) or mtimes (coarse, cached on NFS). The check
  and the rename happen under the directory's lock: ``flock(2)`` on ``<dir>/.catalog.lock``
  plus a lock per directory inside the process (on NFS, flock is a POSIX lock, which the
  threads of one process share). ``move`` takes the same lock, so no rewrite lands between its
  link and its unlink. ``write_atomic`` and ``delete`` do not: they are for keys no one writes
  conditionally (drill records; ended leases, which are never rewritten).

Limits: on one host these hold for every process and thread. On a shared file system they hold
as far as it honours ``link(2)`` atomically and ``flock(2)`` across clients (NFSv4 with locking
enabled does; an SMB mount, a FUSE object-store mount or NFS mounted ``nolock`` may not). Point
such a catalog at an object store's driver instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from pausepoint.catalog.config import LocalCatalogConfig
from pausepoint.catalog.driver import ArtifactWriter, CatalogDriver, FileInfo, Versioned
from pausepoint.errors import CatalogConflictError, CatalogError

LOCK_NAME = ".catalog.lock"  # dot-prefixed: never a point, a lease, a drill or an artifact
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV}

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """Exclusive lock on one directory's records, across threads and processes.
    FileNotFoundError when the directory does not exist."""
    with _thread_locks_guard:
        tlock = _thread_locks.setdefault(os.path.abspath(directory), threading.Lock())
    with tlock:
        path = directory / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # Removed with its directory while we waited: our lock guards nothing.
                try:
                    current = os.stat(path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    current = False
            except BaseException:
                os.close(fd)
                raise
            if current:
                break
            os.close(fd)
        try:
            yield
        finally:
            os.close(fd)  # releases the flock


class LocalDriver(CatalogDriver):
    fetches_in_place = True  # fetch_dir is the catalog's own directory

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    @classmethod
    def from_config(cls, config: LocalCatalogConfig, resolve: object = None) -> LocalDriver:
        return cls(config.path)  # a directory needs no credentials

    def __repr__(self) -> str:
        return f"LocalDriver({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _failed(self, what: str, key: str, exc: OSError) -> CatalogError:
        return CatalogError(
            f"cannot {what} {self.location(key)}: {exc.strerror or exc}. Check that the catalog "
            f"directory {self.root} exists, is writable by this user and has free space."
        )

    def _conflict(self, key: str, what: str) -> CatalogConflictError:
        return CatalogConflictError(
            f"{self.location(key)} {what}: another writer got there first; nothing was "
            "overwritten. Read it again and decide from what it holds now."
        )

    def location(self, key: str) -> str:
        return str(self._path(key))

    # --- a point's staging ------------------------------------------------------------------

    def reserve(self, prefix: str) -> bool:
        path = self._path(prefix)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._failed("create", prefix, exc) from exc
        try:
            path.mkdir()  # atomic: exactly one caller creates it
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._failed("create", prefix, exc) from exc
        return True

    def staging_dir(self, prefix: str) -> Path:
        path = self._path(prefix)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._failed("create", prefix, exc) from exc
        return path

    def publish(self, prefix: str) -> None:
        top = self._path(prefix)
        try:
            # Files first, then directories bottom-up, then the chain up to the root: every
            # entry the manifest will point at survives a power loss.
            for dirpath, _dirnames, filenames in os.walk(top, topdown=False):
                for name in filenames:
                    _fsync_file(Path(dirpath, name))
                _fsync_dir(Path(dirpath))
            parent = top.parent
            while parent != self.root.parent and parent.is_relative_to(self.root):
                _fsync_dir(parent)
                parent = parent.parent
        except OSError as exc:
            raise self._failed("sync", prefix, exc) from exc

    def fetch_dir(self, prefix: str) -> Path:
        return self._path(prefix)

    # --- reading ----------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def stat(self, key: str) -> FileInfo | None:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return FileInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def read_versioned(self, key: str) -> Versioned:
        data = self.read_bytes(key)
        return Versioned(data, _version(data))

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(errno.ENOENT, "no such key", self.location(key)) from None
        except OSError as exc:
            raise self._failed("read", key, exc) from exc

    def open_read(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(errno.ENOENT, "no such key", self.location(key)) from None
        except OSError as exc:
            raise self._failed("read", key, exc) from exc

    # --- writing ----------------------------------------------------------------------------

    def _synced_temp(self, path: Path, data: bytes) -> str:
        """A dot-prefixed temp file beside ``path`` holding ``data``, fsynced."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp

    def _replace(self, path: Path, data: bytes) -> None:
        tmp: str | None = self._synced_temp(path, data)
        try:
            os.replace(tmp, path)
            tmp = None
            _fsync_dir(path.parent)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def write_atomic(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._replace(path, data)
        except OSError as exc:
            raise self._failed("write", key, exc) from exc

    def create_if_absent(self, key: str, data: bytes) -> str:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._synced_temp(path, data)
            try:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    # NFS may answer EEXIST to a retransmitted link that did succeed.
                    if os.stat(tmp).st_nlink != 2:
                        raise self._conflict(key, "already exists") from None
                except OSError as exc:
                    if exc.errno not in _NO_LINKS:
                        raise
                    with _dir_lock(path.parent):
                        if os.path.lexists(path):
                            raise self._conflict(key, "already exists") from None
                        os.replace(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise self._failed("write", key, exc) from exc
        return _version(data)

    def replace_if_unchanged(self, key: str, data: bytes, version: str) -> str:
        path = self._path(key)
        try:
            with _dir_lock(path.parent):
                try:
                    current = path.read_bytes()
                except (FileNotFoundError, NotADirectoryError):
                    raise self._conflict(key, "was removed since it was read") from None
                if _version(current) != version:
                    raise self._conflict(key, "was rewritten since it was read")
                self._replace(path, data)
        except FileNotFoundError:  # its directory is gone
            raise self._conflict(key, "was removed since it was read") from None
        except OSError as exc:
            raise self._failed("write", key, exc) from exc
        return _version(data)

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[ArtifactWriter]:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as exc:
            raise self._failed("write", key, exc) from exc
        f = os.fdopen(fd, "wb")

        def sink(chunk: bytes) -> None:
            try:
                f.write(chunk)
            except OSError as exc:
                raise self._failed("write", key, exc) from exc

        published = False
        try:
            yield ArtifactWriter(key, sink)
            try:
                f.flush()
                os.fsync(f.fileno())
                f.close()
                os.replace(tmp, path)  # complete under its name, or not there at all
                published = True
                _fsync_dir(path.parent)
            except OSError as exc:
                raise self._failed("write", key, exc) from exc
        finally:
            f.close()
            if not published:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    # --- listing ----------------------------------------------------------------------------

    def list_children(self, prefix: str) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self._path(prefix)) if e.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise self._failed("list", prefix, exc) from exc

    def list_files(self, prefix: str) -> list[FileInfo]:
        top = self._path(prefix)
        out: list[FileInfo] = []
        for dirpath, _dirnames, filenames in os.walk(top):
            for name in filenames:
                if name == LOCK_NAME:
                    continue  # the driver's own
                path = Path(dirpath, name)
                with contextlib.suppress(FileNotFoundError):
                    st = path.stat()
                    key = path.relative_to(self.root).as_posix()
                    out.append(FileInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
        return sorted(out, key=lambda f: f.key)

    # --- removing ---------------------------------------------------------------------------

    def move(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Under the source's lock, so no rewrite of src lands between the link and the
            # unlink; link(2) never replaces an existing dst (rename(2) would).
            with _dir_lock(source.parent):
                try:
                    os.link(source, target)
                except FileExistsError:
                    raise self._conflict(dst, "already exists: cannot move there") from None
                except OSError as exc:
                    if exc.errno not in _NO_LINKS:
                        raise
                    if os.path.lexists(target):
                        raise self._conflict(dst, "already exists: cannot move there") from None
                    os.rename(source, target)
                else:
                    os.unlink(source)
            _fsync_dir(target.parent)
            _fsync_dir(source.parent)
        except FileNotFoundError:
            raise  # the source (or its directory) is gone
        except OSError as exc:
            raise self._failed("move", src, exc) from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except NotADirectoryError:
            return
        except OSError as exc:
            raise self._failed("delete", key, exc) from exc

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix)
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._failed("delete", prefix, exc) from exc
