"""The demo's own tables: readable in an 80-column terminal."""

from __future__ import annotations

import io

from rich.console import Console

from webly.demo import _cleaning_table

ROUNDS = [
    {"round": 0, "rows_trained": 400_000, "dropped": 0, "relabelled": 0,
     "noise_estimate": 0.0731, "true_noise": 0.675, "valid_metric": 0.6123, "test_metric": 0.6012},
    {"round": 1, "rows_trained": 360_000, "dropped": 40_000, "relabelled": 123_456,
     "noise_estimate": 0.0731, "true_noise": 0.675, "precision": 0.81, "recall": 0.12,
     "valid_metric": 0.6323, "test_metric": 0.6212},
]  # fmt: skip


def test_cleaning_table_fits_80_columns_uncut() -> None:
    out = Console(width=80, record=True, file=io.StringIO())
    out.print(_cleaning_table(ROUNDS))
    text = out.export_text()
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    for cell in ("400,000", "123,456", "0.0731", "0.6750", "0.8100", "0.1200", "0.6212"):
        assert cell in text
    for header in ("trained", "dropped", "relabelled", "precision", "recall", "GAP@20"):
        assert header in text
