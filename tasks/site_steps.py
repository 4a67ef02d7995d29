"""Tasks shared by every flow: load and validate the site, build its clients."""

from __future__ import annotations

from prefect.logging import get_run_logger

from pausepoint.admin.grpc_client import GrpcAdminClient
from pausepoint.admin.site_client import admin_client
from pausepoint.catalog import Catalog, open_catalog
from pausepoint.secrets import SecretResolver
from pausepoint.site import Site
from pausepoint.site import load_site as _load_site
from tasks._step import step


@step(name="load-site")
def load_site(site_file: str) -> Site:
    site = _load_site(site_file)
    comps = {name: len(c.stores) for name, c in site.components().items()}
    get_run_logger().info(
        "site %s: components %s, catalog %s", site.site, comps, site.catalog.describe()
    )
    return site


def connect(site: Site) -> tuple[GrpcAdminClient, SecretResolver, Catalog]:
    """The admin client (TLS per component), the secret resolver and the catalog of a site."""
    from tasks._step import secret_resolver

    resolver = secret_resolver()
    return admin_client(site, resolver), resolver, open_catalog(site.catalog, resolver)
