"""The site: one ScalarDL deployment to protect, as validated pydantic models.

A site file is YAML. Models refuse bad input when built, and ``load_site`` turns pydantic's
errors into one ConfigError that names each field, what is wrong and how to fix it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from pausepoint.catalog.config import LocalCatalogConfig
from pausepoint.catalog.registry import CatalogConfig
from pausepoint.errors import ConfigError
from pausepoint.scalardb import ScalarDbSettings
from pausepoint.secrets import SecretRef
from pausepoint.stores import registry
from pausepoint.stores.base import StoreConfigBase
from pausepoint.validation import problem, where, yaml_type
from pausepoint.yamlfile import load_yaml

_HOSTPORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


class Target(BaseModel):
    """One node's admin endpoint."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = Field(gt=0, lt=65536)

    @classmethod
    def parse(cls, text: str) -> Target:
        m = _HOSTPORT.match(text.strip())
        if not m:
            raise ValueError(f"{text!r} is not host:port (for example 127.0.0.1:50053)")
        port = int(m["port"])
        if not 0 < port < 65536:
            raise ValueError(f"{text!r}: the port must be between 1 and 65535")
        return cls(host=m["host"].strip("[]"), port=port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def normalised(self) -> Target:
        """The same node written one way: DNS names are case-insensitive and may end in a dot;
        an IP address in its canonical form (``0:0:0:0:0:0:0:1`` is ``::1``). Names are not
        resolved."""
        host = self.host.lower().rstrip(".")
        with contextlib.suppress(ValueError):  # not an IP address: a name
            host = str(ipaddress.ip_address(host))
        return Target(host=host, port=self.port)


class TlsSettings(BaseModel):
    """TLS to the admin endpoints. Without ``ca_cert`` or ``ca_pem`` the nodes' certificates are
    checked against the system trust store (as scalar-admin's ``--tls`` does)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_cert: Path | None = Field(
        None, description="PEM file of the CA that signed the nodes' certificates"
    )
    ca_pem: SecretRef | None = Field(
        None, description="the CA's PEM text by reference ({env: VAR} or {block: NAME})"
    )
    authority: str | None = Field(None, description="override the TLS authority (server name)")

    @model_validator(mode="after")
    def _one_ca(self) -> TlsSettings:
        if self.ca_cert is not None and self.ca_pem is not None:
            raise ValueError(
                "give the CA once: 'ca_cert' (a PEM file) or 'ca_pem' (its text by reference)"
            )
        return self

    def trust(self) -> str:
        """Where the CA that verifies the nodes comes from, for messages."""
        if self.ca_cert is not None:
            return f"CA file {self.ca_cert}"
        if self.ca_pem is not None:
            return f"CA PEM from the {self.ca_pem.describe()}"
        return "the system trust store"


class TargetSource(BaseModel):
    """How to find a component's nodes: a static list and/or a DNS SRV record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    static: list[Target] = Field(default_factory=list)
    srv: str | None = Field(None, description="DNS SRV name, e.g. _scalardl-admin._tcp.ledger")
    resolver: str | None = Field(
        None,
        description="the DNS server to ask for 'srv:' (ip or ip:port); default: the system's",
    )
    # `tls: true` (or `tls: {}`): TLS verified against the system trust store.
    tls: TlsSettings | None = None

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_flag(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    @field_validator("resolver")
    @classmethod
    def _resolver_address(cls, value: str | None) -> str | None:
        if value is not None:
            from pausepoint.admin.discovery import parse_resolver  # it imports this module

            try:
                parse_resolver(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("static", mode="before")
    @classmethod
    def _parse_hostports(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [Target.parse(v) if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _some_source(self) -> TargetSource:
        if not self.static and not self.srv:
            raise ValueError("give the admin endpoints: 'static: [host:port, ...]' or 'srv: NAME'")
        if self.resolver is not None and not self.srv:
            raise ValueError("'resolver:' is the DNS server for 'srv:'; give 'srv:' or remove it")
        seen: dict[Target, int] = {}
        for i, target in enumerate(self.static):
            node = target.normalised()
            if node in seen:
                raise ValueError(
                    f"admin node {node} is listed twice, in static[{seen[node]}] and "
                    f"static[{i}]; list each admin endpoint once"
                )
            seen[node] = i
        return self


class Component(BaseModel):
    """ledger or auditor: the nodes to pause and the stores that hold its data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    targets: TargetSource
    # Each entry is the config model of its `kind:`, as the store registry declares it.
    stores: list[SerializeAsAny[StoreConfigBase]] = Field(min_length=1)
    # Set when the component's data is managed by ScalarDB: preflight then checks that the
    # stores capture every namespace, the coordinator and ScalarDB's metadata
    # (pausepoint.scalardb), and a restore keeps ScalarDB's metadata matching its names.
    scalardb: ScalarDbSettings | None = None

    @field_validator("stores", mode="wrap")
    @classmethod
    def _stores_by_kind(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # The union over `kind` of the kinds registered now (a test may add one): its errors
        # (an unknown kind, a field of one kind) keep their locations, e.g. ledger.stores.0.
        return handler(registry.stores_adapter().validate_python(value))


class PauseSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_hold_ms: int = Field(
        0, ge=0, le=600_000, description="raise the derived hold to at least this; never lowers it"
    )
    drain_timeout_ms: int = Field(
        30_000, gt=0, le=600_000, description="max_pause_wait_time sent with Pause"
    )
    call_timeout_ms: int = Field(5_000, gt=0, le=120_000, description="deadline of one admin call")
    unpause_attempts: int = Field(3, ge=1, le=20)
    unpause_backoff_ms: int = Field(200, ge=0, le=60_000)
    lease_margin_ms: int = Field(30_000, ge=0, le=3_600_000)
    # Open-capture steps must finish inside the window; beyond this the backup is abandoned.
    open_capture_timeout_ms: int = Field(10_000, gt=0, le=600_000)
    # A run waits this long for another backup or restore of the site to finish (pause lock).
    lock_timeout_s: int = Field(900, ge=0, le=86_400)


class ClockSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ntp_servers: list[str] = Field(default_factory=list, description="host or host:port")
    timeout_s: float = Field(2.0, gt=0, le=30)
    # PITR stores need the gate; snapshot-only sites record the bound if measurable.
    required: bool = False
    max_error_ms: int = Field(
        1_000,
        gt=0,
        le=60_000,
        description=(
            "a site with point-in-time stores refuses a backup whose clock error bound "
            "(|offset| + uncertainty) is wider than this: the derived hold grows by twice it"
        ),
    )


# The local driver's settings, under their name from before drivers (``catalog: {path: DIR}``).
CatalogSettings = LocalCatalogConfig


class Site(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="the site's name")
    catalog: CatalogConfig = Field(description="where restore points live: {driver: local, path}")
    pause: PauseSettings = PauseSettings()
    clock: ClockSettings = ClockSettings()
    ledger: Component
    auditor: Component | None = None

    @model_validator(mode="after")
    def _one_component_per_node(self) -> Site:
        # Pausing a node twice in one window is not what the operator meant; and which
        # component's pause owns it would depend on the order of the calls.
        seen: dict[Target, str] = {}
        for name, comp in self.components().items():
            for i, target in enumerate(comp.targets.static):
                node, where = target.normalised(), f"{name}.targets.static[{i}]"
                if node in seen:
                    raise ValueError(
                        f"admin node {node} is listed in {seen[node]} and in {where}; a node "
                        "belongs to one component: remove it from one"
                    )
                seen[node] = where
        return self

    @model_validator(mode="after")
    def _unique_store_names(self) -> Site:
        seen: set[str] = set()
        for _, store in self.stores():
            if store.name in seen:
                raise ValueError(f"store name {store.name!r} is used twice; names must be unique")
            seen.add(store.name)
        return self

    def components(self) -> dict[str, Component]:
        out = {"ledger": self.ledger}
        if self.auditor is not None:
            out["auditor"] = self.auditor
        return out

    def stores(self) -> list[tuple[str, Any]]:
        """(component name, store config) for every store of the site."""
        return [(name, s) for name, comp in self.components().items() for s in comp.stores]

    def needs_pause(self) -> bool:
        """False only when the whole site lives in ONE transactional store (FACTS.md §3)."""
        stores = [s for _, s in self.stores()]
        return not (len(stores) == 1 and registry.capabilities(stores[0]).transactional)


def _explain(err: ValidationError, source: str) -> str:
    lines = [f"{source} is not a valid site file:"]
    for e in err.errors(include_url=False):
        text = problem(e)
        if e["type"] == "union_tag_not_found":  # the one tagged union: a store's kind
            text = f"a store needs 'kind:', one of: {', '.join(registry.names())}"
        lines.append(f"  - {where(e['loc'])}: {text}")
    return "\n".join(lines)


def parse_site(data: Any, source: str = "site") -> Site:
    if not isinstance(data, dict):
        what = "is empty" if data is None else f"holds {yaml_type(data)}"
        raise ConfigError(
            f"{source} {what}: it must be a YAML mapping with at least 'site:', 'catalog:' and "
            "'ledger:' (see demo/site.yaml.tmpl)"
        )
    try:
        return Site.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_explain(err, source)) from None


def load_site(path: str | Path) -> Site:
    path = Path(path)
    data = load_yaml(path, f"site file {path}")
    site = parse_site(data, source=f"site file {path}")
    # A relative catalog path is relative to the site file, not to wherever pausepoint runs.
    return site.model_copy(update={"catalog": site.catalog.relative_to(path.parent)})
