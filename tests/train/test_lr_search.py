"""lr="auto": the rate chosen on the validation rows, and a search that finds none."""

from __future__ import annotations

import pytest

from webly.errors import DataError
from webly.train.lr_search import LRSearch, Probe, choose_lr


def test_keeps_the_best_scoring_rate_and_the_smaller_on_a_tie() -> None:
    scores = {0.001: 0.4, 0.01: 0.6, 0.1: 0.6}
    search = choose_lr(list(scores), lambda rate: Probe(scores[rate], improved=True))
    assert search.lr == 0.01 and search.trials == scores


def test_diverged_or_flat_rates_are_out() -> None:
    def probe(rate: float) -> Probe:
        if rate == 1.0:
            raise DataError("training loss is nan at epoch 1, step 3; lower the learning rate")
        return Probe(0.9 if rate == 0.1 else 0.5, improved=rate != 0.1)

    search = choose_lr([0.01, 0.1, 1.0], probe)
    assert search.lr == 0.01 and search.trials == {0.01: 0.5, 0.1: None, 1.0: None}


def test_no_rate_improving_names_the_rates_tried() -> None:
    with pytest.raises(DataError, match=r"^learning-rate search: no rate improved on the initial "
                       r"weights \(tried 0\.001, 0\.01\); set train\.lr by hand"):  # fmt: skip
        choose_lr([0.001, 0.01], lambda rate: Probe(0.5, improved=False))


def test_json_round_trip() -> None:
    search = LRSearch(0.01, {0.001: 0.4, 0.01: 0.6, 0.1: None})
    assert LRSearch.from_json(search.to_json()) == search
