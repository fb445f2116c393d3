"""Positional probes: how well position can be decoded from routing (scikit-learn)."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from .._util import RngLike, as_generator
from ..errors import require

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    """Cross-validated accuracy of a linear probe for position.

    Attributes
    ----------
    features : str
        ``"experts"`` (one-hot over layers and top-k) or ``"hidden:<layer>"``.
    target : str
        ``"parity"`` or ``"block:<n_blocks>"``.
    n_classes : int
    accuracy, accuracy_sd : float
        Mean and standard deviation over the folds.
    chance : float
        Frequency of the most common class.
    n_tokens : int
    """

    features: str
    target: str
    n_classes: int
    accuracy: float
    accuracy_sd: float
    chance: float
    n_tokens: int


def expert_features(experts, mask, n_experts: int, max_tokens: int = 20000, rng: RngLike = None):
    """One-hot features of sampled tokens: for each layer, the multi-hot of its top-k experts.

    Parameters
    ----------
    experts : ndarray of int, shape (n_sequences, n_layers, n_positions, top_k)
    mask : ndarray of bool, shape (n_sequences, n_positions)

    Returns
    -------
    features : ndarray of float32, shape (n_tokens, n_layers * n_experts)
    positions : ndarray of int, shape (n_tokens,)
    tokens : tuple of ndarray
        ``(sequence, position)`` indices of the sampled tokens.
    """
    gen = as_generator(rng)
    s_idx, p_idx = np.nonzero(mask)
    if s_idx.size > max_tokens:
        pick = np.sort(gen.choice(s_idx.size, size=max_tokens, replace=False))
        s_idx, p_idx = s_idx[pick], p_idx[pick]
    n_layers = experts.shape[1]
    feats = np.zeros((s_idx.size, n_layers * n_experts), dtype=np.float32)
    rows = np.arange(s_idx.size)
    for layer in range(n_layers):
        for rank in range(experts.shape[3]):
            feats[rows, layer * n_experts + experts[s_idx, layer, p_idx, rank]] = 1.0
    return feats, p_idx, (s_idx, p_idx)


def positional_probe(features, positions, n_positions: int, block_counts=(2, 8, 32, 128), folds: int = 3,
                     label: str = "experts", rng: RngLike = None) -> list[ProbeResult]:
    """Multinomial logistic regression (scikit-learn) with stratified k-fold CV predicting the token
    parity and the position block (``n_blocks`` equal blocks) from ``features``."""
    require("sklearn", "probe", "the positional probe")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    gen = as_generator(rng)
    seed = int(gen.integers(2**31))
    positions = np.asarray(positions)
    targets = [("parity", positions % 2)]
    targets += [(f"block:{b}", (positions * b) // n_positions) for b in block_counts if b <= n_positions]
    out = []
    for name, y in targets:
        classes, y = np.unique(y, return_inverse=True)
        counts = np.bincount(y)
        if counts.min() < folds or classes.size < 2:
            log.warning("probe %s skipped: a class has fewer than %d tokens", name, folds)
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=1.0))
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores = cross_val_score(model, features, y, cv=cv, scoring="accuracy")
        out.append(ProbeResult(label, name, int(classes.size), float(scores.mean()), float(scores.std(ddof=1)),
                               float(counts.max() / counts.sum()), int(y.size)))
    return out
