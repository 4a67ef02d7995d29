"""Every YAML file pausepoint reads refuses a key given twice (PyYAML would keep the last one
silently) and reports syntax errors with the parser's own words and position; a site file
refuses one admin node in two places."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.environment import ROOT, _read_parameters
from deployments.serve import deployment_specs
from pausepoint.errors import ConfigError
from pausepoint.restore import load_target
from pausepoint.site import load_site, parse_site

# The case: the second `ledger:` hid the first's third node and its MySQL store, and the
# backup paused 2 of 3 nodes, skipped a store and registered a point.
TWO_LEDGERS = """\
site: demo
catalog: {path: catalog}
ledger:
  targets: {static: ["10.0.0.1:50053", "10.0.0.2:50053", "10.0.0.3:50053"]}
  stores:
    - {kind: postgres, name: ledger-pg, user: scalar, database: ledger}
    - {kind: mysql, name: ledger-my, user: scalar, databases: [scalar]}
ledger:
  targets: {static: ["10.0.0.1:50053", "10.0.0.2:50053"]}
  stores:
    - {kind: postgres, name: ledger-pg, user: scalar, database: ledger}
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def given_twice(what: str, path: Path, key: str, first: int, second: int) -> str:
    """The whole refusal of a file that gives ``key`` twice."""
    return (
        f"{what} {path}: key {key!r} is given twice, at line {first} and line {second}; YAML "
        "would keep only the last one silently, so remove or merge one of them"
    )


def test_a_site_file_with_two_ledger_keys_is_refused(tmp_path):
    path = _write(tmp_path, "site.yaml", TWO_LEDGERS)
    with pytest.raises(ConfigError) as e:
        load_site(path)
    assert str(e.value) == given_twice("site file", path, "ledger", 3, 8)


def test_a_key_given_twice_deep_inside_a_site_file_is_refused(tmp_path):
    text = "\n".join(TWO_LEDGERS.splitlines()[:7])
    text = text.replace("database: ledger}", "database: ledger,\n       database: other}")
    path = _write(tmp_path, "site.yaml", text)
    with pytest.raises(ConfigError, match=r"key 'database' is given twice, at line 6 and line 7"):
        load_site(path)


def test_a_restore_target_file_with_a_key_given_twice_is_refused(tmp_path):
    path = _write(
        tmp_path,
        "target.yaml",
        "stores:\n  ledger-pg: {database: scratch}\n  ledger-pg: {database: ledger}\n",
    )
    with pytest.raises(ConfigError) as e:
        load_target(path)
    assert str(e.value) == given_twice("restore target file", path, "ledger-pg", 2, 3)


def test_a_parameters_file_with_a_key_given_twice_is_refused(tmp_path):
    path = _write(tmp_path, "parameters.yaml", "prune: {keep_last: 3}\nprune: {keep_last: 1}\n")
    with pytest.raises(ConfigError, match=r"key 'prune' is given twice, at line 1 and line 2"):
        _read_parameters(path)


def test_a_prefect_yaml_with_a_key_given_twice_is_refused(tmp_path):
    text = (ROOT / "prefect.yaml").read_text()
    path = _write(tmp_path, "prefect.yaml", text + "\ndeployments: []\n")
    with pytest.raises(ConfigError, match=rf"{path}: key 'deployments' is given twice"):
        deployment_specs({"site_file": "s.yaml"}, prefect_file=path)


def test_a_syntax_error_keeps_the_parsers_explanation_and_position(tmp_path):
    path = _write(tmp_path, "site.yaml", "site: demo\nledger: {targets: [a, b\n")
    with pytest.raises(ConfigError) as e:
        load_site(path)
    assert str(e.value) == (
        f"site file {path} is not valid YAML at line 3, column 1: expected ',' or ']', but got "
        "'<stream end>' (while parsing a flow sequence from line 2, column 19); fix the syntax"
    )


def _site(ledger: list[str], auditor: list[str] | None = None) -> dict:
    store = {"kind": "postgres", "user": "scalar", "database": "db"}
    data = {
        "site": "demo",
        "catalog": {"path": "c"},
        "ledger": {"targets": {"static": ledger}, "stores": [dict(store, name="l")]},
    }
    if auditor is not None:
        data["auditor"] = {"targets": {"static": auditor}, "stores": [dict(store, name="a")]}
    return data


def test_one_admin_node_in_ledger_and_auditor_is_refused():
    data = _site(["ledger-1.example:50053", "Node.Example.:50053"], ["node.example:50053"])
    with pytest.raises(ConfigError) as e:
        parse_site(data, source="site file s.yaml")
    assert str(e.value) == (
        "site file s.yaml is not a valid site file:\n"
        "  - (top level): admin node node.example:50053 is listed in ledger.targets.static[1] "
        "and in auditor.targets.static[0]; a node belongs to one component: remove it from one"
    )


def test_one_admin_node_twice_in_one_component_is_refused():
    with pytest.raises(ConfigError) as e:
        parse_site(_site(["10.0.0.1:50053", "Ledger.Example:50053", "ledger.example.:50053"]))
    assert str(e.value) == (
        "site is not a valid site file:\n"
        "  - ledger.targets: admin node ledger.example:50053 is listed twice, in static[1] and "
        "static[2]; list each admin endpoint once"
    )


def test_ipv6_literals_are_compared_as_addresses():
    with pytest.raises(ConfigError, match=r"admin node \[::1\]:50053 is listed in ledger"):
        parse_site(_site(["[::1]:50053"], ["[0:0:0:0:0:0:0:1]:50053"]))
    parse_site(_site(["10.0.0.1:50053"], ["10.0.0.1:40053"]))  # another port: another node
