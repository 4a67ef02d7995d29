"""The S3 catalog driver: keys are objects under ``s3://<bucket>/<prefix>/``.

The same layout as the local driver (``catalog/layout.py``), so a point, its artifacts and the
leases read back the same way; several machines' workers share one catalog through it.

How each promise of ``catalog/driver.py`` is kept on S3:

- **create-if-absent**: ``PutObject`` with ``If-None-Match: *``. S3 makes it atomic: of racing
  creators exactly one gets 200, the others 412 (``CatalogConflictError``). The manifest is
  created this way, last, so a point is registered whole or not at all.
- **replace-if-unchanged**: the version is the object's ETag; ``PutObject`` with
  ``If-Match: <ETag>`` lands only on the very content that was read (412 when rewritten, 404
  when removed). Every lease write after the first (heartbeat, release, broken) is one.
- What the local driver's ``.catalog.lock`` serialises maps onto these conditions, so there is
  no lock object: a replace is one conditional PUT; ``move`` copies the source only while it
  still has the ETag seen (``x-amz-copy-source-if-match``), only where nothing exists
  (``If-None-Match: *`` on the copy), and deletes the source only if it was not rewritten since
  (``DeleteObject`` with ``If-Match``); a record rewritten meanwhile stays where it is.
- **streaming**: ``open_write`` sends parts of ``part_size_mib`` as they fill (multipart upload,
  ``ChecksumAlgorithm=SHA256``, each part with its SHA-256); the object appears when the upload
  completes, never before; an error aborts it; a killed writer leaves an unfinished upload,
  which is invisible and aborted by the sweep of its point (``delete_prefix``) or by the bucket's
  lifecycle rule (docs/operations.md). Anything smaller than a part is one PUT with its SHA-256.
- **verification is pausepoint's own**: S3 checks the SHA-256 sent with each part, but a local
  endpoint may not (moto stores a wrong one), and a bucket may be written by others. So
  ``sha256`` always reads the object and hashes it here, and a restore hashes what it fetched.

Captures: a kind that streams (``ArtifactSink.open``) writes straight into S3; what a tool must
write as local files (``spool``: pg_dump's directory, the MySQL dump) is uploaded by
``collect``/``written`` right after, or by ``publish`` at registration. The local spool lives
under ``spool_dir`` (default: the temp directory) and is removed at ``publish`` or with the
point's staging. ``fetch_dir`` downloads a store's artifacts into a fresh local directory for a
restore, removed when the driver goes away (at the latest when the process exits).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pausepoint.catalog import layout
from pausepoint.catalog.config import S3CatalogConfig
from pausepoint.catalog.driver import CHUNK, ArtifactWriter, CatalogDriver, FileInfo, Versioned
from pausepoint.credentials import aws_session
from pausepoint.errors import (
    CaptureError,
    CatalogConflictError,
    CatalogError,
    CredentialsError,
    InternalError,
)
from pausepoint.secrets import SecretResolver
from pausepoint.stores.base import Artifact, ArtifactSink
from pausepoint.stores.base import ArtifactWriter as SinkWriter

log = logging.getLogger(__name__)

MiB = 1 << 20
# The marker ``reserve`` creates: a point's prefix exists (is listed, can be swept) from then on.
# Dot-prefixed and hidden from listings, like the local driver's lock file.
RESERVED = ".reserved"
# S3 answers 409 ConditionalRequestConflict while another conditional write of the key is in
# flight; asking again settles it (then 412 or 200).
_CONFLICT_RETRIES = 10
_WORKERS = 4  # parallel uploads of spooled files and downloads of a fetch
_MOVE_ATTEMPTS = 10
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
    }
)
# The bucket lives in another region than the one the client signs for.
_REGION_CODES = frozenset(
    {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"}
)
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def _b64_sha256(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _code(exc: BaseException) -> tuple[str, int]:
    """The S3 error code and HTTP status of a botocore ClientError ("", 0 for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "", 0
    return (
        str(response.get("Error", {}).get("Code", "")),
        int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0),
    )


