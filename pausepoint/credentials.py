"""Cloud credentials a store kind (or a catalog driver) needs, by reference like every secret.

A kind declares a field of one of these types, e.g.
``credentials: AwsCredentials = AwsCredentials(source="default")``, and resolves it when it
connects: ``aws_session(config.credentials, resolve)`` gives a ``boto3.Session``,
``azure_credential(config.credentials, resolve)`` an azure-identity ``TokenCredential``.
``resolve`` is the run's ``SecretResolver``: secret parts are ``SecretRef`` (``{env: VAR}`` |
``{block: NAME}``), and the ``{block: NAME}`` form of the credentials themselves reads a Prefect
credentials block (prefect-aws's "AWS Credentials", prefect-azure's "Azure Container Instance
Credentials") through the block reader the tasks layer gives the resolver. Nothing here
imports Prefect; boto3 and azure-identity are imported only when credentials are resolved.

A secret is never written inline: a string where a reference belongs is refused without being
repeated, and errors of these models never quote the input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pausepoint.errors import CredentialsError, SecretError
from pausepoint.secrets import SecretRef, SecretResolver

if TYPE_CHECKING:
    import boto3
    from azure.core.credentials import TokenCredential

# Prefect block type slugs of the collections' credentials blocks (their block type names,
# slugified). Read through Prefect's generic block documents, so neither collection is needed.
AWS_BLOCK_TYPE = "aws-credentials"
AZURE_BLOCK_TYPE = "azure-container-instance-credentials"

_BLOCK_NAME = r"^[a-z0-9-]+$"
_INLINE = (
    "credentials are given by reference, never inline: write a mapping such as "
    "{{source: default}} or {{block: prefect-block-name}} ({kinds}); secret parts name where "
    "the secret lives ({{env: VARIABLE_NAME}} or {{block: prefect-secret-block-name}}); the "
    "value given is not repeated here"
)


class _Credentials(BaseModel):
    """Shared rules: one ``source``; each source takes only its own settings."""

    # An error must not quote the input: a key pasted where a reference belongs is a secret.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    # source -> (settings it requires, settings it also takes); ``source`` itself always.
    _settings: ClassVar[dict[str, tuple[frozenset[str], frozenset[str]]]]
    _what: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _mapping_by_reference(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(_INLINE.format(kinds=", ".join(f"source: {s}" for s in cls._settings)))
        # {block: NAME} alone is the block form; writing source: block as well is allowed.
        if isinstance(data, dict) and "block" in data and "source" not in data:
            return {**data, "source": "block"}
        return data

    @model_validator(mode="after")
    def _settings_of_source(self) -> _Credentials:
        source: str = self.source  # type: ignore[attr-defined]
        required, optional = self._settings[source]
        # A setting at its default counts as not given, so a dumped model validates again
        # (model_dump writes every field, None and defaults included).
        given = {
            f
            for f in self.model_fields_set - {"source"}
            if getattr(self, f) != type(self).model_fields[f].default
        }
        foreign = sorted(given - required - optional)
        if foreign:
            takes = sorted(required | optional)
            raise ValueError(
                f"{', '.join(repr(f) for f in foreign)} "
                f"{'does' if len(foreign) == 1 else 'do'} not apply to {self._what} source "
                f"{source!r}, which takes {', '.join(takes) if takes else 'nothing else'}; "
                "remove it or change the source"
            )
        missing = sorted(f for f in required if getattr(self, f) is None)
        if missing:
            raise ValueError(
                f"{self._what} source {source!r} needs {', '.join(repr(f) for f in missing)}; "
                "add it"
            )
        return self


class AwsCredentials(_Credentials):
    """How a kind reaches AWS. ``source``:

    - ``default``: boto3's default chain (environment, shared files, container or instance role);
    - ``profile``: a named profile of the shared config/credentials files;
    - ``assume_role``: a role assumed with STS from ``base`` credentials (any source but
      ``assume_role``; default chain when omitted), refreshed before it expires;
    - ``keys``: an access key from secret references;
    - ``block``: a prefect-aws "AWS Credentials" block by name (``{block: NAME}``).

    ``region`` applies to every source (a block's own region is used when it is not given).
    """

    _what: ClassVar[str] = "AWS credentials"
    _settings: ClassVar[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
        "default": (frozenset(), frozenset({"region"})),
        "profile": (frozenset({"profile"}), frozenset({"region"})),
        "assume_role": (
            frozenset({"role_arn"}),
            frozenset({"session_name", "external_id", "base", "duration_s", "region"}),
        ),
        "keys": (
            frozenset({"access_key_id", "secret_access_key"}),
            frozenset({"session_token", "region"}),
        ),
        "block": (frozenset({"block"}), frozenset({"region"})),
    }

    source: Literal["default", "profile", "assume_role", "keys", "block"]
    region: str | None = Field(
        None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$", description="e.g. eu-west-1"
    )
    profile: str | None = Field(None, min_length=1, description="a profile of ~/.aws/config")
    role_arn: str | None = Field(
        None,
        pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$",
        description="the role to assume, e.g. arn:aws:iam::123456789012:role/pausepoint",
    )
    session_name: str = Field(
        "pausepoint",
        pattern=r"^[\w+=,.@-]{2,64}$",
        description="the role session name (CloudTrail shows it)",
    )
    external_id: SecretRef | None = None
    # At least 30 minutes: boto3 renews 15 minutes before expiry, so a shorter session would
    # be renewed (an STS call) on nearly every request.
    duration_s: int | None = Field(
        None, ge=1800, le=43200, description="how long each assumed-role session lasts"
    )
    base: AwsCredentials | None = Field(
        None, description="credentials that assume the role; default: boto3's default chain"
    )
    access_key_id: SecretRef | None = None
    secret_access_key: SecretRef | None = None
    session_token: SecretRef | None = None
    block: str | None = Field(
        None, pattern=_BLOCK_NAME, description="a prefect-aws AWS Credentials block"
    )

    @model_validator(mode="after")
    def _base_assumes_no_role(self) -> AwsCredentials:
        if self.base is not None and self.base.source == "assume_role":
            raise ValueError(
                "the base of an assumed role cannot itself assume a role; give base as "
                "{source: default}, {source: profile, ...}, {source: keys, ...} or {block: NAME}"
            )
        return self

    def describe(self) -> str:
        """Which credentials, in words that name no secret (for messages)."""
        detail = {
            "profile": f" {self.profile!r}",
            "assume_role": f" {self.role_arn}",
            "block": f" (Prefect AWS Credentials block {self.block!r})",
        }.get(self.source, "")
        return f"AWS credentials {self.source}{detail}"


class AzureCredentials(_Credentials):
    """How a kind reaches Azure. ``source``:

    - ``default``: azure-identity's ``DefaultAzureCredential`` (environment, workload identity,
      managed identity, Azure CLI, ...);
    - ``service_principal``: ``tenant_id``, ``client_id`` and ``client_secret`` (a reference);
    - ``managed_identity``: the machine's managed identity (``client_id`` for a user-assigned
      one);
    - ``block``: a prefect-azure "Azure Container Instance Credentials" block by name (a
      service principal, or the default credential when the block's fields are empty).
    """

    _what: ClassVar[str] = "Azure credentials"
    _settings: ClassVar[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
        "default": (frozenset(), frozenset()),
        "service_principal": (
            frozenset({"tenant_id", "client_id", "client_secret"}),
            frozenset({"authority"}),
        ),
        "managed_identity": (frozenset(), frozenset({"client_id"})),
        "block": (frozenset({"block"}), frozenset()),
    }

    source: Literal["default", "service_principal", "managed_identity", "block"]
    tenant_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9.-]+$", description="directory (tenant) id or domain"
    )
    client_id: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$",
        description="application (client) id",
    )
    client_secret: SecretRef | None = None
    # Sovereign clouds (login.chinacloudapi.cn ...) and private identity endpoints (Azure Stack);
    # a host that is not one of Microsoft's clouds is used without instance discovery.
    authority: str | None = Field(
        None,
        pattern=r"^https://[A-Za-z0-9.-]+(:\d+)?/?$",
        description="the identity platform's host, e.g. https://login.microsoftonline.us",
    )
    block: str | None = Field(
        None,
        pattern=_BLOCK_NAME,
        description="a prefect-azure Azure Container Instance Credentials block",
    )

    def describe(self) -> str:
        detail = {
            "service_principal": f" {self.client_id} in tenant {self.tenant_id}",
            "managed_identity": f" {self.client_id}" if self.client_id else "",
            "block": f" (Prefect Azure Container Instance Credentials block {self.block!r})",
        }.get(self.source, "")
        return f"Azure credentials {self.source}{detail}"


# --- resolution --------------------------------------------------------------------------------


def _secret(resolve: SecretResolver, ref: SecretRef | None, what: str) -> str | None:
    if ref is None:
        return None
    try:
        value = resolve(ref)
    except SecretError as exc:
        raise type(exc)(f"{what}: {exc}") from None
    return None if value is None else value.get_secret_value()


def aws_session(creds: AwsCredentials, resolve: SecretResolver) -> boto3.Session:
    """A boto3 Session for these credentials. Nothing is sent to AWS here: the default chain
    and an assumed role are resolved on the first call a client makes (and the role renewed
    before it expires)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    what = creds.describe()
    try:
        if creds.source == "default":
            return boto3.Session(region_name=creds.region)
        if creds.source == "profile":
            return boto3.Session(profile_name=creds.profile, region_name=creds.region)
        if creds.source == "keys":
            return boto3.Session(
                aws_access_key_id=_secret(resolve, creds.access_key_id, f"{what}, access_key_id"),
                aws_secret_access_key=_secret(
                    resolve, creds.secret_access_key, f"{what}, secret_access_key"
                ),
                aws_session_token=_secret(resolve, creds.session_token, f"{what}, session_token"),
                region_name=creds.region,
            )
        if creds.source == "block":
            return _aws_block_session(creds, resolve)
        return _assume_role_session(creds, resolve)
    except ProfileNotFound as exc:  # also a profile a block names
        raise CredentialsError(
            f"{what}: no such profile {exc.kwargs.get('profile')!r} in the AWS config files of "
            "the environment that runs pausepoint (~/.aws/config, or AWS_CONFIG_FILE and "
            "AWS_SHARED_CREDENTIALS_FILE); "
            "add it there (`aws configure --profile NAME`) or fix the name in the site file"
        ) from None
    except BotoCoreError as exc:  # a malformed config file, an unknown region setting
        raise CredentialsError(
            f"{what}: {type(exc).__name__}: {exc}; fix the AWS config files of the environment "
            "that runs pausepoint or the site file"
        ) from None


def _aws_block_session(creds: AwsCredentials, resolve: SecretResolver) -> boto3.Session:
    import boto3

    fields = resolve.credentials_block(AWS_BLOCK_TYPE, creds.block)  # type: ignore[arg-type]
    key_id, secret = fields.get("aws_access_key_id"), fields.get("aws_secret_access_key")
    if bool(key_id) != bool(secret):
        raise CredentialsError(
            f"{creds.describe()} gives only one of aws_access_key_id and aws_secret_access_key; "
            "fill both in the block, or neither (then its profile or the default chain is used)"
        )
    return boto3.Session(
        aws_access_key_id=key_id or None,
        aws_secret_access_key=secret or None,
        aws_session_token=fields.get("aws_session_token") or None,
        profile_name=None if key_id else fields.get("profile_name") or None,
        region_name=creds.region or fields.get("region_name") or None,
    )


def _assume_role_session(creds: AwsCredentials, resolve: SecretResolver) -> boto3.Session:
    import boto3
    import botocore.session
    from botocore.credentials import (
        CredentialProvider,
        CredentialResolver,
        DeferredRefreshableCredentials,
    )
    from botocore.exceptions import ClientError, NoCredentialsError

    base = aws_session(creds.base or AwsCredentials(source="default"), resolve)
    region = creds.region or base.region_name
    args: dict[str, Any] = {"RoleArn": creds.role_arn, "RoleSessionName": creds.session_name}
    external_id = _secret(resolve, creds.external_id, f"{creds.describe()}, external_id")
    if external_id is not None:
        args["ExternalId"] = external_id
    if creds.duration_s is not None:
        args["DurationSeconds"] = creds.duration_s

    what = creds.describe()
    base_what = (creds.base or AwsCredentials(source="default")).describe()

    def assume() -> dict[str, str]:
        # Runs inside the first (or a renewing) SDK call of the kind: its error names the role.
        try:
            answer = base.client("sts", region_name=region).assume_role(**args)["Credentials"]
        except NoCredentialsError:
            raise CredentialsError(
                f"{what}: the base credentials ({base_what}) found nothing to assume the role "
                "with; give the worker credentials (an instance role, AWS_* variables, a "
                "profile) or set 'base' in the site file"
            ) from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "an error")
            raise CredentialsError(
                f"{what}: STS refused AssumeRole ({code}) for {base_what}; check that the role's "
                "trust policy lets those credentials assume it (and asks for this external id, "
                "if any) and that they may call sts:AssumeRole"
            ) from None
        return {
            "access_key": answer["AccessKeyId"],
            "secret_key": answer["SecretAccessKey"],
            "token": answer["SessionToken"],
            "expiry_time": answer["Expiration"].isoformat(),
        }

    class _AssumedRole(CredentialProvider):  # botocore's public hook for a credential source
        METHOD = "assume-role"

        def load(self) -> DeferredRefreshableCredentials:
            return DeferredRefreshableCredentials(refresh_using=assume, method=self.METHOD)

    session = botocore.session.get_session()
    session.register_component("credential_provider", CredentialResolver([_AssumedRole()]))
    if region:
        session.set_config_variable("region", region)
    return boto3.Session(botocore_session=session)


