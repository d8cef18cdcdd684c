"""How an exported model wants its rows predicted: test-time augmentation and group aggregation.

An export's ``model.json`` may hold a ``predict`` section (`PredictOptions.to_json`), set at
export (a recipe's ``export.predict``, or ``webly export --set predict.tta_views=4``);
`webly.deploy.predict` follows it:

- ``tta_views`` > 1 (frame-level models only): every row is predicted under that many views
  and their probabilities combined per class by ``tta_mode`` (``mean`` or ``max``). View 0
  is the row with all its frames; views 1.. keep ``tta_max_frames`` of its frames, drawn as
  `webly.ensemble.tta.tta_scores` draws them (``tta_sampling`` ``random``: with replacement,
  seeded by ``tta_seed``, one child seed per batch of rows, so the figures depend on the batch
  size as they do there; ``regular``: evenly spaced, no randomness). A video-level model has
  no views the graph can take: its inputs are stored values (uint8 codes) the graph decodes.
- ``tta_stored`` (any level; instead of ``tta_views``): views kept in the data store, e.g. the
  image route's ``["flip", "top_left"]`` (`webly.data.images` ``views``): view s reads each of
  the model's groups ``g`` from the store's ``g_s`` where it has one, and the probabilities of
  view 0 and these are combined by ``tta_mode``. Only a data store has them.
- ``group_aggregation`` (``mean``, ``belief`` or ``first``, `webly.ensemble.aggregate`): the
  rows of one group (the store's ``group`` column, e.g. a product's images) become one
  prediction, written under the group id; each row contributes its ``group_k`` best classes,
  ``belief`` drops instances more than ``group_z`` standard deviations from the others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, get_args

from webly.ensemble.aggregate import METHODS as AGGREGATIONS
from webly.ensemble.aggregate import Method as Aggregation
from webly.ensemble.tta import Mode, ViewSampling
from webly.errors import ConfigError


@dataclass(frozen=True)
class PredictOptions:
    """The ``predict`` section of an export's ``model.json``; see the module docstring.

    The defaults predict each row once and write one line a row.
    """

    tta_views: int = 1
    tta_mode: Mode = "mean"
    tta_sampling: ViewSampling = "random"
    tta_max_frames: int = 300
    tta_seed: int = 0
    tta_stored: tuple[str, ...] = ()
    group_aggregation: Aggregation | None = None
    group_k: int = 100
    group_z: float = 1.96

    def __post_init__(self) -> None:
        if self.tta_views < 1:
            raise ConfigError(f"tta_views is {self.tta_views}; use 1 (no augmentation) or more")
        if self.tta_mode not in get_args(Mode):
            raise ConfigError(f"tta_mode {self.tta_mode!r} is unknown; use mean or max")
        if self.tta_sampling not in get_args(ViewSampling):
            raise ConfigError(
                f"tta_sampling {self.tta_sampling!r} is unknown; use random or regular"
            )
        if self.tta_max_frames < 1:
            raise ConfigError(f"tta_max_frames is {self.tta_max_frames}; use 1 or more")
        object.__setattr__(self, "tta_stored", tuple(self.tta_stored))  # a list from JSON
        if not all(isinstance(v, str) and v for v in self.tta_stored) or len(
            set(self.tta_stored)
        ) != len(self.tta_stored):
            raise ConfigError(
                f"tta_stored {list(self.tta_stored)}: give distinct view names, e.g. flip"
            )
        if self.tta_stored and self.tta_views > 1:
            raise ConfigError(
                f"tta_views {self.tta_views} and tta_stored {', '.join(self.tta_stored)}: give "
                "one kind of test-time views"
            )
        if self.group_aggregation is not None and self.group_aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"group_aggregation {self.group_aggregation!r} is unknown; use one of "
                f"{', '.join(AGGREGATIONS)}"
            )
        if self.group_k < 1 or not self.group_z > 0:
            raise ConfigError(
                f"group_k {self.group_k}, group_z {self.group_z}: group_k must be >= 1 and "
                "group_z > 0"
            )

    @property
    def views(self) -> int:
        """Views a row is predicted under (1: once)."""
        return self.tta_views + len(self.tta_stored)

    @property
    def tta(self) -> bool:
        """Whether rows are predicted under several views."""
        return self.views > 1

    def check_level(self, level: str, model: str) -> None:
        """Refuse drawn views for a model of ``level`` other than ``frame`` (``model`` names
        it)."""
        if self.tta_views > 1 and level != "frame":
            raise ConfigError(
                f"tta_views {self.tta_views}: test-time views take frame-level models, "
                f"{model} is {level}-level (its inputs are stored values the graph decodes; "
                "views kept in the store take tta_stored)"
            )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> PredictOptions:
        """Options from a ``predict`` section; a `ConfigError` names an unknown or bad key."""
        if not isinstance(obj, dict):
            raise ConfigError(f"the predict section is {type(obj).__name__}, not an object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise ConfigError(
                f"unknown predict option {unknown[0]!r}; known: {', '.join(sorted(known))}"
            )
        try:
            return cls(**obj)
        except TypeError as err:  # a value of the wrong type
            raise ConfigError(f"predict options {obj}: {err}") from None
