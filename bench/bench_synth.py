"""What the YouTube-8M-like benchmark demonstrates, measured in one run (issue 3).

1. Video level (defaults): class prior < logistic regression < MLP in GAP@20 on the clean test
   split; audio-only and rgb-only MLPs both learn and disagree.
2. Frame level: a per-frame MLP max-pooled over frames beats the MLP on the frame means on the
   classes shown in short segments.
3. Training on noisy labels scores lower on the clean test split than training on the clean
   labels, by a margin that grows with the rate of missing labels.
4. Realized vs requested noise rates, and the long-tailed class frequencies (a log-binned text
   histogram, and an SVG plot written by hand to bench/class_frequency.svg: matplotlib is not
   installed).

Usage: ``.venv/bin/python bench/bench_synth.py [--videos 4000] [--classes 200]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from webly.baselines import class_prior_scores, fit_logistic, predict_logistic
from webly.data import Dataset
from webly.data.synth import YT8MLikeConfig, synth_yt8m_like, yt8m_like_world
from webly.metrics import gap_at_k

SVG = Path(__file__).resolve().parent / "class_frequency.svg"


def fit_mlp(
    x: np.ndarray, labels: sp.csr_matrix, seed: int, epochs: int = 30, hidden: int = 512
) -> torch.nn.Module:
    """A 1-hidden-layer MLP on standardised features, trained with Adam on the BCE loss."""
    torch.manual_seed(seed)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    model = torch.nn.Sequential(
        Standardize(mean, std),
        torch.nn.Linear(x.shape[1], hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(hidden, labels.shape[1]),
    )
    _train(model, torch.from_numpy(x), labels, epochs, seed)
    return model


class Standardize(torch.nn.Module):
    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("std", torch.from_numpy(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class FrameModel(torch.nn.Module):
    """Per-frame MLP, max-pooled over the valid frames, then a linear classifier."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, n_classes: int, hidden: int) -> None:
        super().__init__()
        self.norm = Standardize(mean, std)
        self.frame = torch.nn.Sequential(torch.nn.Linear(mean.size, hidden), torch.nn.ReLU())
        self.head = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames, lengths = x[:, :-1].unflatten(1, (-1, self.norm.mean.numel())), x[:, -1]
        hidden = self.frame(self.norm(frames))  # (B, T, H)
        valid = torch.arange(frames.shape[1])[None, :] < lengths[:, None]  # (B, T)
        pooled = hidden.masked_fill(~valid[..., None], -1e4).amax(dim=1)  # (B, H)
        return self.head(pooled)


def fit_frame_model(
    frames: np.ndarray, lengths: np.ndarray, labels: sp.csr_matrix, seed: int, epochs: int = 20
) -> torch.nn.Module:
    torch.manual_seed(seed)
    valid = np.arange(frames.shape[1])[None, :] < lengths[:, None]
    kept = frames[valid]
    model = FrameModel(kept.mean(axis=0), kept.std(axis=0) + 1e-6, labels.shape[1], 512)
    _train(model, _pack(frames, lengths), labels, epochs, seed)
    return model