def _retried(exc: BaseException) -> bool:
    """Whether botocore sent the request more than once (a lost answer may hide our own
    write: the retry then finds the object it wrote)."""
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0) > 0


class _Body:
    """An object's content as a file-like object read in chunks (never all at once)."""

    def __init__(self, driver: S3Driver, key: str, body: Any):
        self._driver, self._key, self._body = driver, key, body

    def read(self, n: int | None = -1) -> bytes:
        try:
            return self._body.read(None if n is None or n < 0 else n)
        except Exception as exc:  # a connection lost mid-read: urllib3/botocore errors
            raise self._driver._error(exc, "read", self._key) from None

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Upload:
    """One object streamed in: parts of ``part_size`` sent as they fill (multipart, each with
    its SHA-256), or one PUT when the whole stays smaller than a part. Holds at most one part.

    ``complete()`` makes it visible and returns its ETag; ``abort()`` leaves nothing."""

    def __init__(self, driver: S3Driver, key: str):
        self._driver = driver
        self.key = key
        self._s3key = driver._key(key)
        self._size = driver.part_size
        self._buf: bytearray | None = None  # one part, allocated on the first write
        self._fill = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.done = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        if self._buf is None and view.nbytes:
            self._buf = bytearray(self._size)
        while view.nbytes:
            assert self._buf is not None
            n = min(view.nbytes, self._size - self._fill)
            self._buf[self._fill : self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == self._size:
                self._send_part(self._buf)
                self._fill = 0

    def _send_part(self, body: bytearray | bytes) -> None:
        client = self._driver._client
        try:
            if self._upload_id is None:
                self._upload_id = client.create_multipart_upload(
                    Bucket=self._driver.bucket, Key=self._s3key, ChecksumAlgorithm="SHA256"
                )["UploadId"]
            number = len(self._parts) + 1
            checksum = _b64_sha256(body)
            answer = client.upload_part(
                Bucket=self._driver.bucket,
                Key=self._s3key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
                ChecksumSHA256=checksum,
            )
        except Exception as exc:
            raise self._driver._error(exc, "upload", self.key) from None
        self._parts.append(
            {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}
        )

    def complete(self) -> str:
        if self.done:
            raise InternalError(f"upload of {self._driver.location(self.key)} completed twice")
        rest = bytes(self._buf[: self._fill]) if self._buf is not None else b""
        self._buf = None
        if self._upload_id is None:
            try:
                etag = self._driver._put(self.key, rest)
            except Exception as exc:
                raise self._driver._error(exc, "upload", self.key) from None
        else:
            if rest:
                self._send_part(rest)  # the last part may be smaller than the others
            try:
                etag = self._driver._client.complete_multipart_upload(
                    Bucket=self._driver.bucket,
                    Key=self._s3key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )["ETag"]
            except Exception as exc:
                raise self._driver._error(exc, "complete the upload of", self.key) from None
        self.done = True
        self._driver._mark_uploaded(self.key)
        return str(etag)

    def abort(self) -> None:
        self._buf = None
        if self._upload_id is None or self.done:
            return
        try:
            self._driver._client.abort_multipart_upload(
                Bucket=self._driver.bucket, Key=self._s3key, UploadId=self._upload_id
            )
        except Exception as exc:  # left for delete_prefix / the lifecycle rule
            log.warning(
                "could not abort the upload of %s: %s", self._driver.location(self.key), exc
            )
        self._upload_id = None


class _UploadStream:
    """The ``out`` of a sink's ArtifactWriter: a file-like end of an ``_Upload``."""

    def __init__(self, upload: _Upload, counted: Callable[[int], None]):
        self._upload = upload
        self._counted = counted

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._upload.write(data)
        n = memoryview(data).nbytes
        self._counted(n)
        return n

    def close(self) -> None:
        if not self._upload.done:
            self._upload.complete()

    def abort(self) -> None:
        self._upload.abort()


class _SinkWriter(SinkWriter):
    """A store's stream into S3: completed by ``close()``, aborted when its block fails."""

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self._out.abort()  # type: ignore[attr-defined]
        else:
            self._out.close()


class S3ArtifactSink(ArtifactSink):
    """One store's artifacts of a pending point, written to S3 (``ArtifactSink``).

    ``open`` streams straight into the bucket; ``spool`` hands out local paths (under the
    point's local staging) and ``collect``/``written`` upload those files, hashing them on the
    way. Every artifact's sha256 is of the bytes sent, computed here."""

    def __init__(self, driver: S3Driver, prefix: str, local_dir: Path):
        self._driver = driver
        self._prefix = prefix
        self.root = local_dir
        self.local_root = local_dir
        self._streamed = 0
        self._lock = threading.Lock()

    def _key(self, name: str) -> str:
        if not layout.safe_relative(name):
            raise InternalError(f"artifact name {name!r} leaves the store's directory")
        return f"{self._prefix}/{name}"

    def _count(self, n: int) -> None:
        with self._lock:
            self._streamed += n

    def open(self, name: str) -> SinkWriter:
        upload = _Upload(self._driver, self._key(name))
        return _SinkWriter(name, _UploadStream(upload, self._count))  # type: ignore[arg-type]

    def spool(self, name: str) -> Path:
        self._key(name)
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def name_of(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def collect(self, paths: Iterable[Path]) -> list[Artifact]:
        files = sorted(paths)

        def one(path: Path) -> Artifact:
            name = self.name_of(path)
            size, digest = self._driver.upload_file(path, self._key(name))
            return Artifact(path=name, size=size, sha256=digest)

        with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="s3-collect") as pool:
            return list(pool.map(one, files))

    def written(self, path: Path, size: int, sha256: str) -> Artifact:
        name = self.name_of(path)
        sent, digest = self._driver.upload_file(path, self._key(name))
        if (sent, digest) != (size, sha256):
            raise CaptureError(
                f"spool file {path} changed after it was written ({size} bytes, sha256 "
                f"{sha256}; uploaded {sent} bytes, sha256 {digest}): something else writes to "
                f"the spool directory; check {self._driver.config.spool_dir or 'the temp dir'} "
                "is this run's alone. No restore point was registered."
            )
        return Artifact(path=name, size=size, sha256=sha256)

    def size(self) -> int:
        total = self._streamed
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                with contextlib.suppress(OSError):  # a file may vanish or be renamed meanwhile
                    total += os.stat(os.path.join(dirpath, f)).st_size
        return total

    def describe(self) -> str:
        return f"{self._driver.location(self._prefix)} (local spool {self.root})"


class S3Driver(CatalogDriver):
    """A catalog in an S3 bucket; see the module's docstring for how each promise is kept."""

    fetches_in_place = False  # fetch_dir downloads a copy: a restore verifies that copy too

    def __init__(
        self,
        config: S3CatalogConfig,
        resolve: SecretResolver | None = None,
        client: Any = None,
    ):
        self.config = config
        self.bucket = config.bucket
        self.prefix = config.prefix
        self.part_size = config.part_size_mib * MiB
        self._client = client if client is not None else self._make_client(resolve)
        spool_base = config.spool_dir or Path(tempfile.gettempdir())
        # One local spool per catalog (not per driver object): every task of a run, and any
        # driver opened on the same catalog on this machine, finds the staged files.
        tag = hashlib.sha256(
            f"{config.endpoint_url}|{config.bucket}|{config.prefix}".encode()
        ).hexdigest()[:12]
        self._spool = spool_base / "pausepoint-s3" / tag
        self._uploaded: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls, config: S3CatalogConfig, resolve: SecretResolver | None = None
    ) -> S3Driver:
        return cls(config, resolve)

    def __repr__(self) -> str:
        return f"S3Driver({self.config.describe()!r})"

    def _make_client(self, resolve: SecretResolver | None) -> Any:
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        session = aws_session(self.config.credentials, resolve or SecretResolver())
        try:
            return session.client(
                "s3",
                region_name=self.config.region or session.region_name or "us-east-1",
                endpoint_url=self.config.endpoint_url,
                config=Config(
                    s3={"addressing_style": self.config.addressing_style},
                    retries={"mode": "standard", "max_attempts": 5},
                    max_pool_connections=2 * _WORKERS + 8,
                    connect_timeout=10,
                    read_timeout=120,
                    # Checksums are ours: SHA-256 sent with every write; reads are hashed here.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
        except BotoCoreError as exc:
            raise CatalogError(
                f"cannot open the S3 catalog {self.config.describe()}: {exc}; check catalog "
                "settings (region, endpoint_url) in the site file"
            ) from None

    # --- names and errors -----------------------------------------------------------------

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, s3key: str) -> str:
        return s3key[len(self.prefix) + 1 :] if self.prefix else s3key

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _local(self, prefix: str) -> Path:
        return self._spool.joinpath(*prefix.split("/"))

    def _error(self, exc: BaseException, what: str, key: str) -> Exception:
        """The pausepoint error for a failed S3 call: names the object, never a secret."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        where = self.location(key)
        creds = self.config.credentials.describe()
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return CredentialsError(
                f"{creds} found no usable AWS credentials to {what} {where}: give the worker "
                "credentials (an instance or task role, AWS_* variables, a profile) or name "
                "them in the site file's catalog.credentials"
            )
        if isinstance(exc, CredentialsError | CatalogError):
            return exc  # raised by an assumed role's refresh, or already ours
        if isinstance(exc, ClientError):
            code, status = _code(exc)
            message = exc.response.get("Error", {}).get("Message", "")
            if code in _CREDENTIAL_CODES:
                return CredentialsError(
                    f"S3 refused the catalog's {creds} ({code}) when asked to {what} {where}: "
                    "the access key is unknown, its secret wrong or the session expired. Fix "
                    "the credentials the site file's catalog.credentials names (the secret "
                    "itself lives in the environment or a Prefect block, never in the file)."
                )
            if code in _REGION_CODES or status == 301:
                return CatalogError(
                    f"cannot {what} {where}: bucket {self.bucket!r} is not in region "
                    f"{self._client.meta.region_name} ({code or status}); set catalog.region "
                    "in the site file to the bucket's region"
                )
            if code == "NoSuchBucket":
                return CatalogError(
                    f"bucket {self.bucket!r} does not exist"
                    f"{f' at {self.config.endpoint_url}' if self.config.endpoint_url else ''}: "
                    "create it (docs/operations.md, 'S3 catalog') or fix catalog.bucket in the "
                    "site file"
                )
            if status == 403 or code in ("AccessDenied", "AllAccessDisabled", "403"):
                return CatalogError(
                    f"S3 denied the catalog's {creds} to {what} {where} ({code or status}): "
                    "the credentials are wrong or lack a permission; grant the ones listed in "
                    "docs/operations.md, 'S3 catalog' (IAM policy or bucket policy)"
                )
            return CatalogError(
                f"cannot {what} {where}: S3 answered {code or status}"
                f"{f' ({message})' if message else ''}; check the bucket and the catalog "
                "settings in the site file, then run again"
            )
        if isinstance(exc, BotoCoreError):
            return CatalogError(
                f"cannot {what} {where}: {type(exc).__name__}: {exc}. Check that S3"
                f"{f' at {self.config.endpoint_url}' if self.config.endpoint_url else ''} is "
                "reachable from this machine and catalog.region is the bucket's"
            )
        if isinstance(exc, OSError):
            return CatalogError(
                f"cannot {what} {where}: {exc.strerror or exc}. Check the local spool "
                f"directory {self._spool} exists, is writable and has free space."
            )
        return CatalogError(f"cannot {what} {where}: {type(exc).__name__}: {exc}")

    def _missing(self, exc: BaseException) -> bool:
        return _code(exc)[0] in _MISSING_CODES

    def _conflict(self, key: str, what: str) -> CatalogConflictError:
        return CatalogConflictError(
            f"{self.location(key)} {what}: another writer got there first; nothing was "
            "overwritten. Read it again and decide from what it holds now."
        )

    def _not_found(self, key: str) -> FileNotFoundError:
        import errno

        return FileNotFoundError(errno.ENOENT, "no such key", self.location(key))

    # --- a point's staging ------------------------------------------------------------------

    def _any_under(self, prefix: str) -> bool:
        try:
            answer = self._client.list_objects_v2(
                Bucket=self.bucket, Prefix=self._key(prefix) + "/", MaxKeys=1
            )
        except Exception as exc:
            raise self._error(exc, "list", prefix) from None
        return bool(answer.get("KeyCount") or answer.get("Contents"))

    def reserve(self, prefix: str) -> bool:
        if self._any_under(prefix):
            return False
        try:
            self.create_if_absent(f"{prefix}/{RESERVED}", b"")
        except CatalogConflictError:
            return False
        return True

    def staging_dir(self, prefix: str) -> Path:
        path = self._local(prefix)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(exc, "stage", prefix) from None
        return path

    def artifact_sink(self, prefix: str, local_dir: Path) -> ArtifactSink:
        return S3ArtifactSink(self, prefix, local_dir)

    def _mark_uploaded(self, key: str) -> None:
        with self._lock:
            self._uploaded.add(key)

    def upload_file(self, path: Path, key: str) -> tuple[int, str]:
        """Upload one local file to ``key`` (streamed in parts); returns its size and the
        sha256 of the bytes sent."""
        digest = hashlib.sha256()
        size = 0
        upload = _Upload(self, key)
        try:
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    upload.write(chunk)
                    size += len(chunk)
            upload.complete()
        except OSError as exc:
            upload.abort()
            raise self._error(exc, f"upload {path} to", key) from None
        except BaseException:
            upload.abort()
            raise
        return size, digest.hexdigest()

    def publish(self, prefix: str) -> None:
        """Upload what the point's local staging still holds (files a kind wrote there
        without the sink uploading them), then remove the local staging."""
        top = self._local(prefix)
        if not top.is_dir():
            return
        with self._lock:
            done = set(self._uploaded)
        todo = []
        # os.walk, not rglob: it skips what vanishes meanwhile (another driver of this catalog
        # on this machine publishing the same point: two runs racing to register it).
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                path = Path(dirpath, name)
                key = f"{prefix}/{path.relative_to(top).as_posix()}"
                if key not in done:
                    todo.append((path, key))

        def one(path: Path, key: str) -> None:
            try:
                self.upload_file(path, key)
            except CatalogError:
                if path.exists():
                    raise
                # gone with the other publisher's cleanup; the artifact check that follows
                # publish finds it missing if nobody uploaded it

        with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="s3-publish") as pool:
            list(pool.map(lambda pk: one(*pk), sorted(todo)))
        shutil.rmtree(top, ignore_errors=True)
        with self._lock:
            self._uploaded = {k for k in self._uploaded if not k.startswith(prefix + "/")}

    def fetch_dir(self, prefix: str) -> Path:
        """A fresh local copy of every file under ``prefix`` (for a restore); removed when
        this driver goes away. The caller verifies it (``fetches_in_place`` is False)."""
        self._spool.mkdir(parents=True, exist_ok=True)
        dest = Path(tempfile.mkdtemp(prefix="fetch-", dir=self._spool))
        weakref.finalize(self, shutil.rmtree, dest, True)

        def one(info: FileInfo) -> None:
            path = dest.joinpath(*info.key.removeprefix(prefix + "/").split("/"))
            # FileNotFoundError for an object deleted since the listing (a point pruned
            # meanwhile) goes up as it is: the restore fails on the missing file.
            with self.open_read(info.key) as src:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with open(path, "wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)  # type: ignore[misc]
                except OSError as exc:  # the local disk: full, not writable
                    raise self._error(exc, f"download to {path}", info.key) from None

        with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="s3-fetch") as pool:
            list(pool.map(one, self.list_files(prefix)))
        return dest

    # --- reading ----------------------------------------------------------------------------

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self._client.head_object(Bucket=self.bucket, Key=self._key(key)))
        except Exception as exc:
            if self._missing(exc):
                return None
            raise self._error(exc, "look up", key) from None

    def exists(self, key: str) -> bool:
        # A key is a file, or a "directory" when anything lies under it (as the local driver).
        return self._head(key) is not None or self._any_under(key)

    def stat(self, key: str) -> FileInfo | None:
        head = self._head(key)
        if head is None:
            return None
        return FileInfo(key, int(head["ContentLength"]), head["LastModified"].astimezone(UTC))

    def _get(self, key: str) -> dict[str, Any]:
        try:
            return dict(self._client.get_object(Bucket=self.bucket, Key=self._key(key)))
        except Exception as exc:
            if self._missing(exc):
                raise self._not_found(key) from None
            raise self._error(exc, "read", key) from None

    def read_versioned(self, key: str) -> Versioned:
        answer = self._get(key)
        with _Body(self, key, answer["Body"]) as body:
            data = body.read()
        return Versioned(data, str(answer["ETag"]))

    def open_read(self, key: str) -> _Body:  # type: ignore[override]
        return _Body(self, key, self._get(key)["Body"])

    # --- writing ----------------------------------------------------------------------------

    def _put(self, key: str, data: bytes, **condition: str) -> str:
        """One PUT with the content's SHA-256 (stored by S3, checked by S3 on arrival)."""
        answer = self._client.put_object(
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=_b64_sha256(data),
            **condition,
        )
        return str(answer["ETag"])

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> str:
        """A conditional PUT; a 412/404 comes back raised as botocore's ClientError."""
        for _ in range(_CONFLICT_RETRIES):
            try:
                return self._put(key, data, **condition)
            except Exception as exc:
                if _code(exc) == ("ConditionalRequestConflict", 409):
                    continue
                raise
        raise CatalogError(
            f"{self.location(key)}: S3 kept answering ConditionalRequestConflict "
            f"{_CONFLICT_RETRIES} times: something writes it in a loop; stop it and run again"
        )

    def _ours_after_retry(self, exc: BaseException, key: str, data: bytes) -> str | None:
        """After a lost answer botocore sent the PUT again, and its own first copy made the
        condition fail: then the key holds exactly our bytes, and the write was ours."""
        if not _retried(exc):
            return None
        try:
            stored = self.read_versioned(key)
        except FileNotFoundError:
            return None
        return stored.version if stored.data == data else None

    def write_atomic(self, key: str, data: bytes) -> None:
        try:
            self._put(key, data)
        except Exception as exc:
            raise self._error(exc, "write", key) from None

    def create_if_absent(self, key: str, data: bytes) -> str:
        try:
            return self._conditional_put(key, data, IfNoneMatch="*")
        except CatalogError:
            raise
        except Exception as exc:
            if _code(exc)[1] == 412:
                ours = self._ours_after_retry(exc, key, data)
                if ours is not None:
                    return ours
                raise self._conflict(key, "already exists") from None
            raise self._error(exc, "create", key) from None

    def replace_if_unchanged(self, key: str, data: bytes, version: str) -> str:
        try:
            return self._conditional_put(key, data, IfMatch=version)
        except CatalogError:
            raise
        except Exception as exc:
            code, status = _code(exc)
            if status == 412 or code in _MISSING_CODES:
                ours = self._ours_after_retry(exc, key, data)
                if ours is not None:
                    return ours
                if code in _MISSING_CODES:
                    raise self._conflict(key, "was removed since it was read") from None
                if self._head(key) is None:
                    raise self._conflict(key, "was removed since it was read") from None
                raise self._conflict(key, "was rewritten since it was read") from None
            raise self._error(exc, "replace", key) from None

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[ArtifactWriter]:
        upload = _Upload(self, key)
        try:
            yield ArtifactWriter(key, upload.write)
            upload.complete()
        finally:
            if not upload.done:
                upload.abort()

    # --- listing ----------------------------------------------------------------------------

    def _pages(self, prefix: str, **args: Any) -> Iterator[dict[str, Any]]:
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            yield from paginator.paginate(
                Bucket=self.bucket, Prefix=self._key(prefix) + "/", **args
            )
        except Exception as exc:
            raise self._error(exc, "list", prefix) from None

    def list_children(self, prefix: str) -> list[str]:
        base = self._key(prefix) + "/"
        names = {
            p["Prefix"][len(base) :].rstrip("/")
            for page in self._pages(prefix, Delimiter="/")
            for p in page.get("CommonPrefixes", [])
        }
        return sorted(n for n in names if n)

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        for page in self._pages(prefix):
            yield from page.get("Contents", [])

    def list_files(self, prefix: str) -> list[FileInfo]:
        out = [
            FileInfo(self._rel(o["Key"]), int(o["Size"]), o["LastModified"].astimezone(UTC))
            for o in self._objects(prefix)
            if o["Key"].rsplit("/", 1)[-1] != RESERVED  # the driver's own
        ]
        return sorted(out, key=lambda f: f.key)

    def pending_writes(self, prefix: str) -> list[datetime]:
        try:
            paginator = self._client.get_paginator("list_multipart_uploads")
            return [
                u["Initiated"].astimezone(UTC)
                for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix) + "/")
                for u in page.get("Uploads", [])
            ]
        except Exception as exc:
            raise self._error(exc, "list the unfinished uploads under", prefix) from None

    # --- removing ---------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if self._missing(exc):
                return
            raise self._error(exc, "delete", key) from None

    def delete_prefix(self, prefix: str) -> None:
        """Every object under ``prefix``, its unfinished uploads and its local spool."""
        keys = [o["Key"] for o in self._objects(prefix)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1000 at a time
            batch = keys[start : start + 1000]
            try:
                answer = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            except Exception as exc:
                raise self._error(exc, "delete", prefix) from None
            failed = [e for e in answer.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if failed:
                first = failed[0]
                raise CatalogError(
                    f"could not delete {len(failed)} object(s) under {self.location(prefix)}, "
                    f"e.g. s3://{self.bucket}/{first.get('Key')}: {first.get('Code')} "
                    f"({first.get('Message', '')}); grant s3:DeleteObject (docs/operations.md, "
                    "'S3 catalog') and run again"
                )
        self._abort_uploads(prefix)
        shutil.rmtree(self._local(prefix), ignore_errors=True)

    def _abort_uploads(self, prefix: str) -> None:
        try:
            paginator = self._client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix) + "/"):
                for u in page.get("Uploads", []):
                    with contextlib.suppress(Exception):  # finished or aborted meanwhile
                        self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"]
                        )
        except Exception as exc:
            raise self._error(exc, "abort the unfinished uploads under", prefix) from None

    def move(self, src: str, dst: str) -> None:
        for _ in range(_MOVE_ATTEMPTS):
            head = self._head(src)
            if head is None:
                raise self._not_found(src)
            if self._head(dst) is not None:
                raise self._conflict(dst, "already exists: cannot move there")
            etag = str(head["ETag"])
            try:
                self._client.copy_object(
                    Bucket=self.bucket,
                    Key=self._key(dst),
                    CopySource={"Bucket": self.bucket, "Key": self._key(src)},
                    CopySourceIfMatch=etag,  # exactly the version seen
                    IfNoneMatch="*",  # never over an existing dst
                    ChecksumAlgorithm="SHA256",
                )
            except Exception as exc:
                if _code(exc)[1] == 412 or self._missing(exc):
                    continue  # src rewritten or removed, or dst created: look again
                raise self._error(exc, f"move to {self.location(dst)}", src) from None
            try:
                self._client.delete_object(Bucket=self.bucket, Key=self._key(src), IfMatch=etag)
            except Exception as exc:
                if _code(exc)[1] == 412:
                    # Rewritten after the copy: the new record stays; the copy is what we saw.
                    log.info("%s was rewritten while moved: left in place", self.location(src))
                elif not self._missing(exc):
                    raise self._error(exc, "delete (after moving it)", src) from None
            return
        raise CatalogError(
            f"could not move {self.location(src)} to {self.location(dst)}: it changed "
            f"{_MOVE_ATTEMPTS} times while being moved; stop whatever rewrites it, run again"
        )
