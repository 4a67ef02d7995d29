"""What the AWS store kinds (``dynamodb``, ``rds``) share: their connection settings, boto3
clients with botocore's retry configuration, errors translated into pausepoint's, waiting on a
provider's state, and their locations.

boto3 is imported only when a store connects (``AwsClients``), so a site file validates without
it. Every call goes through ``AwsClients.call``: its error names the store, the operation and
the IAM action it needs, never a secret.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field

from pausepoint.credentials import AwsCredentials, aws_session
from pausepoint.errors import PausepointError
from pausepoint.stores.base import StoreConfigBase

if TYPE_CHECKING:
    from pausepoint.secrets import SecretResolver

# Error codes AWS answers when it does not accept the credentials or refuses the action.
CREDENTIALS_REFUSED = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredTokenException",
        "ExpiredToken",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "AuthFailure",
    }
)
ACCESS_DENIED = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})
THROTTLED = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "TooManyRequestsException",
    }
)


class AwsStoreConfig(StoreConfigBase):
    """Settings every AWS store kind has: where (region, endpoint) and how (credentials,
    retries, waiting)."""

    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$", description="e.g. eu-west-1")
    credentials: AwsCredentials = Field(
        default_factory=lambda: AwsCredentials(source="default"),
        description="how pausepoint reaches AWS (pausepoint.credentials)",
    )
    endpoint_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/.*)?$",
        description="another endpoint than AWS's public one for the region (a VPC endpoint, "
        "or a local test endpoint)",
    )
    max_attempts: int = Field(
        10,
        ge=1,
        le=50,
        description="attempts per AWS call, throttling included (botocore's adaptive retries "
        "back off exponentially between them)",
    )
    poll_interval_s: float = Field(
        10.0, gt=0, le=300, description="how often a long step asks AWS for its state"
    )
    wait_timeout_s: int = Field(
        6 * 3600, ge=1, description="how long one step (a table or instance restore) may take"
    )

    def server(self, service: str) -> str:
        """The provider place of a location: the same service, region and endpoint is one."""
        endpoint = (self.endpoint_url or "aws").rstrip("/").casefold()
        return f"{service} {self.region} {endpoint}"


def permission(service: str, operation: str) -> str:
    """The IAM action of a boto3 operation name (``RestoreTableToPointInTime`` ->
    ``dynamodb:RestoreTableToPointInTime``)."""
    return f"{service}:{operation}"


class AwsClients:
    """The boto3 clients of one store: one session, one client per service (thread-safe),
    botocore's adaptive retry mode (it backs off on throttling) with ``max_attempts``."""

    def __init__(self, config: AwsStoreConfig, resolve: SecretResolver | Any, store: str):
        self.config, self.store = config, store
        self._resolve = resolve
        self._lock = threading.Lock()
        self._session: Any = None
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """The client of ``service`` (created once; register botocore event hooks on its
        ``meta.events``)."""
        with self._lock:
            if service not in self._clients:
                from botocore.config import Config

                if self._session is None:
                    self._session = aws_session(self.config.credentials, self._resolve)
                self._clients[service] = self._session.client(
                    service,
                    region_name=self.config.region,
                    endpoint_url=self.config.endpoint_url,
                    config=Config(
                        retries={
                            "total_max_attempts": self.config.max_attempts,
                            "mode": "adaptive",
                        },
                        connect_timeout=20,
                        read_timeout=60,
                    ),
                )
            return self._clients[service]

    def call(
        self,
        service: str,
        operation: str,
        error: type[PausepointError],
        what: str = "",
        **params: Any,
    ) -> dict[str, Any]:
        """``client(service).<operation>(**params)``; AWS's refusal becomes ``error`` naming
        the store, ``what`` was being done, the IAM action and the fix. Other ClientErrors
        (a resource not found, a name taken) are raised as they are, for the caller."""
        from botocore import xform_name
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            NoRegionError,
        )

        method = getattr(self.client(service), xform_name(operation))
        action = permission(service, operation)
        doing = f" ({what})" if what else ""
        creds = self.config.credentials.describe()
        try:
            return method(**params)
        except NoCredentialsError:
            raise error(
                f"store {self.store}: no AWS credentials found for {creds} calling "
                f"{operation}{doing}; give the worker credentials (an instance or task role, "
                "AWS_* variables, a profile) or set 'credentials' in the site file"
            ) from None
        except (EndpointConnectionError, NoRegionError) as exc:
            raise error(
                f"store {self.store}: cannot reach AWS {service} in {self.config.region}"
                f"{' at ' + self.config.endpoint_url if self.config.endpoint_url else ''} "
                f"calling {operation}{doing}: {exc}; check the region, endpoint_url and the "
                "worker's network route"
            ) from None
        except ClientError as exc:
            code = error_code(exc)
            if code == "403" or (code == "" and _status(exc) == 403):
                # An answer botocore could not parse (XML where JSON was expected): find the
                # code in its text, else it is a refusal of some kind.
                text = str(exc)
                code = next((c for c in sorted(CREDENTIALS_REFUSED) if c in text), "AccessDenied")
            if code in CREDENTIALS_REFUSED:
                raise error(
                    f"store {self.store}: AWS refused the credentials ({code}) of {creds} "
                    f"calling {operation}{doing}; check that the key or role is valid and not "
                    "expired, and that the region is right"
                ) from None
            if code in ACCESS_DENIED:
                raise error(
                    f"store {self.store}: {creds} may not call {operation}{doing} ({code}); "
                    f"grant IAM action {action} on the resource (docs/stores.md lists every "
                    "action the kind needs)"
                ) from None
            if code in THROTTLED:
                raise error(
                    f"store {self.store}: AWS throttled {operation}{doing} ({code}) through "
                    f"all {self.config.max_attempts} attempts (botocore's adaptive retries "
                    "back off between them); run it again later, or raise max_attempts in the "
                    "site file"
                ) from None
            raise


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def wait_until(
    what: str,
    probe: Callable[[], tuple[bool, str]],
    *,
    interval_s: float,
    timeout_s: float,
    error: type[PausepointError],
    store: str,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Ask ``probe`` every ``interval_s`` until it answers (True, state); ``error`` names the
    last state seen after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    state = ""
    while True:
        done, state = probe()
        if done:
            return
        if time.monotonic() > deadline:
            raise error(
                f"store {store}: {what} did not finish in {timeout_s:.0f} s (last state: "
                f"{state or 'unknown'}); it may still be running on AWS. Look at it in the AWS "
                "console, then run the restore again: it resumes from its recorded step "
                "(raise wait_timeout_s when such steps take longer)"
            )
        sleep(interval_s)


def utc(value: datetime) -> datetime:
    """An aware datetime in UTC (botocore answers in the local zone)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@contextmanager
def bounded_pool(workers: int) -> Iterator[Any]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="pp-aws") as pool:
        yield pool
