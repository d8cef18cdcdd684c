"""Reading the YAML files users write (recipes, zoo files): one loader, one set of errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from webly.errors import ConfigError


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading ``1e-3`` as a number, as YAML 1.2 does (YAML 1.1 wants
    ``1.0e-3`` and gives the string ``"1e-3"``)."""


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
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{what} {path}: invalid YAML{where}; fix its syntax") from None
