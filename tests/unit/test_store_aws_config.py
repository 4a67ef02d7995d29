"""The AWS kinds' site-file settings and their restore targets (no endpoint needed)."""

from __future__ import annotations

import pytest

from pausepoint.errors import ConfigError
from pausepoint.locations import locations
from pausepoint.stores.dynamodb.config import DynamoConfig
from pausepoint.stores.rds.config import RdsConfig

DDB = {
    "name": "ledger-ddb",
    "kind": "dynamodb",
    "region": "eu-west-1",
    "namespaces": ["scalar"],
    "table_prefix": "ledger_",
    "credentials": {"source": "profile", "profile": "ops"},
}
RDS = {"name": "ledger-rds", "kind": "rds", "region": "eu-west-1", "instance": "ledger-db"}


def test_a_dynamodb_restore_goes_side_by_side_unless_the_target_says_in_place():
    live = DynamoConfig.model_validate(DDB)
    with pytest.raises(ConfigError, match=r"side by side unless asked.*in_place: true"):
        live.retarget({})
    side = live.retarget({"table_prefix": "restored_"})
    assert side.credentials == live.credentials  # nested credentials survive the retarget
    assert not locations(side, as_target=True) & locations(live, as_target=False)
    over = live.retarget({"in_place": True})
    assert locations(over, as_target=True) == locations(live, as_target=False)
    with pytest.raises(ConfigError, match="both in_place: true and another table_prefix"):
        live.retarget({"in_place": True, "table_prefix": "x_"})
    with pytest.raises(ConfigError, match="own account and region"):
        live.retarget({"region": "us-east-1", "table_prefix": "x_"})


def test_dynamodb_locations_cover_the_namespaces_coordinator_and_metadata():
    live = DynamoConfig.model_validate(DDB)
    assert {loc.database for loc in locations(live, as_target=False)} == {
        "ledger_scalar.*",
        "ledger_coordinator.*",
        "ledger_scalardb.*",
    }
    alone = DynamoConfig.model_validate(
        {**DDB, "coordinator_namespace": None, "metadata_namespace": None}
    )
    assert {loc.database for loc in locations(alone, as_target=False)} == {"ledger_scalar.*"}
    with pytest.raises(ValueError, match="namespaces"):
        DynamoConfig.model_validate({**DDB, "namespaces": ["no.dots"]})


def test_an_rds_restore_needs_a_new_identifier():
    live = RdsConfig.model_validate(RDS)
    with pytest.raises(ConfigError, match="creates a NEW instance; give its identifier"):
        live.retarget({})
    with pytest.raises(ConfigError, match="different from 'ledger-db'"):
        live.retarget({"restore_as": "LEDGER-DB"})
    with pytest.raises(ConfigError, match="cannot change the source"):
        live.retarget({"instance": "other-db", "restore_as": "x"})
    new = live.retarget({"restore_as": "ledger-db-r"})
    assert {loc.database for loc in locations(new, as_target=True)} == {"ledger-db-r"}
    cluster = RdsConfig.model_validate({**RDS, "instance": None, "cluster": "aur"})
    assert {
        loc.database for loc in locations(cluster.retarget({"restore_as": "aur-r"}), as_target=True)
    } == {"aur-r", "aur-r-1"}
    with pytest.raises(ValueError, match="exactly one of 'instance'"):
        RdsConfig.model_validate({**RDS, "cluster": "aur"})
