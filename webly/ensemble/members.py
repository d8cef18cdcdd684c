"""The members an ensemble combines: prediction stores checked to predict the same rows.

`open_members` opens each member's prediction store (`webly.predictions`) and refuses members
that do not predict the same rows of each split or the same class space, before anything is
fitted: blending, stacking and distillation all index the members' rows together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from webly.core import TopK
from webly.errors import ConfigError, DataError
from webly.predictions import Predictions, Rows


@dataclass(frozen=True)
class Members:
    """Named prediction stores over the same rows and classes, in a fixed order.

    Attributes
    ----------
    names : list of str
        Member ids, e.g. the zoo's ``resnet_av``, ``dbof``.
    stores : list of Predictions
        One open store per name.
    """

    names: list[str]
    stores: list[Predictions]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def n_classes(self) -> int:
        return self.stores[0].n_classes

    def n_rows(self, split: str) -> int:
        """Rows of ``split`` (``oof`` or ``test``), the same in every member."""
        return len(self.stores[0].split(split))

    def topk(self, split: str, rows: Rows = None) -> list[TopK]:
        """Each member's (B, k_m) TopK of ``rows`` of ``split``, in member order."""
        return [store.topk(split, rows) for store in self.stores]

    def select(self, names: Sequence[str]) -> Members:
        """The members named, in the order given."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ConfigError(
                f"member(s) {', '.join(missing)} are not in the prediction stores; the stores "
                f"hold: {', '.join(self.names)}"
            )
        return Members(list(names), [self.stores[self.names.index(n)] for n in names])


def open_members(paths: Mapping[str, str | Path], splits: Sequence[str] = ("oof",)) -> Members:
    """Open the prediction store of each member and check they line up.

    Parameters
    ----------
    paths : mapping of member id to its prediction store folder (a zoo's
        ``OUT/<member id>/predictions``; see `zoo_members`)
    splits : splits every member must hold, with the same number of rows in each member

    Returns
    -------
    Members
        In the mapping's order. Raises `DataError` when a store is missing a split, or the
        members differ in their class count or in the rows of a split.
    """
    if not paths:
        raise ConfigError("no members given; an ensemble needs at least one prediction store")
    names = list(paths)
    stores = [Predictions.open(paths[name]) for name in names]
    classes = {name: store.n_classes for name, store in zip(names, stores, strict=True)}
    if len(set(classes.values())) > 1:
        raise DataError(
            f"members predict different class spaces ({_listing(classes)}); combine only members "
            "trained on the same dataset"
        )
    for split in splits:
        for name, store in zip(names, stores, strict=True):
            if split not in store.splits:
                raise DataError(
                    f"member {name} ({store.path}) has no {split!r} predictions; re-train it "
                    "with that split"
                )
        rows = {name: len(store.split(split)) for name, store in zip(names, stores, strict=True)}
        if len(set(rows.values())) > 1:
            raise DataError(
                f"members have different {split} row sets ({_listing(rows)}); combine only "
                "members trained on the same rows"
            )
    return Members(names, stores)


def zoo_members(zoo_dir: str | Path, names: Sequence[str] | None = None) -> dict[str, Path]:
    """The prediction store of each member in a zoo folder (`webly.train.oof.fit_oof`'s OUT).

    ``names`` picks members (in that order); None takes every member folder holding a
    finished store, in name order.
    """
    zoo_dir = Path(zoo_dir)
    if not zoo_dir.is_dir():
        raise DataError(f"{zoo_dir} is not a folder; pass a zoo folder (webly train --out)")
    found = {
        p.parent.name: p
        for p in sorted(zoo_dir.glob("*/predictions"))
        if (p / "manifest.json").is_file()
    }
    if names is None:
        if not found:
            raise DataError(f"{zoo_dir} holds no finished member; train the zoo first")
        return found
    missing = [n for n in names if n not in found]
    if missing:
        raise ConfigError(
            f"member(s) {', '.join(missing)} have no prediction store in {zoo_dir}; it holds: "
            f"{', '.join(found) or 'none'}"
        )
    return {n: found[n] for n in names}


def _listing(values: Mapping[str, int]) -> str:
    return ", ".join(f"{name}: {value}" for name, value in values.items())
