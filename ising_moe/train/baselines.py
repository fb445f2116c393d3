r"""Held-out baselines of the model organisms: unigram and interpolated Kneser-Ney n-gram models.

No torch here (numpy only). The baselines predict exactly the targets of the model's validation
loss, with the same BPE tokens:

- **causal LM** (OLMoE): every validation window (:func:`~ising_moe.train.corpus.make_windows`),
  targets at positions ``t = 1 .. len - 1`` of the window, predicted from the tokens of the same
  window before ``t`` (a window never sees another window's text, for the model or the baseline);
- **span corruption** (Switch): the tokens of the removed spans of each validation window (the
  sentinels and ``</s>`` of the target, which the model predicts almost for free, are left out);
  the baseline predicts the span token at window position ``j`` from the original tokens before
  ``j`` (the model sees them too: in its encoder input or earlier in the same span).

The n-gram models are fitted on the training split's documents (counts never cross a document
boundary). Interpolated Kneser-Ney (Chen & Goodman 1999, one absolute discount per order,
:math:`D_k = n_1 / (n_1 + 2 n_2)` from the count-of-counts of that order):

.. math::

    P_k(w \mid h) = \frac{\max(a_k(h w) - D_k, 0)}{A_k(h)}
                    + \frac{D_k \, T_k(h)}{A_k(h)} \, P_{k-1}(w \mid h'),
    \qquad P_0(w) = 1 / V,

with ``h'`` the history without its oldest token, :math:`A_k(h) = \sum_w a_k(h w)`,
:math:`T_k(h) = |\{w : a_k(h w) > 0\}|`, and :math:`P_k(w \mid h) = P_{k-1}(w \mid h')` for a
history never seen (:math:`A_k(h) = 0`). The counts :math:`a_k` are raw counts at the model's
highest order and continuation counts (the number of distinct tokens seen before the k-gram)
below it. A target with fewer history tokens than the order needs (position 1 of a window, for
the trigram) is predicted by the Kneser-Ney model of the order its history allows (raw counts
at that order). The "unigram" baseline is the order-1 model: absolute discounting interpolated
with the uniform distribution, so that no token has probability zero.

Uncertainty: bootstrap over held-out **documents** (the windows of a document are not
independent); differences between two predictors of the same targets are paired (the same
resampled documents for both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidParameterError
from ..measure._input import _bootstrap_weights

__all__ = [
    "Estimate",
    "KneserNey",
    "TargetSet",
    "bin_totals",
    "causal_targets",
    "document_estimate",
    "document_totals",
    "paired_difference",
    "span_targets",
]

#: largest order whose keys fit in int64 for a vocabulary of 2**12 (V**order < 2**63)
_MAX_ORDER = 5


@dataclass(frozen=True)
class Estimate:
    """A held-out cross-entropy (or a difference of two) with a document-bootstrap 95% interval.

    Attributes
    ----------
    value : float
        Nats per target token: total negative log-likelihood over total number of targets.
    low, high : float
        2.5% and 97.5% percentiles of the bootstrap replicates.
    n_documents, n_targets : int
    """

    value: float
    low: float
    high: float
    n_documents: int
    n_targets: int

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high,
                "n_documents": self.n_documents, "n_targets": self.n_targets}


@dataclass(frozen=True)
class TargetSet:
    """The held-out targets, flattened over windows.

    Attributes
    ----------
    target : ndarray of int64, shape (n,)
        Token to predict.
    history : ndarray of int64, shape (n, max_history)
        The ``max_history`` tokens before it in the original window, oldest first; -1 where the
        window starts later (left-padded).
    position : ndarray of int64, shape (n,)
        Position of the target in its window (0-based).
    window : ndarray of int64, shape (n,)
        Index of its window.
    """

    target: np.ndarray
    history: np.ndarray
    position: np.ndarray
    window: np.ndarray


def _targets_at(windows, positions_per_window, max_history: int) -> TargetSet:
    target, history, position, window = [], [], [], []
    for w, (ids, pos) in enumerate(zip(windows, positions_per_window)):
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.asarray(pos, dtype=np.int64)
        padded = np.concatenate([np.full(max_history, -1, dtype=np.int64), ids])
        # history of position t: padded[t : t + max_history] (the max_history tokens before t)
        hist = np.stack([padded[pos + k] for k in range(max_history)], axis=1) if max_history else \
            np.zeros((len(pos), 0), dtype=np.int64)
        target.append(ids[pos])
        history.append(hist)
        position.append(pos)
        window.append(np.full(len(pos), w, dtype=np.int64))
    return TargetSet(np.concatenate(target), np.concatenate(history), np.concatenate(position),
                     np.concatenate(window))


def causal_targets(windows, max_history: int = 2) -> TargetSet:
    """Targets of causal language modelling: positions ``1 .. len - 1`` of every window.

    Parameters
    ----------
    windows : sequence of 1-d int arrays
    max_history : int
        History tokens kept per target (``order - 1`` of the largest n-gram model).
    """
    return _targets_at(windows, [np.arange(1, len(w)) for w in windows], max_history)


def span_positions(tokens, inp, tgt, sentinel_ids) -> np.ndarray:
    """Window positions of the span tokens of one span-corrupted window, in target order.

    ``inp``/``tgt`` are :func:`~ising_moe.train.corpus.span_corrupt`'s output for ``tokens``: the
    input alternates kept runs and sentinels, the target sentinels and removed spans.

    Returns
    -------
    ndarray of int64, shape (n_noise,)
        For each non-sentinel, non-``</s>`` target token (in target order), its position in
        ``tokens``. The tokens there equal the target tokens (checked).
    """
    special = set(int(s) for s in sentinel_ids)
    inp, tgt = np.asarray(inp), np.asarray(tgt)
    keep_runs, run = [], 0
    for x in inp[:-1]:  # the last input token is </s>
        if int(x) in special:
            keep_runs.append(run)
            run = 0
        else:
            run += 1
    spans, cur = [], None
    for x in tgt[:-1]:
        if int(x) in special:
            cur = []
            spans.append(cur)
        else:
            cur.append(int(x))
    out, pos = [], 0
    for keep, span in zip(keep_runs, spans):
        pos += keep
        out.extend(range(pos, pos + len(span)))
        pos += len(span)
    out = np.asarray(out, dtype=np.int64)
    text = tgt[[int(x) not in special for x in tgt[:-1]] + [False]]
    tokens = np.asarray(tokens)
    if (len(keep_runs) != len(spans) or (len(out) and out.max() >= len(tokens))
            or not np.array_equal(tokens[out], text)):
        raise InvalidParameterError("span-corrupted input and target do not fit the window: "
                                    "pass span_corrupt's output for this window")
    return out


def span_targets(windows, pairs, sentinel_ids, max_history: int = 2) -> TargetSet:
    """Targets of span corruption: the span tokens of every window (see the module docstring).

    Parameters
    ----------
    windows : sequence of 1-d int arrays
    pairs : sequence of (input, target)
        :func:`~ising_moe.train.corpus.span_corrupt` of each window.
    sentinel_ids : sequence of int
    """
    positions = [span_positions(w, i, t, sentinel_ids) for w, (i, t) in zip(windows, pairs)]
    return _targets_at(windows, positions, max_history)


class KneserNey:
    """Interpolated Kneser-Ney n-gram model (see the module docstring for the formula).

    Parameters
    ----------
    order : int
        1 (smoothed unigram), 2 (bigram), 3 (trigram), ... up to 5.
    vocab_size : int
        ``V``: tokens are ``0 .. V - 1``.

    Attributes
    ----------
    discounts_ : dict
        ``(k, "raw" | "cont") -> D`` for every table used.
    n_train_tokens_ : int
    """

    def __init__(self, order: int, vocab_size: int):
        self.order = order
        self.vocab_size = vocab_size

    # ---- fitting -------------------------------------------------------------------------------
    def _keys(self, flat, doc, k):
        """Keys of all k-grams that lie inside one document, ``sum_i tok_i V^(k-1-i)``."""
        n = len(flat) - k + 1
        if n <= 0:
            return np.zeros(0, dtype=np.int64)
        ok = doc[:n] == doc[k - 1:k - 1 + n]
        key = np.zeros(n, dtype=np.int64)
        for i in range(k):
            key = key * self.vocab_size + flat[i:i + n]
        return key[ok]

    def _table(self, keys, counts):
        """Sorted k-gram keys with counts, and per context (key // V): total and number of types."""
        ctx = keys // self.vocab_size
        ctx_keys, inverse = np.unique(ctx, return_inverse=True)
        total = np.bincount(inverse, weights=counts, minlength=len(ctx_keys))
        types = np.bincount(inverse, minlength=len(ctx_keys)).astype(float)
        n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
        discount = n1 / (n1 + 2 * n2) if n1 > 0 else 0.5
        return {"keys": keys, "counts": counts.astype(float), "ctx": ctx_keys, "total": total,
                "types": types, "D": float(discount)}

    def fit(self, sequences):
        """Count the n-grams of ``sequences`` (a sequence of 1-d int arrays, e.g. documents).

        Returns
        -------
        self
        """
        order, v = int(self.order), int(self.vocab_size)
        if not 1 <= order <= _MAX_ORDER:
            raise InvalidParameterError(f"order must be 1..{_MAX_ORDER}, got {self.order}")
        if v < 1 or float(v) ** order >= 2.0 ** 62:
            raise InvalidParameterError(f"vocab_size {v} too large for order {order} (keys overflow int64)")
        seqs = [np.asarray(s, dtype=np.int64) for s in sequences]
        seqs = [s for s in seqs if len(s)]
        if not seqs:
            raise InvalidParameterError("no training tokens: pass non-empty sequences")
        flat = np.concatenate(seqs)
        if flat.min() < 0 or flat.max() >= v:
            raise InvalidParameterError(f"tokens must lie in 0..{v - 1}, found {flat.min()}..{flat.max()}")
        doc = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
        self.raw_, self.cont_ = {}, {}
        for k in range(1, order + 1):
            keys, counts = np.unique(self._keys(flat, doc, k), return_counts=True)
            self.raw_[k] = self._table(keys, counts)
            if k < order:
                # continuation count of a k-gram: number of distinct tokens before it
                longer = np.unique(self._keys(flat, doc, k + 1))
                ckeys, ccounts = np.unique(longer % v ** k, return_counts=True)
                self.cont_[k] = self._table(ckeys, ccounts)
        self.discounts_ = {**{(k, "raw"): t["D"] for k, t in self.raw_.items()},
                           **{(k, "cont"): t["D"] for k, t in self.cont_.items()}}
        self.n_train_tokens_ = int(len(flat))
        return self

    # ---- probabilities -------------------------------------------------------------------------
    @staticmethod
    def _lookup(sorted_keys, values, query):
        idx = np.searchsorted(sorted_keys, query)
        idx_c = np.minimum(idx, len(sorted_keys) - 1)
        found = (idx < len(sorted_keys)) & (sorted_keys[idx_c] == query)
        return np.where(found, values[idx_c], 0.0)

    def _level(self, table, ctx_key, full_key, lower):
        a = self._lookup(table["keys"], table["counts"], full_key)
        total = self._lookup(table["ctx"], table["total"], ctx_key)
        types = self._lookup(table["ctx"], table["types"], ctx_key)
        seen = total > 0
        safe = np.where(seen, total, 1.0)
        p = np.maximum(a - table["D"], 0.0) / safe + table["D"] * types / safe * lower
        return np.where(seen, p, lower)

    def prob(self, history, target) -> np.ndarray:
        """P(target | history) for each row.

        Parameters
        ----------
        history : ndarray of int, shape (n, h)
            Oldest first, -1 where absent (left-padded); only the last ``order - 1`` columns are used.
        target : ndarray of int, shape (n,)

        Returns
        -------
        ndarray of float, shape (n,)
        """
        v = self.vocab_size
        target = np.asarray(target, dtype=np.int64)
        history = np.asarray(history, dtype=np.int64).reshape(len(target), -1)
        need = self.order - 1
        if history.shape[1] < need:
            history = np.concatenate([np.full((len(target), need - history.shape[1]), -1, np.int64), history], 1)
        hist = history[:, history.shape[1] - need:] if need else history[:, :0]
        # usable history length of each row: trailing run of known tokens
        known = hist >= 0
        m = np.zeros(len(target), dtype=np.int64)
        for j in range(need):
            m = np.where(known[:, need - 1 - j] & (m == j), j + 1, m)
        p = np.full(len(target), 1.0 / v)
        result = np.empty(len(target))
        for k in range(1, self.order + 1):
            ctx = np.zeros(len(target), dtype=np.int64)
            for j in range(k - 1):
                ctx = ctx * v + np.maximum(hist[:, need - (k - 1) + j], 0)
            full = ctx * v + target
            top = m == k - 1  # rows whose history allows no more than order k: raw counts here
            if top.any():
                result[top] = self._level(self.raw_[k], ctx[top], full[top], p[top])
            if k < self.order:
                p = self._level(self.cont_[k], ctx, full, p)
        return result

    def distribution(self, history) -> np.ndarray:
        """The full distribution over the vocabulary after one history, shape (V,) (for checks)."""
        history = np.asarray(history, dtype=np.int64).reshape(1, -1)
        v = self.vocab_size
        return self.prob(np.repeat(history, v, axis=0), np.arange(v))

    def nll(self, targets: TargetSet) -> np.ndarray:
        """Negative log-likelihood (nats) of each target, shape (n,)."""
        return -np.log(self.prob(targets.history, targets.target))


# ---- per-document totals and the bootstrap -------------------------------------------------------
def document_totals(values, window, window_doc, n_documents: int, mask=None):
    """Sum of ``values`` and number of targets per document.

    Parameters
    ----------
    values : ndarray, shape (n,)
        Per-target negative log-likelihood.
    window : ndarray of int, shape (n,)
        Window of each target.
    window_doc : ndarray of int, shape (n_windows,)
        Document (0 .. n_documents - 1) of each window.
    mask : ndarray of bool, shape (n,), optional
        Targets to include.
    """
    doc = np.asarray(window_doc)[np.asarray(window)]
    w = np.ones(len(doc)) if mask is None else np.asarray(mask, dtype=float)
    return (np.bincount(doc, weights=np.asarray(values) * w, minlength=n_documents),
            np.bincount(doc, weights=w, minlength=n_documents))


def bin_totals(values, targets: TargetSet, window_doc, n_documents: int, lo: int, hi: int):
    """:func:`document_totals` of the targets at window positions ``lo <= position <= hi``."""
    mask = (targets.position >= lo) & (targets.position <= hi)
    return document_totals(values, targets.window, window_doc, n_documents, mask)


def _ci(replicates) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if len(finite) < 0.99 * len(replicates):
        return float("nan"), float("nan")
    return float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))


