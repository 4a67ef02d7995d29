"""Fixtures shared by the flow-level integration tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from harness.sites import SiteDbs
from tests.support.small_site import SmallSite, start_small_site

_n = itertools.count()  # one set of databases per test: names must not collide


@pytest.fixture
def small_site(pg_server, mysql_server, prefect_api, tmp_path, monkeypatch) -> Iterator[SmallSite]:
    dbs = SiteDbs(pg_server, mysql_server, monkeypatch, prefix=f"ff{next(_n)}")
    with start_small_site(dbs, tmp_path) as site:
        yield site
