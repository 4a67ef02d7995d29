"""The admin client and node set of a whole site (every component, each with its TLS)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pausepoint.admin.discovery import discovery_for
from pausepoint.admin.grpc_client import GrpcAdminClient
from pausepoint.secrets import SecretRef
from pausepoint.site import Site, Target


def discover_nodes(site: Site) -> dict[str, list[Target]]:
    """component name -> the admin targets found for it now."""
    return {name: discovery_for(c.targets).discover() for name, c in site.components().items()}


def admin_client(site: Site, resolve: Callable[[SecretRef], Any] | None = None) -> GrpcAdminClient:
    """``resolve`` reads a CA given by reference (tls.ca_pem); the environment by default."""
    tls = {name: comp.targets.tls for name, comp in site.components().items()}
    nodes = discover_nodes(site) if len(set(tls.values())) > 1 else None
    return GrpcAdminClient.for_components(tls, nodes, resolve=resolve)
