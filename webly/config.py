"""The recipe: one YAML file that says what `webly run` does, one section per stage.

A recipe::

    seed: 0                       # the one seed: generated data, folds, the zoo's weights
    data:                         # exactly one source
      synth: {kind: yt8m-like, videos: 3000, classes: 100, max_frames: 30}
      # builtin: {name: digits, noise: pair, rate: 0.2}
      # yt8m: {train: "yt8m/train*.tfrecord", test: "yt8m/validate*.tfrecord", level: video}
      # store: {train: stores/train, test: stores/test}   # used in place, never modified
    folds: {n: 5}                 # Dataset.folds(n, seed), shared by every zoo member
    zoo:                          # a zoo file (webly.train.zoo) without folds and seed
      k: 100
      train: {epochs: 8, batch_size: 256, lr: 0.001}
      members:
        - {name: logistic}
        - {name: mlp, hparams: {hidden: [512]}}
    evaluate: {k: 20}             # GAP@k of the members and of their plain average
    executor: {kind: ray, address: 10.0.0.1:6379}   # optional: fold models as Ray tasks
    # executor: {kind: ray, address: "ray://head:10001", storage: s3://bucket/webly}

Each key is read in one place: ``seed`` and ``folds.n`` feed the zoo (a ``zoo.seed`` or
``zoo.folds`` is refused), so `Recipe.zoo` comes out of validation with them filled in.
Relative paths (``store``, ``yt8m`` globs) are resolved against the current directory when the
recipe is loaded; the resolved recipe holds them absolute.

`load_recipe` reads a file and applies ``--set KEY=VALUE`` overrides: ``KEY`` is a dotted path,
list items are addressed by position (``zoo.members.1.hparams.hidden=[32]``), ``VALUE`` is read
as YAML (``3``, ``1e-3``, ``null``, ``[32]``, ``{groups: [mean_audio]}``). Every problem is one
`ConfigError` line naming the key and how to fix it; an unknown key names the keys accepted
there. `dump_recipe` writes the resolved recipe, which loads back to the same `Recipe`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from webly.data.noise import NoiseKind
from webly.data.products import ProductsLikeConfig
from webly.data.store import Dtype, Level
from webly.data.synth import YT8MLikeConfig
from webly.data.yt8m import Names
from webly.errors import ConfigError
from webly.executor import ExecutorConfig
from webly.sizes import parse_size
from webly.train.zoo import Zoo, parse_zoo
from webly.validate import check_finite, did_you_mean, key_path, unknown_key
from webly.yaml_file import Loader, read_yaml

GENERATORS: dict[str, type[YT8MLikeConfig] | type[ProductsLikeConfig]] = {
    "yt8m-like": YT8MLikeConfig,
    "products-like": ProductsLikeConfig,
}
"""The generator config of each ``data.synth.kind``."""

_SET_BY_RECIPE = ("folds", "seed")  # zoo keys the recipe sets (folds.n, seed)

DEFAULT_MAX_SIZE = "1GB"
"""The size budget of a compress section or an export that names none: the YouTube-8M 2018
challenge's."""


class SynthData(BaseModel):
    """A generated benchmark: ``kind`` and its generator's fields (`YT8MLikeConfig` or
    `ProductsLikeConfig`, all but ``seed``, which the recipe sets).

    Extra keys are allowed because they are the generator's: validation checks them against
    its dataclass and keeps every field resolved (defaults filled in)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: Literal["yt8m-like", "products-like"]

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or raw.get("kind") not in GENERATORS:
            return raw  # the kind field reports it
        fields = {key: value for key, value in raw.items() if key != "kind"}
        config = _generator_config(raw["kind"], fields, seed=0)
        resolved = dataclasses.asdict(config)
        resolved.pop("seed")
        return {"kind": raw["kind"], **resolved}

    def generator_config(self, seed: int) -> YT8MLikeConfig | ProductsLikeConfig:
        """The generator's config, seeded with the recipe's ``seed``."""
        return _generator_config(self.kind, dict(self.model_extra or {}), seed)


class BuiltinData(BaseModel):
    """A dataset bundled with the dependencies (`webly.data.builtin`), with optional noise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["digits"]
    noise: NoiseKind | None = None
    rate: float = 0.0
    test_fraction: float = 0.25


