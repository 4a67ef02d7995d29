"""Flow parameters are pydantic models: the UI form and the server-side schema come from them."""

from __future__ import annotations

import pytest
from prefect.utilities.callables import parameter_schema

from flows.backup import backup
from flows.restore import restore
from flows.watchdog import watchdog
from pausepoint.errors import ConfigError
from pausepoint.requests import BackupRequest, RestoreRequest, parse_request

POINT = "20261128T003119Z-3f9a"


@pytest.mark.parametrize(
    ("flow", "model"),
    [(backup, "BackupRequest"), (restore, "RestoreRequest"), (watchdog, "WatchdogRequest")],
)
def test_each_flow_takes_one_request_model(flow, model):
    schema = parameter_schema(flow.fn).model_dump()
    assert schema["required"] == ["request"]
    assert schema["properties"]["request"]["$ref"] == f"#/definitions/{model}"
    fields = schema["definitions"][model]["properties"]
    assert fields["site_file"]["title"] == "Site file"
    assert schema["definitions"][model]["additionalProperties"] is False


def test_restore_schema_carries_the_point_id_pattern_the_server_enforces():
    fields = parameter_schema(restore.fn).model_dump()["definitions"]["RestoreRequest"]
    assert fields["required"] == ["site_file", "point_id", "confirm"]
    assert fields["properties"]["point_id"]["pattern"] == r"^\d{8}T\d{6}Z-[0-9a-f]{4}$"


def test_restore_needs_the_point_id_typed_twice():
    ok = parse_request(RestoreRequest, site_file="s.yaml", point_id=POINT, confirm=POINT)
    assert ok.point_id == POINT and ok.replace is False
    with pytest.raises(ConfigError, match="must repeat point_id '20261128T003119Z-3f9a'"):
        parse_request(RestoreRequest, site_file="s.yaml", point_id=POINT, confirm="yes")


def test_a_wrong_field_is_named():
    with pytest.raises(ConfigError, match="point_id: is not allowed here: give a restore point id"):
        parse_request(RestoreRequest, site_file="s.yaml", point_id="latest", confirm="latest")
    with pytest.raises(ConfigError, match="site_file: must not be empty"):
        parse_request(BackupRequest, site_file="")
    with pytest.raises(ConfigError, match="password: is not a parameter of BackupRequest"):
        parse_request(BackupRequest, site_file="s.yaml", password="hunter2")


def test_labels_are_checked():
    assert parse_request(BackupRequest, site_file="s", labels={"reason": "pre-upgrade"}).labels
    with pytest.raises(ConfigError, match="labels"):
        parse_request(BackupRequest, site_file="s", labels={"Bad Key": "x"})


def test_the_schema_the_server_checks_refuses_a_bad_label_key():
    import jsonschema

    schema = BackupRequest.model_json_schema()
    jsonschema.validate({"site_file": "s", "labels": {"reason": "x"}}, schema)
    with pytest.raises(jsonschema.ValidationError, match="'Bad Key' does not match"):
        jsonschema.validate({"site_file": "s", "labels": {"Bad Key": "x"}}, schema)
