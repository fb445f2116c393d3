"""Message passing of the conditional chains (linear-chain CRFs), shared by their kernels (private).

Sequence ``s`` under component ``k`` is a chain of ``L = lengths[s]`` sites with its own site
weights ``F_i(a) = exp(P_k[i, a] + T_k[t_{s,i}, a])`` (position table times token table, both
pre-exponentiated once per parameter set: no ``exp`` in the inner loops), nearest-neighbour
weights ``W_k(a, b) = exp(J_k(a, b))`` and, at range 2, a Potts weight ``exp(J2_k (delta - 1/q))``
between sites ``i`` and ``i + 2``. Every pass is an exact forward-backward recursion with
messages normalised at every step (Rabiner scaling): with ``alpha_i`` normalised by ``n_i`` and
``beta_i(a) = sum_b W(a, b) F_{i+1}(b) beta_{i+1}(b) / n_{i+1}``, the marginals are
``alpha_i beta_i`` and ``log Z = sum_i log n_i`` plus the logs of the shifts taken before each
``exp``. Hidden sites (``observed = False`` inside the length) are summed over exactly: the
*clamped* pass restricts every observed site to its state.

Coupling kinds: ``KIND_NONE`` (independent sites), ``KIND_POTTS`` (``W = exp(-J/q)(1 + g delta)``
with ``g = e^J - 1``: O(q) per site), ``KIND_FULL`` (a (q, q) table: O(q^2) per site). Range 2
works on pair states ``(s_{i-1}, s_i)`` (O(q^2) per site thanks to the Potts form of ``J2``).
"""

from __future__ import annotations

import numpy as np

from ..._numba import njit

KIND_NONE, KIND_POTTS, KIND_FULL = 0, 1, 2


@njit
def _site_table(pw, pshift, tw, tshift, rows_s, length, f, fsh):
    """``f[i] = pw[i] * tw[rows_s[i]]`` and its log shift ``fsh[i]`` for ``i < length``."""
    q = f.shape[1]
    for i in range(length):
        r = rows_s[i]
        fsh[i] = pshift[i] + tshift[r]
        for a in range(q):
            f[i, a] = pw[i, a] * tw[r, a]


@njit(inline="always")
def _fw(f, i, a, x, obs, clamp):
    """Site weight, zero outside the observed state of a clamped site."""
    if clamp and obs[i] and a != x[i]:
        return 0.0
    return f[i, a]


@njit(inline="always")
def _log_accumulate(total, prod, v):
    """Add ``log v`` to ``total + log prod``, taking logs only when the product leaves [1e-100, 1e100]."""
    if v < 1e-100 or v > 1e100:
        return total + np.log(v), prod
    prod *= v
    if prod < 1e-100 or prod > 1e100:
        return total + np.log(prod), 1.0
    return total, prod


@njit
def _forward1(f, length, wc, kind, g, x, obs, clamp, alpha, norms):
    """Scaled forward messages of a nearest-neighbour chain; returns ``sum_i log n_i``."""
    q = f.shape[1]
    s = 0.0
    for a in range(q):
        v = _fw(f, 0, a, x, obs, clamp)
        alpha[0, a] = v
        s += v
    inv = 1.0 / s
    for a in range(q):
        alpha[0, a] *= inv
    norms[0] = s
    # the logs of the normalisers are taken in batches (a log per site costs as much as a step)
    total, prod = _log_accumulate(0.0, 1.0, s)
    for i in range(1, length):
        s = 0.0
        if kind == KIND_FULL:
            for b in range(q):
                fb = _fw(f, i, b, x, obs, clamp)
                if fb == 0.0:
                    alpha[i, b] = 0.0
                    continue
                acc = 0.0
                for a in range(q):
                    acc += alpha[i - 1, a] * wc[a, b]
                alpha[i, b] = acc * fb
                s += alpha[i, b]
        else:  # W = 1 + g delta and sum_a alpha_{i-1}(a) = 1
            for b in range(q):
                v = (1.0 + g * alpha[i - 1, b]) * _fw(f, i, b, x, obs, clamp)
                alpha[i, b] = v
                s += v
        inv = 1.0 / s
        for b in range(q):
            alpha[i, b] *= inv
        norms[i] = s
        total, prod = _log_accumulate(total, prod, s)
    return total + np.log(prod)


