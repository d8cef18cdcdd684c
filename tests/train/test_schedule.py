"""Learning-rate schedules: warm-up, constant, cosine to 0, step and reduce-on-plateau."""

from __future__ import annotations

import pytest

from webly.train.schedule import SCHEDULES, epoch_scale, lr_factor


def test_warmup_then_cosine_to_zero() -> None:
    assert [lr_factor(s, 2, 6) for s in range(2)] == [0.5, 1.0]
    assert lr_factor(2, 2, 6) == pytest.approx(1.0)
    assert lr_factor(5, 2, 6) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(3, 2, 6) > lr_factor(4, 2, 6)


def test_constant_never_decays_and_warms_up() -> None:
    assert [lr_factor(s, 0, 6, "constant") for s in range(6)] == [1.0] * 6
    assert lr_factor(0, 4, 6, "constant") == 0.25


def test_step_decays_every_n_epochs() -> None:
    assert epoch_scale("step", [0.1] * 3, 0.1, 4, 2) == 1.0
    assert epoch_scale("step", [0.1] * 4, 0.1, 4, 2) == pytest.approx(0.1)
    assert epoch_scale("step", [0.1] * 9, 0.5, 4, 2) == pytest.approx(0.25)
    assert lr_factor(100, 0, 10, "step", 0.25) == 0.25


def test_plateau_decays_after_patience_epochs_without_a_better_score() -> None:
    rising = [0.1, 0.2, 0.3, 0.4]
    assert epoch_scale("plateau", rising, 0.1, 10, 2) == 1.0
    assert epoch_scale("plateau", [0.3, 0.2], 0.1, 10, 2) == 1.0  # one epoch without
    assert epoch_scale("plateau", [0.3, 0.2, 0.25], 0.1, 10, 2) == pytest.approx(0.1)
    # the wait starts again after a decay, and a better score resets it
    assert epoch_scale("plateau", [0.3, 0.2, 0.2, 0.2], 0.1, 10, 2) == pytest.approx(0.1)
    assert epoch_scale("plateau", [0.3, 0.2, 0.2, 0.2, 0.2], 0.1, 10, 2) == pytest.approx(0.01)
    assert epoch_scale("plateau", [0.3, 0.2, 0.4, 0.3], 0.1, 10, 2) == 1.0


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_epoch_scale_is_one_for_step_free_schedules(schedule: str) -> None:
    assert epoch_scale(schedule, [0.3, 0.2, 0.1], 0.1, 1, 1) == 1.0  # type: ignore[arg-type]
    assert schedule in SCHEDULES
