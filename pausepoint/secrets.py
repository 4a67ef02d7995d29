"""Secrets by reference: a site file names where a secret lives, never the secret itself.

The core resolves ``env`` references itself; ``block`` references (Prefect Secret blocks) are
resolved by a resolver the tasks layer passes in, so this package never imports Prefect. The
same resolver reads Prefect credentials blocks (prefect-aws, prefect-azure) for the structured
credentials of ``pausepoint.credentials``, through a block reader the tasks layer passes in too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from pausepoint.errors import SecretError


class SecretRef(BaseModel):
    """Where a secret lives: ``{env: VAR}`` or ``{block: prefect-secret-block-name}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: Annotated[str | None, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = None
    block: Annotated[str | None, Field(pattern=r"^[a-z0-9-]+$")] = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_inline(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(
                "secrets are given by reference, not inline: write {env: VARIABLE_NAME} or "
                "{block: prefect-secret-block-name} and put the value there"
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.block is None):
            raise ValueError("give exactly one of 'env' (a variable name) or 'block' (a name)")
        return self

    def describe(self) -> str:
        return (
            f"environment variable {self.env}"
            if self.env
            else f"Prefect Secret block {self.block!r}"
        )


BlockResolver = Callable[[str], str]
# (block type slug, block name) -> the block's fields, secret fields as plain values.
CredentialsBlockReader = Callable[[str, str], dict[str, Any]]


class SecretResolver:
    """Turns a SecretRef into a SecretStr; environment always, blocks when given a resolver."""

    def __init__(
        self,
        block_resolver: BlockResolver | None = None,
        environ: dict[str, str] | None = None,
        credentials_block_reader: CredentialsBlockReader | None = None,
    ):
        self._block_resolver = block_resolver
        self._environ = os.environ if environ is None else environ
        self._credentials_block_reader = credentials_block_reader

    def credentials_block(self, block_type: str, name: str) -> dict[str, Any]:
        """The fields of the Prefect block ``name`` of type ``block_type`` (a slug such as
        ``aws-credentials``), secrets included; SecretError naming the block when it cannot."""
        what = f"Prefect {block_type} block {name!r}"
        if self._credentials_block_reader is None:
            raise SecretError(
                f"the {what} needs Prefect to resolve; run through the Prefect flows "
                "(pausepoint CLI does) or give the credentials another source"
            )
        try:
            return dict(self._credentials_block_reader(block_type, name))
        except Exception as exc:  # the block API raises ValueError, ObjectNotFound, HTTP errors
            raise SecretError(
                f"could not load the {what}: {type(exc).__name__}; create it (Prefect UI: "
                f"Blocks, or `prefect block create {block_type}` once its collection is "
                "registered) or fix the name in the site file"
            ) from exc

    def __call__(self, ref: SecretRef | None) -> SecretStr | None:
        if ref is None:
            return None
        if ref.env is not None:
            value = self._environ.get(ref.env)
            if value is None:
                raise SecretError(
                    f"the {ref.describe()} is not set; export it in the environment that runs "
                    "pausepoint (the worker's, for deployments) or use a Prefect Secret block"
                )
            return SecretStr(value)
        if self._block_resolver is None:
            raise SecretError(
                f"the {ref.describe()} needs Prefect to resolve; run through the Prefect flows "
                "(pausepoint CLI does) or use {env: VAR} instead"
            )
        try:
            return SecretStr(self._block_resolver(ref.block))  # type: ignore[arg-type]
        except Exception as exc:  # the block API raises ValueError or HTTP errors
            raise SecretError(
                f"could not load the {ref.describe()}: {type(exc).__name__}; create it with "
                f"`prefect block create secret` or fix the name in the site file"
            ) from exc
