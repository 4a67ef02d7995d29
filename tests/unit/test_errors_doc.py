"""docs/errors.md against the code: every error type a user can meet has its row and exit code."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pausepoint
from pausepoint.errors import PausepointError

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
ROW = re.compile(
    r"^\| `(?P<name>[A-Za-z]+)` \| (?P<code>\d+) \| (?P<means>[^|]+) \| (?P<fix>[^|]+) \|$"
)


def _error_types() -> dict[str, type[PausepointError]]:
    # Import every module: some errors live beside the code that raises them.
    for mod in pkgutil.walk_packages(pausepoint.__path__, "pausepoint."):
        importlib.import_module(mod.name)
    found: dict[str, type[PausepointError]] = {}
    todo: list[type[PausepointError]] = [PausepointError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo += cls.__subclasses__()
    return found


def _documented() -> dict[str, tuple[int, str, str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        if m := ROW.match(line):
            rows[m["name"]] = (int(m["code"]), m["means"].strip(), m["fix"].strip())
    return rows


def test_every_error_type_has_a_row_with_its_exit_code() -> None:
    types, rows = _error_types(), _documented()
    missing = sorted(set(types) - set(rows))
    assert not missing, f"docs/errors.md has no row for {missing}"
    wrong = {n: (rows[n][0], t.exit_code) for n, t in types.items() if rows[n][0] != t.exit_code}
    assert not wrong, f"exit codes in docs/errors.md differ from the code (doc, code): {wrong}"


def test_every_row_is_an_error_type_that_exists() -> None:
    unknown = sorted(set(_documented()) - set(_error_types()))
    assert not unknown, f"docs/errors.md documents types the code does not have: {unknown}"


def test_every_row_says_what_it_means_and_what_to_do() -> None:
    for name, (_, means, fix) in _documented().items():
        assert len(means) > 20, name
        assert name == "PausepointError" or len(fix) > 15, name


def test_the_exit_code_table_covers_every_code_in_use() -> None:
    text = DOC.read_text()
    listed = {
        int(c) for row in re.findall(r"^\| ([\d, ]+) \|", text, flags=re.M) for c in row.split(",")
    }
    used = {t.exit_code for t in _error_types().values()}
    assert used <= listed, f"exit codes without a line in the table: {sorted(used - listed)}"