@njit
def _backward1(f, length, wc, kind, g, x, obs, clamp, alpha, norms, beta, u, marg, pair, weight):
    """Backward messages; writes the marginals into ``marg[:length]`` and adds ``weight`` times the
    bond marginals (summed over bonds) to ``pair`` (full matrix for ``KIND_FULL``, the diagonal
    for ``KIND_POTTS``, nothing for ``KIND_NONE``)."""
    q = f.shape[1]
    for a in range(q):
        beta[length - 1, a] = 1.0
    for i in range(length - 2, -1, -1):
        inv = 1.0 / norms[i + 1]
        total_u = 0.0
        for b in range(q):
            u[b] = _fw(f, i + 1, b, x, obs, clamp) * beta[i + 1, b] * inv
            total_u += u[b]
        if kind == KIND_FULL:
            for a in range(q):
                acc = 0.0
                for b in range(q):
                    acc += wc[a, b] * u[b]
                beta[i, a] = acc
                xa = weight * alpha[i, a]
                if xa != 0.0:
                    for b in range(q):
                        pair[a, b] += xa * wc[a, b] * u[b]
        else:
            for a in range(q):
                beta[i, a] = total_u + g * u[a]
            if kind == KIND_POTTS:
                for a in range(q):
                    pair[a, a] += weight * alpha[i, a] * (1.0 + g) * u[a]
    for i in range(length):
        s = 0.0
        for a in range(q):
            marg[i, a] = alpha[i, a] * beta[i, a]
            s += marg[i, a]
        inv = 1.0 / s
        for a in range(q):
            marg[i, a] *= inv


@njit
def _forward2(f, length, wc, g2, x, obs, clamp, alpha, norms):
    """Scaled forward messages over pair states ``alpha[i, a, b]`` (``s_{i-1} = a, s_i = b``, i >= 1)
    of a chain with a Potts coupling at distance 2; returns ``sum_i log n_i``."""
    q = f.shape[1]
    s = 0.0
    for a in range(q):
        fa = _fw(f, 0, a, x, obs, clamp)
        for b in range(q):
            v = fa * wc[a, b] * _fw(f, 1, b, x, obs, clamp)
            alpha[1, a, b] = v
            s += v
    for a in range(q):
        for b in range(q):
            alpha[1, a, b] /= s
    norms[0] = 1.0
    norms[1] = s
    total, prod = _log_accumulate(0.0, 1.0, s)
    col = np.empty(q)
    for i in range(2, length):
        for b in range(q):
            acc = 0.0
            for a in range(q):
                acc += alpha[i - 1, a, b]
            col[b] = acc
        s = 0.0
        for c in range(q):
            fc = _fw(f, i, c, x, obs, clamp)
            for b in range(q):
                v = 0.0
                if fc != 0.0:
                    v = (col[b] + g2 * alpha[i - 1, c, b]) * wc[b, c] * fc
                alpha[i, b, c] = v
                s += v
        inv = 1.0 / s
        for b in range(q):
            for c in range(q):
                alpha[i, b, c] *= inv
        norms[i] = s
        total, prod = _log_accumulate(total, prod, s)
    return total + np.log(prod)


@njit
def _backward2(f, length, wc, g2, x, obs, clamp, alpha, norms, beta, marg, pair, weight):
    """Backward pass over pair states: site marginals into ``marg``, ``weight`` times the bond
    marginals into ``pair``; returns ``weight`` times the expected number of equal pairs at
    distance 2."""
    q = f.shape[1]
    for a in range(q):
        for b in range(q):
            beta[length - 1, a, b] = 1.0
    vb = np.empty(q)
    same2 = 0.0
    for i in range(length - 2, 0, -1):
        inv = 1.0 / norms[i + 1]
        for b in range(q):
            acc = 0.0
            for c in range(q):
                acc += wc[b, c] * _fw(f, i + 1, c, x, obs, clamp) * beta[i + 1, b, c]
            vb[b] = acc
        for a in range(q):
            fa = _fw(f, i + 1, a, x, obs, clamp)
            for b in range(q):
                back = wc[b, a] * fa * beta[i + 1, b, a]
                beta[i, a, b] = (vb[b] + g2 * back) * inv
                same2 += alpha[i, a, b] * (1.0 + g2) * back * inv
    for i in range(length):
        for a in range(q):
            marg[i, a] = 0.0
    for i in range(1, length):
        s = 0.0
        for a in range(q):
            for b in range(q):
                s += alpha[i, a, b] * beta[i, a, b]
        for a in range(q):
            for b in range(q):
                p = alpha[i, a, b] * beta[i, a, b] / s
                marg[i, b] += p
                if i == 1:
                    marg[0, a] += p
                pair[a, b] += weight * p
    return weight * same2


