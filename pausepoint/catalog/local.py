"""The local-directory catalog driver: keys are paths under one root directory.

Durability: a file that counts (a manifest, a lease) is written to a temporary file in the same
directory, fsynced, renamed over the target and the directory fsynced, so after a crash or power
loss it is either absent (or the previous version) or complete. Artifacts are fsynced in
``publish`` before the manifest that lists them is written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pausepoint.catalog.driver import CatalogDriver, FileInfo
from pausepoint.errors import CatalogError

_CHUNK = 1 << 20


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


class LocalDriver(CatalogDriver):
    fetches_in_place = True  # fetch_dir is the catalog's own directory

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalDriver({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _failed(self, what: str, key: str, exc: OSError) -> CatalogError:
        return CatalogError(
            f"cannot {what} {self.location(key)}: {exc.strerror or exc}. Check that the catalog "
            f"directory {self.root} exists, is writable by this user and has free space."
        )

    def location(self, key: str) -> str:
        return str(self._path(key))

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

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def stat(self, key: str) -> FileInfo | None:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return FileInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        with self._path(key).open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self._failed("read", key, exc) from exc

    def write_atomic(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Dot-prefixed: never taken for a point, a lease or a manifest by a listing.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
            _fsync_dir(path.parent)
        except OSError as exc:
            raise self._failed("write", key, exc) from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

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
                path = Path(dirpath, name)
                with contextlib.suppress(FileNotFoundError):
                    st = path.stat()
                    key = path.relative_to(self.root).as_posix()
                    out.append(FileInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
        return sorted(out, key=lambda f: f.key)

    def move(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                raise FileExistsError(errno.EEXIST, "already exists", str(target))
            os.rename(source, target)  # atomic: readers see the file at one name or the other
            _fsync_dir(target.parent)
            _fsync_dir(source.parent)
        except FileNotFoundError:
            raise  # the source is gone
        except OSError as exc:
            raise self._failed("move", src, exc) from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
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
