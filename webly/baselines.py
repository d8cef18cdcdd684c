"""Two reference points every model must beat: the class prior and logistic regression.

Both are deterministic (no random initialisation) so their figures are exactly reproducible.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.special import expit


def class_prior_scores(train_labels: sp.csr_matrix, n_rows: int) -> np.ndarray:
    """Score every row with each class's training frequency: ``(n_rows, n_classes)`` float32."""
    prior = np.asarray(train_labels.mean(axis=0), dtype=np.float32).ravel()
    return np.broadcast_to(prior, (n_rows, prior.size)).copy()


def fit_logistic(
    x: np.ndarray,
    labels: sp.csr_matrix,
    *,
    l2: float = 1e-4,
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest logistic regression on standardised features, fitted jointly by L-BFGS.

    Parameters
    ----------
    x : (n_samples, n_features) float32 features.
    labels : (n_samples, n_classes) CSR targets in [0, 1] (multi-label).
    l2 : weight of the squared-norm penalty on the weights, per sample.

    Returns
    -------
    ``(weight, bias)``: ``(n_features, n_classes)`` and ``(n_classes,)`` float32, to be applied
    to raw (unstandardised) features by `predict_logistic`.
    """
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    inputs = torch.from_numpy((x - mean) / std)
    targets = torch.from_numpy(labels.toarray().astype(np.float32))
    weight = torch.zeros(x.shape[1], labels.shape[1], requires_grad=True)
    bias = torch.zeros(labels.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=max_iter, history_size=10, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = inputs @ weight + bias  # (N, C)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        loss = loss * labels.shape[1] + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    w = weight.detach().numpy() / std[:, None]
    b = bias.detach().numpy() - mean @ w
    return w.astype(np.float32), b.astype(np.float32)


def predict_logistic(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Probabilities ``(n_samples, n_classes)`` float32 of a `fit_logistic` model."""
    return expit(x @ weight + bias).astype(np.float32)
