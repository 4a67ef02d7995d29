"""The one way pausepoint reads YAML: safe, strict about duplicate keys, errors that say where.

PyYAML's own loaders accept a mapping that gives a key twice and keep the last value, so a site
file with two ``ledger:`` keys silently loses the first (its nodes go unpaused, its stores
uncaptured). ``load_yaml`` refuses that at any depth, and turns every YAML problem into a
ConfigError that names the file, the line and what to change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pausepoint.errors import ConfigError

_MERGE = "tag:yaml.org,2002:merge"


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: yaml.Mark, second: yaml.Mark):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.first, self.second = key, first, second


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader whose mappings refuse a key given twice (merge keys ``<<`` still override)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable: SafeLoader refuses it with its own message
                    continue
                if first is not None:
                    # Named as written: `yes:` and `true:` are the same key, shown as 'true'.
                    shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else key
                    raise _DuplicateKey(shown, first, key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _where(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _syntax(exc: yaml.MarkedYAMLError) -> str:
    """The parser's own explanation with its line and column, without its source excerpts."""
    problem = exc.problem or exc.context or "cannot be parsed"
    text = f"at {_where(exc.problem_mark)}: {problem}" if exc.problem_mark else problem
    if exc.context and exc.problem:
        same = (
            exc.context_mark is not None
            and exc.problem_mark is not None
            and exc.context_mark.line == exc.problem_mark.line
            and exc.context_mark.column == exc.problem_mark.column
        )
        started = f" from {_where(exc.context_mark)}" if exc.context_mark and not same else ""
        text += f" ({exc.context}{started})"
    return text


def load_yaml(source: Path | str, what: str) -> Any:
    """The data of one YAML document: ``source`` is a file (Path) or the YAML text (str).

    ``what`` names it in messages, e.g. ``"site file deployments/production/site.yaml"``.
    Raises ConfigError for a file that cannot be read, is not UTF-8, is not YAML, holds more
    than one document, or gives a mapping key twice. An empty document is None."""
    if isinstance(source, Path):
        try:
            data: str | bytes = source.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {what}: {exc.strerror}; check the path") from None
    else:
        data = source
    # Messages are raised after the ``except`` blocks, so that not even the exception's context
    # carries the parser's error, which quotes the source line (it may hold a secret).
    try:
        return yaml.load(data, Loader=_StrictLoader)
    except _DuplicateKey as exc:
        problem = (
            f"{what}: key {exc.key!r} is given twice, at line {exc.first.line + 1} and line "
            f"{exc.second.line + 1}; YAML would keep only the last one silently, so remove or "
            "merge one of them"
        )
    except yaml.reader.ReaderError as exc:
        char = exc.character
        shown = f"byte 0x{char:02x}" if isinstance(char, int) else f"character {char!r}"
        problem = f"{what} is not UTF-8 text ({shown} at position {exc.position}): save it as UTF-8"
    except yaml.MarkedYAMLError as exc:
        tagged = "constructor for the tag" in (exc.problem or "")
        fix = "remove the tag: pausepoint reads plain YAML" if tagged else "fix the syntax"
        problem = f"{what} is not valid YAML {_syntax(exc)}; {fix}"
    except yaml.YAMLError as exc:  # no position known
        problem = f"{what} is not valid YAML: {exc}; fix the syntax"
    raise ConfigError(problem)