_MICROSOFT_AUTHORITIES = (
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
)


def azure_credential(
    creds: AzureCredentials, resolve: SecretResolver, **transport: Any
) -> TokenCredential:
    """An azure-identity credential for these credentials; no token is requested here.
    ``transport``: azure-core transport settings (``connection_verify``: a CA file)."""
    from azure.identity import (
        ClientSecretCredential,
        DefaultAzureCredential,
        ManagedIdentityCredential,
    )

    what = creds.describe()
    if creds.source == "default":
        return DefaultAzureCredential()
    if creds.source == "managed_identity":
        return ManagedIdentityCredential(client_id=creds.client_id)
    if creds.source == "service_principal":
        extra: dict[str, Any] = dict(transport)
        if creds.authority:
            extra["authority"] = creds.authority.rstrip("/")
            host = creds.authority.split("//", 1)[1].split("/", 1)[0].split(":", 1)[0]
            extra["disable_instance_discovery"] = host not in _MICROSOFT_AUTHORITIES
        return ClientSecretCredential(
            tenant_id=creds.tenant_id,  # type: ignore[arg-type]
            client_id=creds.client_id,  # type: ignore[arg-type]
            client_secret=_secret(resolve, creds.client_secret, f"{what}, client_secret"),  # type: ignore[arg-type]
            **extra,
        )
    fields = resolve.credentials_block(AZURE_BLOCK_TYPE, creds.block)  # type: ignore[arg-type]
    parts = {k: fields.get(k) or None for k in ("tenant_id", "client_id", "client_secret")}
    kwargs = fields.get("credential_kwargs") or {}
    try:
        if not any(parts.values()):
            return DefaultAzureCredential(**kwargs)
        if all(parts.values()):
            return ClientSecretCredential(**parts, **kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:  # an argument the credential does not take
        raise CredentialsError(
            f"{what}: its credential_kwargs are not accepted ({type(exc).__name__}); fix them "
            "in the block"
        ) from None
    raise CredentialsError(
        f"{what} gives only some of tenant_id, client_id and client_secret; fill all three in "
        "the block, or none (then the default credential is used)"
    )
