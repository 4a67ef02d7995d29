"""The Azure Resource Manager side of the ``cosmos`` store: the management client, and Azure's
errors turned into pausepoint's (each names the call, the account and what to do)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pausepoint.credentials import azure_credential
from pausepoint.errors import CredentialsError, PausepointError
from pausepoint.secrets import SecretResolver

if TYPE_CHECKING:
    from azure.mgmt.cosmosdb import CosmosDBManagementClient

    from pausepoint.stores.cosmos.config import CosmosConfig

# The built-in role that covers every call the store makes (docs/stores.md lists the actions).
ROLE_HINT = (
    "give the identity the 'DocumentDB Account Contributor' role on the resource group (or a "
    "custom role with the actions listed in docs/stores.md, Cosmos DB)"
)


def client(cfg: CosmosConfig, resolve: SecretResolver) -> CosmosDBManagementClient:
    """A management client for ``cfg``; nothing is sent until the first call."""
    from azure.mgmt.cosmosdb import CosmosDBManagementClient

    transport: dict[str, Any] = {}
    if cfg.ca_file:
        transport["connection_verify"] = cfg.ca_file
    endpoint = cfg.management_endpoint.rstrip("/")
    return CosmosDBManagementClient(
        azure_credential(cfg.credentials, resolve, **transport),
        cfg.subscription_id,
        base_url=endpoint,
        credential_scopes=[f"{endpoint}/.default"],
        polling_interval=cfg.poll_interval_s,
        **transport,
    )


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:300] if (text or "").strip() else ""


@contextlib.contextmanager
def calling(
    cfg: CosmosConfig, what: str, error: type[PausepointError], fix: str = ""
) -> Iterator[None]:
    """Run Azure calls for ``what``; their errors become ``error`` (credentials problems
    CredentialsError) with the account, Azure's code and ``fix`` in the message."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
    )

    where = f"Cosmos DB account {cfg.account!r} (resource group {cfg.resource_group!r})"
    try:
        yield
    except ClientAuthenticationError as exc:
        raise CredentialsError(
            f"{cfg.credentials.describe()} could not sign in to Azure to {what} of {where}: "
            f"{_first_line(exc.message)}. Check the tenant, client id and secret (or the "
            "identity of the worker)"
        ) from None
    except HttpResponseError as exc:
        code = getattr(exc.error, "code", None) or exc.reason or "an error"
        if exc.status_code in (401, 403):
            raise CredentialsError(
                f"Azure refused to {what} of {where} for {cfg.credentials.describe()} "
                f"(HTTP {exc.status_code} {code}); {ROLE_HINT}"
            ) from None
        detail = _first_line(getattr(exc.error, "message", None) or exc.message)
        raise error(
            f"could not {what} of {where}: HTTP {exc.status_code} {code}: {detail}"
            + (f". {fix}" if fix else "")
        ) from None
    except ServiceRequestError as exc:
        raise error(
            f"could not {what} of {where}: Azure Resource Manager at {cfg.management_endpoint} "
            f"did not answer ({_first_line(str(exc))}); check the network path and "
            "management_endpoint"
        ) from None
