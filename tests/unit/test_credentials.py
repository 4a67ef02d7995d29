"""Structured cloud credentials, by reference: what a site file may write for each source, what
it may not (an inline secret, a setting of another source), and what each resolves to.

Nothing here reaches AWS or Azure: boto3 sessions and azure-identity credentials are built and
inspected without a token being requested; the assumed role is answered by moto in-process
(no socket); the instance metadata endpoint is disabled for every test.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import pytest
from pydantic import BaseModel, ValidationError

from pausepoint.credentials import (
    AWS_BLOCK_TYPE,
    AZURE_BLOCK_TYPE,
    AwsCredentials,
    AzureCredentials,
    aws_session,
    azure_credential,
)
from pausepoint.errors import ConfigError, CredentialsError, SecretError
from pausepoint.secrets import SecretResolver
from pausepoint.site import _explain
from pausepoint.stores.base import StoreConfigBase
from pausepoint.validation import explain_lines
from tests.support.cloud import keep_cloud_away

SECRET = "wJalrXUtnFEMI-Inline-Secret-77"
KEY_ID = "AKIAEXAMPLEKEYID0001"
ROLE = "arn:aws:iam::123456789012:role/pausepoint-backup"
CLIENT = "0c4c8e2e-6f1a-4a57-9d0e-5b8a3c1f2e7d"
TENANT = "8a1f9c2e-2f4b-4e1d-9a6b-7c3d5e9f0a11"


class StoreConfig(BaseModel):
    """How a store kind declares its credentials (a kind's config model, reduced)."""

    aws: AwsCredentials = AwsCredentials(source="default")
    azure: AzureCredentials = AzureCredentials(source="default")


@pytest.fixture(autouse=True)
def no_cloud(monkeypatch, tmp_path):
    keep_cloud_away(monkeypatch, tmp_path)


def everything_said(exc: BaseException) -> str:
    parts = [str(exc), repr(exc)]
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None:
            parts += [str(linked), repr(linked)]
    return "\n".join(parts)


def refused(data: dict) -> tuple[ValidationError, str]:
    """The error of a store config holding ``data``, and what the site file's loader says."""
    with pytest.raises(ValidationError) as e:
        StoreConfig.model_validate(data)
    return e.value, _explain(e.value, "site file s.yaml")


# --- the models ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"source": "default"},
        {"source": "default", "region": "eu-west-1"},
        {"source": "profile", "profile": "backup"},
        {"source": "keys", "access_key_id": {"env": "K"}, "secret_access_key": {"block": "s"}},
        {
            "source": "keys",
            "access_key_id": {"env": "K"},
            "secret_access_key": {"env": "S"},
            "session_token": {"env": "T"},
        },
        {"source": "assume_role", "role_arn": ROLE},
        {
            "source": "assume_role",
            "role_arn": ROLE,
            "session_name": "pp-prod",
            "external_id": {"env": "EXT"},
            "duration_s": 3600,
            "base": {"source": "profile", "profile": "jump"},
        },
        {"source": "assume_role", "role_arn": ROLE, "base": {"block": "aws-prod"}},
        {"block": "aws-prod"},
        {"block": "aws-prod", "region": "us-east-2"},
        {"source": "block", "block": "aws-prod"},
    ],
)
def test_every_aws_source_is_accepted(data):
    creds = StoreConfig.model_validate({"aws": data}).aws
    assert creds.source == data.get("source", "block")


@pytest.mark.parametrize(
    "data",
    [
        {"source": "default"},
        {"source": "service_principal", "tenant_id": TENANT, "client_id": CLIENT,
         "client_secret": {"env": "AZ_SECRET"}},
        {"source": "managed_identity"},
        {"source": "managed_identity", "client_id": CLIENT},
        {"block": "azure-prod"},
    ],
)  # fmt: skip
def test_every_azure_source_is_accepted(data):
    assert StoreConfig.model_validate({"azure": data}).azure.source == data.get("source", "block")


