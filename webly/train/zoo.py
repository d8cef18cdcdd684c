"""The zoo file: which models `webly train` fits out-of-fold, and how.

A zoo file is YAML::

    folds: 5          # the dataset's shared fold ids (Dataset.folds(folds, seed))
    seed: 0           # the one seed: folds, initial weights, data order, dropout
    k: 100            # predictions kept per row in each member's prediction store
    train: {batch_size: 256}   # TrainConfig settings of every member (lr "auto" by default)
    time_limit: 3600  # optional: seconds for the whole zoo (webly.train.budget)
    members:
      - {name: logistic}
      - {name: mlp, hparams: {hidden: [512]}, train: {mixup_alpha: 0.4}}
      - {name: mlp, id: mlp_audio, options: {groups: [mean_audio]}}
      - {name: dbof, groups: [rgb, audio]}  # frame-level groups
      - {name: lgbm, hparams: {n_estimators: 100}}

A member is a registered model ``name`` with an ``id`` (default: the name; it names the
member's folder), the model's own ``hparams``, network ``options`` (see
`webly.models.create_model`), ``train`` overrides of the zoo's `TrainConfig` and the store's
feature ``groups`` that feed it (default: every video-level group for video-level and gbdt
models, every frame-level group for frame-level models).

`load_zoo` checks the file's shape; `plan_zoo` checks it against the data, all before any
training starts: each problem is one line naming what is wrong and how to fix it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webly.data.store import Dataset
from webly.errors import ConfigError
from webly.models import Network, create_model
from webly.models._registry import Level, check_hparams, model_entry
from webly.train.loop import TrainConfig
from webly.validate import check_finite, check_values, did_you_mean, key_path
from webly.yaml_file import read_yaml

if TYPE_CHECKING:  # typing only: importing gbdt loads LightGBM
    from webly.models.gbdt import LgbmModel

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_ID_LENGTH = 64
"""Most characters of a member id: it names the member's folders and files, whose names the
file system bounds (255 bytes), with room left for the suffixes webly adds."""
_TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "seed")


class NetworkOptions(BaseModel):
    """The options every network takes (`webly.models.create_model`); none for gbdt models."""

    model_config = ConfigDict(extra="forbid")

    groups: list[str] | None = None
    feature_subsample: float | None = None
    embedding: int | None = None
    bnneck: bool = False
    context_gating: bool = False


class MemberSpec(BaseModel):
    """One zoo member as written in the file."""

    model_config = ConfigDict(extra="forbid")

    name: str
    id: str | None = None
    hparams: dict[str, Any] = Field(default_factory=dict)
    options: NetworkOptions | None = None
    train: dict[str, Any] = Field(default_factory=dict)
    groups: list[str] | None = None

    @property
    def member_id(self) -> str:
        return self.id if self.id is not None else self.name


class Zoo(BaseModel):
    """A zoo file: shared folds, seed, top-k, training defaults and the members.
    ``keep_checkpoints``: keep a fold's trainer checkpoints once its model is saved (no result
    or config hash depends on it; by default they are deleted). ``time_limit``: seconds for
    training the whole zoo, spread over its fold models (`webly.train.budget`); None: none."""

    model_config = ConfigDict(extra="forbid")

    folds: int = 5
    seed: int = 0
    k: int = 100
    train: dict[str, Any] = Field(default_factory=dict)
    members: list[MemberSpec]
    keep_checkpoints: bool = False
    time_limit: float | None = Field(default=None, gt=0)


@dataclass(frozen=True)
class Member:
    """A member resolved against the data: what `webly.train.oof.fit_oof` trains.

    ``input_dims`` are the widths of ``groups`` (concatenated in this order); ``config`` is
    the JSON-able resolved configuration kept in the prediction store; ``fold_seeds`` holds
    one `np.random.SeedSequence` per fold (initial weights, then training: data order, mixup,
    dropout); ``subset_seed`` picks the ``feature_subsample`` columns, shared by the folds.
    """

    id: str
    name: str
    level: Level
    groups: tuple[str, ...]
    input_dims: dict[str, int]
    hparams: dict[str, Any]
    options: dict[str, Any]
    train: TrainConfig
    fold_seeds: tuple[np.random.SeedSequence, ...]
    subset_seed: int

    @property
    def config(self) -> dict[str, Any]:
        train = self.train.results_settings()
        train.pop("seed")
        return {
            "id": self.id,
            "name": self.name,
            "level": self.level,
            "groups": list(self.groups),
            "input_dims": self.input_dims,
            "hparams": self.hparams,
            "options": self.options,
            "train": train,
        }

    @property
    def takes_frames(self) -> bool:
        """Whether the member's model reads frame sequences (`ModelEntry.takes_frames`)."""
        return model_entry(self.name).takes_frames

    @property
    def trains_with_epochs(self) -> bool:
        """Whether the member is a network (`ModelEntry.trains_with_epochs`)."""
        return model_entry(self.name).trains_with_epochs

    def create(self, n_classes: int, fold: int) -> Network | LgbmModel:
        """A fresh model of fold ``fold``, its initial weights drawn from the fold's seed; a
        network's options (trees take none) with the columns' ``subset_seed``."""
        init_seed = int(self.fold_seeds[fold].generate_state(1, np.uint32)[0])
        options = {"seed": self.subset_seed, **self.options} if self.trains_with_epochs else {}
        with torch.random.fork_rng():
            torch.manual_seed(init_seed)
            return create_model(self.name, n_classes, self.input_dims, **options, **self.hparams)

    def network(self, n_classes: int, fold: int) -> Network:
        """`create`'s model, refused in one line unless it is a network."""
        model = self.create(n_classes, fold)
        if not isinstance(model, Network):
            raise ConfigError(f"member {self.id!r}: {self.name} is not a network; use one")
        return model

    def train_config(self, fold: int) -> TrainConfig:
        """The member's `TrainConfig` with fold ``fold``'s training seed."""
        seed = int(self.fold_seeds[fold].generate_state(2, np.uint32)[1])
        return dataclasses.replace(self.train, seed=seed)


