"""What the CLI checks before Prefect starts: secret references that need no Prefect to read.

A flow reads every secret through ``SecretResolver`` when a step needs it, minutes after the run
began (a temporary Prefect API alone takes seconds to start). An ``{env: VAR}`` that is not set
is known at once: ``check_env_secrets`` raises the same SecretError the step would. Block
references need Prefect and are left to the flow.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from pausepoint.secrets import SecretRef, SecretResolver


def secret_refs(obj: Any) -> Iterator[SecretRef]:
    """Every SecretRef inside ``obj`` (models, mappings, sequences), in order."""
    if isinstance(obj, SecretRef):
        yield obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from secret_refs(getattr(obj, name))
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from secret_refs(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from secret_refs(value)


def check_env_secrets(*objs: Any, environ: Mapping[str, str] | None = None) -> None:
    """SecretError (the resolver's own message) for the first ``{env: VAR}`` that is not set."""
    resolve = SecretResolver(environ=dict(environ) if environ is not None else None)
    for obj in objs:
        for ref in secret_refs(obj):
            if ref.env is not None:
                resolve(ref)