def test_a_kind_declares_default_credentials():
    config = StoreConfig()
    assert config.aws == AwsCredentials(source="default")
    assert config.azure.source == "default"


@pytest.mark.parametrize(
    ("field", "data"),
    [
        ("aws", {"source": "keys", "access_key_id": {"env": "K"}, "secret_access_key": SECRET}),
        ("aws", {"source": "keys", "access_key_id": SECRET, "secret_access_key": {"env": "S"}}),
        ("aws", {"source": "assume_role", "role_arn": ROLE, "external_id": SECRET}),
        ("aws", SECRET),
        ("azure", {"source": "service_principal", "tenant_id": TENANT, "client_id": CLIENT,
                   "client_secret": SECRET}),
        ("azure", SECRET),
    ],
)  # fmt: skip
def test_an_inline_secret_is_refused_by_reference_never_repeating_it(field, data):
    _, said = refused({field: data})
    assert "by reference" in said and ("not inline" in said or "never inline" in said)
    assert "{env: VARIABLE_NAME}" in said
    assert SECRET not in said
    # Validated on their own, pydantic's own text hides the input too (a kind's config model
    # decides that for its fields; the site file's loader never quotes input anyway).
    model = AwsCredentials if field == "aws" else AzureCredentials
    with pytest.raises(ValidationError) as e:
        model.model_validate(data)
    assert SECRET not in everything_said(e.value)


def test_a_secret_pasted_as_an_unknown_setting_is_not_repeated():
    _, said = refused({"aws": {"source": "default", "aws_secret_access_key": SECRET}})
    assert "aws.aws_secret_access_key: is not a known setting" in said
    assert SECRET not in said
    with pytest.raises(ValidationError) as e:
        AwsCredentials.model_validate({"source": "default", "aws_secret_access_key": SECRET})
    assert SECRET not in everything_said(e.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"source": "default", "profile": "x"},
            "aws: Value error, 'profile' does not apply to AWS credentials source 'default', "
            "which takes region; remove it or change the source",
        ),
        (
            {"source": "profile"},
            "aws: Value error, AWS credentials source 'profile' needs 'profile'; add it",
        ),
        (
            {"source": "keys", "access_key_id": {"env": "K"}},
            "needs 'secret_access_key'; add it",
        ),
        ({"source": "assume_role"}, "needs 'role_arn'; add it"),
        (
            {"source": "profile", "profile": "p", "access_key_id": {"env": "K"}},
            "'access_key_id' does not apply to AWS credentials source 'profile'",
        ),
        (
            {"source": "assume_role", "role_arn": ROLE,
             "base": {"source": "assume_role", "role_arn": ROLE}},
            "the base of an assumed role cannot itself assume a role",
        ),
        ({"source": "assume_role", "role_arn": "my-role"}, "aws.role_arn: is not allowed here"),
        ({"source": "sso"}, "aws.source: should be 'default', 'profile'"),
        ({"source": "keys", "access_key_id": {"env": "K"}, "secret_access_key": {"env": "S"},
          "session_token": {"value": "x"}}, "aws.session_token.value: is not a known setting"),
        ({"block": "Bad_Name"}, "aws.block: is not allowed here"),
        ({"source": "default", "region": "Europe"}, "aws.region: is not allowed here"),
    ],
)  # fmt: skip
def test_aws_settings_of_another_source_missing_or_unknown_are_named(data, expected):
    _, said = refused({"aws": data})
    assert expected.removeprefix("aws: Value error, ") in said, said


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"source": "service_principal", "tenant_id": TENANT, "client_id": CLIENT},
         "Azure credentials source 'service_principal' needs 'client_secret'; add it"),
        ({"source": "default", "client_id": CLIENT},
         "'client_id' does not apply to Azure credentials source 'default', which takes "
         "nothing else"),
        ({"source": "managed_identity", "client_secret": {"env": "S"}},
         "'client_secret' does not apply to Azure credentials source 'managed_identity'"),
        ({"source": "managed_identity", "client_id": "not-a-guid"},
         "azure.client_id: is not allowed here"),
    ],
)  # fmt: skip
def test_azure_settings_of_another_source_missing_or_unknown_are_named(data, expected):
    _, said = refused({"azure": data})
    assert expected in said, said


