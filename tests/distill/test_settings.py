"""The distillation settings tried per model, and the one kept on validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from webly.config import DistillConfig, lam_grid, load_recipe
from webly.distill.settings import Setting, choose, final_extras, settings
from webly.errors import ConfigError


def test_the_twin_comes_first_and_mixup_pairs_every_distilled_lam() -> None:
    assert lam_grid([0.5, 1.0, 0.2]) == (1.0, 0.5, 0.2)
    assert lam_grid(0.5) == (0.5,)
    grid = settings([0.2, 1.0], ["mixup"])
    assert grid == (Setting(1.0), Setting(0.2), Setting(0.2, "mixup"))
    assert [s.name for s in grid] == ["labels", "lam-0.2", "lam-0.2-mixup"]
    assert [s.twin for s in grid] == [True, False, False]


def test_each_distilled_lam_is_tried_at_each_temperature_and_the_twin_once() -> None:
    grid = settings([1.0, 0.5], ["mixup"], temperature=[1.0, 0.5])
    assert [s.name for s in grid] == [
        "labels", "lam-0.5", "lam-0.5-t0.5", "lam-0.5-mixup", "lam-0.5-t0.5-mixup",
    ]  # fmt: skip
    assert grid[0] == Setting(1.0) and grid[2] == Setting(0.5, temperature=0.5)
    assert settings(0.5, temperature=2) == (Setting(0.5, temperature=2.0),)


def test_a_k_grid_is_tried_with_each_distilled_setting_and_named_only_when_a_grid() -> None:
    grid = settings([1.0, 0.5], ["views"], temperature=[1.0, 0.5], k=[20, 5])
    assert [s.name for s in grid] == [
        "labels", "lam-0.5-k20", "lam-0.5-k5", "lam-0.5-t0.5-k20", "lam-0.5-t0.5-k5",
        "lam-0.5-k20-views", "lam-0.5-k5-views", "lam-0.5-t0.5-k20-views", "lam-0.5-t0.5-k5-views",
    ]  # fmt: skip
    assert grid[2] == Setting(0.5, k=5) and grid[0].k is None
    assert settings(0.5, k=5) == settings(0.5, k=[5]) == (Setting(0.5),)  # one k: not named


def test_mixup_and_frame_views_are_each_tried_apart_with_every_distilled_setting() -> None:
    section = DistillConfig(final={"name": "logistic"}, lam=[1.0, 0.5, 0.2], mixup=0.4,
                            frame_views=0.5, temperature=[1.0, 2.0])  # fmt: skip
    assert final_extras(section) == ("mixup", "views")
    assert final_extras(DistillConfig(final={"name": "logistic"}, frame_views=0.5)) == ("views",)
    assert final_extras(DistillConfig(final={"name": "logistic"})) == ()
    grid = settings(section.lam, final_extras(section), section.temperature)
    assert [s.name for s in grid] == [
        "labels", "lam-0.5", "lam-0.5-t2", "lam-0.2", "lam-0.2-t2",
        "lam-0.5-mixup", "lam-0.5-t2-mixup", "lam-0.2-mixup", "lam-0.2-t2-mixup",
        "lam-0.5-views", "lam-0.5-t2-views", "lam-0.2-views", "lam-0.2-t2-views",
    ]  # fmt: skip
    assert grid[-3] == Setting(0.5, "views", 2.0) and not grid[-3].twin
    assert settings(1.0, ["views"]) == (Setting(1.0),)  # the twin learns no extra rows


def test_a_tie_keeps_the_twin_and_a_failed_setting_is_never_chosen() -> None:
    assert choose([0.61, 0.61, 0.60]) == 0
    assert choose([0.60, 0.62, 0.62]) == 1
    assert choose([None, 0.1, 0.3]) == 2
    with pytest.raises(ConfigError, match="no distillation setting has a validation figure"):
        choose([None, None])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[1.0, 1.5]", r"distill\.lam: 1\.5 is outside \[0, 1\] .* use e\.g\. \[1\.0, 0\.5"),
        ("-0.1", r"distill\.lam: -0\.1 is outside \[0, 1\]"),
        ("[]", r"distill\.lam: no value to try"),
        ("[0.5, 0.5]", r"distill\.lam: \[0\.5, 0\.5\] repeats a value"),
        ("temperature=0", r"distill\.temperature: 0 is not > 0 .*; use e\.g\. \[1\.0, 0\.5\]"),
        ("temperature=[]", r"distill\.temperature: no value to try"),
        ("temperature=[1, 1]", r"distill\.temperature: \[1\.0, 1\.0\] repeats a value"),
        ("k=[20, 2.5]", r"distill\.k: 2\.5 is not a whole number >= 1 .*; use e\.g\. \[20, 5\]"),
        ("k=0", r"distill\.k: 0 is not a whole number >= 1"),
        ("k=[5, 5]", r"distill\.k: \[5\.0, 5\.0\] repeats a value"),
    ],
)
def test_a_bad_lam_or_temperature_grid_is_one_line_naming_the_key(
    value: str, message: str, tmp_path: Path
) -> None:
    recipe = {
        "data": {"synth": {"kind": "yt8m-like", "videos": 50, "classes": 5}},
        "zoo": {"members": [{"name": "logistic"}]},
        "ensemble": {},
        "distill": {"final": {"name": "logistic"}},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    section = load_recipe(path).distill
    assert section is not None and section.lam == [1.0, 0.5, 0.2]  # the default grid
    with pytest.raises(ConfigError, match=message) as caught:
        key = "" if value.startswith(("temperature=", "k=")) else "lam="
        load_recipe(path, [f"distill.{key}{value}"])
    assert "\n" not in str(caught.value)


def test_mixup_or_frame_views_with_unlabeled_rows_is_refused() -> None:
    with pytest.raises(ValueError, match=r"distill\.mixup: mixed rows and distill\.unlabeled"):
        DistillConfig(final={"name": "logistic"}, mixup=0.4, unlabeled={})
    with pytest.raises(ValueError, match=r"distill\.frame_views: frame views and distill\.unl"):
        DistillConfig(final={"name": "logistic"}, frame_views=0.5, unlabeled={})