@njit
def _independent_log_likelihood(f, length, x, obs, sums):
    """Independent sites: ``sum_{observed i} log(f_i(x_i) / sum_a f_i(a))`` (hidden sites drop out);
    ``sums[i] = sum_a f_i(a)``. The logs are taken in batches of products."""
    q = f.shape[1]
    total = 0.0
    prod = 1.0
    for i in range(length):
        s = 0.0
        for a in range(q):
            s += f[i, a]
        sums[i] = s
        if obs[i]:
            total, prod = _log_accumulate(total, prod, f[i, x[i]] / s)
    return total + np.log(prod)


@njit
def _observed_log_weight(f, fsh, length, x, wc, kind, g, g2, max_range):
    """``log`` of the unnormalised weight of a fully observed sequence (without the bond shifts)."""
    total = 0.0
    prod = 1.0
    for i in range(length):
        total += fsh[i]
        total, prod = _log_accumulate(total, prod, f[i, x[i]])
    if kind == KIND_FULL or max_range == 2:
        for i in range(length - 1):
            total, prod = _log_accumulate(total, prod, wc[x[i], x[i + 1]])
    else:
        same = 0
        for i in range(length - 1):
            if x[i] == x[i + 1]:
                same += 1
        total += same * np.log1p(g)
    if max_range == 2:
        same = 0
        for i in range(length - 2):
            if x[i] == x[i + 2]:
                same += 1
        total += same * np.log1p(g2)
    return total + np.log(prod)


@njit
def _backward1_observed(f, length, wc, kind, g, x, rows_s, alpha, norms, bcur, bnext, u, om, pos_out, tok_out,
                        pair_out):
    """Fused backward pass of a fully observed nearest-neighbour sequence: adds ``om`` times data minus
    model moments of every site to ``pos_out[i]`` and ``tok_out[rows_s[i]]`` and of the bonds to
    ``pair_out`` (full matrix, or the Potts diagonal), without storing the backward messages."""
    q = f.shape[1]
    i = length - 1
    r = rows_s[i]
    for a in range(q):
        bnext[a] = 1.0
        d = -om * alpha[i, a]
        pos_out[i, a] += d
        tok_out[r, a] += d
    pos_out[i, x[i]] += om
    tok_out[r, x[i]] += om
    for i in range(length - 2, -1, -1):
        inv = 1.0 / norms[i + 1]
        total_u = 0.0
        for b in range(q):
            u[b] = f[i + 1, b] * bnext[b] * inv
            total_u += u[b]
        s = 0.0
        if kind == KIND_FULL:
            for a in range(q):
                acc = 0.0
                for b in range(q):
                    acc += wc[a, b] * u[b]
                bcur[a] = acc
                s += alpha[i, a] * acc
                xa = om * alpha[i, a]
                for b in range(q):
                    pair_out[a, b] -= xa * wc[a, b] * u[b]
            pair_out[x[i], x[i + 1]] += om
        else:
            for a in range(q):
                bcur[a] = total_u + g * u[a]
                s += alpha[i, a] * bcur[a]
            if kind == KIND_POTTS:
                for a in range(q):
                    pair_out[a, a] -= om * alpha[i, a] * (1.0 + g) * u[a]
                if x[i] == x[i + 1]:
                    pair_out[x[i], x[i]] += om
        r = rows_s[i]
        scale = om / s
        for a in range(q):
            d = -scale * alpha[i, a] * bcur[a]
            pos_out[i, a] += d
            tok_out[r, a] += d
            bnext[a] = bcur[a]
        pos_out[i, x[i]] += om
        tok_out[r, x[i]] += om
