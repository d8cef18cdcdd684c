"""class_weights: the formula, both normalisations, classes without rows, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from webly.errors import ConfigError, DataError
from webly.train import class_weights

IDS = np.array([0] * 8 + [1] * 2 + [3] * 1)  # class 2 has no rows


def test_inverse_frequency_to_a_power() -> None:
    raw = class_weights(IDS, power=0.5, normalize=None, n_classes=4)
    assert raw.dtype == np.float32 and raw.shape == (4,)
    np.testing.assert_allclose(raw[[0, 1, 3]], [8**-0.5, 2**-0.5, 1.0], rtol=1e-6)
    full = class_weights(IDS, power=1.0, normalize=None, n_classes=4)
    np.testing.assert_allclose(full[[0, 1, 3]], [1 / 8, 1 / 2, 1.0], rtol=1e-6)
    assert np.all(class_weights(IDS, power=0.0, n_classes=4) == 1.0)


def test_mean_over_rows_is_one() -> None:
    w = class_weights(IDS, power=0.5, n_classes=4)
    assert float(w[IDS].mean()) == pytest.approx(1.0, rel=1e-6)
    ratio = w / class_weights(IDS, power=0.5, normalize=None, n_classes=4)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)  # a common factor


def test_multilabel_mean_over_label_entries_is_one() -> None:
    labels = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1], [1, 1, 0]]))
    w = class_weights(labels, power=1.0)
    counts = np.array([4, 2, 1])
    assert float(counts @ w / counts.sum()) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(w * counts, w[0] * 4, rtol=1e-6)  # w_c ∝ 1 / n_c


def test_classes_normalisation() -> None:
    w = class_weights(IDS, power=0.5, normalize="classes", n_classes=4)
    assert float(w.mean()) == pytest.approx(1.0, rel=1e-6)


def test_class_without_rows_gets_the_largest_weight() -> None:
    w = class_weights(IDS, power=0.5, n_classes=4)
    assert w[2] == w[3] == w.max()
    dense = np.zeros((3, 4))
    dense[[0, 1, 2], [0, 0, 1]] = 1
    assert class_weights(dense)[2] == class_weights(dense)[1]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"power": -0.5}, ConfigError, "power is -0.5"),
        ({"power": float("nan")}, ConfigError, "power is nan"),
        ({"normalize": "sum"}, ConfigError, "normalize is 'sum'"),
        ({"n_classes": 3}, DataError, "class ids 0..3 but there are 3 classes"),
    ],
)
def test_bad_settings_one_line(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match) as info:
        class_weights(IDS, **kwargs)
    assert "\n" not in str(info.value)


def test_no_positives_and_mismatched_classes_one_line() -> None:
    with pytest.raises(DataError, match="no positives") as info:
        class_weights(sp.csr_matrix((3, 4)))
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="labels have 4 classes but n_classes is 5"):
        class_weights(np.eye(4), n_classes=5)
