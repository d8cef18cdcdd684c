"""The detection-method registry: one function per method, its keyword options are its config.

A method is registered once under a name::

    @register_method("self_confidence")
    def self_confidence(problem: NoiseProblem, *, threshold: float = 0.5) -> Detection

and `webly.clean.find_noisy_labels` looks it up, refuses options it does not take, and turns
its `Detection` into a `NoiseVerdict`. Adding a method is writing one such function.

Options named in ``inputs`` carry data rather than settings (a feature matrix, a text column, an
encoder callable): they reach the method as given and are left out of the verdict's ``params``,
which are saved as JSON with the report.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from webly.errors import ConfigError

Method = TypeVar("Method", bound=Callable[..., Any])


@dataclass(frozen=True)
class MethodEntry:
    """A registered method: its function and the options it takes (with defaults)."""

    name: str
    fn: Callable[..., Any]
    defaults: Mapping[str, Any]
    inputs: frozenset[str] = frozenset()


_REGISTRY: dict[str, MethodEntry] = {}


def register_method(name: str, *, inputs: tuple[str, ...] = ()) -> Callable[[Method], Method]:
    """Register ``fn(problem, **options) -> Detection`` under ``name``; its keyword-only
    parameters are the method's options, those named in ``inputs`` data arrays or callables."""

    def decorate(fn: Method) -> Method:
        if name in _REGISTRY:
            raise ConfigError(f"noise-detection method {name!r} is registered twice; rename one")
        params = inspect.signature(fn).parameters.values()
        defaults = {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
        if not set(inputs) <= set(defaults):
            raise ConfigError(f"method {name!r} lists inputs that are not keyword-only options")
        _REGISTRY[name] = MethodEntry(name, fn, defaults, frozenset(inputs))
        return fn

    return decorate


def method_entry(name: str) -> MethodEntry:
    """The entry of ``name``; an unknown name lists the known ones."""
    _load_builtin_methods()
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown noise-detection method {name!r}; known methods: {', '.join(list_methods())}"
        )
    return _REGISTRY[name]


def list_methods() -> list[str]:
    """Registered method names, sorted."""
    _load_builtin_methods()
    return sorted(_REGISTRY)


def resolve_options(entry: MethodEntry, options: Mapping[str, Any]) -> dict[str, Any]:
    """The method's options with defaults filled in; an option it does not take is refused."""
    unknown = sorted(set(options) - set(entry.defaults))
    if unknown:
        accepted = ", ".join(sorted(entry.defaults)) or "none"
        raise ConfigError(
            f"method {entry.name!r} takes no option {unknown[0]!r}; it accepts: {accepted}"
        )
    resolved = {**entry.defaults, **options}
    return {
        k: v.item() if hasattr(v, "item") and k not in entry.inputs else v
        for k, v in resolved.items()
    }


def recorded_options(entry: MethodEntry, params: Mapping[str, Any]) -> dict[str, Any]:
    """The options a verdict records: ``params`` without the method's data inputs."""
    return {k: v for k, v in params.items() if k not in entry.inputs}


def check_range(name: str, value: float, low: float, high: float, *, closed: bool = True) -> float:
    """Refuse an option outside [low, high] (``closed``) or [low, high)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (low <= value <= high if closed else low <= value < high):
        bracket = "]" if closed else ")"
        raise ConfigError(f"{name} is {value!r}; pass a number in [{low}, {high}{bracket}")
    return float(value)


def _load_builtin_methods() -> None:
    """Import the modules that register webly's own methods (once)."""
    from webly.clean import agreement, cluster, confident, scores, semantic  # noqa: F401