def test_explain_lines_name_the_field_path():
    with pytest.raises(ValidationError) as e:
        StoreConfig.model_validate({"aws": {"source": "profile"}})
    assert explain_lines(e.value)[0].startswith("aws: ")


# --- resolution: AWS -----------------------------------------------------------------------


def test_keys_from_environment_references_make_a_session_with_them_and_the_region():
    creds = AwsCredentials.model_validate(
        {
            "source": "keys",
            "access_key_id": {"env": "PP_KEY_ID"},
            "secret_access_key": {"env": "PP_SECRET"},
            "session_token": {"block": "pp-token"},
            "region": "eu-central-1",
        }
    )
    resolver = SecretResolver(
        block_resolver={"pp-token": "tok-123"}.__getitem__,
        environ={"PP_KEY_ID": KEY_ID, "PP_SECRET": SECRET},
    )
    session = aws_session(creds, resolver)
    frozen = session.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (KEY_ID, SECRET, "tok-123")
    assert session.region_name == "eu-central-1"


def test_a_missing_variable_names_the_credentials_and_the_setting_never_a_value():
    creds = AwsCredentials.model_validate(
        {"source": "keys", "access_key_id": {"env": "PP_KEY_ID"},
         "secret_access_key": {"env": "PP_SECRET"}}
    )  # fmt: skip
    with pytest.raises(SecretError) as e:
        aws_session(creds, SecretResolver(environ={"PP_KEY_ID": KEY_ID}))
    msg = str(e.value)
    assert msg.startswith("AWS credentials keys, secret_access_key: the environment variable")
    assert "PP_SECRET is not set" in msg and KEY_ID not in everything_said(e.value)
    assert e.value.exit_code == 2


def test_default_is_boto3s_default_chain(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    session = aws_session(AwsCredentials(source="default"), SecretResolver(environ={}))
    frozen = session.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key) == (KEY_ID, SECRET)
    assert session.region_name == "ap-south-1"
    explicit = aws_session(
        AwsCredentials(source="default", region="eu-west-3"), SecretResolver(environ={})
    )
    assert explicit.region_name == "eu-west-3"


def test_default_chain_with_nothing_configured_finds_nothing_and_asks_no_metadata_endpoint():
    session = aws_session(AwsCredentials(source="default"), SecretResolver(environ={}))
    assert session.get_credentials() is None


def test_profile_reads_the_shared_files(tmp_path):
    (tmp_path / "aws-config").write_text("[profile backup]\nregion = sa-east-1\n")
    (tmp_path / "aws-credentials").write_text(
        f"[backup]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"
    )
    creds = AwsCredentials(source="profile", profile="backup")
    session = aws_session(creds, SecretResolver(environ={}))
    frozen = session.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key) == (KEY_ID, SECRET)
    assert session.region_name == "sa-east-1"


def test_an_unknown_profile_is_named_with_the_fix():
    with pytest.raises(CredentialsError) as e:
        aws_session(AwsCredentials(source="profile", profile="nope"), SecretResolver(environ={}))
    msg = str(e.value)
    assert msg.startswith("AWS credentials profile 'nope': no such profile 'nope'")
    assert "AWS_CONFIG_FILE" in msg and isinstance(e.value, ConfigError)


def _assumed_roles():
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sts.models import sts_backends

    return sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assumed_roles


