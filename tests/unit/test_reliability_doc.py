"""docs/reliability.md names the tests that show each fault: every one it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
# `tests/x/test_y.py::test_z` or `tests/x/test_y.py::test_z[param]`, and `::test_w` continuing
# the previous file in the same cell.
REF = re.compile(r"`(tests/[\w/]+\.py)?(?:::(test_\w+))?(?:\[[^\]]*\])?`")


def _refs() -> list[tuple[str, str | None]]:
    refs = []
    for line in DOC.read_text().splitlines():
        current = None
        for m in REF.finditer(line):
            path, name = m.group(1), m.group(2)
            if path:
                current = path
            if current and (path or name):
                refs.append((current, name))
    return refs


def test_the_doc_names_tests() -> None:
    assert len(_refs()) > 40


def test_every_test_the_doc_names_exists() -> None:
    missing = []
    for path, name in _refs():
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name and not re.search(rf"^\s*def {name}\(", file.read_text(), flags=re.M):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