def document_estimate(nll_doc, n_doc, n_bootstrap: int = 2000, seed: int = 0) -> Estimate:
    """Cross-entropy ``sum nll / sum n`` with a bootstrap over documents.

    Parameters
    ----------
    nll_doc, n_doc : ndarray, shape (n_documents,)
        Per document: total negative log-likelihood and number of targets. Documents with no
        target are left out.
    """
    nll_doc, n_doc = np.asarray(nll_doc, float), np.asarray(n_doc, float)
    keep = n_doc > 0
    nll_doc, n_doc = nll_doc[keep], n_doc[keep]
    if not len(n_doc):
        raise InvalidParameterError("no targets: nothing to estimate")
    w = _bootstrap_weights(len(n_doc), n_bootstrap, np.random.default_rng(seed))
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = (w @ nll_doc) / (w @ n_doc)
    return Estimate(float(nll_doc.sum() / n_doc.sum()), *_ci(reps), int(len(n_doc)), int(n_doc.sum()))


def paired_difference(a_doc, n_a, b_doc, n_b, n_bootstrap: int = 2000, seed: int = 0) -> Estimate:
    """Difference of two cross-entropies ``A - B`` with a paired bootstrap over documents.

    ``A`` and ``B`` may be two predictors of the same targets (``n_a == n_b``) or one predictor
    on two target sets (e.g. two position bins); a document resampled counts for both. Only
    documents with targets in both are used.
    """
    a_doc, n_a, b_doc, n_b = (np.asarray(x, float) for x in (a_doc, n_a, b_doc, n_b))
    keep = (n_a > 0) & (n_b > 0)
    a_doc, n_a, b_doc, n_b = a_doc[keep], n_a[keep], b_doc[keep], n_b[keep]
    if not len(n_a):
        raise InvalidParameterError("no document has targets in both sets")
    w = _bootstrap_weights(len(n_a), n_bootstrap, np.random.default_rng(seed))
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = (w @ a_doc) / (w @ n_a) - (w @ b_doc) / (w @ n_b)
    value = a_doc.sum() / n_a.sum() - b_doc.sum() / n_b.sum()
    return Estimate(float(value), *_ci(reps), int(len(n_a)), int(min(n_a.sum(), n_b.sum())))