def test_assume_role_calls_sts_on_first_use_with_role_session_external_id_and_region():
    from moto import mock_aws

    creds = AwsCredentials.model_validate(
        {
            "source": "assume_role",
            "role_arn": ROLE,
            "session_name": "pp-prod",
            "external_id": {"env": "PP_EXT"},
            "duration_s": 1800,
            "region": "eu-north-1",
            "base": {"source": "keys", "access_key_id": {"env": "PP_KEY_ID"},
                     "secret_access_key": {"env": "PP_SECRET"}},
        }
    )  # fmt: skip
    resolver = SecretResolver(
        environ={"PP_KEY_ID": KEY_ID, "PP_SECRET": SECRET, "PP_EXT": "ext-42"}
    )
    with mock_aws():
        session = aws_session(creds, resolver)
        assert _assumed_roles() == []  # nothing asked until a client needs credentials
        assert session.region_name == "eu-north-1"
        frozen = session.get_credentials().get_frozen_credentials()
        assert frozen.access_key != KEY_ID and frozen.token
        (role,) = _assumed_roles()
        assert (role.role_arn, role.session_name, role.external_id, role.region_name) == (
            ROLE, "pp-prod", "ext-42", "eu-north-1",
        )  # fmt: skip
        assert role.expiration - dt.datetime.now(dt.UTC).replace(tzinfo=None) < dt.timedelta(
            seconds=1801
        )
        assert role.access_key_id == frozen.access_key
        identity = session.client("sts").get_caller_identity()
        assert identity["Arn"].endswith(":assumed-role/pausepoint-backup/pp-prod")
        assert session.get_credentials().method == "assume-role"


def test_assume_role_renews_the_role_before_it_expires():
    from moto import mock_aws

    creds = AwsCredentials.model_validate(
        {"source": "assume_role", "role_arn": ROLE, "region": "us-west-2",
         "base": {"source": "keys", "access_key_id": {"env": "K"},
                  "secret_access_key": {"env": "S"}}}
    )  # fmt: skip
    with mock_aws():
        session = aws_session(creds, SecretResolver(environ={"K": KEY_ID, "S": SECRET}))
        live = session.get_credentials()
        first = live.get_frozen_credentials().access_key
        # As if the hour had passed: botocore refreshes once the expiry is near.
        live._expiry_time = dt.datetime.now(dt.UTC)
        second = live.get_frozen_credentials().access_key
        assert second != first and len(_assumed_roles()) == 2


def test_the_base_of_an_assumed_role_defaults_to_the_default_chain(monkeypatch):
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    creds = AwsCredentials(source="assume_role", role_arn=ROLE, region="us-east-1")
    with mock_aws():
        frozen = aws_session(creds, SecretResolver(environ={})).get_credentials()
        assert frozen.get_frozen_credentials().access_key != KEY_ID
        assert _assumed_roles()[0].role_arn == ROLE


def test_an_aws_block_gives_its_keys_and_region_unless_the_site_gives_one():
    blocks = {
        (AWS_BLOCK_TYPE, "aws-prod"): {
            "aws_access_key_id": KEY_ID,
            "aws_secret_access_key": SECRET,
            "aws_session_token": None,
            "profile_name": None,
            "region_name": "ca-central-1",
            "aws_client_parameters": {},
        }
    }
    resolver = SecretResolver(environ={}, credentials_block_reader=lambda t, n: blocks[(t, n)])
    session = aws_session(AwsCredentials.model_validate({"block": "aws-prod"}), resolver)
    frozen = session.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, session.region_name) == (
        KEY_ID, SECRET, "ca-central-1",
    )  # fmt: skip
    other = AwsCredentials.model_validate({"block": "aws-prod", "region": "eu-west-2"})
    assert aws_session(other, resolver).region_name == "eu-west-2"


def test_an_aws_block_with_half_a_key_is_refused():
    resolver = SecretResolver(
        environ={},
        credentials_block_reader=lambda t, n: {"aws_secret_access_key": SECRET},
    )
    with pytest.raises(CredentialsError) as e:
        aws_session(AwsCredentials.model_validate({"block": "aws-prod"}), resolver)
    assert "aws-prod" in str(e.value) and SECRET not in everything_said(e.value)


