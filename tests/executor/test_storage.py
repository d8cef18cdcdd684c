"""``executor.storage`` without a cluster: a store opens by its filesystem URI through this
machine's cache and pickles as the URI; a call's inputs travel with their stores as URIs of
published copies and no local path, and the folds trained from them (here in this process, as a
Ray task would) come back into the run directory equal to a local run's."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tests.executor.stores import assert_same_stores
from webly.data import Batch, Dataset, DatasetWriter, FeatureSpec, Layout
from webly.data.store import CACHE_ENV
from webly.distill.pseudo import PseudoLabels
from webly.errors import DataError
from webly.executor.storage import Storage
from webly.train.oof import FoldInputs, FoldJob, fit_oof
from webly.train.zoo import parse_zoo


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This machine's cache folder (``$WEBLY_CACHE``), empty."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def store(path: Path, n: int, seed: int) -> Dataset:
    """``n`` learnable rows of 4 classes: class c is on where feature c exceeds 0.3."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    labels = [np.flatnonzero(row[:4] > 0.3) for row in x]
    with DatasetWriter(path, Layout(features=(FeatureSpec("x", 6),), n_classes=4)) as writer:
        writer.write_batch(Batch([f"v{i}" for i in range(n)], labels, features={"x": x}))
    return Dataset.open(path)


def test_a_store_opens_by_uri_through_the_cache_and_pickles_as_the_uri(
    tmp_path: Path, cache: Path
) -> None:
    local = store(tmp_path / "store", 40, 0)
    uri = (tmp_path / "store").as_uri()
    remote = Dataset.open(uri)
    assert remote.path.parent == cache / "stores" and remote.source == uri
    np.testing.assert_array_equal(remote.features(np.arange(40)), local.features(np.arange(40)))
    view = pickle.loads(pickle.dumps(remote.subset([3, 1])))
    assert view.source == uri and list(view.ids) == ["v3", "v1"]
    assert Dataset.open(uri).path == remote.path  # the cached copy, not a second one
    shutil.rmtree(tmp_path / "store")
    with pytest.raises(DataError, match=r"store: no readable manifest.json there"):
        Dataset.open(uri)


class InProcess:
    """`RayExecutor.train_folds` under ``executor.storage`` with each task run in this
    process: what it ships (`payload`), and the local store folders hidden (renamed) from the
    moment the stores are published until the call returns."""

    def __init__(self, uri: str, hide: list[Path]) -> None:
        self.storage = Storage(uri, "call")
        self.hide = hide
        self.payload = b""

    def train_folds(
        self,
        train_fold: Callable[[FoldInputs, FoldJob], None],
        inputs: FoldInputs,
        jobs: Sequence[FoldJob],
    ) -> dict[str, str]:
        self.payload, shipped = self.storage.pack(inputs, jobs)
        for folder in self.hide:
            folder.rename(folder.with_name("hidden-" + folder.name))
        try:
            for job, task in zip(jobs, shipped, strict=True):
                local = self.storage.local(task)
                train_fold(self.storage.unpack(self.payload), local)
                self.storage.put(local)
                self.storage.fetch(job)
        finally:
            for folder in self.hide:
                folder.with_name("hidden-" + folder.name).rename(folder)
            self.storage.clear()
        return {}


def test_inputs_travel_by_uri_and_the_folds_come_back(tmp_path: Path, cache: Path) -> None:
    train, test = store(tmp_path / "train", 120, 0), store(tmp_path / "test", 30, 1)
    zoo = parse_zoo(
        {"folds": 2, "seed": 0, "k": 4, "train": {"epochs": 2, "batch_size": 32},
         "members": [{"name": "logistic"}], "time_limit": 600}
    )  # fmt: skip
    targets = sp.csr_matrix(np.full((10, 4), 0.5, np.float32))
    pseudo = PseudoLabels(test, np.arange(10), targets, t1=0, t2=0, alpha_f=1.0)
    executor = InProcess((tmp_path / "storage").as_uri(), [tmp_path / "train", tmp_path / "test"])
    out = tmp_path / "run"
    assert not fit_oof(zoo, train, None, out / "via", executor=executor, pseudo=pseudo).failed
    assert not fit_oof(zoo, train, None, out / "local", pseudo=pseudo).failed
    assert_same_stores(out / "local", out / "via", ["logistic"])
    for path in (tmp_path / "train", tmp_path / "test", out):
        assert str(path).encode() not in executor.payload  # stores by URI, folds relative
    published = sorted((tmp_path / "storage" / "stores").iterdir())
    assert len(published) == 2  # the training store and the pseudo-labeled rows' store
    for copy in published:
        assert copy.as_uri().encode() in executor.payload
        assert (cache / "stores" / copy.name / "manifest.json").is_file()  # fetched by URI
    assert not (tmp_path / "storage" / "jobs" / "call").exists()  # cleared
    work = (cache / "work" / "call").rglob("*")
    assert not any(path.is_file() for path in work)  # each fold's files uploaded and removed
