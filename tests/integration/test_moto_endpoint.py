"""The local AWS endpoint itself: real boto3 calls reach moto's server on loopback."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_moto_serves_s3_and_dynamodb_on_loopback(moto) -> None:
    assert moto.endpoint.startswith("http://127.0.0.1:")
    moto.reset()
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="pp-probe")
    s3.put_object(Bucket="pp-probe", Key="k", Body=b"v")
    assert s3.get_object(Bucket="pp-probe", Key="k")["Body"].read() == b"v"
    ddb = moto.client("dynamodb")
    ddb.create_table(
        TableName="probe",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert "probe" in ddb.list_tables()["TableNames"]
    moto.reset()
    assert s3.list_buckets()["Buckets"] == []