def load_zoo(path: str | Path) -> Zoo:
    """Read and check the shape of the zoo file at ``path`` (`ConfigError` on any problem)."""
    raw = read_yaml(path, "zoo file")
    return parse_zoo(raw, str(path))


def parse_zoo(raw: Any, source: str = "zoo", members_at: str | None = None) -> Zoo:
    """Check a zoo given as parsed YAML (a dict) and its data-independent rules.

    Messages start with ``source`` (a file); a member's problem is located as
    ``{members_at}[i]...`` when the zoo sits inside a recipe (e.g. ``zoo.members``), else as
    ``{source}: members[i]...``.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: holds {type(raw).__name__}; write a mapping with members:")
    check_finite(raw, source)
    try:
        zoo = Zoo.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(
            f"{source}: {key_path(first['loc'])}: {first['msg']} (got {first.get('input')!r}); "
            "fix the zoo file"
        ) from None
    if members_at is None:
        _check_zoo(zoo, source, f"{source}: train", f"{source}: members")
    else:
        _check_zoo(zoo, source, f"{source}.train", members_at)
    return zoo


def plan_zoo(
    zoo: Zoo, train: Dataset, test: Dataset | None = None, *, split: str = "test"
) -> list[Member]:
    """Resolve every member against the data; fails on the first problem, before training.

    ``test``: another split the members predict or are scored on (``split`` names it in the
    errors, e.g. ``valid``). Each member is also built once (and thrown away), so a
    hyper-parameter value its model refuses fails here too.
    """
    if test is not None and (test.n_classes != train.n_classes or test.task != train.task):
        raise ConfigError(
            f"{split} data has {test.n_classes} {test.task} classes, training data "
            f"{train.n_classes} {train.task}; pass splits of one dataset (--{split})"
        )
    members = []
    for spec in zoo.members:
        entry = model_entry(spec.name)
        groups = _member_groups(spec, entry.level, train)
        if test is not None:
            _check_split_groups(spec.member_id, groups, train, test, split)
        subset_seed, *fold_seeds = np.random.SeedSequence(
            [zoo.seed, _id_key(spec.member_id)]
        ).spawn(zoo.folds + 1)
        member = Member(
            id=spec.member_id,
            name=spec.name,
            level=entry.level,
            groups=groups,
            input_dims={g: train.layout.feature(g).dim for g in groups},
            hparams=dict(spec.hparams),
            options=spec.options.model_dump() if spec.options is not None else {},
            train=_train_config({**zoo.train, **spec.train}, spec.member_id),
            fold_seeds=tuple(fold_seeds),
            subset_seed=int(subset_seed.generate_state(1, np.uint32)[0]),
        )
        member.create(train.n_classes, 0)
        members.append(member)
    return members


def config_hash(
    member: Member,
    zoo: Zoo,
    folds: np.ndarray,
    train: Dataset,
    test: Dataset | None,
    teacher: str | None = None,
    labels: str | None = None,
    sample_weight: str | None = None,
    pseudo: str | None = None,
    valid: str | None = None,
) -> str:
    """SHA-256 of what a member's predictions depend on: its resolved config, the zoo's seed
    and k, the fold of every row, the manifests of the training and test data, and the hashes
    of a teacher's soft targets (distillation), of labels replacing the store's, of sample
    weights (cleaning), of pseudo-labeled rows and of a validation store's manifest, each when
    given."""
    blob = {
        "member": member.config,
        "seed": zoo.seed,
        "k": zoo.k,
        "folds": hashlib.sha256(np.ascontiguousarray(folds, dtype=np.int8).tobytes()).hexdigest(),
        "train": manifest_hash(train),
        "test": manifest_hash(test) if test is not None else None,
    }
    given = {
        "teacher": teacher,
        "labels": labels,
        "sample_weight": sample_weight,
        "pseudo": pseudo,
        "valid": valid,
    }
    # absent when not given: the hashes of finished zoos stay valid
    blob |= {key: value for key, value in given.items() if value is not None}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- internals


def _check_zoo(zoo: Zoo, source: str, train_at: str, members_at: str) -> None:
    if not 2 <= zoo.folds <= 127:
        raise ConfigError(f"{source}: folds is {zoo.folds}; use 2..127 folds")
    if zoo.k < 1:
        raise ConfigError(f"{source}: k is {zoo.k}; keep at least 1 prediction a row")
    if not zoo.members:
        raise ConfigError(f"{source}: members is empty; list at least one model")
    _check_train(zoo.train, train_at)
    seen: set[str] = set()
    for i, spec in enumerate(zoo.members):
        member_id = spec.member_id
        where = f"{members_at}[{i}]"
        if not _ID.match(member_id):
            raise ConfigError(
                f"{where}.id: {member_id!r} is not a folder name; use letters, digits, '_', "
                "'-' and '.'"
            )
        if len(member_id) > MAX_ID_LENGTH:
            raise ConfigError(
                f"{where}.id: {member_id[:20]!r}... is {len(member_id)} characters, too long "
                f"for a folder name; use at most {MAX_ID_LENGTH}"
            )
        if member_id in seen:
            raise ConfigError(
                f"{where}: id {member_id!r} is used twice; give one of them another id"
            )
        seen.add(member_id)
        try:
            entry = model_entry(spec.name)
        except ConfigError as err:
            raise ConfigError(f"{where}.name: {err}") from None
        check_hparams(entry, spec.hparams, f"{where}.hparams")
        _check_train(spec.train, f"{where}.train")
        if not entry.trains_with_epochs and (spec.options is not None or spec.train):
            raise ConfigError(
                f"{where}: {spec.name} is a gbdt model and takes only hparams; remove its "
                "options and train settings"
            )
        if entry.trains_with_epochs:  # the member's settings together, as plan_zoo resolves them
            try:
                TrainConfig(**{**zoo.train, **spec.train})
            except ConfigError as err:
                raise ConfigError(f"{where}.train: {err}") from None


def _check_train(train: dict[str, Any], where: str) -> None:
    """Refuse an unknown training setting (naming the nearest), a value of the wrong type or
    one `TrainConfig` refuses (epochs 0, a negative lr, ...), at ``{where}.{key}``."""
    unknown = sorted(set(train) - set(_TRAIN_KEYS))
    if unknown:
        if unknown[0] == "seed":
            raise ConfigError(f"{where}.seed: remove it; the zoo's seed drives training")
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown setting; {did_you_mean(unknown[0], _TRAIN_KEYS)}"
            f"it accepts: {', '.join(_TRAIN_KEYS)}"
        )
    check_values(train, TrainConfig, where)
    for key, value in train.items():  # TrainConfig's own rules, each setting on its own
        try:
            TrainConfig(**{key: value})
        except ConfigError as err:
            raise ConfigError(f"{where}.{key}: {err}") from None


def _train_config(settings: dict[str, Any], member_id: str) -> TrainConfig:
    try:
        return TrainConfig(**settings)
    except TypeError:
        raise ConfigError(
            f"member {member_id!r}: train settings {settings} hold a value of the wrong type; "
            "use numbers for sizes and rates"
        ) from None


def _member_groups(spec: MemberSpec, level: Level, train: Dataset) -> tuple[str, ...]:
    """The store's feature groups feeding a member, checked against its level."""
    want = "frame" if level == "frame" else "video"
    features = train.layout.features
    have = ", ".join(f"{f.name} ({f.level})" for f in features) or "none"
    if spec.groups is None:
        groups = tuple(f.name for f in features if f.level == want)
        if not groups:
            raise ConfigError(
                f"member {spec.member_id!r}: {spec.name} is {level}-level but the data has no "
                f"{want}-level feature groups (it has: {have}); use a {want}-level store or "
                "another model"
            )
        return groups
    by_name = {f.name: f.level for f in features}
    for group in spec.groups:
        if by_name.get(group) != want:
            problem = "lacks" if group not in by_name else f"has it at {by_name[group]} level,"
            raise ConfigError(
                f"member {spec.member_id!r}: feeds {spec.name} ({level}-level) group "
                f"{group!r} but the data {problem} (it has: {have}); pick {want}-level groups"
            )
    if not spec.groups:
        raise ConfigError(f"member {spec.member_id!r}: groups is empty; name at least one group")
    return tuple(spec.groups)


def _check_split_groups(
    member_id: str, groups: tuple[str, ...], train: Dataset, test: Dataset, split: str
) -> None:
    test_specs = {f.name: f for f in test.layout.features}
    for group in groups:
        spec = train.layout.feature(group)
        other = test_specs.get(group)
        if other is None or (other.dim, other.level) != (spec.dim, spec.level):
            found = "lacks it" if other is None else f"has it {other.level}-level, {other.dim}-d"
            raise ConfigError(
                f"member {member_id!r}: group {group!r} is {spec.level}-level, {spec.dim}-d in "
                f"the training data but the {split} data {found}; pass splits of one dataset"
            )


def _id_key(member_id: str) -> int:
    """A stable 64-bit number of a member id (seeds do not depend on the member order)."""
    return int.from_bytes(hashlib.sha256(member_id.encode()).digest()[:8], "little")


def manifest_hash(ds: Dataset) -> str:
    """SHA-256 of a dataset's manifest (its layout, shards and their checksums)."""
    return hashlib.sha256(json.dumps(ds.manifest, sort_keys=True).encode()).hexdigest()