class YT8MData(BaseModel):
    """YouTube-8M TFRecord files (`webly.data.yt8m.import_yt8m`): one glob a split (the
    ``unlabeled`` one's labels, if any, are not used; ``valid``: rows of the training data no
    model of the run trains on, as ``data.valid_fraction`` carves them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train: str
    test: str | None = None
    unlabeled: str | None = None
    valid: str | None = None
    level: Level = "video"
    names: Names = "2018"
    n_classes: int = 3862
    video_dtype: Dtype = "float32"
    skip_corrupt: bool = False

    @field_validator("train", "test", "unlabeled", "valid")
    @classmethod
    def _absolute(cls, pattern: str | None) -> str | None:
        return os.path.abspath(os.path.expanduser(pattern)) if pattern is not None else None

    @field_validator("names", mode="before")
    @classmethod
    def _release_as_text(cls, names: Any) -> Any:
        return str(names) if isinstance(names, int) else names  # YAML reads 2018 as a number


class StoreData(BaseModel):
    """Existing webly datasets, read in place (never copied or modified); ``valid`` as for
    `YT8MData`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train: Path
    test: Path | None = None
    unlabeled: Path | None = None
    valid: Path | None = None

    @field_validator("train", "test", "unlabeled", "valid")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return path.expanduser().absolute() if path is not None else None


DataSource = SynthData | BuiltinData | YT8MData | StoreData
DATA_SOURCES = ("synth", "builtin", "yt8m", "store")


