"""Numba kernels of the exact transfer-matrix solution (private; see :mod:`ising_moe.exact`).

Every kernel works on *log-weights* that already include ``beta``:

- ``log_fields`` of shape (n_f, q), ``n_f`` in {1, n}: ``beta * h_i(a)``;
- ``log_couplings`` of shape (n_c, q, q), ``n_c`` in {1, n - 1}: ``beta * J_b(a, b)`` of the open
  chain's bonds ``b = (i, i + 1)``;
- ``first`` of shape (q,): the log-weight of site 0 (``log_fields[0]``, or ``-inf`` outside a
  clamped state);
- ``last_extra`` of shape (q,): added to the log-field of site ``n - 1`` (a folded closing bond).

With ``F_i(b) = exp(f_i(b))`` and ``W_i(a, b) = exp(J_i(a, b))`` the messages are

    alpha_0 = F_0,    alpha_i(b) = F_i(b) sum_a alpha_{i-1}(a) W_{i-1}(a, b),
    beta_{n-1} = 1,   beta_i(a)  = sum_b W_i(a, b) F_{i+1}(b) beta_{i+1}(b),

kept normalised to sum 1 at every step; the logs of the normalisers (and of the max-shifts taken
before each ``exp``) add up to ``log Z``. The open chain is then a Markov chain with transition
matrices ``M_i(a, b) = W_i(a, b) F_{i+1}(b) beta_{i+1}(b) / beta_i(a)``.
"""

from __future__ import annotations

import numpy as np

from .._numba import njit


@njit
def site_weights(log_fields, first, last_extra, i, n, out):
    """Write ``exp(f_i - max f_i)`` into ``out`` (shape (q,)) and return the shift ``max f_i``."""
    q = out.shape[0]
    row = i if log_fields.shape[0] > 1 else 0
    shift = -np.inf
    for a in range(q):
        if i == 0:
            v = first[a]
        else:
            v = log_fields[row, a]
        if i == n - 1:
            v += last_extra[a]
        out[a] = v
        if v > shift:
            shift = v
    for a in range(q):
        out[a] = np.exp(out[a] - shift)
    return shift


@njit
def bond_weights(log_couplings, b, out):
    """Write ``exp(J_b - max J_b)`` into ``out`` (shape (q, q)) and return the shift."""
    q = out.shape[0]
    mat = log_couplings[b if log_couplings.shape[0] > 1 else 0]
    shift = -np.inf
    for a in range(q):
        for c in range(q):
            if mat[a, c] > shift:
                shift = mat[a, c]
    for a in range(q):
        for c in range(q):
            out[a, c] = np.exp(mat[a, c] - shift)
    return shift


@njit
def forward(log_fields, log_couplings, first, last_extra, alphas):
    """Forward messages (normalised rows written into ``alphas`` of shape (n, q)); returns log Z."""
    n, q = alphas.shape
    fw = np.empty(q)
    w = np.empty((q, q))
    homogeneous_bonds = log_couplings.shape[0] == 1
    w_shift = bond_weights(log_couplings, 0, w)
    log_z = site_weights(log_fields, first, last_extra, 0, n, fw)
    norm = fw.sum()
    log_z += np.log(norm)
    for a in range(q):
        alphas[0, a] = fw[a] / norm
    new = np.empty(q)
    for i in range(1, n):
        if not homogeneous_bonds:
            w_shift = bond_weights(log_couplings, i - 1, w)
        f_shift = site_weights(log_fields, first, last_extra, i, n, fw)
        new[:] = 0.0
        for a in range(q):
            x = alphas[i - 1, a]
            for b in range(q):
                new[b] += x * w[a, b]
        norm = 0.0
        for b in range(q):
            new[b] *= fw[b]
            norm += new[b]
        for b in range(q):
            alphas[i, b] = new[b] / norm
        log_z += w_shift + f_shift + np.log(norm)
    return log_z


@njit
def backward(log_fields, log_couplings, first, last_extra, betas):
    """Backward messages, normalised rows written into ``betas`` of shape (n, q)."""
    n, q = betas.shape
    fw = np.empty(q)
    w = np.empty((q, q))
    wt = np.empty((q, q))
    v = np.empty(q)
    new = np.empty(q)
    homogeneous_bonds = log_couplings.shape[0] == 1
    bond_weights(log_couplings, 0, w)
    wt[:, :] = w.T
    betas[n - 1, :] = 1.0 / q
    for i in range(n - 2, -1, -1):
        if not homogeneous_bonds:
            bond_weights(log_couplings, i, w)
            wt[:, :] = w.T
        site_weights(log_fields, first, last_extra, i + 1, n, fw)
        for b in range(q):
            v[b] = fw[b] * betas[i + 1, b]
        new[:] = 0.0
        # column-wise accumulation over contiguous rows of W^T (vectorises, unlike a dot product)
        for b in range(q):
            x = v[b]
            for a in range(q):
                new[a] += wt[b, a] * x
        norm = 0.0
        for a in range(q):
            norm += new[a]
        for a in range(q):
            betas[i, a] = new[a] / norm


@njit
def transition(log_fields, log_couplings, first, last_extra, betas, i, w, fw, out):
    """Transition matrix ``M_i(a, b) = P(s_{i+1} = b | s_i = a)`` of the open chain into ``out``."""
    n, q = betas.shape
    bond_weights(log_couplings, i, w)
    site_weights(log_fields, first, last_extra, i + 1, n, fw)
    for a in range(q):
        norm = 0.0
        for b in range(q):
            v = w[a, b] * fw[b] * betas[i + 1, b]
            out[a, b] = v
            norm += v
        for b in range(q):
            out[a, b] /= norm


