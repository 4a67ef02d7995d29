"""Site file validation: each bad input names the field, the problem and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pausepoint.errors import ConfigError
from pausepoint.site import Target, load_site, parse_site


def site_dict(**over):
    data = {
        "site": "demo",
        "catalog": {"path": "catalog"},
        "ledger": {
            "targets": {"static": ["127.0.0.1:50053", "127.0.0.1:50153"]},
            "stores": [
                {
                    "kind": "postgres",
                    "name": "ledger-pg",
                    "user": "scalar",
                    "password": {"env": "PG_PASSWORD"},
                    "database": "ledger",
                },
                {
                    "kind": "mysql",
                    "name": "ledger-my",
                    "user": "scalar",
                    "password": {"env": "MY_PASSWORD"},
                    "databases": ["scalar"],
                },
            ],
        },
    }
    data.update(over)
    return data


def write(tmp_path: Path, data) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def test_load_site_valid_file_resolves_catalog_relative_to_file(tmp_path):
    site = load_site(write(tmp_path, site_dict()))
    assert site.catalog.path == (tmp_path / "catalog").resolve()
    assert site.ledger.targets.static == [
        Target(host="127.0.0.1", port=50053),
        Target(host="127.0.0.1", port=50153),
    ]
    assert [s.kind for _, s in site.stores()] == ["postgres", "mysql"]
    assert site.needs_pause()


@pytest.mark.parametrize(
    "catalog", [{"path": "catalog"}, {"driver": "local", "path": "catalog"}], ids=["old", "driver"]
)
def test_catalog_with_or_without_driver_opens_the_local_driver(tmp_path, catalog):
    from pausepoint.catalog import LocalDriver, open_catalog

    site = load_site(write(tmp_path, site_dict(catalog=catalog)))
    assert site.catalog.driver == "local"
    assert site.catalog.describe() == str((tmp_path / "catalog").resolve())
    driver = open_catalog(site.catalog).driver
    assert isinstance(driver, LocalDriver) and driver.root == (tmp_path / "catalog").resolve()


def test_catalog_absolute_path_is_kept(tmp_path):
    site = load_site(write(tmp_path, site_dict(catalog={"driver": "local", "path": "/srv/cat"})))
    assert site.catalog.path == Path("/srv/cat")


@pytest.mark.parametrize(
    ("catalog", "expected"),
    [
        ({"driver": "ftp", "path": "x"}, "catalog: catalog driver 'ftp' is not known; use one of"),
        ({"driver": "local"}, "catalog.local.path: is required"),
        ({"driver": "local", "path": "x", "bucket": "b"}, "catalog.local.bucket: is not a known"),
        ("catalog", "catalog: should be a mapping"),
    ],
)
def test_catalog_bad_settings_name_the_field_and_the_fix(catalog, expected):
    with pytest.raises(ConfigError) as info:
        parse_site(site_dict(catalog=catalog))
    assert expected in str(info.value)


def test_needs_pause_single_transactional_store_is_false():
    data = site_dict()
    data["ledger"]["stores"] = data["ledger"]["stores"][:1]
    assert not parse_site(data).needs_pause()


def test_needs_pause_ledger_and_auditor_on_one_kind_is_true():
    data = site_dict()
    data["ledger"]["stores"] = data["ledger"]["stores"][:1]
    data["auditor"] = {
        "targets": {"static": ["127.0.0.1:40053"]},
        "stores": [dict(data["ledger"]["stores"][0], name="auditor-pg")],
    }
    assert parse_site(data).needs_pause()


def test_load_site_inline_password_refused_with_fix():
    data = site_dict()
    data["ledger"]["stores"][0]["password"] = "hunter2"
    with pytest.raises(ConfigError) as e:
        parse_site(data)
    msg = str(e.value)
    assert "ledger.stores.0.postgres.password" in msg
    assert "{env: VARIABLE_NAME}" in msg
    assert "hunter2" not in msg


@pytest.mark.parametrize(
    ("mutate", "where", "says"),
    [
        (lambda d: d.pop("catalog"), "catalog", "is required"),
        (
            lambda d: d["ledger"]["targets"].update(static=["nohost"]),
            "ledger.targets.static",
            "is not host:port",
        ),
        (
            lambda d: d["ledger"]["targets"].update(static=[]),
            "ledger.targets",
            "give the admin endpoints",
        ),
        (lambda d: d["ledger"]["stores"][0].update(kind="oracle"), "ledger.stores.0", "postgres"),
        (lambda d: d["ledger"]["stores"][1].update(name="ledger-pg"), "(top level)", "used twice"),
        (lambda d: d.update(pauze={}), "pauze", "not a known setting"),
        (
            lambda d: d.update(pause={"drain_timeout_ms": -1}),
            "pause.drain_timeout_ms",
            "greater than 0",
        ),
        (lambda d: d.update(site="Demo Site"), "site", "use lower-case letters"),
        (
            lambda d: d["ledger"]["stores"][0]["password"].update(block="x"),
            "ledger.stores.0.postgres.password",
            "exactly one",
        ),
    ],
)
def test_parse_site_bad_field_names_field_and_problem(mutate, where, says):
    data = site_dict()
    mutate(data)
    with pytest.raises(ConfigError) as e:
        parse_site(data, source="site file x.yaml")
    msg = str(e.value)
    assert msg.startswith("site file x.yaml is not a valid site file")
    assert f"  - {where}" in msg
    assert says in msg


def test_load_site_malformed_yaml_gives_line(tmp_path):
    p = write(tmp_path, "site: demo\nledger: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+, column \d+"):
        load_site(p)


def test_load_site_missing_file_names_path(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read site file .*nope\.yaml"):
        load_site(tmp_path / "nope.yaml")


def test_load_site_not_a_mapping_refused(tmp_path):
    with pytest.raises(ConfigError, match="holds a list: it must be a YAML mapping"):
        load_site(write(tmp_path, "- just\n- a list\n"))
