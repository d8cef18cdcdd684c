"""Generated product-catalogue data (Cdiscount / AliProducts-like) whose clean labels are known.

``webly data synth products-like --out OUT`` writes ``OUT/train`` (noisy ``labels`` and the truth in
``clean_labels``) and ``OUT/test`` (a clean, class-balanced split: ``labels`` are the truth),
both multi-class with:

- long-tailed classes: every class has at least one training product, the other products are
  drawn from a Zipf prior (training rows of the most over the least frequent class: 6,627:1 at
  the defaults, recorded as ``head_tail_ratio``);
- products (the ``group`` column) of 1–4 instances (rows, like several photos of one product):
  product latent ``z_p = s_p * prototype_c + product_noise * e_p``, instance latent
  ``z_p + instance_noise * e_i`` (``e`` standard normal scaled to unit expected norm,
  ``s_p ~ U(0.5, 1.5)`` the product's signal strength), mapped to a float16 ``image`` group by a
  fixed random nonlinear map;
- fine-grained confusable pairs: the prototypes of classes ``2i`` and ``2i + 1`` have cosine
  ``pair_similarity`` and the two class names share their head noun;
- a title per product (``text`` on each of its rows): it names the true class (``"brand colour
  <class name> <attribute> size"``), or is only the *noisy label's* query term (as web data
  retrieved by a query is titled), or is unrelated words; class names (word-like, drawn from the
  seed) and descriptions (a sentence sharing the titles' words) are in the manifest;
- label noise applied per product (a listing carries one category, so all its rows share the
  error), on disjoint sets of products: first ``instance`` (a product's chance grows with its
  difficulty ``1 / SNR = noise_norm / s_p``), then ``pair`` (the confusable twin), then
  ``symmetric`` (a uniform other class). The realized rates and the whole config are in the
  manifest ``source``.

Features are generated and written a chunk of products at a time; only a few numbers a product
(class, instance count, strength, labels) are held for the whole split.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from webly._fs import atomic_output
from webly.core import Task
from webly.data.latent import RandomFeatureMap, class_prototypes, zipf_prior
from webly.data.noise import NoiseKind, confusable_classes, inject, realized_rates
from webly.data.store import DATASETS, Batch, DatasetWriter, FeatureSpec, Layout
from webly.errors import ConfigError

CHUNK_PRODUCTS = 2048
STRENGTH = (0.5, 1.5)
ATTRIBUTES_PER_CLASS = 3
COLOURS = ("red", "blue", "black", "white", "green", "grey", "pink", "navy", "beige", "gold")
SIZES = ("500ml", "1l", "250g", "1kg", "xl", "m", "s", "2 pack", "set of 4", "10 cm", "32 gb")
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


@dataclass(frozen=True)
class ProductsLikeConfig:
    """What `synth_products_like` generates; every field is recorded in the manifest.

    Rates are shares of training products in [0, 1); the three noise rates sum below 1.
    """

    n_classes: int = 1000
    n_products: int = 20_000  # training products (at least one per class)
    test_products_per_class: int = 2
    instances_per_product: tuple[int, int] = (1, 4)  # inclusive range of rows per product
    zipf_exponent: float = 1.0
    latent_dim: int = 64
    image_dim: int = 256
    pair_similarity: float = 0.8
    product_noise: float = 0.6  # spread of products around their class (latent norm units)
    instance_noise: float = 0.4  # spread of a product's instances around it
    symmetric: float = 0.05
    pair: float = 0.1
    instance: float = 0.05
    title_names_class: float = 0.7
    title_query_only: float = 0.15  # the rest of the titles are unrelated words
    seed: int = 0

    def validate(self) -> None:
        """Raise `ConfigError` naming the first impossible setting."""
        if self.n_classes < 2:
            raise ConfigError(f"n_classes is {self.n_classes}; use at least 2 (--classes)")
        if self.n_products < 1:
            raise ConfigError(f"n_products is {self.n_products}; use at least 1 (--products)")
        if self.n_products < self.n_classes:
            raise ConfigError(
                f"{self.n_products} products cannot give each of {self.n_classes} classes one; "
                "use --products >= --classes"
            )
        if self.test_products_per_class < 1:
            raise ConfigError(
                f"test_products_per_class is {self.test_products_per_class}; use at least 1"
            )
        low, high = self.instances_per_product
        if not 1 <= low <= high:
            raise ConfigError(
                f"instances_per_product is {self.instances_per_product}; use (low, high) with "
                "1 <= low <= high, e.g. (1, 4)"
            )
        for name in ("latent_dim", "image_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} is {getattr(self, name)}; use at least 1")
        for name in ("zipf_exponent", "product_noise", "instance_noise"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} is {getattr(self, name)}; use a value >= 0")
        if not 0.0 <= self.pair_similarity < 1.0:
            raise ConfigError(f"pair_similarity is {self.pair_similarity}; use a value in [0, 1)")
        rates = ("symmetric", "pair", "instance", "title_names_class", "title_query_only")
        for name in rates:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(
                    f"{name} rate is {getattr(self, name)}; it must be in [0, 1), e.g. 0.1"
                )
        if self.symmetric + self.pair + self.instance >= 1.0:
            raise ConfigError(
                f"noise rates sum to {self.symmetric + self.pair + self.instance:g}; "
                "symmetric + pair + instance must stay below 1"
            )
        if self.title_names_class + self.title_query_only > 1.0:
            raise ConfigError(
                "title_names_class + title_query_only is "
                f"{self.title_names_class + self.title_query_only:g}; it must be at most 1"
            )


@dataclass(frozen=True)
class ProductsSummary:
    """What `synth_products_like` wrote."""

    out: Path
    train_rows: int
    test_rows: int
    train_products: int
    head_tail_ratio: float  # training rows of the most over the least frequent class
    noise: dict[str, float]  # realized shares of training products per kind, and in total
    seconds: float

    def __str__(self) -> str:
        noise = ", ".join(f"{k} {v:.3f}" for k, v in self.noise.items())
        return (
            f"wrote {self.out}: train {self.train_rows:,} rows ({self.train_products:,} "
            f"products), test {self.test_rows:,} rows; head:tail {self.head_tail_ratio:,.0f}:1; "
            f"noise {noise} in {self.seconds:.1f}s"
        )


@dataclass(frozen=True)
class _World:
    """What every split shares: class prototypes, the feature map, and the words."""

    prototypes: np.ndarray  # (n_classes, latent_dim) float32, unit rows
    feature_map: RandomFeatureMap
    vocabulary: _Vocabulary


@dataclass(frozen=True)
class _Vocabulary:
    """Word-like class names, per-class attribute words, brands and filler words."""

    names: list[str]  # (n_classes,) "modifier head"; pairs (2i, 2i + 1) share the head
    attributes: list[list[str]]  # (n_classes, ATTRIBUTES_PER_CLASS)
    brands: list[str]
    fillers: list[str]

    def descriptions(self) -> list[str]:
        """One sentence per class sharing the words of the titles that name it."""
        out = []
        for name, attributes in zip(self.names, self.attributes, strict=True):
            head = name.split()[-1]
            out.append(
                f"{name}: a {head} that is {', '.join(attributes[:-1])} and {attributes[-1]}, "
                f"listed as {name}."
            )
        return out


@dataclass(frozen=True)
class _Split:
    """The per-product plan of one split (a few numbers a product; features come later)."""

    name: str
    prefix: str  # product id prefix
    classes: np.ndarray  # (n_products,) int64 true class
    labels: np.ndarray  # (n_products,) int64 given class
    instances: np.ndarray  # (n_products,) int64 rows of each product
    strength: np.ndarray  # (n_products,) float64 signal strength s_p
    chunk_seeds: list[np.random.SeedSequence]


def synth_products_like(
    out: str | Path, config: ProductsLikeConfig | None = None, overwrite: bool = False
) -> ProductsSummary:
    """Generate a products-like benchmark into ``out/train`` and ``out/test``.

    Parameters
    ----------
    out : folder to create (atomically: it holds either its old content or both splits)
    config : what to generate (`ProductsLikeConfig`); defaults when None
    overwrite : replace ``out`` if it exists and is not empty

    Returns
    -------
    ProductsSummary
        Rows written, the realized head:tail ratio and noise rates. The same config gives the
        same bytes.
    """
    config = config or ProductsLikeConfig()
    config.validate()
    started = time.perf_counter()
    world_seed, train_seed, test_seed = np.random.SeedSequence(config.seed).spawn(3)
    world = _make_world(config, np.random.default_rng(world_seed))
    train, noise = _train_split(config, world, train_seed)
    test = _test_split(config, test_seed)
    rows_per_class = np.bincount(train.classes, weights=train.instances, minlength=config.n_classes)
    ratio = float(rows_per_class.max() / rows_per_class.min())
    base_layout = Layout(
        features=(FeatureSpec("image", config.image_dim, "float16"),),
        n_classes=config.n_classes,
        task=Task.MULTICLASS,
        class_names=tuple(world.vocabulary.names),
        class_descriptions=tuple(world.vocabulary.descriptions()),
        has_group=True,
        has_text=True,
    )
    facts = {"generator": "products-like", "config": dataclasses.asdict(config)}
    with atomic_output(out, overwrite, kind=DATASETS) as tmp:
        for split, layout, extra in (
            (
                train,
                dataclasses.replace(base_layout, has_clean_labels=True),
                {"noise": noise, "head_tail_ratio": ratio},
            ),
            (test, base_layout, {}),
        ):
            source = {**facts, "split": split.name, **extra}
            with DatasetWriter(tmp / split.name, layout, source=source) as writer:
                for batch in _batches(config, world, split, layout.has_clean_labels):
                    writer.write_batch(batch, source=f"products-like {split.name}")
    return ProductsSummary(
        out=Path(out),
        train_rows=int(train.instances.sum()),
        test_rows=int(test.instances.sum()),
        train_products=int(train.classes.size),
        head_tail_ratio=ratio,
        noise=noise,
        seconds=time.perf_counter() - started,
    )


def _make_world(config: ProductsLikeConfig, rng: np.random.Generator) -> _World:
    prototypes = class_prototypes(
        config.n_classes, config.latent_dim, rng, pair_similarity=config.pair_similarity
    )
    feature_map = RandomFeatureMap(config.latent_dim, config.image_dim, rng)
    return _World(prototypes, feature_map, _make_vocabulary(config.n_classes, rng))


def _make_vocabulary(n_classes: int, rng: np.random.Generator) -> _Vocabulary:
    n_heads = (n_classes + 1) // 2
    words = _pseudo_words(rng, n_heads + n_classes * (1 + ATTRIBUTES_PER_CLASS) + 80)
    heads, rest = words[:n_heads], words[n_heads:]
    modifiers, rest = rest[:n_classes], rest[n_classes:]
    n_attr = n_classes * ATTRIBUTES_PER_CLASS
    attributes, rest = rest[:n_attr], rest[n_attr:]
    return _Vocabulary(
        names=[f"{modifiers[c]} {heads[c // 2]}" for c in range(n_classes)],
        attributes=[
            attributes[c * ATTRIBUTES_PER_CLASS : (c + 1) * ATTRIBUTES_PER_CLASS]
            for c in range(n_classes)
        ],
        brands=rest[:30],
        fillers=rest[30:],
    )


def _pseudo_words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct pronounceable words of 2–4 consonant-vowel syllables."""
    syllables = [c + v for c in CONSONANTS for v in VOWELS]
    seen: dict[str, None] = {}
    while len(seen) < n:
        need = n - len(seen)
        lengths = rng.choice([2, 3, 4], size=need, p=[0.35, 0.45, 0.2])
        picks = rng.integers(0, len(syllables), size=(need, 4))
        for length, row in zip(lengths, picks, strict=True):
            seen.setdefault("".join(syllables[s] for s in row[:length]), None)
    return list(seen)[:n]


