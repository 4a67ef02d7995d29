"""Catalog drivers by name: the one place a new driver is added.

An entry pairs the site file's settings model (``driver: <name>``, validated when the site is
loaded) with the driver class, imported only when a catalog is opened. A driver is its
module (``pausepoint/catalog/s3.py``: the class, with ``from_config``), its settings model
(``config.py``), one entry below and an adapter in the contract suite
(``tests/support/catalog_drivers.py``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Field

from pausepoint.catalog.config import CatalogConfigBase, LocalCatalogConfig, S3CatalogConfig
from pausepoint.catalog.driver import CatalogDriver
from pausepoint.errors import ConfigError
from pausepoint.secrets import SecretResolver


@dataclass(frozen=True)
class DriverEntry:
    name: str  # the value of ``driver:`` in the site file
    config: type[CatalogConfigBase]
    # "module:Class"; the class has ``from_config(config, resolve) -> driver`` (``resolve``: the
    # run's SecretResolver, for credentials given by reference)
    driver: str

    def open(
        self, config: CatalogConfigBase, resolve: SecretResolver | None = None
    ) -> CatalogDriver:
        module, _, name = self.driver.partition(":")
        cls = getattr(importlib.import_module(module), name)
        driver: CatalogDriver = cls.from_config(config, resolve or SecretResolver())
        return driver


DRIVERS: tuple[DriverEntry, ...] = (
    DriverEntry("local", LocalCatalogConfig, "pausepoint.catalog.local:LocalDriver"),
    DriverEntry("s3", S3CatalogConfig, "pausepoint.catalog.s3:S3Driver"),
)
_BY_NAME = {e.name: e for e in DRIVERS}
_BY_CONFIG = {e.config: e for e in DRIVERS}
DEFAULT_DRIVER = "local"  # a site file's catalog without ``driver:`` (the form before drivers)


def _with_driver(value: Any) -> Any:
    """The settings as the site file gives them, with ``driver:`` filled in or checked."""
    if not isinstance(value, dict):
        return value  # pydantic says what is wrong with it
    driver = value.get("driver", DEFAULT_DRIVER)
    if driver not in _BY_NAME:
        raise ValueError(
            f"catalog driver {driver!r} is not known; use one of: {', '.join(_BY_NAME)} "
            f"(e.g. 'driver: local' with 'path: DIR')"
        )
    return {**value, "driver": driver}


def _union() -> Any:
    models = tuple(e.config for e in DRIVERS)
    if len(models) == 1:
        return models[0]  # a discriminator needs two variants
    return Annotated[Union[models], Field(discriminator="driver")]  # noqa: UP007


# The type of ``Site.catalog``: one of the registered settings models, chosen by ``driver:``.
CatalogConfig = Annotated[_union(), BeforeValidator(_with_driver)]


def entry_for(config: CatalogConfigBase) -> DriverEntry:
    try:
        return _BY_CONFIG[type(config)]
    except KeyError:
        raise ConfigError(
            f"{type(config).__name__} is not the settings of a registered catalog driver; "
            f"give the site file's catalog as one of: {', '.join(_BY_NAME)}"
        ) from None


def open_driver(config: CatalogConfigBase, resolve: SecretResolver | None = None) -> CatalogDriver:
    """The driver the settings name, its module imported now. ``resolve`` resolves the secret
    references of its credentials (default: the environment only, no Prefect blocks)."""
    return entry_for(config).open(config, resolve)
