"""Store kinds behind one protocol (``base.Store``), declared in one registry (``registry``)."""

from __future__ import annotations

from typing import Any

from pausepoint.stores.base import Store, StoreCapture, StoreConfigBase
from pausepoint.stores.registry import open_store, store_class


def __getattr__(name: str) -> Any:
    # The union of the kinds registered NOW (a test may add one); built on each access.
    if name == "StoreConfig":
        from pausepoint.stores.registry import config_union

        return config_union()
    raise AttributeError(name)


__all__ = ["Store", "StoreCapture", "StoreConfig", "StoreConfigBase", "open_store", "store_class"]
