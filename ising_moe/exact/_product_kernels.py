"""Numba kernels of the product-state forward-backward (private; see :mod:`ising_moe.exact.product`).

A site's joint state ``x`` is the row-major index of a tuple ``(x_1, .., x_F)`` with factor sizes
``n_f`` (strides ``st_f = prod_{g > f} n_g``). Transitions are pre-exponentiated with a shift per
bond (``kind = DENSE``: ``W_b`` of shape (S, S); ``kind = KRON``: one ``(n_f, n_f)`` factor per
factor, ``W_b(x, y) = prod_f W_{b,f}(x_f, y_f)``, applied factor by factor in ``O(S sum_f n_f)``).
Bond ``b`` joins sites ``b`` and ``b + 1``; a homogeneous transition is stored once
(``n_bond_tables = 1``). Messages are normalised at every site (Rabiner scaling):
``alpha_i`` sums to one with normaliser ``n_i``, ``beta_i(x) = sum_y W(x, y) u_{i+1}(y)`` with
``u_{i+1} = f_{i+1} beta_{i+1} / n_{i+1}`` and ``f_i = exp(unary_i - max unary_i)``; the site
marginals are ``alpha_i beta_i`` and the bond marginals ``alpha_i(x) W(x, y) u_{i+1}(y)``.
Every kernel takes the site weights as a table, ``site_weight`` (G, S) ``= exp(u_g - max u_g)`` and
``site_max`` (G,) ``= max u_g``, and ``site_index`` (N, L): site ``i`` of sequence ``n`` has the
potentials of row ``site_index[n, i]`` (one row per site in general; one per token for models
whose potentials depend on the token only). The caller exponentiates with NumPy's vectorised
``exp`` (a kernel's scalar ``exp`` was half the time of a forward pass at ``S = 4096``).
Work is split over sequences in fixed chunks (results independent of the thread count).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._numba import njit

DENSE, KRON = 0, 1


@njit
def _contract(src, dst, w, n, stride, size, transpose):
    """Contract factor index ``x_f`` (size ``n``, stride ``stride``) of ``src`` with ``w``:
    ``dst[.., y, ..] = sum_x src[.., x, ..] w[x, y]`` (``transpose``: ``w[y, x]``).

    With ``src`` and ``dst`` viewed as (outer, n, stride) arrays this is one small matrix product
    per outer block, ``dst[o] = M src[o]`` (``M = w^T``, or ``w`` when transposed), or for the last
    factor (``stride == 1``) a single ``(outer, n) @ (n, n)`` product: BLAS products, 2-6x faster
    than compiled loops at these shapes (``benchmarks/bench_lattice.py``)."""
    plain = (stride == 1) != transpose  # M = w itself, else its transpose
    m = np.empty((n, n))
    for a in range(n):
        for b in range(n):
            m[a, b] = w[a, b] if plain else w[b, a]
    outer = size // (n * stride)
    if stride == 1:
        np.dot(src.reshape((outer, n)), m, dst.reshape((outer, n)))
        return
    s3 = src.reshape((outer, n, stride))
    d3 = dst.reshape((outer, n, stride))
    for o in range(outer):
        np.dot(m, s3[o], d3[o])


@njit
def _contract_potts(src, dst, diag, off, n, stride, size):
    """``_contract`` for a Potts factor ``w = off + (diag - off) delta``: ``O(size)`` instead of ``O(size n)``."""
    block = n * stride
    gap = diag - off
    for o in range(size // block):
        base = o * block
        for r in range(stride):
            tot = 0.0
            for a in range(n):
                tot += src[base + a * stride + r]
            tot *= off
            for a in range(n):
                k = base + a * stride + r
                dst[k] = tot + gap * src[k]


@njit
def _kron_apply(fac, potts, sizes, strides, src, dst, tmp, transpose, skip):
    """``dst = (kron_f W_f) src`` over every factor but ``skip`` (forward: contracts the left index;
    ``transpose``: the right one, i.e. ``sum_y W(x, y) src(y)``). ``tmp`` is scratch; ``src`` is kept.
    ``potts[f]``: factor ``f`` has one diagonal and one off-diagonal value (fast path)."""
    size = src.shape[0]
    cur = src
    n_done = 0
    for f in range(sizes.shape[0]):
        if f == skip:
            continue
        out = dst if n_done % 2 == 0 else tmp
        if potts[f]:
            _contract_potts(cur, out, fac[f, 0, 0], fac[f, 0, 1], sizes[f], strides[f], size)
        else:
            _contract(cur, out, fac[f], sizes[f], strides[f], size, transpose)
        cur = out
        n_done += 1
    if n_done == 0:
        for k in range(size):
            dst[k] = src[k]
    elif n_done % 2 == 0:  # the last contraction wrote into tmp
        for k in range(size):
            dst[k] = tmp[k]


@njit
def _apply(kind, dense, fac, potts, sizes, strides, b, src, dst, tmp, transpose):
    """``dst(y) = sum_x src(x) W_b(x, y)`` (``transpose``: ``dst(x) = sum_y W_b(x, y) src(y)``)."""
    bt = b if (dense.shape[0] > 1 if kind == DENSE else fac.shape[0] > 1) else 0
    if kind == KRON:
        _kron_apply(fac[bt], potts[bt], sizes, strides, src, dst, tmp, transpose, -1)
        return
    w = dense[bt]
    size = src.shape[0]
    if transpose:
        for x in range(size):
            acc = 0.0
            for y in range(size):
                acc += w[x, y] * src[y]
            dst[x] = acc
    else:
        for y in range(size):
            dst[y] = 0.0
        for x in range(size):
            v = src[x]
            if v == 0.0:
                continue
            for y in range(size):
                dst[y] += v * w[x, y]


@njit
def _forward(site_weight, site_max, idx, length, kind, dense, fac, potts, sizes, strides, tshift, alpha, norms, tmp1,
             tmp2):
    """Scaled forward messages into ``alpha[:length]`` of a sequence whose site ``i`` has the weights
    ``site_weight[idx[i]]`` ``= exp(u_i - site_max[idx[i]])``; returns ``log Z`` (``-inf`` when the
    sequence has zero weight)."""
    size = site_weight.shape[1]
    total = 0.0
    for i in range(length):
        m = site_max[idx[i]]
        if m == -np.inf:
            return -np.inf
        fw = site_weight[idx[i]]
        s = 0.0
        if i == 0:
            for x in range(size):
                alpha[0, x] = fw[x]
                s += fw[x]
        else:
            _apply(kind, dense, fac, potts, sizes, strides, i - 1, alpha[i - 1], tmp1, tmp2, False)
            for x in range(size):
                v = tmp1[x] * fw[x]
                alpha[i, x] = v
                s += v
            total += tshift[i - 1 if tshift.shape[0] > 1 else 0]
        if not s > 0.0:
            return -np.inf
        inv = 1.0 / s
        for x in range(size):
            alpha[i, x] *= inv
        norms[i] = s
        total += m + np.log(s)
    return total


@njit
def _backward(length, kind, dense, fac, potts, sizes, strides, alpha, site_weight, idx, norms, beta, marg, u, tmp1,
              tmp2, tmp3, weight, want_pairs, pairs_dense, pairs_kron, site_sum):
    """Backward messages into ``beta``, site marginals into ``marg`` (``weight`` times them added to
    ``site_sum``) and, with ``want_pairs``, ``weight`` times the bond marginals summed over bonds
    into ``pairs_dense`` (S, S) or, per factor, ``pairs_kron`` (F, nmax, nmax) (``want_pairs == 2``:
    the diagonals ``pairs_kron[f, a, a]`` only, ``O(S)`` per factor)."""
    size = alpha.shape[1]
    n_fac = sizes.shape[0]
    for x in range(size):
        beta[length - 1, x] = 1.0
    for i in range(length - 2, -1, -1):
        inv = 1.0 / norms[i + 1]
        for y in range(size):
            u[y] = site_weight[idx[i + 1], y] * beta[i + 1, y] * inv
        _apply(kind, dense, fac, potts, sizes, strides, i, u, beta[i], tmp1, True)
        if want_pairs:
            bt = i if (dense.shape[0] > 1 if kind == DENSE else fac.shape[0] > 1) else 0
            if kind == DENSE:
                w = dense[bt]
                for x in range(size):
                    xa = weight * alpha[i, x]
                    if xa == 0.0:
                        continue
                    for y in range(size):
                        pairs_dense[x, y] += xa * w[x, y] * u[y]
            else:
                for f in range(n_fac):
                    # v(x_{-f}, y_f) = sum_{y_{-f}} prod_{g != f} W_g(x_g, y_g) u(y)
                    _kron_apply(fac[bt], potts[bt], sizes, strides, u, tmp2, tmp3, True, f)
                    n, stride = sizes[f], strides[f]
                    block = n * stride
                    wf = fac[bt, f]
                    for o in range(size // block):
                        base = o * block
                        for a in range(n):
                            for b in range(n):
                                if want_pairs == 2 and b != a:
                                    continue
                                acc = 0.0
                                for r in range(stride):
                                    acc += alpha[i, base + a * stride + r] * tmp2[base + b * stride + r]
                                pairs_kron[f, a, b] += weight * wf[a, b] * acc
    for i in range(length):
        s = 0.0
        for x in range(size):
            v = alpha[i, x] * beta[i, x]
            marg[i, x] = v
            s += v
        inv = 1.0 / s
        for x in range(size):
            marg[i, x] *= inv
            site_sum[i, x] += weight * marg[i, x]


@njit(parallel=True)
def product_pass(site_weight, site_max, site_index, lengths, weights, kind, dense, fac, potts, sizes, strides, tshift,
                 n_chunks, want_marginals, want_pairs, groups, log_z, marginals, site_sums, pairs_dense, pairs_kron,
                 group_sums):
    """Forward-backward of every sequence.

    Parameters
    ----------
    site_weight : ndarray, shape (G, S)
        ``exp(unary - site_max)`` of the rows of log site potentials ``unary`` (``-inf``: forbidden).
    site_max : ndarray, shape (G,)
        ``max_x unary[g, x]`` (``-inf``: no allowed state).
    site_index : int64 (N, L)
        The row of every site.
    lengths : int64 (N,); weights : float (N,)
    kind, dense, fac, potts, sizes, strides, tshift
        Transition (see the module docstring); ``potts`` (n_bond_tables, F) flags Potts-form factors;
        ``tshift`` (n_bond_tables,) the log shifts taken before exponentiating.
    n_chunks : int
    want_marginals : bool
    want_pairs : int
        0 none, 1 full pair statistics, 2 Kronecker diagonals only
    log_z : out (N,)
    marginals : out (N, L, S) when ``want_marginals`` (else unused, any shape)
    site_sums : out (n_chunks, L, S)
    pairs_dense : out (n_chunks, S, S) or (n_chunks, 1, 1); pairs_kron : out (n_chunks, F, nmax, nmax)
    groups : int64 (N, L) group of every site, or (0, 0) for none
    group_sums : out (n_chunks, G, S): ``weight`` times the marginals summed per group
    """
    want_groups = groups.shape[0] > 0
    n_seq, n_sites = site_index.shape
    size = site_weight.shape[1]
    for c in prange(n_chunks):
        alpha = np.empty((n_sites, size))
        beta = np.empty((n_sites, size))
        marg = np.empty((n_sites, size))
        norms = np.empty(n_sites)
        u = np.empty(size)
        tmp1 = np.empty(size)
        tmp2 = np.empty(size)
        tmp3 = np.empty(size)
        for s in range(c, n_seq, n_chunks):
            length = lengths[s]
            idx = site_index[s]
            lz = _forward(site_weight, site_max, idx, length, kind, dense, fac, potts, sizes, strides, tshift, alpha,
                          norms, tmp1, tmp2)
            log_z[s] = lz
            if lz == -np.inf:
                if want_marginals:
                    marginals[s] = np.nan
                continue
            _backward(length, kind, dense, fac, potts, sizes, strides, alpha, site_weight, idx, norms, beta, marg, u,
                      tmp1, tmp2, tmp3, weights[s], want_pairs, pairs_dense[c], pairs_kron[c], site_sums[c])
            if want_groups:
                ws = weights[s]
                for i in range(length):
                    gi = groups[s, i]
                    for x in range(size):
                        group_sums[c, gi, x] += ws * marg[i, x]
            if want_marginals:
                for i in range(length):
                    for x in range(size):
                        marginals[s, i, x] = marg[i, x]
                for i in range(length, n_sites):
                    for x in range(size):
                        marginals[s, i, x] = 0.0


@njit(parallel=True)
def product_log_z(site_weight, site_max, site_index, lengths, kind, dense, fac, potts, sizes, strides, tshift, n_chunks,
                  log_z):
    """``log_z[s]`` of every sequence: the forward pass only (half the work of ``product_pass``)."""
    n_seq, n_sites = site_index.shape
    size = site_weight.shape[1]
    for c in prange(n_chunks):
        alpha = np.empty((n_sites, size))
        norms = np.empty(n_sites)
        tmp1 = np.empty(size)
        tmp2 = np.empty(size)
        for s in range(c, n_seq, n_chunks):
            log_z[s] = _forward(site_weight, site_max, site_index[s], lengths[s], kind, dense, fac, potts, sizes,
                                strides, tshift, alpha, norms, tmp1, tmp2)


@njit(parallel=True)
def product_sample(site_weight, site_max, site_index, lengths, kind, dense, fac, potts, sizes, strides, tshift,
                   uniforms, n_chunks, out):
    """Forward filtering, backward sampling: ``out[s, :lengths[s]]`` one exact draw of sequence ``s``
    from its ``uniforms[s]`` (``-1`` past the length)."""
    n_seq, n_sites = site_index.shape
    size = site_weight.shape[1]
    n_fac = sizes.shape[0]
    for c in prange(n_chunks):
        alpha = np.empty((n_sites, size))
        norms = np.empty(n_sites)
        tmp1 = np.empty(size)
        tmp2 = np.empty(size)
        p = np.empty(size)
        for s in range(c, n_seq, n_chunks):
            length = lengths[s]
            out[s, :] = -1
            idx = site_index[s]
            lz = _forward(site_weight, site_max, idx, length, kind, dense, fac, potts, sizes, strides, tshift, alpha,
                          norms, tmp1, tmp2)
            if lz == -np.inf:
                continue
            for i in range(length - 1, -1, -1):
                total = 0.0
                if i == length - 1:
                    for x in range(size):
                        p[x] = alpha[i, x]
                        total += p[x]
                else:
                    y = out[s, i + 1]
                    bt = i if (dense.shape[0] > 1 if kind == DENSE else fac.shape[0] > 1) else 0
                    for x in range(size):
                        if kind == DENSE:
                            w = dense[bt, x, y]
                        else:
                            w = 1.0
                            for f in range(n_fac):
                                w *= fac[bt, f, (x // strides[f]) % sizes[f], (y // strides[f]) % sizes[f]]
                        p[x] = alpha[i, x] * w
                        total += p[x]
                target = uniforms[s, i] * total
                acc = 0.0
                pick = size - 1
                for x in range(size):
                    acc += p[x]
                    if acc > target and p[x] > 0.0:
                        pick = x
                        break
                while p[pick] == 0.0 and pick > 0:
                    pick -= 1
                out[s, i] = pick


@njit(parallel=True)
def product_two_point(site_weight, site_max, site_index, lengths, observed, kind, dense, fac, potts, sizes, strides,
                      tshift, factor, max_distance, n_chunks, out):
    """``out[c, i, r, a, b] += P(x_{f,i} = a, x_{f,i+r} = b)`` summed over the sequences of chunk ``c``
    observed at ``i`` and ``i + r`` (``f = factor``, ``r = 0..max_distance``).

    From site ``i`` the posterior is a Markov chain: with ``g_i = alpha_i 1[x_f = a]`` and
    ``g_{j+1}(y) = [sum_x g_j(x) W_j(x, y)] f_{j+1}(y) / n_{j+1}``,
    ``P(x_{f,i} = a, x_j) = g_j beta_j``.
    """
    n_seq, n_sites = site_index.shape
    size = site_weight.shape[1]
    n = sizes[factor]
    stride = strides[factor]
    for c in prange(n_chunks):
        alpha = np.empty((n_sites, size))
        beta = np.empty((n_sites, size))
        marg = np.empty((n_sites, size))
        norms = np.empty(n_sites)
        u = np.empty(size)
        tmp1 = np.empty(size)
        tmp2 = np.empty(size)
        tmp3 = np.empty(size)
        g = np.empty((n, size))
        dummy_d = np.zeros((1, 1))
        dummy_k = np.zeros((1, 1, 1))
        dummy_s = np.zeros((n_sites, size))
        for s in range(c, n_seq, n_chunks):
            length = lengths[s]
            idx = site_index[s]
            lz = _forward(site_weight, site_max, idx, length, kind, dense, fac, potts, sizes, strides, tshift, alpha,
                          norms, tmp1, tmp2)
            if lz == -np.inf:
                continue
            _backward(length, kind, dense, fac, potts, sizes, strides, alpha, site_weight, idx, norms, beta, marg, u,
                      tmp1, tmp2, tmp3, 0.0, 0, dummy_d, dummy_k, dummy_s)
            for i in range(length):
                if not observed[s, i]:
                    continue
                for a in range(n):
                    for x in range(size):
                        g[a, x] = alpha[i, x] if (x // stride) % n == a else 0.0
                for r in range(0, max_distance + 1):
                    j = i + r
                    if j >= length:
                        break
                    if r > 0:
                        inv = 1.0 / norms[j]
                        for a in range(n):
                            _apply(kind, dense, fac, potts, sizes, strides, j - 1, g[a], tmp1, tmp2, False)
                            for y in range(size):
                                g[a, y] = tmp1[y] * site_weight[idx[j], y] * inv
                    if not observed[s, j]:
                        continue
                    for a in range(n):
                        for y in range(size):
                            out[c, i, r, a, (y // stride) % n] += g[a, y] * beta[j, y]
