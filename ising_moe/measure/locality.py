"""Local routing consistency: segment routing best performance (SRP) and segment cache hit rate (SCH)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .._util import RngLike, as_generator, as_int
from . import _kernels as K
from ._input import _bootstrap_weights, as_routing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalRoutingConsistency:
    """Local routing consistency metrics of arXiv:2505.16056, over windows of consecutive tokens.

    For a window of ``m`` tokens let ``c_e`` be how many of its tokens activated expert ``e``.

    - **SRP** (segment routing best performance): a fixed expert group per window, "the experts
      with ``c_e >= j``", serves all ``m`` tokens. Over all windows, ``M(j) = sum c_e [c_e >= j]``
      activations are covered by ``P(j) = m #{c_e >= j}`` predicted ones, out of ``A = k m W``
      actual ones; SRP is the best F1 over thresholds, ``max_j 2 M(j) / (P(j) + A)``.
    - **SCH** (segment cache best hit rate, moe-lrc's definition) with ``c`` experts: an online
      cache that always fetches the requested experts and, when full, evicts the cached expert
      used least often among the next ``m`` tokens (ties: least recently used); SCH is the
      fraction of activations found in the cache before their token. A first use fills a free slot
      without a miss. Example (top-1, ``[0, 0, 1, 0, 2, 2, 1, 1]``, ``m = 4``): 0.5, 0.875, 1.0 for
      ``c = 1, 2, 3``.
    - **static SCH** (``sch_static``): the best *fixed* cache per window holds its ``c`` most used
      experts, ``sum_windows (top-c sum of c_e) / (k m W)`` (0.55, 0.85, 1.0 in the example, with
      windows of 4): an upper bound for one window, no replacement policy.

    Attributes
    ----------
    segment_lengths : ndarray of shape (n_m,)
    srp, srp_error : ndarray of shape (n_m,)
    best_threshold : ndarray of shape (n_m,)
    sch, sch_error : ndarray of shape (n_m, n_experts)
        Online look-ahead cache (moe-lrc); column ``c - 1`` is the cache of ``c`` experts.
    n_windows : ndarray of shape (n_m,)
    sch_static, sch_static_error : ndarray of shape (n_m, n_experts)
        Best static cache per window.
    """

    segment_lengths: np.ndarray
    srp: np.ndarray
    srp_error: np.ndarray
    best_threshold: np.ndarray
    sch: np.ndarray
    sch_error: np.ndarray
    n_windows: np.ndarray
    sch_static: np.ndarray = None
    sch_static_error: np.ndarray = None


def local_routing_consistency(ids, mask=None, n_experts=None, segment_lengths=(2, 4, 8, 16, 32, 64),
                              n_bootstrap: int = 200, rng: RngLike = None) -> LocalRoutingConsistency:
    """SRP and SCH with bootstrap errors over sequences (see :class:`LocalRoutingConsistency`)."""
    ids, mask, n_experts = as_routing(ids, mask, n_experts)
    n_seq, n, k = ids.shape
    lengths = [as_int(m, "segment length", 1) for m in segment_lengths if m <= n]
    gen = as_generator(rng)
    weights = _bootstrap_weights(n_seq, n_bootstrap, gen)
    srp, srp_err, best_j, sch, sch_err, n_windows, online, online_err = [], [], [], [], [], [], [], []
    kept = []
    for m in lengths:
        match = np.empty((n_seq, m + 1))
        pred = np.empty((n_seq, m + 1))
        top = np.empty((n_seq, n_experts))
        nwin = np.empty(n_seq, dtype=np.int64)
        K.segment_statistics(ids, mask, n_experts, m, match, pred, top, nwin)
        if not nwin.any():  # no complete window of this length in any sequence: nothing to measure
            continue

        def metrics(w):
            windows = w @ nwin
            actual = k * m * windows
            # a bootstrap resample can draw only sequences without a window: nan, dropped by the errors
            with np.errstate(divide="ignore", invalid="ignore"):
                f1 = 2 * (w @ match)[..., 1:] / (m * (w @ pred)[..., 1:] + actual[..., None])
                return f1, (w @ top) / actual[..., None]

        f1, cache = metrics(np.ones(n_seq))
        f1_b, cache_b = metrics(weights)
        kept.append(m)
        drawn = np.isfinite(cache_b).all(axis=1)  # resamples with at least one window
        srp.append(f1.max())
        best_j.append(int(np.argmax(f1)) + 1)
        srp_err.append(f1_b[drawn].max(axis=1).std(ddof=1) if drawn.sum() > 1 else np.nan)
        sch.append(cache)
        sch_err.append(cache_b[drawn].std(axis=0, ddof=1) if drawn.sum() > 1 else np.full(n_experts, np.nan))
        n_windows.append(int(nwin.sum()))
        hits = np.empty((n_seq, n_experts))
        n_access = np.empty(n_seq)
        K.online_cache_hits(ids, mask, n_experts, m, hits, n_access)
        online.append(hits.sum(axis=0) / n_access.sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            online_b = (weights @ hits) / (weights @ n_access)[:, None]
        online_b = online_b[np.isfinite(online_b).all(axis=1)]
        online_err.append(online_b.std(axis=0, ddof=1) if len(online_b) > 1 else np.full(n_experts, np.nan))
    shape = (len(kept), n_experts)
    return LocalRoutingConsistency(np.array(kept, np.int64), np.array(srp), np.array(srp_err), np.array(best_j),
                                   np.array(online).reshape(shape), np.array(online_err).reshape(shape),
                                   np.array(n_windows), np.array(sch).reshape(shape), np.array(sch_err).reshape(shape))
