"""Reading the YAML files users write (recipes, zoo files): one loader, one set of errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from webly.errors import ConfigError


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping that gives the same key twice (PyYAML would keep the last, silently)."""


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading ``1e-3`` as a number, as YAML 1.2 does (YAML 1.1 wants
    ``1.0e-3`` and gives the string ``"1e-3"``), and refusing a key given twice in a mapping
    (`DuplicateKeyError`; a ``<<`` merge may still be overridden)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML's own error says so
                continue
            if first is not None:
                raise DuplicateKeyError(
                    problem=f"key {key!r} is given twice (line {first} and line {line})",
                    problem_mark=key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed YAML of the file at ``path``; ``what`` names it in the one-line `ConfigError`
    for an unreadable file or invalid YAML (e.g. ``"recipe"``, ``"zoo file"``)."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=Loader)
    except OSError as err:
        raise ConfigError(
            f"{what} {path}: cannot be read ({err.strerror}); check the path"
        ) from None
    except DuplicateKeyError as err:
        raise ConfigError(f"{what} {path}: {err.problem}; keep one of them") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{what} {path}: invalid YAML{where}; fix its syntax") from None
