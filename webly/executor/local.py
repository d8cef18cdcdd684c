"""The default executor: fold models train in the calling process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from webly.train.oof import FoldInputs, FoldJob


class LocalExecutor:
    """Trains nothing ahead: `fit_oof`'s loop trains each fold in this process as it reaches
    it, on torch's threads of this process."""

    def train_folds(
        self,
        train_fold: Callable[[FoldInputs, FoldJob], None],
        inputs: FoldInputs,
        jobs: Sequence[FoldJob],
    ) -> dict[str, str]:
        """Leave ``jobs`` to the caller: no failures."""
        return {}