def test_a_block_needs_prefect_and_an_unknown_block_is_named():
    creds = AwsCredentials.model_validate({"block": "aws-prod"})
    with pytest.raises(SecretError, match="needs Prefect to resolve"):
        aws_session(creds, SecretResolver(environ={}))

    def missing(block_type: str, name: str) -> dict:
        raise ValueError(f"no {block_type} {name}")

    with pytest.raises(SecretError) as e:
        aws_session(creds, SecretResolver(environ={}, credentials_block_reader=missing))
    assert "could not load the Prefect aws-credentials block 'aws-prod'" in str(e.value)


# --- resolution: Azure ---------------------------------------------------------------------


def test_a_service_principal_from_a_reference_is_a_client_secret_credential():
    from azure.identity import ClientSecretCredential

    creds = AzureCredentials.model_validate(
        {"source": "service_principal", "tenant_id": TENANT, "client_id": CLIENT,
         "client_secret": {"env": "PP_AZ_SECRET"}}
    )  # fmt: skip
    credential = azure_credential(creds, SecretResolver(environ={"PP_AZ_SECRET": SECRET}))
    assert isinstance(credential, ClientSecretCredential)
    # Built, never asked for a token: what it would authenticate with.
    assert credential._tenant_id == TENANT and credential._client_id == CLIENT
    assert credential._client_credential == SECRET


def test_default_and_managed_identity_credentials():
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    none = SecretResolver(environ={})
    assert isinstance(azure_credential(AzureCredentials(source="default"), none),
                      DefaultAzureCredential)  # fmt: skip
    mi = azure_credential(AzureCredentials(source="managed_identity", client_id=CLIENT), none)
    assert isinstance(mi, ManagedIdentityCredential)


def test_an_azure_block_is_a_service_principal_or_the_default_credential():
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    blocks = {
        "sp": {"client_id": CLIENT, "tenant_id": TENANT, "client_secret": SECRET,
               "credential_kwargs": {}},
        "empty": {"client_id": None, "tenant_id": None, "client_secret": None},
        "half": {"client_id": CLIENT, "tenant_id": None, "client_secret": SECRET},
    }  # fmt: skip
    seen = []

    def read(block_type: str, name: str) -> dict:
        seen.append(block_type)
        return blocks[name]

    resolver = SecretResolver(environ={}, credentials_block_reader=read)
    sp = azure_credential(AzureCredentials.model_validate({"block": "sp"}), resolver)
    assert isinstance(sp, ClientSecretCredential) and sp._client_credential == SECRET
    default = azure_credential(AzureCredentials.model_validate({"block": "empty"}), resolver)
    assert isinstance(default, DefaultAzureCredential)
    with pytest.raises(CredentialsError) as e:
        azure_credential(AzureCredentials.model_validate({"block": "half"}), resolver)
    assert "'half'" in str(e.value) and SECRET not in everything_said(e.value)
    assert set(seen) == {AZURE_BLOCK_TYPE}


# --- the operator's examples -------------------------------------------------------------


def _documented_examples() -> list[tuple[str, dict]]:
    """Every `credentials:` form of docs/operations.md's "Cloud credentials" section."""
    from pathlib import Path

    import yaml

    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    section = doc.split("### Cloud credentials", 1)[1].split("\n## ", 1)[0]
    found = []
    for block in section.split("```yaml\n")[1:]:
        text = block.split("```", 1)[0]
        if not text.startswith("credentials:"):
            continue  # another example in the section (the S3 catalog's settings)
        kind = "aws" if "access_key_id" in text else "azure"
        for chunk in text.split("\ncredentials:"):
            found.append(
                (kind, yaml.safe_load("credentials:" + chunk.removeprefix("credentials:")))
            )
    return found


