"""What every pausepoint task shares: no result caching (steps act on live systems and share
in-memory run state), and Prefect Secret blocks as the block resolver for secret references
(with Prefect credentials blocks for the structured credentials of cloud kinds)."""

from __future__ import annotations

from functools import partial
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from pausepoint.secrets import SecretResolver

# Steps pass live objects (open snapshots, gRPC channels) between them: never cache or persist.
step = partial(task, cache_policy=NO_CACHE, persist_result=False)


def _load_secret_block(name: str) -> str:
    from prefect.blocks.system import Secret

    return str(Secret.load(name).get())


def _read_credentials_block(block_type: str, name: str) -> dict[str, Any]:
    # The block document's fields through the generic API: prefect-aws and prefect-azure need
    # not be installed where pausepoint runs (only where the block type was registered).
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(
            name=name, block_type_slug=block_type, include_secrets=True
        )
    return dict(document.data)


def secret_resolver() -> SecretResolver:
    """Environment variables and Prefect Secret and credentials blocks; values never reach
    logs or parameters."""
    return SecretResolver(
        block_resolver=_load_secret_block, credentials_block_reader=_read_credentials_block
    )