def _train_split(
    config: ProductsLikeConfig, world: _World, seed: np.random.SeedSequence
) -> tuple[_Split, dict[str, float]]:
    """Plan the training products (long-tailed classes) and inject their label noise."""
    plan_seed, noise_seed, chunk_seed = seed.spawn(3)
    rng = np.random.default_rng(plan_seed)
    extra = rng.multinomial(
        config.n_products - config.n_classes,
        zipf_prior(config.n_classes, config.zipf_exponent),
    )
    classes = rng.permutation(np.repeat(np.arange(config.n_classes), 1 + extra))
    instances, strength = _product_draws(config, rng, classes.size)
    noise_norm = float(np.hypot(config.product_noise, config.instance_noise))
    labels, noise = _noisy_labels(
        config, world, classes, difficulty=noise_norm / strength, seed=noise_seed
    )
    rows_changed = float(instances[labels != classes].sum() / instances.sum())
    noise["rows_changed"] = rows_changed
    n_chunks = -(-classes.size // CHUNK_PRODUCTS)
    split = _Split("train", "p", classes, labels, instances, strength, chunk_seed.spawn(n_chunks))
    return split, noise


def _test_split(config: ProductsLikeConfig, seed: np.random.SeedSequence) -> _Split:
    """Plan the clean test products: ``test_products_per_class`` of every class."""
    plan_seed, chunk_seed = seed.spawn(2)
    rng = np.random.default_rng(plan_seed)
    classes = rng.permutation(
        np.repeat(np.arange(config.n_classes), config.test_products_per_class)
    )
    instances, strength = _product_draws(config, rng, classes.size)
    n_chunks = -(-classes.size // CHUNK_PRODUCTS)
    return _Split("test", "t", classes, classes, instances, strength, chunk_seed.spawn(n_chunks))


def _product_draws(
    config: ProductsLikeConfig, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(n,)`` instance counts and ``(n,)`` signal strengths of ``n`` products."""
    low, high = config.instances_per_product
    return rng.integers(low, high + 1, size=n), rng.uniform(*STRENGTH, size=n)


def _noisy_labels(
    config: ProductsLikeConfig,
    world: _World,
    classes: np.ndarray,
    difficulty: np.ndarray,
    seed: np.random.SeedSequence,
) -> tuple[np.ndarray, dict[str, float]]:
    """Given labels of products of true ``classes`` and the realized share of each noise kind.

    The kinds hit disjoint products: ``instance`` first over all products, then ``pair`` and
    ``symmetric`` over the products still clean, each at the rate that makes its share of all
    products the requested one.
    """
    n, n_classes = classes.size, config.n_classes
    confusable = confusable_classes(world.prototypes)
    labels = classes.copy()
    clean = np.ones(n, dtype=bool)
    realized: dict[str, float] = {}
    kinds: tuple[NoiseKind, ...] = ("instance", "pair", "symmetric")
    for kind, rate, kind_seed in zip(
        kinds,
        (config.instance, config.pair, config.symmetric),
        seed.spawn(3),
        strict=True,
    ):
        rows = np.flatnonzero(clean)
        # The share of the still-clean products that makes ``rate`` of all products; clipped
        # below 1 for when instance noise overshot its (expected) rate near a sum of 1.
        local_rate = min(rate * n / rows.size, 1.0 - 1e-9)
        onehot = sp.csr_matrix(
            (np.ones(rows.size, np.float32), labels[rows], np.arange(rows.size + 1)),
            shape=(rows.size, n_classes),
        )
        noisy = inject(
            onehot,
            kind,
            local_rate,
            kind_seed,
            confusable=confusable,
            difficulty=difficulty[rows],
        )
        new = noisy.indices.astype(np.int64)
        changed = new != labels[rows]
        labels[rows] = new
        clean[rows[changed]] = False
        realized[kind] = float(changed.sum() / n)
    truth = sp.csr_matrix((np.ones(n, np.float32), classes, np.arange(n + 1)), shape=(n, n_classes))
    given = sp.csr_matrix((np.ones(n, np.float32), labels, np.arange(n + 1)), shape=(n, n_classes))
    realized["products_changed"] = realized_rates(given, truth)["rows_changed"]
    return labels, realized


def _batches(
    config: ProductsLikeConfig, world: _World, split: _Split, with_clean: bool
) -> Iterator[Batch]:
    """The rows of ``split``, ``CHUNK_PRODUCTS`` products at a time, each chunk drawn from its
    own seed."""
    vocabulary, dim = world.vocabulary, config.latent_dim
    for index, chunk_seed in enumerate(split.chunk_seeds):
        rng = np.random.default_rng(chunk_seed)
        products = np.arange(
            index * CHUNK_PRODUCTS, min((index + 1) * CHUNK_PRODUCTS, split.classes.size)
        )
        classes, counts = split.classes[products], split.instances[products]
        latent = split.strength[products, None] * world.prototypes[classes]  # (P, dim)
        latent = latent + config.product_noise * rng.normal(size=latent.shape) / np.sqrt(dim)
        owner = np.repeat(np.arange(products.size), counts)  # (R,) product of each row
        rows = latent[owner] + config.instance_noise * rng.normal(size=(owner.size, dim)) / np.sqrt(
            dim
        )
        titles = _titles(rng, vocabulary, config, classes, split.labels[products])
        product_ids = [f"{split.prefix}{p:07d}" for p in products]
        position = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
        yield Batch(
            ids=[f"{product_ids[o]}-{k}" for o, k in zip(owner, position, strict=True)],
            labels=list(split.labels[products][owner, None]),
            clean_labels=list(classes[owner, None]) if with_clean else None,
            features={"image": world.feature_map(rows)},
            groups=[product_ids[o] for o in owner],
            texts=[titles[o] for o in owner],
        )


def _titles(
    rng: np.random.Generator,
    vocabulary: _Vocabulary,
    config: ProductsLikeConfig,
    classes: np.ndarray,
    labels: np.ndarray,
) -> list[str]:
    """One title per product: naming its true class, only its given label's query term, or
    unrelated words."""
    kind = rng.choice(
        3,
        size=classes.size,
        p=[
            config.title_names_class,
            config.title_query_only,
            1.0 - config.title_names_class - config.title_query_only,
        ],
    )
    brand = rng.integers(0, len(vocabulary.brands), size=classes.size)
    colour = rng.integers(0, len(COLOURS), size=classes.size)
    size = rng.integers(0, len(SIZES), size=classes.size)
    attribute = rng.integers(0, ATTRIBUTES_PER_CLASS, size=classes.size)
    fillers = rng.integers(0, len(vocabulary.fillers), size=(classes.size, 2))
    titles = []
    for i in range(classes.size):
        if kind[i] == 0:
            words = [
                vocabulary.brands[brand[i]],
                COLOURS[colour[i]],
                vocabulary.names[classes[i]],
                vocabulary.attributes[classes[i]][attribute[i]],
                SIZES[size[i]],
            ]
        elif kind[i] == 1:
            words = [vocabulary.names[labels[i]]]
        else:
            words = [
                vocabulary.brands[brand[i]],
                COLOURS[colour[i]],
                *(vocabulary.fillers[f] for f in fillers[i]),
                SIZES[size[i]],
            ]
        titles.append(" ".join(words))
    return titles
