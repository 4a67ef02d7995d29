"""Fixtures of the integration tests that run Prefect flows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A temporary Prefect API for the whole session (flows and tasks record their runs)."""
    from prefect.testing.utilities import prefect_test_harness

    # Two cores: the first start of the API can take well over the default 30 s.
    with prefect_test_harness(server_startup_timeout=90):
        yield
