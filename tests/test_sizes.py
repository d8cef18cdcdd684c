"""Byte sizes: parse_size's units and errors, and format_size reading back."""

from __future__ import annotations

import pytest

from webly.errors import ConfigError
from webly.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1GB", 10**9),
        ("500MB", 500 * 10**6),
        ("1.5 GiB", 3 * 2**29),
        (1234, 1234),
        ("1234", 1234),
        ("2kib", 2048),
        ("0.5 KB", 500),
        (".25MiB", 2**18),
        ("1e3", 1000),
        ("0.3 KiB", 307),
    ],
)
def test_parse_size(value: int | str, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("12 parsecs", "size '12 parsecs' is not a size"),
        ("-5MB", "size '-5MB' is not a size"),
        ("GB", "size 'GB' is not a size"),
        ("", "size '' is not a size"),
        (-1, "size -1 is negative"),
        (1.5, "size 1.5 is a float"),
        (True, "size True is a bool"),
    ],
)
def test_parse_size_errors(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_size(value)  # type: ignore[arg-type]


def test_format_size_reads_back() -> None:
    assert format_size(1_500_000_000) == "1.5 GB"
    assert format_size(999) == "999 B"
    assert parse_size(format_size(2_000_000)) == 2_000_000
