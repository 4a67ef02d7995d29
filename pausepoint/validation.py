"""pydantic's validation errors as lines an operator can act on: the field, what is wrong, the fix.

Used for site files, restore target files and the flows' requests. A value is repeated in a
message only when it is a number or a boolean: a string in the wrong place may be a password.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

# What a string field with a pattern takes, by field name (the nearest name in the location).
PATTERN_HINTS = {
    "site": "use lower-case letters, digits and '-', starting with a letter or digit, at most "
    "63 characters (e.g. prod-eu)",
    "env": "give the NAME of an environment variable (letters, digits, '_'; not starting with "
    "a digit), e.g. PG_PASSWORD, never the secret itself",
    "block": "give the name of a Prefect Secret block (lower-case letters, digits, '-')",
    "point_id": "give a restore point id as `pausepoint points list` shows it, e.g. "
    "20261128T003119Z-3f9a",
    "labels": "label names are lower-case letters, digits, '_', '.', '-' (e.g. reason)",
}

_COMPARED = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def yaml_type(value: Any) -> str:
    """How YAML calls what a value was written as."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def problem(e: dict[str, Any]) -> str:
    """One error of ``ValidationError.errors()`` as 'what is wrong; how to fix it'."""
    kind, ctx, value = e["type"], e.get("ctx") or {}, e.get("input")
    msg = str(e["msg"]).removeprefix("Value error, ").removeprefix("Input ")
    if kind == "missing":
        return "is required; add it"
    if kind == "extra_forbidden":
        return "is not a known setting; check its spelling and indentation"
    if kind == "union_tag_invalid":
        return (
            f"{str(ctx.get('discriminator', 'kind')).strip(chr(39))} {ctx.get('tag')!r} is not "
            "known; use one of "
            f"{ctx.get('expected_tags')}"
        )
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"should be a mapping (key: value), not {yaml_type(value)}"
    if kind == "list_type":
        return f"should be a list, not {yaml_type(value)}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"should be a whole number, not {yaml_type(value)}"
    if kind in ("float_parsing", "float_type"):
        return f"should be a number, not {yaml_type(value)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"should be true or false, not {yaml_type(value)}"
    if kind in ("string_type",):
        return f"should be text, not {yaml_type(value)}"
    if kind == "too_short":
        n = ctx.get("min_length")
        return f"needs at least {n} {'entry' if n == 1 else 'entries'}; add one"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "string_too_long":
        return f"is longer than {ctx.get('max_length')} characters; shorten it"
    if kind == "string_pattern_mismatch":
        for part in reversed(e["loc"]):
            if part in PATTERN_HINTS:
                return f"is not allowed here: {PATTERN_HINTS[part]}"
        return f"is not allowed here: {msg}"
    if kind in _COMPARED and isinstance(value, int | float):
        return f"{msg}, not {value}"
    return msg


def explain_lines(err: ValidationError) -> list[str]:
    """'where: problem' for every error."""
    return [f"{where(e['loc'])}: {problem(e)}" for e in err.errors(include_url=False)]