def _pack(frames: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
    """(N, T, D) frames and (N,) lengths as one (N, T * D + 1) tensor, for one batching path."""
    flat = frames.reshape(frames.shape[0], -1)
    return torch.from_numpy(np.concatenate([flat, lengths[:, None].astype(np.float32)], axis=1))


def _train(
    model: torch.nn.Module, x: torch.Tensor, labels: sp.csr_matrix, epochs: int, seed: int
) -> None:
    targets = torch.from_numpy(labels.toarray().astype(np.float32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(x.shape[0], generator=generator).split(128):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(x[batch]), targets[batch], reduction="sum"
            ) / len(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


def predict(model: torch.nn.Module, x: np.ndarray | torch.Tensor) -> np.ndarray:
    inputs = torch.as_tensor(x)
    with torch.no_grad():
        return torch.cat([model(b) for b in inputs.split(512)]).sigmoid().numpy()


def gap_on(scores: np.ndarray, labels: sp.csr_matrix, classes: np.ndarray) -> float:
    """GAP@20 over the given classes only (scores and labels restricted to them)."""
    return gap_at_k(scores[:, classes], labels[:, classes], k=20)


def video_level(args: argparse.Namespace, work: Path) -> None:
    config = YT8MLikeConfig(videos=args.videos, classes=args.classes, seed=args.seed)
    summary = synth_yt8m_like(work / "video", config, overwrite=True)
    print(f"\n{summary}\n")
    train, test = Dataset.open(work / "video/train"), Dataset.open(work / "video/test")
    world = yt8m_like_world(config)
    truth = test.clean_labels
    assert truth is not None
    rows_train, rows_test = np.arange(len(train)), np.arange(len(test))
    x, x_test = train.features(rows_train), test.features(rows_test)
    audio_cls, rgb_cls = np.flatnonzero(world.modality == 2), np.flatnonzero(world.modality == 1)
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    begin = time.perf_counter()
    scores["class prior"] = class_prior_scores(train.labels, len(test))
    weight, bias = fit_logistic(x, train.labels)
    scores["logistic regression"] = predict_logistic(x_test, weight, bias)
    seconds["logistic regression"] = time.perf_counter() - begin
    for name, groups in (
        ("MLP (rgb + audio)", ("mean_rgb", "mean_audio")),
        ("MLP audio only", ("mean_audio",)),
        ("MLP rgb only", ("mean_rgb",)),
    ):
        begin = time.perf_counter()
        model = fit_mlp(train.features(rows_train, groups), train.labels, args.seed)
        scores[name] = predict(model, test.features(rows_test, groups))
        seconds[name] = time.perf_counter() - begin
    print(f"### Video level: {args.videos:,} train videos (noisy labels), {len(test):,} test\n")
    print("| model | GAP@20 clean test | on audio-only classes | on rgb-only classes | s |")
    print("|---|---:|---:|---:|---:|")
    for name, s in scores.items():
        print(
            f"| {name} | {gap_at_k(s, truth, k=20):.4f} | {gap_on(s, truth, audio_cls):.4f} | "
            f"{gap_on(s, truth, rgb_cls):.4f} | {seconds.get(name, 0.0):.1f} |"
        )
    top_audio = scores["MLP audio only"].argmax(axis=1)
    top_rgb = scores["MLP rgb only"].argmax(axis=1)
    print(
        f"\naudio-only vs rgb-only MLP: top-1 differs on {np.mean(top_audio != top_rgb):.1%} of "
        f"test videos; top-1 is a true label for {_hit(top_audio, truth):.1%} (audio) and "
        f"{_hit(top_rgb, truth):.1%} (rgb)\n"
    )
    histogram(train.clean_labels, config.classes)


def _hit(top: np.ndarray, truth: sp.csr_matrix) -> float:
    return float(np.asarray(truth[np.arange(top.size), top]).mean())


def frame_level(args: argparse.Namespace, work: Path) -> None:
    config = YT8MLikeConfig(
        videos=args.frame_videos, classes=args.classes, max_frames=args.max_frames, seed=args.seed
    )
    summary = synth_yt8m_like(work / "frame", config, overwrite=True)
    print(f"\n{summary}\n")
    train, test = Dataset.open(work / "frame/train"), Dataset.open(work / "frame/test")
    world = yt8m_like_world(config)
    truth = test.clean_labels
    assert truth is not None
    rows_train, rows_test = np.arange(len(train)), np.arange(len(test))
    means = ("mean_rgb", "mean_audio")
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    begin = time.perf_counter()
    weight, bias = fit_logistic(train.features(rows_train, means), train.labels)
    scores["logistic on frame means"] = predict_logistic(
        test.features(rows_test, means), weight, bias
    )
    seconds["logistic on frame means"] = time.perf_counter() - begin
    begin = time.perf_counter()
    model = fit_mlp(train.features(rows_train, means), train.labels, args.seed)
    scores["MLP on frame means"] = predict(model, test.features(rows_test, means))
    seconds["MLP on frame means"] = time.perf_counter() - begin
    begin = time.perf_counter()
    frames, lengths = train.frames(rows_train)
    frame_model = fit_frame_model(frames, lengths, train.labels, args.seed, args.frame_epochs)
    del frames
    frames, lengths = test.frames(rows_test)
    scores["per-frame MLP, max-pooled"] = predict(frame_model, _pack(frames, lengths))
    seconds["per-frame MLP, max-pooled"] = time.perf_counter() - begin
    short, long = np.flatnonzero(world.short), np.flatnonzero(~world.short)
    print(
        f"### Frame level: {args.frame_videos:,} train videos of "
        f"{config.min_frames}-{config.max_frames} frames, {len(test):,} test\n"
    )
    print("| model | GAP@20 clean test | on short-segment classes | on the others | s |")
    print("|---|---:|---:|---:|---:|")
    for name, s in scores.items():
        print(
            f"| {name} | {gap_at_k(s, truth, k=20):.4f} | {gap_on(s, truth, short):.4f} | "
            f"{gap_on(s, truth, long):.4f} | {seconds[name]:.1f} |"
        )


def noise_sweep(args: argparse.Namespace, work: Path) -> None:
    print("\n### Noisy vs clean training labels (video level, logistic regression and MLP)\n")
    print(
        "| missing asked | realized missing | realized spurious | logistic noisy | "
        "logistic clean | margin | MLP noisy | MLP clean | margin |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    clean_scores: dict[str, float] = {}
    for missing in args.sweep:
        config = YT8MLikeConfig(
            videos=args.videos, classes=args.classes, seed=args.seed, missing=missing
        )
        synth_yt8m_like(work / "sweep", config, overwrite=True)
        train, test = Dataset.open(work / "sweep/train"), Dataset.open(work / "sweep/test")
        truth, clean = test.clean_labels, train.clean_labels
        assert truth is not None and clean is not None
        x, x_test = train.features(np.arange(len(train))), test.features(np.arange(len(test)))
        noisy: dict[str, float] = {}
        for name, labels in (("noisy", train.labels), ("clean", clean)):
            if name == "clean" and clean_scores:
                continue  # the truth and features do not depend on the noise rates
            weight, bias = fit_logistic(x, labels)
            mlp = fit_mlp(x, labels, args.seed)
            result = {
                "logistic": gap_at_k(predict_logistic(x_test, weight, bias), truth, k=20),
                "mlp": gap_at_k(predict(mlp, x_test), truth, k=20),
            }
            (clean_scores if name == "clean" else noisy).update(result)
        rates = train.manifest["source"]["noise"]["realized"]
        print(
            f"| {missing:.1f} | {rates['missing']:.3f} | {rates['spurious']:.3f} | "
            f"{noisy['logistic']:.4f} | {clean_scores['logistic']:.4f} | "
            f"{clean_scores['logistic'] - noisy['logistic']:+.4f} | {noisy['mlp']:.4f} | "
            f"{clean_scores['mlp']:.4f} | {clean_scores['mlp'] - noisy['mlp']:+.4f} |"
        )


def histogram(labels: sp.csr_matrix | None, n_classes: int) -> None:
    """Print a log-binned histogram of videos per class and write it as an SVG bar chart."""
    assert labels is not None
    counts = np.bincount(labels.indices, minlength=n_classes)
    edges = 2 ** np.arange(0, int(np.log2(max(counts.max(), 1))) + 2)
    per_bin = np.histogram(counts, bins=np.concatenate([[0], edges]))[0]
    print("### Classes by number of train videos (clean labels, log-binned)\n")
    print("```")
    for lo, hi, n in zip(np.concatenate([[0], edges[:-1]]), edges, per_bin, strict=True):
        print(f"{lo:>6}-{hi - 1:<6} {n:>5} {'#' * round(60 * n / per_bin.max())}")
    print("```")
    width, height, bar = 40 * len(per_bin) + 60, 260, 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="10" y="16">classes by number of train videos ({n_classes} classes, '
        f"Zipf-like; x: videos per class, log bins)</text>",
    ]
    for i, (lo, n) in enumerate(zip(np.concatenate([[0], edges[:-1]]), per_bin, strict=True)):
        h = 180 * n / per_bin.max()
        x = 40 + 40 * i
        parts.append(
            f'<rect x="{x}" y="{220 - h:.1f}" width="{bar}" height="{h:.1f}" fill="#47a"/>'
        )
        parts.append(f'<text x="{x}" y="{214 - h:.1f}">{n}</text>')
        parts.append(f'<text x="{x}" y="236">{lo}+</text>')
    parts.append("</svg>")
    SVG.write_text("\n".join(parts) + "\n")
    print(f"\n(written as an SVG bar chart to {SVG.name})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4000)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--frame-videos", type=int, default=4000)
    parser.add_argument("--max-frames", type=int, default=60)
    parser.add_argument("--frame-epochs", type=int, default=15)
    parser.add_argument("--sweep", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", nargs="+", default=["video", "frame", "noise"])
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        if "video" in args.parts:
            video_level(args, Path(tmp))
        if "frame" in args.parts:
            frame_level(args, Path(tmp))
        if "noise" in args.parts:
            noise_sweep(args, Path(tmp))


if __name__ == "__main__":
    main()
