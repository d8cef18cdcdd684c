"""Byte sizes as people write them: `parse_size` reads ``"500MB"`` or ``"1.5 GiB"`` (a size
budget in a recipe or on the command line), `format_size` writes ``"1.5 GB"`` (reports, errors
and the CLI's lines), and what it writes reads back."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import numpy as np

from webly.errors import ConfigError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(value: int | str) -> int:
    """Bytes of a size given as an int or a string such as ``"1GB"``, ``"1.5 GiB"``, ``"500MB"``.

    Units are case-insensitive: B, KB/K, MB/M, GB/G, TB/T (powers of 1000) and KiB, MiB, GiB,
    TiB (powers of 1024); no unit means bytes. Fractions are rounded to the nearest byte.

    Raises
    ------
    ConfigError
        For a negative, non-numeric or unit-less-but-unknown value, naming it.
    """
    hint = "pass bytes as an integer or a number and a unit, e.g. '500MB', '1.5 GiB'"
    if isinstance(value, bool) or not isinstance(value, int | np.integer | str):
        raise ConfigError(f"size {value!r} is a {type(value).__name__}; {hint}")
    if not isinstance(value, str):
        if value < 0:
            raise ConfigError(f"size {value} is negative; {hint}")
        return int(value)
    match = _SIZE.fullmatch(value)
    if match is None or match.group(3).lower() not in _UNITS:
        units = "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"
        raise ConfigError(f"size {value!r} is not a size ({units}); {hint}")
    try:
        number = Decimal(match.group(1)).scaleb(int(match.group(2) or 0))
    except InvalidOperation:  # an exponent beyond Decimal's range
        raise ConfigError(f"size {value!r} is out of range; {hint}") from None
    return int((number * _UNITS[match.group(3).lower()]).to_integral_value())


def format_size(n_bytes: int) -> str:
    """``n_bytes`` in the largest decimal unit that leaves at least 1, e.g. ``"1.5 GB"``."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if abs(n_bytes) >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes} B"
