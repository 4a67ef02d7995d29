"""Cloud credentials from Prefect blocks saved in a real (temporary) Prefect API, read by the
resolver the flows use (``tasks._step.secret_resolver``).

The credentials blocks are saved by block classes with the prefect-aws and prefect-azure
collections' block type slugs and field names (those collections are not dependencies: the
resolver reads the block documents through Prefect's generic API, which is what is tested).
Nothing here reaches AWS or Azure.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from pydantic import Field, SecretStr

from pausepoint.credentials import (
    AWS_BLOCK_TYPE,
    AZURE_BLOCK_TYPE,
    AwsCredentials,
    AzureCredentials,
    aws_session,
    azure_credential,
)
from pausepoint.errors import SecretError
from tasks._step import secret_resolver
from tests.support.cloud import keep_cloud_away

pytestmark = [pytest.mark.integration]

KEY_ID = "AKIAEXAMPLEBLOCK0001"
SECRET = "block-Secret-Value-91"
CLIENT = "0c4c8e2e-6f1a-4a57-9d0e-5b8a3c1f2e7d"
TENANT = "8a1f9c2e-2f4b-4e1d-9a6b-7c3d5e9f0a11"


class AwsCredentialsBlock(Block):
    """prefect-aws's "AWS Credentials" block: its slug and fields."""

    _block_type_slug: ClassVar[str] = AWS_BLOCK_TYPE
    _block_type_name: ClassVar[str] = "AWS Credentials"

    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: str | None = None
    profile_name: str | None = None
    region_name: str | None = None
    aws_client_parameters: dict[str, Any] = Field(default_factory=dict)


class AzureContainerInstanceCredentialsBlock(Block):
    """prefect-azure's "Azure Container Instance Credentials" block: its slug and fields."""

    _block_type_slug: ClassVar[str] = AZURE_BLOCK_TYPE
    _block_type_name: ClassVar[str] = "Azure Container Instance Credentials"

    client_id: str | None = None
    tenant_id: str | None = None
    client_secret: SecretStr | None = None
    credential_kwargs: dict[str, Any] = Field(default_factory=dict)


@pytest.fixture(autouse=True)
def no_cloud(monkeypatch, tmp_path):
    keep_cloud_away(monkeypatch, tmp_path)


def test_an_aws_credentials_block_becomes_a_session_with_its_keys_and_region(prefect_api):
    AwsCredentialsBlock(
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SecretStr(SECRET),
        region_name="eu-west-1",
    ).save("pp-test-aws", overwrite=True)

    creds = AwsCredentials.model_validate({"block": "pp-test-aws"})
    session = aws_session(creds, secret_resolver())
    frozen = session.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key) == (KEY_ID, SECRET)
    assert session.region_name == "eu-west-1"


def test_an_aws_block_naming_a_profile_uses_that_profile(prefect_api, tmp_path):
    (tmp_path / "aws-credentials").write_text(
        f"[from-block]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"
    )
    AwsCredentialsBlock(profile_name="from-block").save("pp-test-aws-profile", overwrite=True)
    session = aws_session(
        AwsCredentials.model_validate({"block": "pp-test-aws-profile", "region": "us-east-2"}),
        secret_resolver(),
    )
    assert session.get_credentials().get_frozen_credentials().access_key == KEY_ID
    assert session.region_name == "us-east-2"


def test_keys_from_prefect_secret_blocks(prefect_api):
    Secret(value=KEY_ID).save("pp-test-aws-key-id", overwrite=True)
    Secret(value=SECRET).save("pp-test-aws-secret", overwrite=True)
    creds = AwsCredentials.model_validate(
        {
            "source": "keys",
            "access_key_id": {"block": "pp-test-aws-key-id"},
            "secret_access_key": {"block": "pp-test-aws-secret"},
        }
    )
    frozen = aws_session(creds, secret_resolver()).get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key) == (KEY_ID, SECRET)


def test_an_azure_block_becomes_a_service_principal(prefect_api):
    from azure.identity import ClientSecretCredential

    AzureContainerInstanceCredentialsBlock(
        client_id=CLIENT, tenant_id=TENANT, client_secret=SecretStr(SECRET)
    ).save("pp-test-azure", overwrite=True)
    credential = azure_credential(
        AzureCredentials.model_validate({"block": "pp-test-azure"}), secret_resolver()
    )
    assert isinstance(credential, ClientSecretCredential)
    assert (credential._tenant_id, credential._client_id) == (TENANT, CLIENT)
    assert credential._client_credential == SECRET


def test_a_missing_block_or_one_of_another_type_is_named(prefect_api):
    Secret(value=SECRET).save("pp-test-not-aws", overwrite=True)
    for name in ("pp-test-no-such-block", "pp-test-not-aws"):
        with pytest.raises(SecretError) as e:
            aws_session(AwsCredentials.model_validate({"block": name}), secret_resolver())
        assert f"could not load the Prefect aws-credentials block {name!r}" in str(e.value)
        assert SECRET not in str(e.value)