@njit
def pair_marginals(log_fields, log_couplings, first, last_extra, marginals, betas, out):
    """``out[i, a, b] = P(s_i = a, s_{i+1} = b)`` for the open bonds, shape (n - 1, q, q)."""
    n, q = marginals.shape
    w = np.empty((q, q))
    fw = np.empty(q)
    v = np.empty(q)
    homogeneous_bonds = log_couplings.shape[0] == 1
    bond_weights(log_couplings, 0, w)
    for i in range(n - 1):
        if not homogeneous_bonds:
            bond_weights(log_couplings, i, w)
        site_weights(log_fields, first, last_extra, i + 1, n, fw)
        for b in range(q):
            v[b] = fw[b] * betas[i + 1, b]
        # P(s_i = a, s_{i+1} = b) = p_i(a) M_i(a, b), M_i the row-normalised W_i(a, b) v(b)
        for a in range(q):
            norm = 0.0
            for b in range(q):
                out[i, a, b] = w[a, b] * v[b]
                norm += out[i, a, b]
            scale = marginals[i, a] / norm
            for b in range(q):
                out[i, a, b] *= scale


@njit
def joint_diagonals(log_fields, log_couplings, first, last_extra, marginals, betas, starts,
                    d_lo, d_hi, out):
    """Same-state joint probabilities ``out[k, d - d_lo, a] = P(s_i = a, s_{i+d} = a)``.

    For ``i = starts[k]`` and ``d_lo <= d <= d_hi`` (entries with ``i + d >= n`` are left at 0).
    The joint of ``(s_i, s_j)`` is ``diag(p_i) M_i ... M_{j-1}``: cost O(len(starts) d_hi q^3).
    """
    n, q = marginals.shape
    w = np.empty((q, q))
    fw = np.empty(q)
    m = np.empty((q, q))
    g = np.empty((q, q))
    g2 = np.empty((q, q))
    out[:] = 0.0
    for k in range(starts.shape[0]):
        i = starts[k]
        g[:, :] = 0.0
        for a in range(q):
            g[a, a] = marginals[i, a]
        if d_lo == 0:
            for a in range(q):
                out[k, 0, a] = marginals[i, a]
        for d in range(1, d_hi + 1):
            j = i + d
            if j >= n:
                break
            transition(log_fields, log_couplings, first, last_extra, betas, j - 1, w, fw, m)
            for a in range(q):
                for b in range(q):
                    g2[a, b] = 0.0
                for c in range(q):
                    x = g[a, c]
                    if x != 0.0:
                        for b in range(q):
                            g2[a, b] += x * m[c, b]
            g[:, :] = g2
            if d >= d_lo:
                for a in range(q):
                    out[k, d - d_lo, a] = g[a, a]


@njit
def joint(log_fields, log_couplings, first, last_extra, marginals, betas, i, j, out):
    """Full joint ``out[a, b] = P(s_i = a, s_j = b)`` for ``i <= j`` of the open chain."""
    n, q = marginals.shape
    w = np.empty((q, q))
    fw = np.empty(q)
    m = np.empty((q, q))
    g2 = np.empty((q, q))
    out[:, :] = 0.0
    for a in range(q):
        out[a, a] = marginals[i, a]
    for k in range(i, j):
        transition(log_fields, log_couplings, first, last_extra, betas, k, w, fw, m)
        g2[:, :] = 0.0
        for a in range(q):
            for c in range(q):
                x = out[a, c]
                for b in range(q):
                    g2[a, b] += x * m[c, b]
        out[:, :] = g2


@njit
def _draw(weights, total, u):
    """Index drawn from unnormalised ``weights`` with a uniform ``u`` in [0, 1)."""
    target = u * total
    acc = 0.0
    q = weights.shape[0]
    for a in range(q):
        acc += weights[a]
        if target < acc:
            return a
    # rounding: return the last state with positive weight
    for a in range(q - 1, -1, -1):
        if weights[a] > 0.0:
            return a
    return q - 1


@njit
def sample_backward(log_couplings, alphas, rng, rows, out):
    """Forward-filtering backward-sampling: fill ``out[rows[k]]`` with exact samples.

    ``s_{n-1} ~ alpha_{n-1}``, then ``s_i ~ alpha_i(a) W_i(a, s_{i+1})`` for ``i = n-2 .. 0``.
    Uses one ``rng.random()`` per site, in row then site order (reproducible for a seed).
    """
    n, q = alphas.shape
    homogeneous_bonds = log_couplings.shape[0] == 1
    wt = np.empty(q)
    for k in range(rows.shape[0]):
        r = rows[k]
        for a in range(q):
            wt[a] = alphas[n - 1, a]
        s = _draw(wt, wt.sum(), rng.random())
        out[r, n - 1] = s
        for i in range(n - 2, -1, -1):
            mat = log_couplings[i if not homogeneous_bonds else 0]
            shift = -np.inf
            for a in range(q):
                if mat[a, s] > shift:
                    shift = mat[a, s]
            total = 0.0
            for a in range(q):
                v = alphas[i, a] * np.exp(mat[a, s] - shift)
                wt[a] = v
                total += v
            s = _draw(wt, total, rng.random())
            out[r, i] = s
