"""Numba kernels of the conditional chains (linear-chain CRFs) and their mixtures (private).

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

Parallel kernels split the sequences into ``n_chunks`` fixed chunks with their own accumulators,
summed in chunk order: results do not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._numba import njit

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


@njit(parallel=True)
def crf_pass(states, observed, rows, lengths, holes, seq_weight, pw, pshift, tw, tshift, wc, cshift, g,
             g2, j2shift, kind, max_range, log_pi, n_chunks, want_grad, ll_out, g_pos, g_tok, g_pair, g_j2):
    """Exact log-likelihoods of a mixture of conditional chains and the gradient moments.

    Parameters
    ----------
    states, observed, rows : ndarray, shape (S, n)
        States, observed flags and token-table rows of every site.
    lengths : ndarray of int64, shape (S,)
    holes : ndarray of bool, shape (S,)
        Sequences with hidden sites inside their length (clamped pass needed).
    seq_weight : ndarray, shape (S,)
    pw, pshift : ndarray, shapes (K, n, q), (K, n)
        Exponentiated position fields of each component and their log shifts.
    tw, tshift : ndarray, shapes (K, R, q), (K, R)
        Exponentiated token fields.
    wc : ndarray, shape (K, q, q)
        Bond weights (``KIND_FULL``, or any kind at range 2), their log shifts ``cshift`` (K,).
    g, g2, j2shift : ndarray, shape (K,)
        ``e^J - 1`` (Potts), ``e^{J2} - 1`` and ``-J2 / q``.
    kind, max_range : int
    log_pi : ndarray, shape (K,)
        Log mixture weights.
    n_chunks : int
    want_grad : bool
    ll_out : ndarray, shape (S, K)
        ``log p_k(observed part of x_s | tokens)``.
    g_pos, g_tok, g_pair, g_j2 : ndarray, shapes (K, n, q), (K, R, q), (K, q, q), (K,)
        Overwritten with ``sum_s w_s r_sk (data - model moments)``, ``r_sk`` the responsibilities.

    Returns
    -------
    float
        ``sum_s w_s log sum_k pi_k p_k(x_s)``.
    """
    n_seq, n_max = states.shape
    n_comp, _, q = pw.shape
    n_rows = tw.shape[1]
    gsize = n_chunks if want_grad else 1
    c_pos = np.zeros((gsize, n_comp, n_max, q))
    c_tok = np.zeros((gsize, n_comp, n_rows, q))
    c_pair = np.zeros((gsize, n_comp, q, q))
    c_j2 = np.zeros((gsize, n_comp))
    c_total = np.zeros(n_chunks)
    two = max_range == 2
    indep = kind == KIND_NONE and not two
    for c in prange(n_chunks):
        f = np.empty((n_comp, n_max, q))
        fsh = np.empty((n_comp, n_max))
        m1 = n_max if not (two or indep) else 1
        m2 = n_max if two else 1
        af = np.empty((n_comp, m1, q))
        ac = np.empty((n_comp, m1, q))
        af2 = np.empty((n_comp, m2, q, q))
        ac2 = np.empty((n_comp, m2, q, q))
        nf = np.empty((n_comp, n_max))
        nc = np.empty((n_comp, n_max))
        beta1 = np.empty((m1, q))
        beta2 = np.empty((m2, q, q))
        mf = np.empty((n_max, q))
        mc = np.empty((n_max, q))
        u = np.empty(q)
        llk = np.empty(n_comp)
        gc = np.int64(c) if want_grad else np.int64(0)
        for s in range(c * n_seq // n_chunks, (c + 1) * n_seq // n_chunks):
            length = lengths[s]
            x = states[s]
            obs = observed[s]
            hole = holes[s]
            for k in range(n_comp):
                _site_table(pw[k], pshift[k], tw[k], tshift[k], rows[s], length, f[k], fsh[k])
                if indep:
                    llk[k] = _independent_log_likelihood(f[k], length, x, obs, nf[k])
                    ll_out[s, k] = llk[k]
                    continue
                base = (length - 1) * cshift[k]
                if two:
                    base += (length - 2) * j2shift[k]
                log_z = base
                for i in range(length):
                    log_z += fsh[k, i]
                if two:
                    log_z += _forward2(f[k], length, wc[k], g2[k], x, obs, False, af2[k], nf[k])
                else:
                    log_z += _forward1(f[k], length, wc[k], kind, g[k], x, obs, False, af[k], nf[k])
                if hole:
                    lc = base
                    for i in range(length):
                        lc += fsh[k, i]
                    if two:
                        lc += _forward2(f[k], length, wc[k], g2[k], x, obs, True, ac2[k], nc[k])
                    else:
                        lc += _forward1(f[k], length, wc[k], kind, g[k], x, obs, True, ac[k], nc[k])
                else:
                    lc = base + _observed_log_weight(f[k], fsh[k], length, x, wc[k], kind, g[k], g2[k], max_range)
                llk[k] = lc - log_z
                ll_out[s, k] = llk[k]
            top = -np.inf
            for k in range(n_comp):
                top = max(top, log_pi[k] + llk[k])
            acc = 0.0
            for k in range(n_comp):
                acc += np.exp(log_pi[k] + llk[k] - top)
            tot = top + np.log(acc)
            c_total[c] += seq_weight[s] * tot
            if not want_grad:
                continue
            for k in range(n_comp):
                om = seq_weight[s] * np.exp(log_pi[k] + llk[k] - tot)
                if om == 0.0:
                    continue
                if indep:  # data minus model moments at the observed sites (zero at hidden ones)
                    for i in range(length):
                        if not obs[i]:
                            continue
                        r = rows[s, i]
                        inv = om / nf[k, i]
                        for a in range(q):
                            d = -f[k, i, a] * inv
                            if a == x[i]:
                                d += om
                            c_pos[gc, k, i, a] += d
                            c_tok[gc, k, r, a] += d
                    continue
                # model moments (free chain), subtracted
                if two:
                    c_j2[gc, k] += _backward2(f[k], length, wc[k], g2[k], x, obs, False, af2[k], nf[k], beta2, mf,
                                              c_pair[gc, k], -om)
                else:
                    _backward1(f[k], length, wc[k], kind, g[k], x, obs, False, af[k], nf[k], beta1, u, mf,
                               c_pair[gc, k], -om)
                # data moments: posterior of the clamped chain, or the observed configuration
                if hole:
                    if two:
                        c_j2[gc, k] += _backward2(f[k], length, wc[k], g2[k], x, obs, True, ac2[k], nc[k], beta2,
                                                  mc, c_pair[gc, k], om)
                    else:
                        _backward1(f[k], length, wc[k], kind, g[k], x, obs, True, ac[k], nc[k], beta1, u, mc,
                                   c_pair[gc, k], om)
                else:
                    for i in range(length):
                        for a in range(q):
                            mc[i, a] = 0.0
                        mc[i, x[i]] = 1.0
                    for i in range(length - 1):
                        if kind == KIND_FULL or two or x[i] == x[i + 1]:
                            if kind != KIND_NONE or two:
                                c_pair[gc, k, x[i], x[i + 1]] += om
                    if two:
                        for i in range(length - 2):
                            if x[i] == x[i + 2]:
                                c_j2[gc, k] += om
                for i in range(length):
                    r = rows[s, i]
                    for a in range(q):
                        d = om * (mc[i, a] - mf[i, a])
                        c_pos[gc, k, i, a] += d
                        c_tok[gc, k, r, a] += d
    total = 0.0
    for c in range(n_chunks):
        total += c_total[c]
    if want_grad:
        g_pos[:] = 0.0
        g_tok[:] = 0.0
        g_pair[:] = 0.0
        g_j2[:] = 0.0
        for c in range(n_chunks):
            g_pos += c_pos[c]
            g_tok += c_tok[c]
            g_pair += c_pair[c]
            g_j2 += c_j2[c]
    return total


@njit
def _transitions1(f, length, wc, kind, g, beta, norms, trans):
    """Transition matrices ``M_i(a, b) = P(s_{i+1} = b | s_i = a)`` of the free chain, ``i < length - 1``."""
    q = f.shape[1]
    for i in range(length - 1):
        for a in range(q):
            s = 0.0
            for b in range(q):
                if kind == KIND_FULL:
                    w = wc[a, b]
                else:
                    w = 1.0 + g if a == b else 1.0
                v = w * f[i + 1, b] * beta[i + 1, b] / norms[i + 1]
                trans[i, a, b] = v
                s += v
            for b in range(q):
                trans[i, a, b] /= s


@njit
def _spread(cond, q, width, mean):
    """Bound on the largest total-variation distance between the conditional distributions
    ``cond[a] / sum`` (``2 max_a TV(cond_a, mixture)``: ``O(q width)`` instead of ``O(q^2 width)``)."""
    total = 0.0
    for t in range(width):
        mean[t] = 0.0
    for a in range(q):
        for t in range(width):
            mean[t] += cond[a, t]
            total += cond[a, t]
    worst = 0.0
    for a in range(q):
        sa = 0.0
        for t in range(width):
            sa += cond[a, t]
        if sa == 0.0:
            continue
        d = 0.0
        for t in range(width):
            d += abs(cond[a, t] / sa - mean[t] / total)
        worst = max(worst, d)
    return worst


@njit
def _same_state_joint1(marg, trans, i, length, max_distance, tol, out, cond, nxt, mean):
    """``out[r] = P(s_i = s_{i+r})`` for ``r = 1..`` until the conditionals given ``s_i`` agree to
    ``tol`` (total variation; the connected part is then below ``tol``): returns the last ``r`` done."""
    q = marg.shape[1]
    cond[:] = 0.0
    for a in range(q):
        cond[a, a] = marg[i, a]
    last = 0
    for r in range(1, max_distance + 1):
        j = i + r
        if j >= length:
            break
        tm = trans[j - 1]
        for a in range(q):
            for b in range(q):
                nxt[a, b] = 0.0
            for c in range(q):
                v = cond[a, c]
                for b in range(q):  # contiguous innermost loop (vectorised)
                    nxt[a, b] += v * tm[c, b]
        tr = 0.0
        for a in range(q):
            for b in range(q):
                cond[a, b] = nxt[a, b]
            tr += cond[a, a]
        out[r] = tr
        last = r
        if _spread(cond, q, q, mean) < tol:
            break
    return last


@njit
def _same_state_joint2(f, length, wc, g2, alpha, beta, norms, marg, i, max_distance, tol, out, cond, nxt, kyz, scaled,
                       mean):
    """Range-2 version of :func:`_same_state_joint1`: the conditionals given ``s_i`` live on pair
    states ``(s_{j-1}, s_j)`` and move with the pair-state transitions of the free chain."""
    q = f.shape[1]
    # cond[a, (x, y)]: P(s_i = a, s_{j-1} = x, s_j = y), starting at j = max(i, 1)
    cond[:] = 0.0
    j = max(i, 1)
    s = 0.0
    for x in range(q):
        for y in range(q):
            s += alpha[j, x, y] * beta[j, x, y]
    for x in range(q):
        for y in range(q):
            p = alpha[j, x, y] * beta[j, x, y] / s
            cond[x if i == 0 else y, x * q + y] += p
    last = 0
    if i == 0:  # j = 1 is already the pair state (s_0, s_1)
        tr = 0.0
        for a in range(q):
            tr += cond[a, a * q + a]
        if max_distance >= 1:
            out[1] = tr
            last = 1
        if _spread(cond, q, q * q, mean) < tol:
            return last
    for jj in range(j + 1, length):
        r = jj - i
        if r > max_distance:
            break
        # T((x, y) -> (y, z)) = K(y, z) (1 + g2 delta_xz) / beta_{j-1}(x, y): with c = cond / beta and
        # S(a, y) = sum_x c(a, x, y), nxt(a, y, z) = K(y, z) (S(a, y) + g2 c(a, z, y)): O(q^3) per step
        inv = 1.0 / norms[jj]
        for y in range(q):
            for z in range(q):
                kyz[y, z] = wc[y, z] * f[jj, z] * beta[jj, y, z] * inv
        for a in range(q):
            for x in range(q):
                for y in range(q):
                    scaled[x, y] = cond[a, x * q + y] / beta[jj - 1, x, y]
            for y in range(q):
                acc = 0.0
                for x in range(q):
                    acc += scaled[x, y]
                for z in range(q):
                    nxt[a, y * q + z] = kyz[y, z] * (acc + g2 * scaled[z, y])
        tr = 0.0
        for a in range(q):
            for t in range(q * q):
                cond[a, t] = nxt[a, t]
            for x in range(q):
                tr += cond[a, x * q + a]
        out[r] = tr
        last = r
        if _spread(cond, q, q * q, mean) < tol:
            break
    return last


@njit(parallel=True)
def model_pair_sums(observed, rows, lengths, pw, pshift, tw, tshift, wc, cshift, g, g2, j2shift, kind, max_range,
                    pi, max_distance, tol, n_chunks, a_out, s1_out, s2_out):
    """Sums over sequences behind the model's expectation of the empirical ``C(r)`` estimator.

    For every sequence ``s`` (a chain with its own token fields; a mixture is averaged over its
    components with weights ``pi``) and valid sites ``i``, ``j = i + r`` (``observed``):

    - ``a_out[i] += P_s(s_i = .)`` over sequences valid at ``i``;
    - ``s1_out[i, r] += P_s(s_i = s_j)`` over sequences valid at both;
    - ``s2_out[i, r] += sum_a P_s(s_i = a) P_s(s_j = a)`` over the same.

    ``P_s(s_i = s_j)`` is propagated exactly until the conditionals given ``s_i`` agree to ``tol``
    in total variation; beyond, the connected part (bounded by ``tol``) is dropped. Outputs are
    overwritten.
    """
    n_seq, n_max = observed.shape
    n_comp, _, q = pw.shape
    n_r = max_distance + 1
    two = max_range == 2
    c_a = np.zeros((n_chunks, n_max, q))
    c_s1 = np.zeros((n_chunks, n_max, n_r))
    c_s2 = np.zeros((n_chunks, n_max, n_r))
    for c in prange(n_chunks):
        f = np.empty((n_max, q))
        fsh = np.empty(n_max)
        m1 = n_max if not two else 1
        m2 = n_max if two else 1
        a1 = np.empty((m1, q))
        b1 = np.empty((m1, q))
        a2 = np.empty((m2, q, q))
        b2 = np.empty((m2, q, q))
        norms = np.empty(n_max)
        trans = np.empty((m1, q, q))
        u = np.empty(q)
        marg = np.empty((n_max, q))
        mix = np.empty((n_max, q))
        dummy = np.zeros((q, q))
        joint = np.empty(n_r)
        x = np.zeros(n_max, dtype=np.int64)
        cond1, nxt1 = np.empty((q, q)), np.empty((q, q))
        cond2, nxt2 = np.empty((q, q * q)), np.empty((q, q * q))
        kyz, scaled = np.empty((q, q)), np.empty((q, q))
        mean = np.empty(q * q)
        for s in range(c * n_seq // n_chunks, (c + 1) * n_seq // n_chunks):
            length = lengths[s]
            obs = observed[s]
            mix[:length] = 0.0
            for k in range(n_comp):
                _site_table(pw[k], pshift[k], tw[k], tshift[k], rows[s], length, f, fsh)
                if two:
                    _forward2(f, length, wc[k], g2[k], x, obs, False, a2, norms)
                    _backward2(f, length, wc[k], g2[k], x, obs, False, a2, norms, b2, marg, dummy, 0.0)
                else:
                    _forward1(f, length, wc[k], kind, g[k], x, obs, False, a1, norms)
                    _backward1(f, length, wc[k], kind, g[k], x, obs, False, a1, norms, b1, u, marg, dummy, 0.0)
                    _transitions1(f, length, wc[k], kind, g[k], b1, norms, trans)
                for i in range(length):
                    for a in range(q):
                        mix[i, a] += pi[k] * marg[i, a]
                for i in range(length):
                    if not obs[i]:
                        continue
                    c_s1[c, i, 0] += pi[k]
                    if two:
                        last = _same_state_joint2(f, length, wc[k], g2[k], a2, b2, norms, marg, i, max_distance,
                                                  tol, joint, cond2, nxt2, kyz, scaled, mean)
                    else:
                        last = _same_state_joint1(marg, trans, i, length, max_distance, tol, joint, cond1, nxt1, mean)
                    for r in range(1, n_r):
                        j = i + r
                        if j >= length:
                            break
                        if not obs[j]:
                            continue
                        if r <= last:
                            c_s1[c, i, r] += pi[k] * joint[r]
                        else:
                            dot = 0.0
                            for a in range(q):
                                dot += marg[i, a] * marg[j, a]
                            c_s1[c, i, r] += pi[k] * dot
            for i in range(length):
                if not obs[i]:
                    continue
                for a in range(q):
                    c_a[c, i, a] += mix[i, a]
                for r in range(n_r):
                    j = i + r
                    if j >= length:
                        break
                    if not obs[j]:
                        continue
                    dot = 0.0
                    for a in range(q):
                        dot += mix[i, a] * mix[j, a]
                    c_s2[c, i, r] += dot
    a_out[:] = 0.0
    s1_out[:] = 0.0
    s2_out[:] = 0.0
    for c in range(n_chunks):
        a_out += c_a[c]
        s1_out += c_s1[c]
        s2_out += c_s2[c]
