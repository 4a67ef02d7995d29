"""The example files users copy from stay valid."""

from __future__ import annotations

from pathlib import Path

import yaml

from pausepoint.restore import load_target
from pausepoint.site import load_site, parse_site

ROOT = Path(__file__).resolve().parents[2]


def test_production_example_site_is_valid():
    site = load_site(ROOT / "deployments/production/site.yaml")
    assert site.needs_pause() and site.auditor is not None


def test_demo_site_template_is_valid_once_filled():
    text = (
        (ROOT / "demo/site.yaml.tmpl")
        .read_text()
        .format(
            pg_port=5432,
            my_port=3306,
            ledger_node_1="127.0.0.1:50053",
            ledger_node_2="127.0.0.1:50153",
            auditor_node_1="127.0.0.1:40053",
            auditor_node_2="127.0.0.1:40153",
        )
    )
    site = parse_site(yaml.safe_load(text))
    names = {s.name for _, s in site.stores()}
    target = load_target(ROOT / "demo/target.yaml")
    assert set(target.stores) == names


# prefect.yaml and the per-environment files under deployments/: tests/unit/test_prefect_yaml.py


def test_the_automation_file_in_the_docs_is_one_prefect_accepts():
    import re

    from prefect.events.schemas.automations import AutomationCore

    text = (ROOT / "docs/automations.md").read_text()
    [block] = re.findall(r"```yaml\n(.*?)```", text, re.S)
    automation = AutomationCore.model_validate(yaml.safe_load(block))
    assert automation.trigger.expect == {"pausepoint.backup.failed"}
    assert automation.actions[0].parameters == {
        "request": {"site_file": "deployments/production/site.yaml"}
    }


def test_store_kind_examples_are_valid():
    """deployments/examples: one site file (and restore target) per store kind."""
    sites = sorted((ROOT / "deployments/examples").glob("site-*.yaml"))
    assert sites
    for path in sites:
        site = load_site(path)
        target_path = path.with_name(path.name.replace("site-", "restore-target-"))
        if target_path.exists():
            target = load_target(target_path)
            assert set(target.stores) <= {s.name for _, s in site.stores()}, target_path
            for _comp, store in site.stores():
                if store.name in target.stores:
                    store.retarget(target.stores[store.name])


def test_the_aws_examples_are_valid_and_restore_where_they_say():
    """DynamoDB side by side leaves the live tables alone; in place is over them; RDS always
    goes to a new instance or cluster."""
    from pausepoint.restore import place_stores

    examples = ROOT / "deployments/examples"
    dynamo = load_site(examples / "site-dynamodb.yaml")
    side = place_stores(dynamo, load_target(examples / "restore-target-dynamodb.yaml"), what="t")
    assert not any(p.in_place for p in side)
    over = load_target(examples / "restore-target-dynamodb-in-place.yaml")
    assert all(p.in_place for p in place_stores(dynamo, over, what="t"))
    rds = load_site(examples / "site-rds.yaml")
    places = place_stores(rds, load_target(examples / "restore-target-rds.yaml"), what="t")
    assert not any(p.in_place for p in places)
