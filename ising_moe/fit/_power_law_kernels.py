"""Numba kernel of the exact likelihood of a chain with Potts couplings up to distance R (private; see
:mod:`ising_moe.fit.power_law`).

The forward recursion runs over the ``q^R`` windows ``(x_{i-R+1}, .., x_i)`` (code
``sum_k x_{i-k} q^k``): adding site ``i + 1`` in state ``b`` drops the oldest site ``d`` of the
window and adds ``phi_{i+1}(b) + sum_{r=1..R} J_r delta(b, x_{i+1-r})``. Sites before the start are
virtual (window code 0, no couplings to them), so the same recursion starts the chain. Cost
``O(L q^{R+1})`` per sequence.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._numba import njit


@njit
def _window_energy(c, b, i, jr, table, q):
    """Coupling energy of state ``b`` at site ``i`` with the window ``c`` of the ``R`` sites before it
    (only the real sites ``i - r >= 0`` before site ``R``)."""
    big_r = jr.shape[0]
    if i >= big_r:
        return table[c * q + b]
    e = 0.0
    for r in range(1, i + 1):
        if (c // q ** (r - 1)) % q == b:
            e += jr[r - 1]
    return e


@njit
def _log_partition(phi, jr, obs, length, alpha, new, table):
    """``log sum_x exp(sum_i phi_i(x_i) + sum_{i<j, j-i<=R} J_{j-i} delta(x_i, x_j))`` over the first
    ``length`` sites, with ``x_i = obs[i]`` wherever ``obs[i] >= 0``.

    ``table[c * q + b]``: the coupling energy of a new state ``b`` with the full window ``c`` (code over
    ``R`` sites, digit ``r - 1`` the site at distance ``r``), used once every distance is in the chain.
    """
    q = phi.shape[1]
    big_r = jr.shape[0]
    n_codes = alpha.shape[0]
    top = n_codes // q  # q^(R-1)
    for c in range(n_codes):
        alpha[c] = -np.inf
    alpha[0] = 0.0
    for i in range(length):
        for c2 in range(n_codes):
            b = c2 % q
            if obs[i] >= 0 and b != obs[i]:
                new[c2] = -np.inf
                continue
            rest = c2 // q  # the R-1 newest sites of the old window
            m = -np.inf
            for d in range(q if i >= big_r else 1):  # before site R the dropped site is virtual (0)
                c = rest + d * top
                a = alpha[c]
                if a == -np.inf:
                    continue
                e = _window_energy(c, b, i, jr, table, q)
                v = a + e
                if v > m:
                    m = v
            if m == -np.inf:
                new[c2] = -np.inf
                continue
            s = 0.0
            for d in range(q if i >= big_r else 1):
                c = rest + d * top
                a = alpha[c]
                if a == -np.inf:
                    continue
                e = _window_energy(c, b, i, jr, table, q)
                s += np.exp(a + e - m)
            new[c2] = m + np.log(s) + phi[i, b]
        for c in range(n_codes):
            alpha[c] = new[c]
    m = -np.inf
    for c in range(n_codes):
        if alpha[c] > m:
            m = alpha[c]
    s = 0.0
    for c in range(n_codes):
        if alpha[c] > -np.inf:
            s += np.exp(alpha[c] - m)
    return m + np.log(s)


@njit
def coupling_table(jr, q):
    """``table[c * q + b] = sum_r J_r delta(b, digit_{r-1}(c))`` for every window code ``c``, shape (q^(R+1),)."""
    big_r = jr.shape[0]
    n_codes = q**big_r
    table = np.zeros(n_codes * q)
    for c in range(n_codes):
        for b in range(q):
            e = 0.0
            for r in range(1, big_r + 1):
                if (c // q ** (r - 1)) % q == b:
                    e += jr[r - 1]
            table[c * q + b] = e
    return table


@njit(parallel=True)
def sequence_log_likelihoods(phi, jr, states, observed, lengths, out):
    """Exact ``log P(observed sites)`` of every sequence (hidden sites summed over).

    Parameters
    ----------
    phi : ndarray of shape (S, n, q)
        Site fields of every sequence (tokens and position already applied).
    jr : ndarray of shape (R,)
        Potts couplings ``J_r``, ``r = 1..R``.
    states : ndarray of int64, shape (S, n)
    observed : ndarray of bool, shape (S, n)
    lengths : ndarray of int64, shape (S,)
    out : ndarray of shape (S,), out
    """
    n_seq, n, q = phi.shape
    n_codes = q ** jr.shape[0]
    table = coupling_table(jr, q)
    for s in prange(n_seq):
        alpha = np.empty(n_codes)
        new = np.empty(n_codes)
        free = np.full(n, -1, dtype=np.int64)
        obs = np.full(n, -1, dtype=np.int64)
        for i in range(n):
            if observed[s, i]:
                obs[i] = states[s, i]
        out[s] = (_log_partition(phi[s], jr, obs, lengths[s], alpha, new, table)
                  - _log_partition(phi[s], jr, free, lengths[s], alpha, new, table))


@njit(parallel=True)
def pseudo_likelihood_terms(states, observed, phi, w, dw, coupling, gphi, ll, g_coupling, g_sigma):
    """Pseudo-log-likelihood of every sequence and its gradients (one pass, ``O(R)`` per site).

    Site ``i`` given the others: softmax over ``a`` of ``phi[s, i, a] + J S_i(a)``,
    ``S_i(a) = sum_{0 < |i - j| <= R, j observed} w[|i - j|] delta(a, x_j)``.

    Parameters
    ----------
    states : ndarray of int64, shape (S, n)
    observed : ndarray of bool, shape (S, n)
    phi : ndarray of shape (S, n, q)
    w, dw : ndarray of shape (R + 1,)
        ``w[d]`` and ``dw/dsigma`` at distance ``d`` (``w[0]`` unused).
    coupling : float
    gphi : ndarray of shape (S, n, q), out
        ``d ll / d phi``: ``delta(a, x_i) - p_i(a)`` at observed sites, 0 elsewhere.
    ll, g_coupling, g_sigma : ndarray of shape (S,), out
        Per sequence: pseudo-log-likelihood, its derivative in ``J`` and in ``sigma``.
    """
    n_seq, n, q = phi.shape
    big_r = w.shape[0] - 1
    for s in prange(n_seq):
        sa = np.empty(q)
        dsa = np.empty(q)
        p = np.empty(q)
        tot, gj, gs = 0.0, 0.0, 0.0
        for i in range(n):
            if not observed[s, i]:
                for a in range(q):
                    gphi[s, i, a] = 0.0
                continue
            for a in range(q):
                sa[a] = 0.0
                dsa[a] = 0.0
            lo = max(0, i - big_r)
            hi = min(n - 1, i + big_r)
            for k in range(lo, hi + 1):
                if k == i or not observed[s, k]:
                    continue
                d = i - k if k < i else k - i
                sa[states[s, k]] += w[d]
                dsa[states[s, k]] += dw[d]
            m = -np.inf
            for a in range(q):
                p[a] = phi[s, i, a] + coupling * sa[a]
                if p[a] > m:
                    m = p[a]
            z = 0.0
            for a in range(q):
                p[a] = np.exp(p[a] - m)
                z += p[a]
            x = states[s, i]
            tot += phi[s, i, x] + coupling * sa[x] - m - np.log(z)
            es, eds = 0.0, 0.0
            for a in range(q):
                p[a] /= z
                es += p[a] * sa[a]
                eds += p[a] * dsa[a]
                gphi[s, i, a] = -p[a]
            gphi[s, i, x] += 1.0
            gj += sa[x] - es
            gs += coupling * (dsa[x] - eds)
        ll[s] = tot
        g_coupling[s] = gj
        g_sigma[s] = gs


@njit
def _edge_weight(c, b, i, jr, table, etable, q):
    """``exp`` of :func:`_window_energy` (the precomputed ``etable`` once every distance is in)."""
    if i >= jr.shape[0]:
        return etable[c * q + b]
    return np.exp(_window_energy(c, b, i, jr, table, q))


@njit
def _forward(phi, jr, obs, length, table, etable, alpha, ephi, scale):
    """Scaled forward messages (linear space): ``alpha[i, c]`` is ``P(window c ends site i | sites <= i)``
    (rows sum to 1), ``ephi[i, b] = exp(phi[i, b] - max_b phi[i])`` and ``scale[i]`` the row's
    normaliser; returns ``log Z`` (``sum_i log scale[i] + max_b phi[i]``)."""
    q = phi.shape[1]
    big_r = jr.shape[0]
    n_codes = alpha.shape[1]
    top = n_codes // q
    log_z = 0.0
    for i in range(length):
        mx = phi[i, 0]
        for b in range(1, q):
            if phi[i, b] > mx:
                mx = phi[i, b]
        for b in range(q):
            ephi[i, b] = np.exp(phi[i, b] - mx)
        tot = 0.0
        for c2 in range(n_codes):
            b = c2 % q
            alpha[i, c2] = 0.0
            if obs[i] >= 0 and b != obs[i]:
                continue
            rest = c2 // q
            acc = 0.0
            for d in range(q if i >= big_r else 1):
                c = rest + d * top
                a = (1.0 if c == 0 else 0.0) if i == 0 else alpha[i - 1, c]
                if a == 0.0:
                    continue
                acc += a * _edge_weight(c, b, i, jr, table, etable, q)
            alpha[i, c2] = acc * ephi[i, b]
            tot += alpha[i, c2]
        if tot <= 0.0:
            return -np.inf
        for c2 in range(n_codes):
            alpha[i, c2] /= tot
        scale[i] = tot
        log_z += np.log(tot) + mx
    return log_z


@njit
def _backward_statistics(phi, jr, length, table, etable, alpha, ephi, scale, sign, gphi, gr):
    """Add ``sign`` times the posterior expectations of the sufficient statistics to ``gphi`` (site
    marginals, shape (n, q)) and ``gr`` (``sum_i P(x_i = x_{i-r})``, shape (R,)), by the scaled
    backward pass over the edges (window at ``i - 1``, state at ``i``)."""
    q = phi.shape[1]
    big_r = jr.shape[0]
    n_codes = alpha.shape[1]
    top = n_codes // q
    beta = np.ones(n_codes)
    prev = np.empty(n_codes)
    for i in range(length - 1, -1, -1):
        for c in range(n_codes):
            prev[c] = 0.0
        for c2 in range(n_codes):
            if alpha[i, c2] == 0.0:
                continue
            b = c2 % q
            rest = c2 // q
            tail = ephi[i, b] * beta[c2] / scale[i]
            for d in range(q if i >= big_r else 1):
                c = rest + d * top
                a = (1.0 if c == 0 else 0.0) if i == 0 else alpha[i - 1, c]
                if a == 0.0:
                    continue
                t = _edge_weight(c, b, i, jr, table, etable, q) * tail
                p = a * t
                gphi[i, b] += sign * p
                cc = c
                for r in range(1, min(i, big_r) + 1):
                    if cc % q == b:
                        gr[r - 1] += sign * p
                    cc //= q
                prev[c] += t
        for c in range(n_codes):
            beta[c] = prev[c]


@njit(parallel=True)
def sequence_log_likelihood_gradients(phi, jr, states, observed, lengths, out, gphi, gr):
    """Exact ``log P(observed sites)`` of every sequence and its gradients (forward-backward).

    ``d log P / d phi[s, i, a] = P(x_i = a | observed) - P(x_i = a)`` and
    ``d log P / d J_r = sum_i [P(x_i = x_{i-r} | observed) - P(x_i = x_{i-r})]``: the clamped minus
    the free expectations of the sufficient statistics. Cost ``O(L q^(R+1))`` per sequence, twice.

    Parameters
    ----------
    phi : ndarray of shape (S, n, q)
    jr : ndarray of shape (R,)
    states : ndarray of int64, shape (S, n)
    observed : ndarray of bool, shape (S, n)
    lengths : ndarray of int64, shape (S,)
    out : ndarray of shape (S,), out
    gphi : ndarray of shape (S, n, q), out
    gr : ndarray of shape (S, R), out
    """
    n_seq, n, q = phi.shape
    n_codes = q ** jr.shape[0]
    table = coupling_table(jr, q)
    etable = np.exp(table)
    for s in prange(n_seq):
        alpha = np.empty((n, n_codes))
        ephi = np.empty((n, q))
        scale = np.empty(n)
        free = np.full(n, -1, dtype=np.int64)
        obs = np.full(n, -1, dtype=np.int64)
        for i in range(n):
            if observed[s, i]:
                obs[i] = states[s, i]
            for a in range(q):
                gphi[s, i, a] = 0.0
        for r in range(jr.shape[0]):
            gr[s, r] = 0.0
        length = lengths[s]
        z_obs = _forward(phi[s], jr, obs, length, table, etable, alpha, ephi, scale)
        _backward_statistics(phi[s], jr, length, table, etable, alpha, ephi, scale, 1.0, gphi[s], gr[s])
        z_free = _forward(phi[s], jr, free, length, table, etable, alpha, ephi, scale)
        _backward_statistics(phi[s], jr, length, table, etable, alpha, ephi, scale, -1.0, gphi[s], gr[s])
        out[s] = z_obs - z_free


@njit(parallel=True)
def sample_sequences(phi, jr, lengths, uniforms, out):
    """Exact draws of the cutoff-R model of every sequence (forward filtering, backward sampling).

    Parameters
    ----------
    phi : ndarray of shape (S, n, q)
    jr : ndarray of shape (R,)
    lengths : ndarray of int64, shape (S,)
    uniforms : ndarray of shape (S, D, n)
        Uniform(0, 1) numbers (one per site of every draw): the draws are a function of them.
    out : ndarray of int64, shape (S, D, n), out
        ``D`` draws per sequence (``-1`` past the length).
    """
    n_seq, n, q = phi.shape
    big_r = jr.shape[0]
    n_codes = q**big_r
    top = n_codes // q
    table = coupling_table(jr, q)
    etable = np.exp(table)
    n_draws = uniforms.shape[1]
    for s in prange(n_seq):
        alpha = np.empty((n, n_codes))
        ephi = np.empty((n, q))
        scale = np.empty(n)
        free = np.full(n, -1, dtype=np.int64)
        length = lengths[s]
        _forward(phi[s], jr, free, length, table, etable, alpha, ephi, scale)
        w = np.empty(q)
        for k in range(n_draws):
            for i in range(n):
                out[s, k, i] = -1
            # the last window: alpha's last row is its distribution
            u = uniforms[s, k, length - 1]
            acc = 0.0
            c2 = n_codes - 1
            for c in range(n_codes):
                acc += alpha[length - 1, c]
                if u < acc and alpha[length - 1, c] > 0.0:
                    c2 = c
                    break
            while alpha[length - 1, c2] == 0.0:  # round-off at the end of the cumulative sum
                c2 -= 1
            for i in range(length - 1, 0, -1):
                b = c2 % q
                out[s, k, i] = b
                rest = c2 // q
                nd = q if i >= big_r else 1
                tot = 0.0
                for d in range(nd):
                    c = rest + d * top
                    w[d] = alpha[i - 1, c] * _edge_weight(c, b, i, jr, table, etable, q)
                    tot += w[d]
                u = uniforms[s, k, i - 1] * tot
                acc = 0.0
                pick = nd - 1
                for d in range(nd):
                    acc += w[d]
                    if u < acc and w[d] > 0:
                        pick = d
                        break
                while w[pick] == 0.0:
                    pick -= 1
                c2 = rest + pick * top
            out[s, k, 0] = c2 % q
