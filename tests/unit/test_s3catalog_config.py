"""The S3 catalog's settings (pausepoint/catalog/config.py) and how the driver words S3's
refusals (pausepoint/catalog/s3.py), without any endpoint: nothing here talks to S3."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pausepoint.catalog import open_catalog
from pausepoint.catalog.config import S3CatalogConfig
from pausepoint.catalog.s3 import S3Driver
from pausepoint.errors import CatalogError, ConfigError, CredentialsError
from pausepoint.site import load_site, parse_site

ROOT = Path(__file__).resolve().parents[2]
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def site_dict(catalog: object) -> dict:
    return {
        "site": "demo",
        "catalog": catalog,
        "ledger": {
            "targets": {"static": ["127.0.0.1:50053"]},
            "stores": [
                {
                    "name": "ledger-pg",
                    "kind": "postgres",
                    "host": "127.0.0.1",
                    "user": "u",
                    "password": {"env": "PW"},
                    "database": "ledger",
                }
            ],
        },
    }


def test_s3_settings_in_a_site_file_open_the_s3_driver_without_a_call(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    path = tmp_path / "site.yaml"
    catalog = {"driver": "s3", "bucket": "pp-catalog", "prefix": "a/b", "spool_dir": "spool"}
    path.write_text(yaml.safe_dump(site_dict(catalog)))
    site = load_site(path)
    assert isinstance(site.catalog, S3CatalogConfig)
    assert site.catalog.describe() == "s3://pp-catalog/a/b"
    assert site.catalog.spool_dir == (tmp_path / "spool").resolve()  # relative to the site file
    assert site.catalog.credentials.source == "default"
    driver = open_catalog(site.catalog).driver  # the client is made; nothing is sent
    assert isinstance(driver, S3Driver)
    assert driver.location("demo/points/x/manifest.json") == (
        "s3://pp-catalog/a/b/demo/points/x/manifest.json"
    )


def test_the_example_site_with_an_s3_catalog_is_valid():
    site = load_site(ROOT / "deployments/examples/s3-catalog-site.yaml")
    assert isinstance(site.catalog, S3CatalogConfig)
    assert site.catalog.credentials.source == "default"


@pytest.mark.parametrize(
    ("catalog", "expected"),
    [
        ({"driver": "s3"}, "catalog.s3.bucket: is required"),
        ({"driver": "s3", "bucket": "B_"}, "catalog.s3.bucket: is not allowed here"),
        ({"driver": "s3", "bucket": "pp", "prefix": "/a/"}, "catalog.s3.prefix: is not allowed"),
        ({"driver": "s3", "bucket": "pp", "part_size_mib": 4}, "catalog.s3.part_size_mib"),
        ({"driver": "s3", "bucket": "pp", "path": "x"}, "catalog.s3.path: is not a known"),
    ],
)
def test_bad_s3_settings_name_the_field(catalog, expected):
    with pytest.raises(ConfigError) as info:
        parse_site(site_dict(catalog))
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "catalog",
    [
        {"driver": "s3", "bucket": "pp", "credentials": SECRET},
        {
            "driver": "s3",
            "bucket": "pp",
            "credentials": {"source": "keys", "access_key_id": "AKIA", "secret_access_key": SECRET},
        },
        {"driver": "s3", "bucket": "pp", "endpoint_url": f"https://AKIA:{SECRET}@minio:9000"},
    ],
    ids=["credentials-inline", "key-inline", "endpoint-userinfo"],
)
def test_a_secret_written_into_the_catalog_settings_is_refused_and_never_repeated(catalog):
    with pytest.raises(ConfigError) as info:
        parse_site(site_dict(catalog))
    assert SECRET not in str(info.value) and "catalog.s3" in str(info.value)


def _client_error(code: str, status: int):
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind", "says"),
    [
        ("InvalidAccessKeyId", 403, CredentialsError, "access key is unknown"),
        ("SignatureDoesNotMatch", 403, CredentialsError, "secret wrong"),
        ("ExpiredToken", 400, CredentialsError, "session expired"),
        ("AccessDenied", 403, CatalogError, "docs/operations.md, 'S3 catalog'"),
        ("NoSuchBucket", 404, CatalogError, "does not exist"),
        ("AuthorizationHeaderMalformed", 400, CatalogError, "set catalog.region"),
        ("InternalError", 500, CatalogError, "S3 answered InternalError"),
    ],
)
def test_s3_refusals_become_errors_that_name_the_object_and_the_fix(code, status, kind, says):
    config = S3CatalogConfig(bucket="pp-catalog", region="eu-west-1")
    driver = S3Driver(config, client=_FakeClient())
    error = driver._error(_client_error(code, status), "write", "demo/leases/r.json")
    assert type(error) is kind and says in str(error)
    assert "pp-catalog" in str(error)  # which bucket (and object) it was about


class _FakeClient:
    class meta:  # botocore's attribute name
        region_name = "eu-west-1"
