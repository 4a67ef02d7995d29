"""Malformed site files, restore target files and flow requests, each with the exact error it
must give (tests/data/malformed/expected.yaml): the type, and a message that names the field and
the fix. A message changed on purpose is changed there too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pausepoint import errors, requests
from pausepoint.drill import check_scratch_target
from pausepoint.restore import load_target
from pausepoint.site import load_site
from pausepoint.yamlfile import load_yaml

DATA = Path(__file__).resolve().parents[1] / "data" / "malformed"
EXPECTED: dict[str, Any] = load_yaml(DATA / "expected.yaml", "expected.yaml")
DRILL_SITE = DATA / "site.yaml"


def _error_type(name: str) -> type[Exception]:
    from pausepoint import drill

    return getattr(errors, name, None) or getattr(drill, name)


def _check(call, expected: dict[str, Any], path: Path | None = None) -> None:
    with pytest.raises(Exception) as caught:
        call()
    message = expected["message"].replace("{path}", str(path)) if path else expected["message"]
    assert type(caught.value) is _error_type(expected["error"])
    assert str(caught.value) == message


@pytest.mark.parametrize("name", sorted(EXPECTED["site"]))
def test_a_malformed_site_file_is_refused_with_its_message(name):
    path = DATA / "site" / name
    _check(lambda: load_site(path), EXPECTED["site"][name], path)


@pytest.mark.parametrize("name", sorted(EXPECTED["target"]))
def test_a_malformed_restore_target_is_refused_with_its_message(name):
    path, expected = DATA / "target" / name, EXPECTED["target"][name]
    if expected.get("check") == "drill":
        site = load_site(DRILL_SITE)
        _check(lambda: check_scratch_target(site, load_target(path)), expected, path)
    else:
        _check(lambda: load_target(path), expected, path)


@pytest.mark.parametrize("case", EXPECTED["requests"], ids=lambda c: c["case"])
def test_a_malformed_flow_request_is_refused_with_its_message(case):
    model = getattr(requests, case["model"])
    _check(lambda: requests.parse_request(model, **case["fields"]), case)


def test_every_case_file_has_its_expected_error_and_there_are_enough():
    for kind in ("site", "target"):
        assert sorted(p.name for p in (DATA / kind).iterdir()) == sorted(EXPECTED[kind])
    assert len(EXPECTED["site"]) + len(EXPECTED["target"]) + len(EXPECTED["requests"]) >= 40


def test_the_one_valid_file_here_is_valid():
    """The cases are this file with one thing wrong; it must pass for them to mean anything."""
    site = load_site(DRILL_SITE)
    assert [s.name for _, s in site.stores()] == ["ledger-pg", "auditor-my"]
    assert check_scratch_target(site, load_target(DATA / "target.yaml"))
