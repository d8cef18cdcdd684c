"""Checks shared by every part of a recipe: the nearest valid key of a mistyped one, the
readable path of a nested key and a value checked against a Python annotation.

Each check ends in one `ConfigError` line that names where the problem is
(``zoo.members[3].hparams.dropout``), what was received and what is expected.
"""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from webly.errors import ConfigError


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"did you mean 'ensemble'? "`` for the choice nearest ``word``, or ``""`` when none
    is near (difflib ratio below 0.6)."""
    near = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {near[0]!r}? " if near else ""


def unknown_key(where: str, key: str, accepted: Iterable[str], owner: str = "it") -> str:
    """The message for an unknown ``key`` at ``where``: the nearest accepted key, then all.

    >>> unknown_key("ensembel", "ensembel", ["seed", "ensemble"], "the recipe")
    "ensembel: unknown key; did you mean 'ensemble'? the recipe accepts: seed, ensemble"
    """
    accepted = list(accepted)
    return f"{where}: unknown key; {did_you_mean(key, accepted)}{owner} accepts: " + (
        ", ".join(accepted) or "nothing"
    )


def key_path(parts: Iterable[str | int]) -> str:
    """A nested key as one would write it: ``("zoo", "members", 3, "hparams")`` ->
    ``zoo.members[3].hparams``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "top level"


def check_finite(raw: Any, source: str, at: tuple[str | int, ...] = ()) -> None:
    """Refuse a NaN or infinite number anywhere in parsed YAML ``raw`` (``.nan``, ``.inf``,
    ``--set zoo.train.lr=.nan``): a `ConfigError` ``"{source}: {key path}: ..."``."""
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ConfigError(f"{source}: {key_path(at)}: {raw} is not a finite number; give a number")
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            check_finite(value, source, (*at, str(key)))
    elif isinstance(raw, list | tuple):
        for i, value in enumerate(raw):
            check_finite(value, source, (*at, i))


def check_values(values: Mapping[str, Any], owner: Callable[..., Any] | type, where: str) -> None:
    """Check each of ``values`` against the annotation of the parameter or field of the same
    name of ``owner`` (a function or a dataclass), strictly (``"0.2"`` is not a float; an
    int is). Names without an annotation are not checked."""
    hints = _hints(owner)
    for name, value in values.items():
        hint = hints.get(name)
        if hint is None:
            continue
        try:
            _adapter(hint).validate_python(value, strict=True)
        except ValidationError:
            raise ConfigError(
                f"{where}.{name}: expected {_type_name(hint)}, got {value!r} "
                f"({type(value).__name__}); fix the recipe or its --set"
            ) from None


# --------------------------------------------------------------------------- internals


@cache
def _hints(owner: Callable[..., Any] | type) -> dict[str, Any]:
    return typing.get_type_hints(owner)


@cache
def _adapter(hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(hint)


def _type_name(hint: Any) -> str:
    """``float``, ``Sequence[int]``, ``Literal['relu', 'gelu']``, ``int | None``."""
    if typing.get_origin(hint) is typing.Union:
        return " | ".join(_type_name(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "None"
    name = hint.__name__ if isinstance(hint, type) else str(hint)
    return name.replace("typing.", "").replace("collections.abc.", "")