class DataConfig(BaseModel):
    """The ``data`` stage: exactly one source, and ``valid_fraction``: the share of its
    training rows carved out (stratified, `webly.data.split`) into a validation split before
    the folds, on which no model of the run trains (or the source's own ``valid`` split); the
    distill stage validates and chooses the final model there, the compress stage its
    candidate (None: no such split)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    synth: SynthData | None = None
    builtin: BuiltinData | None = None
    yt8m: YT8MData | None = None
    store: StoreData | None = None
    valid_fraction: float | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        given = [name for name in DATA_SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"data: {' and '.join(given) or 'no source'} given; give exactly one source "
                f"({', '.join(DATA_SOURCES)})"
            )
        name, source = self.source
        if self.valid_fraction is not None and getattr(source, "valid", None) is not None:
            raise ValueError(
                f"data: both valid_fraction and {name}.valid give a validation split; keep one"
            )
        return self

    @field_validator("valid_fraction")
    @classmethod
    def _fraction(cls, fraction: float | None) -> float | None:
        if fraction is not None and not 0.01 <= fraction <= 0.5:
            raise ValueError(
                f"data.valid_fraction is {fraction:g}; use a share in [0.01, 0.5], e.g. 0.1"
            )
        return fraction

    @property
    def source(self) -> tuple[str, DataSource]:
        """``(name, config)`` of the one source."""
        for name in DATA_SOURCES:
            value = getattr(self, name)
            if value is not None:
                return name, value
        raise AssertionError("validated to hold one source")


class FoldsConfig(BaseModel):
    """The ``folds`` stage: ``n`` folds of the training rows (seeded by the recipe's seed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(default=5, ge=2, le=127)


class EvaluateConfig(BaseModel):
    """The ``evaluate`` stage: ``k`` of GAP@k (multi-label data; accuracy otherwise)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(default=20, ge=1)


class CleanConfig(BaseModel):
    """The ``clean`` stage (`webly.clean.iterate.clean_iteratively`): the zoo's out-of-fold
    predictions judged by ``method`` (`webly.clean.find_noisy_labels`, with ``options``),
    ``rules`` (`webly.clean.ActionRules` fields) turning the verdict into actions, and the zoo
    trained again on the cleaned labels, up to ``rounds`` times (``patience``: stop once that
    many rounds in a row have not improved the validation metric, the out-of-fold predictions
    against the given labels; null: run every round). The zoo of the round with the best
    validation metric is what the ensemble stage combines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "confident_learning"
    rounds: int = Field(default=1, ge=1, le=10)
    patience: int | None = Field(default=1, ge=1)
    rules: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        from webly.clean import list_methods

        if method not in list_methods():
            raise ValueError(
                f"clean.method: unknown method {method!r}; known: {', '.join(list_methods())}"
            )
        return method

    @field_validator("rules")
    @classmethod
    def _rules(cls, rules: dict[str, Any]) -> dict[str, Any]:
        from webly.clean import ActionRules

        try:
            ActionRules(**rules)
        except (ConfigError, TypeError) as err:
            raise ValueError(f"clean.rules: {err}") from None
        return rules


class EnsembleConfig(BaseModel):
    """The ``ensemble`` stage: blends of the zoo's out-of-fold predictions and the stacker.

    ``members``: the zoo members combined (all trained ones if None). ``blends``: blend
    methods (`webly.ensemble.blend.METHODS`) with ``blend_options`` per method (e.g.
    ``{weighted: {n_trials: 500}}``). ``stacker``: `webly.ensemble.stack.StackerConfig`
    fields (its seed is the recipe's), null for no stacker.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    members: list[str] | None = None
    blends: list[str] = Field(default_factory=lambda: ["mean", "weighted", "greedy"])
    blend_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    stacker: dict[str, Any] | None = Field(default_factory=dict)

    @field_validator("blends")
    @classmethod
    def _known_blends(cls, blends: list[str]) -> list[str]:
        from webly.ensemble.blend import METHODS

        unknown = [b for b in blends if b not in METHODS]
        if unknown:
            raise ValueError(
                f"ensemble.blends: unknown blend {unknown[0]!r}; known: {', '.join(METHODS)}"
            )
        return blends

    @field_validator("stacker")
    @classmethod
    def _stacker_fields(cls, stacker: dict[str, Any] | None) -> dict[str, Any] | None:
        """`StackerConfig` fields, its seed left to the recipe's (`run_ensemble` adds it)."""
        from webly.ensemble.stack import StackerConfig

        if stacker is None:
            return None
        _known_fields(stacker, StackerConfig, "ensemble.stacker", "unknown field")
        try:
            StackerConfig(**stacker, seed=0)
        except (ConfigError, TypeError) as err:
            raise ValueError(f"ensemble.stacker: {err}") from None
        return stacker


class UnlabeledConfig(BaseModel):
    """``distill.unlabeled``: the students also train on the data's unlabeled split, with their
    teacher's predictions of it as targets (`webly.distill.unlabeled`).

    ``max_rows``: the first rows of the split only. ``threshold``: keep only the rows the
    teacher is confident about (top-1 probability, any class for multi-label, ``>=``
    threshold: the Cdiscount team's pseudo-labels); every row when absent (distillation).
    ``soft``: the teacher's probabilities as targets (its top ``distill.k`` above
    ``distill.min_score``), or the confident classes as 1 (needs ``threshold``). ``alpha``,
    ``t1``, ``t2``: the weight of their loss by epoch (`webly.distill.pseudo.alpha_schedule`),
    ``alpha`` from the first epoch by default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rows: int | None = Field(default=None, ge=1)
    threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    soft: bool = True
    alpha: float = Field(default=1.0, ge=0.0)
    t1: float = Field(default=0.0, ge=0.0)
    t2: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _consistent(self) -> UnlabeledConfig:
        if not self.soft and self.threshold is None:
            raise ValueError(
                "distill.unlabeled: hard targets (soft: false) need a threshold; give one, "
                "e.g. threshold: 0.9"
            )
        if self.t2 < self.t1:
            raise ValueError(
                f"distill.unlabeled: t2 is {self.t2} < t1 {self.t1}; the weight rises from t1 "
                "to t2, so use t1 <= t2"
            )
        return self


TWIN = 1.0
"""The ``lam`` of the labels-only twin (`webly.distill.settings`): the label loss alone."""


def lam_grid(lam: float | Sequence[float]) -> tuple[float, ...]:
    """The ``lam`` values to try, the twin's (1.0) first when it is one of them.

    Raises `ConfigError` (one line, naming ``distill.lam``) on an empty grid, a repeated value
    or one outside [0, 1].
    """
    values = _grid(
        "lam", lam, lambda v: 0.0 <= v <= 1.0, "is outside [0, 1] (the weight of the label loss)",
        "[1.0, 0.5, 0.2]",
    )  # fmt: skip
    return tuple(sorted(values, key=lambda v: v != TWIN))


def k_grid(k: float | Sequence[float]) -> tuple[int, ...]:
    """The numbers of the teacher's top classes kept a row to try, in order.

    Raises `ConfigError` (one line, naming ``distill.k``) on an empty grid, a repeated value
    or one that is not a whole number >= 1.
    """
    values = _grid(
        "k", k, lambda v: v >= 1 and v == int(v), "is not a whole number >= 1 (the teacher's "
        "classes kept a row)", "[20, 5]",
    )  # fmt: skip
    return tuple(int(v) for v in values)


def temperature_grid(temperature: float | Sequence[float]) -> tuple[float, ...]:
    """The teacher temperatures to try (`webly.distill.soft_labels.sharpen`), in order.

    Raises `ConfigError` (one line, naming ``distill.temperature``) on an empty grid, a
    repeated value or one that is not > 0.
    """
    return _grid(
        "temperature", temperature, lambda v: v > 0.0 and math.isfinite(v),
        "is not > 0 (below 1 sharpens the teacher, above 1 softens it)", "[1.0, 0.5]",
    )  # fmt: skip


def _grid(
    key: str, value: float | Sequence[float], ok: Callable[[float], bool], bad: str, example: str
) -> tuple[float, ...]:
    """The values of the grid ``distill.KEY`` in order; a one-line `ConfigError` when it is
    empty, repeats a value or holds one that ``ok`` refuses (``bad`` says why)."""
    values = (float(value),) if isinstance(value, int | float) else tuple(float(v) for v in value)
    if not values:
        raise ConfigError(f"distill.{key}: no value to try; give one, e.g. {example}")
    for v in values:
        if not ok(v):
            raise ConfigError(f"distill.{key}: {v:g} {bad}; use e.g. {example}")
    if len(set(values)) != len(values):
        raise ConfigError(f"distill.{key}: {list(values)} repeats a value; give each once")
    return values


class DistillConfig(BaseModel):
    """The ``distill`` stage: students trained on soft labels (`webly.distill`).

    ``teacher``: whose out-of-fold predictions become the soft labels: ``best`` (chosen on
    the out-of-fold metric against the training labels, or on the data's validation split when
    it has one: for the students the ensemble's best entry, for the final model the best of
    the entries and the students' mean), ``students``
    (the final model taught by the students' mean, the students by the ensemble's best), or
    ``stacker`` or a blend method of the ensemble (every model taught by it). ``family``:
    each student is taught instead by the mean of the zoo members of its own model family
    (the 1st-place YouTube-8M team's family-wise distillation). ``students`` (zoo members, trained
    out-of-fold like the zoo with its ``train`` defaults), ``lam`` (weight of the label loss,
    `TrainConfig.distill_lam`: one value, or the values tried, each model keeping the one of
    best validation figure, `webly.distill.settings`; 1.0 is the labels-only twin),
    ``temperature`` (the teacher's, one value or the values tried with each ``lam`` below 1:
    below 1 sharpens its probabilities, above 1 softens them,
    `webly.distill.soft_labels.sharpen`), ``k`` (the teacher's top classes kept a row: one
    value, or the values tried with each ``lam`` below 1) and ``min_score`` (nor those below
    it). ``final``: one model trained on every row: the model to compress and export.
    ``max_size`` (bytes or e.g. ``50MB``): a student whose float32 weights are larger is
    refused before anything trains. ``unlabeled``
    (`UnlabeledConfig`): students and final model also learn the teacher's predictions of the
    data's unlabeled split. ``mixup`` (alpha > 0): each setting of the final model with
    ``lam < 1`` is also tried with one mixed row per row it trains on (``Beta(alpha, alpha)``
    mixes of two rows' features, `webly.distill.mixed`), taught by the teacher's predictions
    of the mixed inputs. ``frame_views`` (a share in (0, 1), frame-level data only): likewise
    tried with one view per row it trains on keeping that share of the video's frames (and the
    ``mean_<g>`` groups of its frame groups averaged over them, `webly.distill.views`), taught
    by the teacher's predictions of the views; with both, each is tried apart.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    teacher: str = "best"
    family: bool = False
    lam: float | list[float] = Field(default_factory=lambda: [1.0, 0.5, 0.2])
    temperature: float | list[float] = 1.0
    k: int | list[int] = 20
    min_score: float = Field(default=1e-3, ge=0.0, lt=1.0)
    students: list[dict[str, Any]] = Field(default_factory=list)
    final: dict[str, Any] | None = None
    max_size: int | str | None = None
    unlabeled: UnlabeledConfig | None = None
    mixup: float | None = Field(default=None, gt=0.0)
    frame_views: float | None = Field(default=None, gt=0.0, lt=1.0)

    @field_validator("lam", "temperature")
    @classmethod
    def _grids(cls, grid: float | list[float], info: ValidationInfo) -> float | list[float]:
        try:
            (lam_grid if info.field_name == "lam" else temperature_grid)(grid)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return grid

    @field_validator("k", mode="before")
    @classmethod
    def _k_grid(cls, k: Any) -> Any:
        if not isinstance(k, int | float | list) or isinstance(k, bool):
            return k  # the type check names what was given
        try:
            values = k_grid(k)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return list(values) if isinstance(k, list) else values[0]

    @field_validator("max_size")
    @classmethod
    def _size(cls, size: int | str | None) -> int | str | None:
        if size is not None:
            try:
                parse_size(size)
            except ConfigError as err:
                raise ValueError(f"distill.max_size: {err}") from None
        return size

    @model_validator(mode="after")
    def _something_to_train(self) -> DistillConfig:
        if not self.students and self.final is None:
            raise ValueError("distill: no students and no final model; give one of them")
        for key, rows in (("mixup", "mixed rows"), ("frame_views", "frame views")):
            if getattr(self, key) is not None and self.unlabeled is not None:
                raise ValueError(
                    f"distill.{key}: {rows} and distill.unlabeled cannot be taught together "
                    "yet; remove one of them"
                )
        return self


def student_zoos(distill: DistillConfig, zoo: Zoo) -> dict[str, Zoo]:
    """The students and the final model of ``distill`` as zoos sharing ``zoo``'s training
    defaults, folds, seed, k and ``keep_checkpoints``, keyed by where they are written (each
    ``distill.lam`` tried sets their ``distill_lam``: `webly.distill.settings`)."""
    shared = {
        "folds": zoo.folds,
        "seed": zoo.seed,
        "k": zoo.k,
        "train": dict(zoo.train),
        "keep_checkpoints": zoo.keep_checkpoints,
    }
    zoos = {}
    if distill.students:
        zoos["students"] = parse_zoo(
            {**shared, "members": distill.students}, "distill", members_at="distill.students"
        )
    if distill.final is not None:
        zoos["final"] = parse_zoo(
            {**shared, "members": [distill.final]}, "distill", members_at="distill.final"
        )
    return zoos


class CrtConfig(BaseModel):
    """``longtail.crt``: how `webly.longtail.retrain_classifier` re-trains the final network's
    classifier (the rest frozen): ``sampler`` (``class``-balanced, Kang et al.'s cRT, or
    ``sqrt``), ``epochs`` (the best on the held-out rows is kept), ``lr``, ``batch_size``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampler: Literal["class", "sqrt"] = "class"
    epochs: int = Field(default=10, ge=1)
    lr: float = Field(default=0.01, gt=0)
    batch_size: int = Field(default=256, ge=1)


class LongtailConfig(BaseModel):
    """The ``longtail`` stage (`webly.stages.longtail`): the final distilled network's
    classifier re-balanced for the long tail, the choice made on held-out rows.

    ``method``: ``tau_norm`` (weights divided by their norm to the power tau, the best of
    ``taus`` and the classifier as trained; ``bias``: ``zero`` as Kang et al., or ``keep``) or
    ``crt`` (classifier re-trained with ``crt`` settings, kept when it beats the trained one).
    ``metric`` picks among them (`webly.longtail.tau_sweep`: ``auto`` is GAP@20 multi-label,
    mean class error multi-class); ``head`` and ``tail``: training counts bounding the
    head / medium / tail bands of the figures.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["tau_norm", "crt"] = "tau_norm"
    taus: list[float] = Field(
        default_factory=lambda: [round(0.2 * i, 6) for i in range(11)], min_length=1
    )
    bias: Literal["zero", "keep"] = "zero"
    metric: Literal["auto", "gap@20", "accuracy", "mean_class_error"] = "auto"
    crt: CrtConfig = CrtConfig()
    head: int = Field(default=100, ge=0)
    tail: int = Field(default=20, ge=0)

    @field_validator("taus")
    @classmethod
    def _taus(cls, taus: list[float]) -> list[float]:
        bad = [t for t in taus if not (math.isfinite(t) and t >= 0)]
        if bad:
            raise ValueError(
                f"longtail.taus: {bad[0]} is not a finite value >= 0; list taus like [0, 0.5, 1]"
            )
        return taus

    @model_validator(mode="after")
    def _bands(self) -> LongtailConfig:
        if self.tail > self.head + 1:
            raise ValueError(
                f"longtail: tail {self.tail} > head {self.head} + 1 makes the bands overlap; "
                "lower tail or raise head"
            )
        return self


class CompressConfig(BaseModel):
    """The ``compress`` stage and ``webly compress RUN`` (`webly.compress.choice.run_compress`):
    among the final model (float32 and each of ``methods``), blends of the members and the
    stacker, the most accurate on validation rows whose files fit ``max_size`` (bytes or e.g.
    ``1GB``, `DEFAULT_MAX_SIZE` by default) and, with ``max_latency_ms``, that runs a row within
    it; the accuracy/size/latency frontier is written beside the choice. ``measure_latency:
    false`` skips timing every candidate with ONNX Runtime (most of the stage's time;
    ``max_latency_ms`` needs it); ``min_elements``: only tensors with more elements are
    compressed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_size: int | str = DEFAULT_MAX_SIZE
    max_latency_ms: float | None = Field(default=None, gt=0)
    measure_latency: bool = True
    methods: list[Literal["fp16", "int8_partial", "kmeans"]] = ["fp16", "int8_partial"]
    min_elements: int = Field(default=17_000, ge=0)

    @field_validator("max_size")
    @classmethod
    def _size(cls, size: int | str) -> int | str:
        try:
            parse_size(size)
        except ConfigError as err:
            raise ValueError(f"compress.max_size: {err}") from None
        return size


class ExportConfig(BaseModel):
    """The ``export`` stage and ``webly export`` (`webly.compress.choice.run_export`): what the
    compress stage chose, whole (the final network, compressed or not, a blend of members or
    the stacker), as one folder `webly predict` and `webly serve` run, in ONNX opset ``opset``;
    ``predict``: how `webly predict` runs it (`webly.deploy.options.PredictOptions` fields:
    test-time views, group aggregation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    opset: int = Field(default=17, ge=17)
    predict: dict[str, Any] = Field(default_factory=dict)

    @field_validator("predict")
    @classmethod
    def _options(cls, predict: dict[str, Any]) -> dict[str, Any]:
        from webly.deploy.options import PredictOptions

        try:
            PredictOptions.from_json(predict)
        except ConfigError as err:
            raise ValueError(f"export.predict: {err}") from None
        return predict


class ReportConfig(BaseModel):
    """The ``report`` stage (`webly.report.build_report`), always run: ``RUN/report/report.html``
    with the ``suspicious_rows`` most suspicious training rows of the clean stage's verdict
    and its ``confused_pairs`` most frequent (given, true) class pairs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    suspicious_rows: int = Field(default=50, ge=0, le=10_000)
    confused_pairs: int = Field(default=12, ge=1, le=100)


class TrackingConfig(BaseModel):
    """Experiment tracking (`webly.tracking`): ``kind`` (``mlflow``; the shorthand
    ``tracking: mlflow`` means ``{kind: mlflow}``), ``uri`` (MLflow tracking URI; null: a file
    store in ``RUN/mlruns``) and the MLflow ``experiment``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["mlflow"]
    uri: str | None = None
    experiment: str = "webly"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, raw: Any) -> Any:
        return {"kind": raw} if isinstance(raw, str) else raw


class Recipe(BaseModel):
    """A whole recipe: the seed and one section per stage, in stage order, and ``executor``
    (`webly.executor.ExecutorConfig`: where the zoo's, the clean rounds' and the students'
    fold models train, ``local`` by default or Ray tasks on a cluster). The executor does not
    change any result, so it is part of no stage's config hash: a run resumes under another."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    data: DataConfig
    folds: FoldsConfig = FoldsConfig()
    zoo: Zoo
    clean: CleanConfig | None = None
    ensemble: EnsembleConfig | None = None
    distill: DistillConfig | None = None
    longtail: LongtailConfig | None = None
    evaluate: EvaluateConfig = EvaluateConfig()
    compress: CompressConfig | None = None
    export: ExportConfig | None = None
    report: ReportConfig = ReportConfig()
    executor: ExecutorConfig = ExecutorConfig()
    tracking: TrackingConfig | None = None

    @field_validator("zoo", mode="before")
    @classmethod
    def _zoo_takes_folds_and_seed(cls, zoo: Any, info: ValidationInfo) -> Any:
        if not isinstance(zoo, dict):
            return zoo
        for key in _SET_BY_RECIPE:
            if key in zoo:
                owner = "folds.n" if key == "folds" else "the top-level seed"
                raise ValueError(f"zoo.{key}: remove it; {owner} of the recipe sets it")
        if "folds" not in info.data or "seed" not in info.data:
            return zoo  # their own errors are reported
        return {**zoo, "folds": info.data["folds"].n, "seed": info.data["seed"]}

    @field_validator("zoo")
    @classmethod
    def _zoo_rules(cls, zoo: Zoo) -> Zoo:
        try:
            return parse_zoo(zoo.model_dump(), "zoo", members_at="zoo.members")
        except ConfigError as err:  # the model registry's messages do not say where
            message = str(err)
            raise ValueError(message if message.startswith("zoo") else f"zoo: {message}") from None

    @model_validator(mode="after")
    def _second_level(self) -> Recipe:
        ids = [m.member_id for m in self.zoo.members]
        if self.ensemble is not None and self.ensemble.members is not None:
            unknown = [m for m in self.ensemble.members if m not in ids]
            if unknown:
                raise ValueError(
                    f"ensemble.members: {unknown[0]!r} is not a zoo member; the zoo has: "
                    f"{', '.join(ids)}"
                )
        distill = self.distill
        if distill is None:
            return self
        if not distill.family and self.ensemble is None:
            raise ValueError(
                "distill: the teacher comes from the ensemble stage; add an ensemble: section "
                "or set distill.family: true"
            )
        if self.ensemble is not None and not distill.family:
            teachers = ["best", *self.ensemble.blends]
            if self.ensemble.stacker is not None:
                teachers.append("stacker")
            if distill.students and distill.final is not None:
                teachers.append("students")
            if distill.teacher not in teachers:
                raise ValueError(
                    f"distill.teacher: {distill.teacher!r} is not made by the ensemble; use one "
                    f"of: {', '.join(teachers)}"
                )
        try:
            zoos = self.student_zoos()
        except ConfigError as err:
            message = str(err)
            raise ValueError(
                message if message.startswith("distill") else f"distill: {message}"
            ) from None
        for students in zoos.values():
            if distill.family:
                names = {m.name for m in self.zoo.members}
                orphans = [m.member_id for m in students.members if m.name not in names]
                if orphans:
                    raise ValueError(
                        f"distill.family: student {orphans[0]!r} has no family in the zoo (its "
                        f"models: {', '.join(sorted(names))}); add one or set family: false"
                    )
        if distill.unlabeled is not None and not self._has_unlabeled():
            raise ValueError(
                "distill.unlabeled: the data has no unlabeled split; give data.store.unlabeled "
                "or data.yt8m.unlabeled, generate one (data.synth unlabeled_videos > 0), or "
                "remove distill.unlabeled"
            )
        return self

    def _has_unlabeled(self) -> bool:
        """Whether the data stage makes or points at an unlabeled split."""
        _, source = self.data.source
        if isinstance(source, StoreData | YT8MData):
            return source.unlabeled is not None
        if isinstance(source, SynthData):
            config = source.generator_config(self.seed)
            return isinstance(config, YT8MLikeConfig) and bool(config.unlabeled_videos)
        return False

    def student_zoos(self) -> dict[str, Zoo]:
        """`student_zoos` of the recipe's distill section and zoo; empty without the section."""
        return student_zoos(self.distill, self.zoo) if self.distill is not None else {}

    @model_validator(mode="after")
    def _longtail_needs_a_final_network(self) -> Recipe:
        if self.longtail is None:
            return self
        final = self.distill.final if self.distill is not None else None
        if final is None:
            raise ValueError(
                "longtail: the longtail stage adjusts the final distilled model; add "
                "distill.final to the recipe or drop longtail"
            )
        from webly.models._registry import model_entry

        if not model_entry(str(final.get("name"))).trains_with_epochs:
            raise ValueError(
                f"longtail: distill.final is {final.get('name')!r}, a gradient-boosted model "
                "with no linear classifier to re-balance; use a network final or drop longtail"
            )
        return self

    @model_validator(mode="after")
    def _members_fit_the_stages(self) -> Recipe:
        """Refuse up front what a stage would refuse of a gradient-boosted member only once
        it trains: graded sample weights from cleaning, soft targets from distillation."""
        from webly.clean import ActionRules
        from webly.models._registry import model_entry

        trees = [
            (i, m.name)
            for i, m in enumerate(self.zoo.members)
            if not model_entry(m.name).trains_with_epochs
        ]
        if self.clean is not None and trees:
            down_weight = ActionRules(**self.clean.rules).down_weight
            if down_weight not in (0, 1):
                i, name = trees[0]
                raise ValueError(
                    f"clean.rules.down_weight: {down_weight} down-weights flagged rows, but "
                    f"zoo.members[{i}] ({name}) is a gradient-boosted model, which takes 0/1 "
                    "sample weights only; set clean.rules.down_weight to 0 (drop) or 1 (keep "
                    "them), or make that member a network"
                )
        distill = self.distill
        if distill is not None:
            students = [(f"distill.students[{i}]", s) for i, s in enumerate(distill.students)]
            final = [("distill.final", distill.final)] if distill.final is not None else []
            for where, spec in students + final:
                name = str(spec.get("name"))
                if not model_entry(name).trains_with_epochs:
                    raise ValueError(
                        f"{where}: {name} is a gradient-boosted model, which takes no soft "
                        "targets (distillation trains on the teacher's); distil into a network "
                        "(e.g. name: mlp)"
                    )
        return self

    @model_validator(mode="after")
    def _evaluate_within_zoo_k(self) -> Recipe:
        if self.evaluate.k > self.zoo.k:
            raise ValueError(
                f"evaluate.k is {self.evaluate.k} but the zoo keeps k={self.zoo.k} predictions a "
                "row; lower evaluate.k or raise zoo.k"
            )
        return self


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read the recipe at ``path``, apply ``--set KEY=VALUE`` ``overrides`` in order, validate.

    Raises `ConfigError` (one line) for an unreadable file, invalid YAML, a bad override or
    an invalid recipe.
    """
    path = Path(path)
    raw = read_yaml(path, "recipe")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"recipe {path}: holds {type(raw).__name__}; write a mapping with data: and zoo:"
        )
    for item in overrides:
        _apply_override(raw, item)
    return parse_recipe(raw, f"recipe {path}")


def parse_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate a recipe given as parsed YAML; ``source`` starts every error message."""
    check_finite(raw, source)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_describe(err)}") from None


SectionT = TypeVar("SectionT", bound=BaseModel)


def load_section(
    kind: type[SectionT],
    name: str,
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> SectionT:
    """The recipe's ``name:`` section (a ``kind``) given on its own, as a command that runs one
    stage builds it (``webly distill --config FILE --set KEY=VALUE``): the YAML mapping at
    ``path`` (an empty one without it), then each override of a key of the section in order.

    Raises `ConfigError` (one line, naming ``name.KEY``) for an unreadable file, invalid YAML,
    a bad override or an invalid section.
    """
    raw = read_yaml(path, f"{name} section") if path is not None else {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{name} section {path}: holds {type(raw).__name__}; write a mapping of its keys, as "
            f"under {name}: in a recipe"
        )
    wrapped = {name: raw}
    for item in overrides:
        _apply_override(wrapped, f"{name}.{item}")
    check_finite(wrapped, f"{name} section")
    try:
        return kind.model_validate(wrapped[name])
    except ValidationError as err:
        raise ConfigError(_describe(err, (name,))) from None


def _known_fields(
    fields: Any, kind: type, at: str, unknown: str, also: tuple[str, ...] = ()
) -> None:
    """Raise ValueError (``AT.KEY: UNKNOWN; hint``) for a key of ``fields`` that is not a
    field of the dataclass ``kind`` (its ``seed`` excepted: the recipe's seed sets it);
    ``also``: keys the section accepts beside them, named in the hint."""
    accepted = [f.name for f in dataclasses.fields(kind) if f.name != "seed"]
    for key in fields:
        if key not in accepted:
            hint = (
                "the recipe's seed sets it"
                if key == "seed"
                else f"{did_you_mean(key, accepted)}it accepts: {', '.join([*also, *accepted])}"
            )
            raise ValueError(f"{at}.{key}: {unknown}; {hint}")


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML: every default filled in, ``zoo`` without the folds and
    seed the recipe sets, only the data source in use, no section of a stage left out."""
    raw = recipe.model_dump(mode="json", exclude={"zoo": set(_SET_BY_RECIPE)})
    raw["data"] = {name: value for name, value in raw["data"].items() if value is not None}
    raw = {section: value for section, value in raw.items() if value is not None}
    return yaml.safe_dump(raw, sort_keys=False, default_flow_style=None, width=100)


# --------------------------------------------------------------------------- internals


def _generator_config(
    kind: str, fields: dict[str, Any], seed: int
) -> YT8MLikeConfig | ProductsLikeConfig:
    """The generator config of ``kind`` from ``fields`` (raises ValueError naming the field)."""
    config_class = GENERATORS[kind]
    _known_fields(fields, config_class, "data.synth", f"unknown field of {kind}", ("kind",))
    try:
        config = TypeAdapter(config_class).validate_python({**fields, "seed": seed})
        if isinstance(config, ProductsLikeConfig):
            config.validate()
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(
            f"data.synth.{where}: {first['msg']} (got {first.get('input')!r})"
        ) from None
    except ConfigError as err:
        raise ValueError(f"data.synth: {err}") from None
    return config


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """Set the dotted key of ``KEY=VALUE`` in ``raw``, making missing mappings on the way."""
    key, equals, text = item.partition("=")
    parts = key.split(".")
    if not equals or not all(parts):
        raise ConfigError(f"--set {item!r}: write KEY=VALUE with a dotted KEY, e.g. folds.n=3")
    try:
        value = yaml.load(text, Loader=Loader)
    except yaml.YAMLError:
        raise ConfigError(
            f"--set {key}: the value {text!r} is not YAML; quote a string holding ': ' or '#'"
        ) from None
    node: Any = raw
    for depth, part in enumerate(parts):
        parent = ".".join(parts[:depth]) or "the recipe"
        slot: int | str
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"--set {key}: {parent} is a list of {len(node)} items; address an item by "
                    f"its position 0..{len(node) - 1}"
                )
            slot = int(part)
        elif isinstance(node, dict):
            slot = part
            if depth < len(parts) - 1 and node.get(part) is None:
                node[part] = {}
        else:
            raise ConfigError(
                f"--set {key}: {parent} is {node!r}, not a mapping or list; set {parent} whole"
            )
        if depth == len(parts) - 1:
            node[slot] = value
        else:
            node = node[slot]


def _describe(err: ValidationError, at: tuple[str, ...] = ()) -> str:
    """The first problem of a validation error in one line: where, what, how to fix it;
    ``at``: where in a recipe the validated model sits."""
    first = err.errors()[0]
    loc = (*at, *first["loc"])
    where = key_path(loc)
    if first["type"] == "value_error":
        return str(first["ctx"]["error"])  # our validators' messages say where and how
    if first["type"] == "extra_forbidden":
        parent = key_path(loc[:-1]) if loc[:-1] else "the recipe"
        return unknown_key(where, str(loc[-1]), _accepted_keys(loc[:-1]), parent)
    got = "" if first["type"] == "missing" else f" (got {first.get('input')!r})"
    return f"{where}: {first['msg']}{got}; fix the recipe or its --set"


def _accepted_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys of the model at ``loc`` in a `Recipe` (less those the recipe sets for it)."""
    kind: Any = Recipe
    for part in loc:
        kind = _unwrap_optional(kind)
        if isinstance(part, int):
            kind = get_args(kind)[0] if get_origin(kind) is list else None
        elif isinstance(kind, type) and issubclass(kind, BaseModel):
            kind = kind.model_fields[part].annotation
        else:
            kind = None
    kind = _unwrap_optional(kind)
    if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
        return []
    names = list(kind.model_fields)
    return [n for n in names if n not in _SET_BY_RECIPE] if kind is Zoo else names


def _unwrap_optional(kind: Any) -> Any:
    """``X`` of ``X | None``; anything else as it is."""
    if get_origin(kind) in (Union, UnionType):
        args = [arg for arg in get_args(kind) if arg is not type(None)]
        return args[0] if len(args) == 1 else kind
    return kind
