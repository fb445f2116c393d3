"""Load balance across experts and static (position-independent) routing."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from .._util import RngLike, as_generator
from ._input import _bootstrap_weights, as_routing
from .rates import _mi_bits, position_rates

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadBalance:
    """Entropy of the expert distribution and its KL divergence to uniform (the paper's MEM), in nats.

    Attributes
    ----------
    entropy_by_position, entropy_by_position_error : ndarray of shape (n_positions,)
        Miller-Madow corrected entropy at each position, delta-method error.
    kl_by_position : ndarray of shape (n_positions,)
        ``ln E - H_i``.
    entropy, entropy_error, kl_uniform, kl_uniform_error : float
        Pooled over positions; bootstrap errors over sequences.
    """

    entropy_by_position: np.ndarray
    entropy_by_position_error: np.ndarray
    kl_by_position: np.ndarray
    entropy: float
    entropy_error: float
    kl_uniform: float
    kl_uniform_error: float


def _entropy(counts, axis=-1):
    total = counts.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / total
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=axis)
    occupied = (counts > 0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):  # no token at all (a fully masked position): NaN
        return np.where(occupied > 0, h + (occupied - 1) / (2 * np.squeeze(total, axis=axis)), np.nan), p


def load_balance(ids, mask=None, n_experts=None, n_bootstrap: int = 200, rng: RngLike = None) -> LoadBalance:
    """Entropy and KL-to-uniform of the expert distribution, by position and pooled."""
    ids, mask, n_experts = as_routing(ids, mask, n_experts)
    rates = position_rates(ids, mask, n_experts)
    h_pos, p = _entropy(rates.counts)
    with np.errstate(invalid="ignore", divide="ignore"):  # positions without a valid token: NaN, not a warning
        logp = np.where(p > 0, np.log(np.where(p > 0, p, 1)), 0.0)
        second = (p * logp**2).sum(axis=1)
        h_err = np.sqrt(np.maximum(second - (-(p * logp).sum(axis=1)) ** 2, 0) / (rates.counts.sum(axis=1)))
    seq_counts = np.zeros((ids.shape[0], n_experts))
    s_idx = np.broadcast_to(np.arange(ids.shape[0])[:, None, None], ids.shape)
    valid = np.broadcast_to(mask[:, :, None], ids.shape)
    np.add.at(seq_counts, (s_idx[valid], ids[valid]), 1.0)
    h_all = float(_entropy(seq_counts.sum(axis=0))[0])
    gen = as_generator(rng)
    boot = _entropy(_bootstrap_weights(ids.shape[0], n_bootstrap, gen) @ seq_counts)[0]
    log_e = math.log(n_experts)
    return LoadBalance(h_pos, h_err, log_e - h_pos, h_all, float(np.std(boot, ddof=1)), log_e - h_all,
                       float(np.std(boot, ddof=1)))


@dataclass(frozen=True)
class StaticRouting:
    """How well position alone predicts the routing (held-out half of the sequences).

    Attributes
    ----------
    accuracy : float
        Mean overlap ``|predicted ∩ actual| / k`` of the position-only router (each position's k
        most frequent experts in the training half) on the test half.
    accuracy_error : float
        Binomial-style standard error over test tokens.
    chance : float
        The same for the best position-free router (the k globally most frequent experts).
    entropy_explained : float
        ``I(expert; position) / H(expert)`` of the top-1 expert (Miller-Madow corrected, full data).
    """

    accuracy: float
    accuracy_error: float
    chance: float
    entropy_explained: float


def static_routing(ids, mask=None, n_experts=None, rng: RngLike = None) -> StaticRouting:
    """The best static (position-only) router and the fraction of routing entropy it explains."""
    ids, mask, n_experts = as_routing(ids, mask, n_experts)
    n_seq, n, k = ids.shape
    gen = as_generator(rng)
    order = gen.permutation(n_seq)
    train, test = order[: n_seq // 2], order[n_seq // 2:]
    train_counts = position_rates(ids[train], mask[train], n_experts).counts
    top_pos = np.argsort(-train_counts, axis=1, kind="stable")[:, :k]
    top_all = np.argsort(-train_counts.sum(axis=0), kind="stable")[:k]
    t_ids, t_mask = ids[test], mask[test]
    hit_pos = (t_ids[:, :, :, None] == top_pos[None, :, None, :]).any(axis=-1).sum(axis=-1) / k
    hit_all = np.isin(t_ids, top_all).sum(axis=-1) / k
    acc = float(hit_pos[t_mask].mean())
    err = float(hit_pos[t_mask].std(ddof=1) / math.sqrt(t_mask.sum()))
    table = position_rates(ids[:, :, :1], mask, n_experts).counts
    h_expert = float(_entropy(table.sum(axis=0))[0])
    mi = _mi_bits(table) * math.log(2)
    occupied_rows, occupied_cols = (table.sum(1) > 0).sum(), (table.sum(0) > 0).sum()
    mi -= (occupied_rows - 1) * (occupied_cols - 1) / (2 * table.sum())
    return StaticRouting(acc, err, float(hit_all[t_mask].mean()), float(max(mi, 0.0) / h_expert) if h_expert > 0
                         else 0.0)
