"""What the executor tests compare: the prediction stores of two runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from webly.predictions import Predictions


def assert_same_stores(one: Path, other: Path, members: list[str]) -> None:
    """Every member's out-of-fold and test predictions equal, bit for bit."""
    for member in members:
        a, b = (
            Predictions.open(one / member / "predictions"),
            Predictions.open(other / member / "predictions"),
        )
        assert a.splits == b.splits
        for split in a.splits:
            np.testing.assert_array_equal(a.dense(split), b.dense(split), err_msg=member)
