"""Store kinds behind one protocol, picked by ``kind`` from a registry."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pausepoint.stores.base import Store, StoreCapture, StoreConfigBase
from pausepoint.stores.mysql_config import MysqlConfig
from pausepoint.stores.postgres_config import PostgresConfig

# A discriminated union: the site file's `kind:` picks the model, and errors name the kind.
StoreConfig = Annotated[PostgresConfig | MysqlConfig, Field(discriminator="kind")]


def store_class(kind: str) -> type[Store]:
    """The Store implementation of a kind (imported lazily: each pulls its own driver)."""
    if kind == "postgres":
        from pausepoint.stores.postgres import PostgresStore

        return PostgresStore
    if kind == "mysql":
        from pausepoint.stores.mysql import MysqlStore

        return MysqlStore
    raise KeyError(f"no store implementation for kind {kind!r}")


def open_store(config: StoreConfigBase, resolve) -> Store:
    return store_class(config.kind)(config, resolve)


__all__ = ["Store", "StoreCapture", "StoreConfig", "open_store", "store_class"]
