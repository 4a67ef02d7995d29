"""The contract suite runs every test once per store kind (``adapters.ADAPTERS``).

A test asks for ``adapter`` (the kind's adapter, see adapters.py) and may ask for ``variant``
(capture settings the kind declares), ``change`` (a change its fingerprint must see) or
``spelling`` (a way to write its live location): those are generated per kind, so each kind
brings its own list. Servers start only when a test touches ``adapter.server``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.contract.adapters import ADAPTERS, StoreAdapter
from tests.support import hygiene


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kind" not in metafunc.fixturenames:
        return
    per_kind = {
        "variant": lambda a: list(a.variants),
        "change": lambda a: list(a.changes),
        "spelling": lambda a: list(a.spellings("ledger")),
    }
    extra = [name for name in per_kind if name in metafunc.fixturenames]
    if not extra:
        metafunc.parametrize("kind", list(ADAPTERS))
        return
    (name,) = extra  # one per-kind list per test
    cases, ids = [], []
    for kind, adapter in ADAPTERS.items():
        for n, value in enumerate(per_kind[name](adapter)):
            cases.append((kind, value))
            ids.append(f"{kind}-{value if name != 'change' else n}")
    metafunc.parametrize(("kind", name), cases, ids=ids)


@pytest.fixture
def adapter(kind: str, request: pytest.FixtureRequest) -> StoreAdapter:
    return ADAPTERS[kind](request)


@pytest.fixture
def private_tmp(adapter: StoreAdapter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp directory of this test alone (for this process and the tools it starts), so
    that "nothing left in the temp dir" never sees another session's files."""
    assert adapter.server  # started first: the session's server keeps the usual temp dir
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@dataclass
class Held:
    """What a store may hold on to: the server's client connections, the processes this
    session started, the files in the (private) temp directory."""

    connections: set[int]
    processes: set[int]
    temp: set[str]


class Leftovers:
    """``take()`` before, ``assert_none_since(before)`` after: nothing new remains."""

    def __init__(self, adapter: StoreAdapter, temp: Path):
        self.adapter, self.temp = adapter, temp

    def take(self) -> Held:
        token = os.environ.get(hygiene.MARKER, "")
        return Held(
            self.adapter.connections(),
            set(hygiene.our_processes(token)),
            set(os.listdir(self.temp)),
        )

    def new_since(self, before: Held) -> Held:
        now = self.take()
        return Held(
            now.connections - before.connections,
            now.processes - before.processes,
            now.temp - before.temp,
        )

    def assert_none_since(self, before: Held, wait_s: float = 10.0) -> None:
        # A server notices a closed or killed client a moment later: wait for it, never long.
        deadline = time.monotonic() + wait_s
        while True:
            new = self.new_since(before)
            if not (new.connections or new.processes or new.temp):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"left behind: {new}")
            time.sleep(0.1)


@pytest.fixture
def leftovers(adapter: StoreAdapter, private_tmp: Path) -> Iterator[Leftovers]:
    yield Leftovers(adapter, private_tmp)
