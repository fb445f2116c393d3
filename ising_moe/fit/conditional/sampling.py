"""Exact samples of conditional chains and their mixtures (forward filtering, backward sampling).

Every sequence is drawn independently from its own chain (its tokens set the site fields), so the
samples are exact and independent: simulated data with known parameters for the fitters' proofs,
and parametric nulls. Vectorised over a batch of sequences (NumPy; ``O(n q^2)`` per sequence at
range 1, ``O(n q^2)`` on pair states at range 2).
"""

from __future__ import annotations

import numpy as np

from ..._util import RngLike, as_generator, as_int
from ...errors import InvalidParameterError

__all__ = ["sample_chains"]

_BATCH = 512


def _draw(p: np.ndarray, gen) -> np.ndarray:
    """One index per row of the (unnormalised, nonnegative) weights ``p`` (B, m) by inverse CDF."""
    c = np.cumsum(p, axis=1)
    u = gen.random(p.shape[0]) * c[:, -1]
    return np.minimum((c < u[:, None]).sum(axis=1), p.shape[1] - 1)


def _sample_batch(h, lengths, coupling, coupling2, gen):
    """States (B, n) of chains with site fields ``h`` (B, n, q), nearest-neighbour ``coupling`` (q, q)
    and a Potts coupling ``coupling2`` at distance 2."""
    b, n, q = h.shape
    f = np.exp(h - h.max(axis=2, keepdims=True))
    w = np.exp(coupling - coupling.max())
    rows = np.arange(b)
    x = np.zeros((b, n), dtype=np.int64)
    last = lengths - 1
    if coupling2 == 0.0:
        alpha = np.empty((b, n, q))
        alpha[:, 0] = f[:, 0] / f[:, 0].sum(axis=1, keepdims=True)
        for i in range(1, n):
            a = (alpha[:, i - 1] @ w) * f[:, i]
            alpha[:, i] = a / a.sum(axis=1, keepdims=True)
        for i in range(n - 1, -1, -1):
            start = last == i
            inner = last > i
            if start.any():
                x[start, i] = _draw(alpha[start, i], gen)
            if inner.any():
                x[inner, i] = _draw(alpha[inner, i] * w[:, x[inner, i + 1]].T, gen)
        return x
    e2 = 1.0 + np.expm1(coupling2) * np.eye(q)  # exp(J2 delta), the constant -J2/q dropped
    alpha = np.empty((b, n, q, q))  # (s_{i-1}, s_i)
    a = f[:, 0, :, None] * w[None] * f[:, 1, None, :]
    alpha[:, 1] = a / a.sum(axis=(1, 2), keepdims=True)
    for i in range(2, n):
        # alpha_i(y, z) = sum_x alpha_{i-1}(x, y) e2(x, z) w(y, z) f_i(z)
        a = np.einsum("bxy,xz->byz", alpha[:, i - 1], e2) * w[None] * f[:, i, None, :]
        alpha[:, i] = a / a.sum(axis=(1, 2), keepdims=True)
    for i in range(n - 1, 0, -1):
        start = last == i
        inner = last > i
        if start.any():
            pair = _draw(alpha[start, i].reshape(-1, q * q), gen)
            x[start, i - 1], x[start, i] = pair // q, pair % q
        if inner.any():
            r = rows[inner]
            x[inner, i - 1] = _draw(alpha[r, i, :, x[r, i]] * e2[:, x[r, i + 1]].T, gen)
    return x


def sample_chains(position_fields, token_fields, couplings, tokens, lengths=None, *, coupling2=0.0, weights=None,
                  rng: RngLike = None):
    """Exact samples of conditional chains: sequence ``s`` has site fields
    ``position_fields[i] + token_fields[tokens[s, i]]``.

    Parameters
    ----------
    position_fields : ndarray, shape (n_sites, q) or (K, n_sites, q)
    token_fields : ndarray, shape (n_token_ids, q) or (K, n_token_ids, q)
        Indexed by the token ids themselves.
    couplings : ndarray, shape (q, q) or (K, q, q)
    tokens : ndarray of int, shape (n_sequences, n_sites)
    lengths : ndarray of int, shape (n_sequences,), optional
        Chain lengths (default ``n_sites``); states beyond a length are 0.
    coupling2 : float or ndarray of shape (K,)
        Potts coupling ``J2 (delta - 1/q)`` at distance 2.
    weights : ndarray, shape (K,), optional
        Mixture weights; component ``k`` of every sequence is drawn first.
    rng : int, Generator or None

    Returns
    -------
    states : ndarray of int64, shape (n_sequences, n_sites)
    components : ndarray of int64, shape (n_sequences,)
    """
    gen = as_generator(rng)
    pos = np.asarray(position_fields, dtype=float)
    pos = pos[None] if pos.ndim == 2 else pos
    n_comp, n, q = pos.shape
    tok = np.asarray(token_fields, dtype=float)
    tok = np.broadcast_to(tok[None] if tok.ndim == 2 else tok, (n_comp,) + tok.shape[-2:])
    coup = np.broadcast_to(np.asarray(couplings, dtype=float), (n_comp, q, q))
    j2 = np.broadcast_to(np.asarray(coupling2, dtype=float), (n_comp,))
    t = np.asarray(tokens)
    if t.ndim != 2 or t.shape[1] != n or not np.issubdtype(t.dtype, np.integer):
        raise InvalidParameterError(f"tokens must be integer ids of shape (n_sequences, {n})")
    if t.size and (t.min() < 0 or t.max() >= tok.shape[1]):
        raise InvalidParameterError(f"token ids must lie in 0..{tok.shape[1] - 1}")
    n_seq = t.shape[0]
    lengths = np.full(n_seq, n) if lengths is None else np.asarray(lengths, dtype=np.int64)
    if lengths.shape != (n_seq,) or (n_seq and (lengths.min() < 2 or lengths.max() > n)):
        raise InvalidParameterError(f"lengths must be {n_seq} integers in 2..{n}")
    if weights is None:
        if n_comp != 1:
            raise InvalidParameterError("several components need their mixture weights")
        comp = np.zeros(n_seq, dtype=np.int64)
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != (n_comp,) or (w < 0).any() or not np.isclose(w.sum(), 1.0):
            raise InvalidParameterError(f"weights must be {n_comp} probabilities summing to 1")
        comp = gen.choice(n_comp, size=n_seq, p=w)
    as_int(n_comp, "number of components", minimum=1)
    out = np.zeros((n_seq, n), dtype=np.int64)
    for k in range(n_comp):
        members = np.flatnonzero(comp == k)
        for lo in range(0, len(members), _BATCH):
            rows = members[lo: lo + _BATCH]
            h = pos[k][None] + tok[k][t[rows]]
            out[rows] = _sample_batch(h, lengths[rows], coup[k], float(j2[k]), gen)
    inside = np.arange(n)[None, :] < lengths[:, None]
    return np.where(inside, out, 0), comp
