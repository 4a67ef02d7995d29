"""What every pausepoint task shares: no result caching (steps act on live systems and share
in-memory run state), and Prefect Secret blocks as the block resolver for secret references."""

from __future__ import annotations

from functools import partial

from prefect import task
from prefect.cache_policies import NO_CACHE

from pausepoint.secrets import SecretResolver

# Steps pass live objects (open snapshots, gRPC channels) between them: never cache or persist.
step = partial(task, cache_policy=NO_CACHE, persist_result=False)


def _load_secret_block(name: str) -> str:
    from prefect.blocks.system import Secret

    return str(Secret.load(name).get())


def secret_resolver() -> SecretResolver:
    """Environment variables and Prefect Secret blocks; values never reach logs or parameters."""
    return SecretResolver(block_resolver=_load_secret_block)
