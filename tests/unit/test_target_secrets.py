"""A restore or drill target file names secrets by reference only, like the site file, and no
error about it repeats a value written there (issue 10: an inline password was printed and
stored)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pausepoint.errors import ConfigError, InlineSecretError
from pausepoint.restore import RestoreTarget, load_target

SECRET = "hunter2-Inline-Secret-77"


def write(tmp_path, text: str):
    path = tmp_path / "target.yaml"
    path.write_text(text)
    return path


def everything_said(exc: BaseException) -> str:
    """The message, its notes, and whatever it was raised from."""
    parts = [str(exc), repr(exc), *getattr(exc, "__notes__", [])]
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None:
            parts += [str(linked), repr(linked)]
    return "\n".join(parts)


@pytest.mark.parametrize(
    "entry",
    [
        f"password: {SECRET}",
        f"password: '{SECRET}'",
        f"passwd: {SECRET}",
        f"password: {{value: {SECRET}}}",
        f"password: {{env: PG_PASSWORD, value: {SECRET}}}",
        f"api_key: {SECRET}",
    ],
)
def test_an_inline_secret_is_refused_naming_file_store_and_field_never_the_value(tmp_path, entry):
    path = write(tmp_path, f"replace: true\nstores:\n  ledger-pg:\n    {entry}\n    jobs: 1\n")
    with pytest.raises(InlineSecretError) as e:
        load_target(path)
    msg = str(e.value)
    field = entry.split(":")[0]
    assert str(path) in msg and "store 'ledger-pg'" in msg and f"gives {field!r} inline" in msg
    assert "{env: VARIABLE_NAME}" in msg and "{block: prefect-secret-block-name}" in msg
    assert isinstance(e.value, ConfigError) and e.value.exit_code == 2
    assert SECRET not in everything_said(e.value)


def test_a_secret_by_reference_is_accepted(tmp_path):
    path = write(
        tmp_path,
        "stores:\n  a: {password: {env: PG_PASSWORD}}\n  b: {password: {block: my-secret}}\n",
    )
    target = load_target(path)
    assert target.stores["a"]["password"] == {"env": "PG_PASSWORD"}


@pytest.mark.parametrize(
    "text",
    [
        f"password: {SECRET}\nstores: {{}}\n",  # not a setting of a target at all
        f'stores:\n  ledger-pg:\n    password: "{SECRET}\n',  # broken YAML on the secret's line
        f"stores:\n  ledger-pg: {SECRET}\n",  # not a mapping
        f"stores: [{SECRET}]\n",
    ],
)
def test_no_error_about_a_target_file_repeats_what_it_holds(tmp_path, text):
    with pytest.raises(ConfigError) as e:
        load_target(write(tmp_path, text))
    assert str(write(tmp_path, text)) in str(e.value)
    assert SECRET not in everything_said(e.value)


def test_a_target_built_in_code_refuses_an_inline_secret_without_echoing_it():
    with pytest.raises(ValidationError) as e:
        RestoreTarget(stores={"ledger-pg": {"password": SECRET}})
    assert "gives 'password' inline" in str(e.value)
    assert SECRET not in str(e.value) and SECRET not in repr(e.value)


def test_structured_credentials_reach_their_own_model(tmp_path):
    """`credentials: {source: ...}` (pausepoint.credentials) is not taken for an inline secret:
    the kind's credentials model checks its parts, each by reference."""
    target = load_target(
        write(tmp_path, "stores:\n  ddb:\n    credentials: {source: profile, profile: backup}\n")
    )
    assert target.stores["ddb"]["credentials"] == {"source": "profile", "profile": "backup"}
    with pytest.raises(InlineSecretError):
        load_target(write(tmp_path, f"stores:\n  ddb:\n    credentials: {SECRET}\n"))