def test_every_documented_form_is_valid():
    examples = _documented_examples()
    sources = {(kind, ex["credentials"].get("source", "block")) for kind, ex in examples}
    assert sources == {
        *(("aws", s) for s in ("default", "profile", "keys", "assume_role", "block")),
        *(("azure", s) for s in ("default", "service_principal", "managed_identity", "block")),
    }
    for kind, example in examples:
        StoreConfig.model_validate({kind: example["credentials"]})


def test_an_assumed_role_whose_base_finds_nothing_says_so_on_first_use():
    creds = AwsCredentials(source="assume_role", role_arn=ROLE, region="us-east-1")
    session = aws_session(creds, SecretResolver(environ={}))  # nothing asked yet
    with pytest.raises(CredentialsError) as e:
        session.get_credentials().get_frozen_credentials()
    msg = str(e.value)
    assert msg.startswith(f"AWS credentials assume_role {ROLE}: the base credentials")
    assert "AWS credentials default" in msg and "set 'base'" in msg


def test_an_assumed_role_sts_refuses_is_named_with_the_fix():
    from moto import mock_aws
    from moto.core import set_initial_no_auth_action_count

    creds = AwsCredentials.model_validate(
        {"source": "assume_role", "role_arn": ROLE, "region": "us-east-1",
         "base": {"source": "keys", "access_key_id": {"env": "K"},
                  "secret_access_key": {"env": "S"}}}
    )  # fmt: skip

    # moto checks every request's signature against its IAM: the base key is unknown there,
    # so STS answers InvalidClientTokenId as AWS does.
    @set_initial_no_auth_action_count(0)
    @mock_aws
    def first_use() -> None:
        session = aws_session(creds, SecretResolver(environ={"K": KEY_ID, "S": SECRET}))
        session.get_credentials().get_frozen_credentials()

    with pytest.raises(CredentialsError) as e:
        first_use()
    msg = str(e.value)
    assert msg.startswith(f"AWS credentials assume_role {ROLE}: STS refused AssumeRole (Invalid")
    assert "trust policy" in msg and SECRET not in everything_said(e.value)


class CloudKindConfig(StoreConfigBase):
    """A later kind's config, as docs/architecture.md shows it: credentials on a store config."""

    kind: Literal["cloudkind"] = "cloudkind"
    credentials: AwsCredentials = AwsCredentials(source="default")


@pytest.mark.parametrize(
    "credentials",
    [
        SECRET,
        {"source": "keys", "access_key_id": {"env": "K"}, "secret_access_key": SECRET},
        {"source": "default", "aws_secret_access_key": SECRET},
    ],
)
def test_a_store_config_never_quotes_inline_credentials_in_pydantics_text(credentials):
    """The outer model's config decides whether pydantic's text repeats the input: every store
    kind's config (StoreConfigBase) hides it, for nested credentials and its own fields."""
    with pytest.raises(ValidationError) as e:
        CloudKindConfig.model_validate({"name": "s", "credentials": credentials})
    assert SECRET not in everything_said(e.value)
    with pytest.raises(ValidationError) as e:
        CloudKindConfig.model_validate({"name": "s", "secret_key": SECRET})
    assert SECRET not in everything_said(e.value)


@pytest.mark.parametrize(
    "data",
    [
        {"source": "default"},
        {"source": "profile", "profile": "ops", "region": "eu-west-1"},
        {"source": "keys", "access_key_id": {"env": "K"}, "secret_access_key": {"env": "S"}},
        {
            "source": "assume_role",
            "role_arn": "arn:aws:iam::123456789012:role/pp",
            "base": {"source": "profile", "profile": "ops"},
        },
        {"block": "aws-prod"},
    ],
)
def test_aws_credentials_validate_again_from_their_own_dump(data):
    """A store config is dumped and validated again (a restore target's retarget, a site
    round trip): every field, None and defaults included, must not read as foreign settings."""
    creds = AwsCredentials.model_validate(data)
    assert AwsCredentials.model_validate(creds.model_dump()) == creds
    assert AwsCredentials.model_validate(creds.model_dump(mode="json")) == creds
