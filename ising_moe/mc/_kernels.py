"""Numba kernels of the Monte Carlo samplers (private; see :mod:`ising_moe.mc.samplers`).

Random numbers: each chain owns a xoshiro256** state (4 x uint64) derived from a NumPy
``Generator`` by the wrapper (``Generator.spawn``, one child per chain); a kernel advances only the
states of its own chains, so results for a seed do not depend on the number of threads.
Uniform doubles take the top 53 bits; an integer below ``m`` is ``floor(u m)`` (bias below
``m / 2**53``).

Model arrays (all ``beta`` already applied where the name says ``log``):

- ``wf`` (n_f, q): ``exp(beta h_i(a) - max_a)``, ``n_f`` in {1, n};
- ``wj`` (n_c, q, q): ``exp(beta J_b(a, b) - max)``, bonds ``b = 0..n_bonds-1`` (bond ``b`` joins
  ``b`` and ``(b + 1) % n``), ``n_c`` in {1, n_bonds};
- ``lf`` (n_f, q): ``beta h``; ``bond_p`` (n_p,): ``1 - exp(-beta J_b)`` of Potts-form bonds;
- ``fields``, ``couplings``: raw parameters (for the energy).

Observables written per measured sweep ``t`` of chain ``c``: ``energy[c, t]`` (``E`` without
beta), ``occupation[c, t, a]`` (number of sites in state ``a``), ``overlap[c, t, r]`` (fraction of
pairs ``(i, i + r)`` in the same state, ``r = 0..R``), ``site_counts[c, i, a] += 1[s_i = a]``
(for q = 2 state-major, ``site_counts[c, a, i]``, and only row 1 is counted: a vectorised sum;
the wrapper sets row 0 and transposes), and every
``save_every`` sweeps the configuration into ``snapshots``. Measurements cost about 1 ns per site
(bench_mc.py): branch-free loops the compiler vectorises, no long serial sums.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._numba import njit

METROPOLIS, METROPOLIS_RANDOM, HEAT_BATH, SWENDSEN_WANG, WOLFF = 0, 1, 2, 3, 4

_MASK53 = 1.0 / 9007199254740992.0


# ----------------------------------------------------------------------------- xoshiro256**
@njit(inline="always")
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(inline="always")
def next_u64(st):
    """xoshiro256** step on ``st`` (shape (4,), uint64); returns the next 64-bit output."""
    s0, s1, s2, s3 = st[0], st[1], st[2], st[3]
    result = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    st[0], st[1], st[2], st[3] = s0, s1, s2, s3
    return result


@njit(inline="always")
def next_double(st):
    """Uniform double in [0, 1) from the top 53 bits."""
    return float(next_u64(st) >> np.uint64(11)) * _MASK53


@njit(inline="always")
def next_below(st, m):
    """Integer uniform in 0..m-1."""
    return int(next_double(st) * m)


@njit(inline="always")
def lazy_flip_accepted(st, num, den):
    """Accept a q = 2 flip with probability ``min(1, num / den) / 2`` from one uniform ``u``.

    ``u < 1/2`` is the proposal (flip proposed with probability 1/2), ``2 u den < num`` the
    Metropolis test given the proposal (``2 u`` is uniform on [0, 1) when ``u < 1/2``).
    """
    u = next_double(st)
    return u < 0.5 and 2.0 * u * den < num


# ----------------------------------------------------------------------------- nearest neighbour
@njit(inline="always")
def _row(arr, i):
    return i if arr.shape[0] > 1 else 0


@njit
def metropolis_sweep(spins, st, wf, wj, periodic, random_order):
    """One sweep of ``n`` Metropolis updates (sites in order, or drawn at random).

    A new state is proposed uniformly among the ``q - 1`` others and accepted with probability
    ``min(1, w(new) / w(old))``, the ratio of Boltzmann weights of the site's field and its bonds.
    Each update satisfies detailed balance, so the sweep leaves the Boltzmann distribution invariant.

    Sequential sweeps with ``q = 2`` propose the flip with probability 1/2 only (acceptance
    ``min(1, w(new) / w(old)) / 2``; see :func:`lazy_flip_accepted`). Why: with the plain rule the
    proposal is always the other state and moves with ``dE <= 0`` are accepted with certainty, so a
    left-to-right sweep moves every domain wall it meets one site along the sweep (a zero-energy
    move at zero field) and flips isolated spins deterministically: the sweep is an almost
    deterministic map (a ring at beta J = 0.5 stays near energy -0.09 per site against the exact
    -0.46). Invariance holds but the chain does not reach the Boltzmann distribution in any useful
    time. The lazy proposal is still symmetric (detailed balance holds update by update), and every
    update now keeps the old state with probability >= 1/2, which breaks the deterministic transport:
    walls make unbiased random walks and the chain is ergodic and aperiodic. For ``q > 2`` the
    proposal itself is random (``q - 1`` targets) and random site order already randomises the
    transport, so those keep the plain rule. Returns the number of accepted moves.
    """
    n = spins.shape[0]
    q = wf.shape[1]
    lazy = q == 2 and not random_order
    accepted = 0
    for step in range(n):
        i = next_below(st, n) if random_order else step
        old = spins[i]
        new = 1 - old if q == 2 else (old + 1 + next_below(st, q - 1)) % q
        fi = _row(wf, i)
        num = wf[fi, new]
        den = wf[fi, old]
        if i > 0 or periodic:
            left = i - 1 if i > 0 else n - 1
            w = wj[_row(wj, left)]
            sl = spins[left]
            num *= w[sl, new]
            den *= w[sl, old]
        if i < n - 1 or periodic:
            sr = spins[i + 1] if i < n - 1 else spins[0]
            w = wj[_row(wj, i)]
            num *= w[new, sr]
            den *= w[old, sr]
        if lazy_flip_accepted(st, num, den) if lazy else (num >= den or next_double(st) * den < num):
            spins[i] = new
            accepted += 1
    return accepted


@njit
def heat_bath_sweep(spins, st, wf, wj, periodic, buf):
    """One sequential sweep of heat-bath (Gibbs) updates: ``s_i`` drawn from its conditional."""
    n = spins.shape[0]
    q = wf.shape[1]
    for i in range(n):
        fi = _row(wf, i)
        has_left = i > 0 or periodic
        has_right = i < n - 1 or periodic
        left = i - 1 if i > 0 else n - 1
        sl = spins[left]
        sr = spins[i + 1] if i < n - 1 else spins[0]
        wl = wj[_row(wj, left)]
        wr = wj[_row(wj, i)]
        total = 0.0
        for a in range(q):
            w = wf[fi, a]
            if has_left:
                w *= wl[sl, a]
            if has_right:
                w *= wr[a, sr]
            total += w
            buf[a] = total
        target = next_double(st) * total
        a = 0
        while a < q - 1 and buf[a] <= target:
            a += 1
        spins[i] = a
    return n


@njit
def swendsen_wang_sweep(spins, st, lf, bond_p, periodic, labels, cluster_logw, new_state):
    """One Swendsen-Wang update of a Potts-form chain (``J_b delta + const``, ``J_b >= 0``).

    Bonds between equal neighbours are activated with ``p_b = 1 - exp(-beta J_b)``; in 1D the
    clusters are runs of sites (the periodic closing bond may join the last run to the first).
    Each cluster takes a new state from its conditional given the bonds,
    ``P(a) ~ exp(sum_{i in C} beta h_i(a))`` (exact with fields). Returns the number of clusters.
    """
    n = spins.shape[0]
    q = lf.shape[1]
    labels[0] = 0
    for i in range(1, n):
        if spins[i - 1] == spins[i] and next_double(st) < bond_p[_row(bond_p, i - 1)]:
            labels[i] = labels[i - 1]
        else:
            labels[i] = labels[i - 1] + 1
    n_labels = labels[n - 1] + 1
    n_clusters = n_labels
    if periodic and n_labels > 1 and spins[n - 1] == spins[0]:
        if next_double(st) < bond_p[_row(bond_p, n - 1)]:
            last = labels[n - 1]
            i = n - 1
            while labels[i] == last:
                labels[i] = 0
                i -= 1
            n_clusters -= 1
    cluster_logw[:n_labels, :] = 0.0
    for i in range(n):
        fi = _row(lf, i)
        for a in range(q):
            cluster_logw[labels[i], a] += lf[fi, a]
    for c in range(n_labels):
        m = cluster_logw[c, 0]
        for a in range(1, q):
            m = max(m, cluster_logw[c, a])
        total = 0.0
        for a in range(q):
            total += np.exp(cluster_logw[c, a] - m)
        target = next_double(st) * total
        acc = 0.0
        new_state[c] = q - 1
        for a in range(q):
            acc += np.exp(cluster_logw[c, a] - m)
            if target < acc:
                new_state[c] = a
                break
    for i in range(n):
        spins[i] = new_state[labels[i]]
    return n_clusters


@njit
def wolff_sweep(spins, st, lf, bond_p, periodic, n_updates, visits):
    """``n_updates`` Wolff single-cluster updates (one "sweep"); ``n_updates = 0``: until ``n`` sites
    were in clusters (burn-in only: a state-dependent stopping time would bias measurements).

    A cluster grows from a random seed over bonds to equal neighbours with ``p_b``; it is
    proposed to flip to a uniformly chosen other state and accepted with
    ``min(1, exp(sum_{i in C} beta (h_i(new) - h_i(old))))`` (the bond terms cancel exactly
    against the growth probabilities). Adds the cluster sizes to ``visits[0]`` and the number of
    updates to ``visits[1]``; returns the number of accepted flips.
    """
    n = spins.shape[0]
    q = lf.shape[1]
    visited = 0
    done = 0
    accepted = 0
    while (n_updates == 0 and visited < n) or done < n_updates:
        done += 1
        seed = next_below(st, n)
        s0 = spins[seed]
        right = seed
        size = 1
        while size < n:
            if right == n - 1 and not periodic:
                break
            nxt = right + 1 if right < n - 1 else 0
            if spins[nxt] == s0 and next_double(st) < bond_p[_row(bond_p, right)]:
                right = nxt
                size += 1
            else:
                break
        left = seed
        while size < n:
            if left == 0 and not periodic:
                break
            prv = left - 1 if left > 0 else n - 1
            if spins[prv] == s0 and next_double(st) < bond_p[_row(bond_p, prv)]:
                left = prv
                size += 1
            else:
                break
        new = (s0 + 1 + next_below(st, q - 1)) % q
        dlog = 0.0
        k = left
        for _ in range(size):
            fi = _row(lf, k)
            dlog += lf[fi, new] - lf[fi, s0]
            k = k + 1 if k < n - 1 else 0
        if dlog >= 0.0 or next_double(st) < np.exp(dlog):
            k = left
            for _ in range(size):
                spins[k] = new
                k = k + 1 if k < n - 1 else 0
            accepted += 1
        visited += size
    visits[0] += visited
    visits[1] += done
    return accepted


@njit(inline="always")
def _bond_sum(spins, c, start, stop):
    """``sum_{b=start}^{stop-1} c[s_b, s_{b+1}]`` in four interleaved partial sums (a fixed order:
    deterministic, and four times shorter floating-point dependency chains than one running sum)."""
    e0 = e1 = e2 = e3 = 0.0
    b = start
    while b + 4 <= stop:
        e0 += c[spins[b], spins[b + 1]]
        e1 += c[spins[b + 1], spins[b + 2]]
        e2 += c[spins[b + 2], spins[b + 3]]
        e3 += c[spins[b + 3], spins[b + 4]]
        b += 4
    while b < stop:
        e0 += c[spins[b], spins[b + 1]]
        b += 1
    return (e0 + e1) + (e2 + e3)


@njit
def nn_energy(spins, fields, couplings, periodic, occupation, potts):
    """``E(s)`` of a nearest-neighbour chain (without beta); ``occupation`` (q,) holds the number
    of sites in each state (homogeneous fields enter as ``sum_a h(a) occupation[a]``); ``potts``
    is ``(J, c)`` when the couplings are homogeneous and of the form ``J delta_ab + c`` (the bonds
    then enter through the number of equal neighbours), else empty.

    This runs after every measured sweep, so it avoids table gathers and long serial sums where it
    can: the equal-neighbour count is a branch-free loop the compiler vectorises, other bonds are
    summed in interleaved partial sums.
    """
    n = spins.shape[0]
    e = 0.0
    if potts.shape[0] == 2:
        same = 0
        for b in range(n - 1):
            same += spins[b] == spins[b + 1]
        n_bonds = n - 1
        if periodic:
            same += spins[n - 1] == spins[0]
            n_bonds = n
        e -= potts[0] * same + potts[1] * n_bonds
    if fields.shape[0] == 1:
        for a in range(fields.shape[1]):
            e -= fields[0, a] * occupation[a]
    else:
        f0 = f1 = 0.0
        i = 0
        while i + 2 <= n:
            f0 += fields[i, spins[i]]
            f1 += fields[i + 1, spins[i + 1]]
            i += 2
        if i < n:
            f0 += fields[i, spins[i]]
        e -= f0 + f1
    if potts.shape[0] == 2:
        pass  # bonds done
    elif couplings.shape[0] == 1:
        e -= _bond_sum(spins, couplings[0], 0, n - 1)
        if periodic:
            e -= couplings[0, spins[n - 1], spins[0]]
    else:
        for b in range(n - 1):
            e -= couplings[b, spins[b], spins[b + 1]]
        if periodic:
            e -= couplings[n - 1, spins[n - 1], spins[0]]
    return e


@njit
def _measure(spins, periodic, t, occupation, overlap, site_counts):
    """Occupation, site counts and same-state overlaps of one configuration.

    The occupation is counted in four interleaved histograms (one running histogram stalls on
    every repeated state), and the overlap at distance ``r`` is one branch-free loop over the pairs
    that do not wrap (which the compiler vectorises) plus, on a ring, the ``r`` that do.
    """
    n = spins.shape[0]
    q = occupation.shape[1]
    count_sites = site_counts.shape[0] > 0  # empty: not asked for (a scatter into (n, q) is the costliest part)
    if q == 2:  # vectorised sums of s_i; site_counts row 0 is filled by the caller (sweeps - row 1)
        total = 0
        if count_sites:
            ones = site_counts[1]
            for i in range(n):
                ones[i] += spins[i]
                total += spins[i]
        else:
            for i in range(n):
                total += spins[i]
        occupation[t, 0] = n - total
        occupation[t, 1] = total
    else:
        hist = np.zeros(4 * q, dtype=np.int64)
        if count_sites:
            for i in range(n):
                s = spins[i]
                hist[(i & 3) * q + s] += 1
                site_counts[i, s] += 1
        else:
            for i in range(n):
                hist[(i & 3) * q + spins[i]] += 1
        for a in range(q):
            occupation[t, a] = hist[a] + hist[q + a] + hist[2 * q + a] + hist[3 * q + a]
    n_r = overlap.shape[1]
    if n_r > 0:
        overlap[t, 0] = 1.0
    for r in range(1, n_r):
        same = 0
        for i in range(n - r):
            same += spins[i] == spins[i + r]
        if periodic:
            for i in range(n - r, n):
                same += spins[i] == spins[i + r - n]
        overlap[t, r] = same / (n if periodic else n - r)


@njit
def _record(row, t, periodic, save_every, occupation, overlap, site_counts, snapshots):
    """Measurements of one chain after its measured sweep ``t`` (the energy, which uses the
    occupation, is stored by the caller)."""
    _measure(row, periodic, t, occupation, overlap, site_counts)
    if save_every > 0 and (t + 1) % save_every == 0:
        snapshots[(t + 1) // save_every - 1, :] = row


@njit(parallel=True)
def run_nearest_neighbour(kind, spins, states, wf, wj, lf, bond_p, fields, couplings, potts, periodic, n_burnin,
                          save_every, energy, occupation, overlap, site_counts, snapshots, accepted,
                          wolff_updates):
    """Run every chain (``prange`` over chains): ``n_burnin`` sweeps, then ``energy.shape[1]`` measured ones.

    Wolff: ``wolff_updates[c]`` cluster updates per measured sweep; if 0 it is set after the burn-in
    (which runs until ``n`` sites per sweep were visited) to ``n`` over the mean cluster size.
    """
    n_chains, n = spins.shape
    q = wf.shape[1]
    n_sweeps = energy.shape[1]
    for c in prange(n_chains):
        row = spins[c]
        st = states[c]
        buf = np.empty(q)
        m = n if kind == SWENDSEN_WANG else 0  # cluster buffers only where they are used
        labels = np.empty(m, dtype=np.int64)
        new_state = np.empty(m, dtype=np.int64)
        cluster_logw = np.empty((m, q))
        visits = np.zeros(2, dtype=np.int64)
        acc = 0
        for sweep in range(n_burnin + n_sweeps):
            if sweep == n_burnin and kind == WOLFF and wolff_updates[c] == 0:
                wolff_updates[c] = max(1, int(round(n * visits[1] / max(visits[0], 1))))
            if kind == METROPOLIS or kind == METROPOLIS_RANDOM:
                a = metropolis_sweep(row, st, wf, wj, periodic, kind == METROPOLIS_RANDOM)
            elif kind == HEAT_BATH:
                a = heat_bath_sweep(row, st, wf, wj, periodic, buf)
            elif kind == SWENDSEN_WANG:
                a = swendsen_wang_sweep(row, st, lf, bond_p, periodic, labels, cluster_logw, new_state)
            else:
                a = wolff_sweep(row, st, lf, bond_p, periodic, wolff_updates[c] if sweep >= n_burnin else 0, visits)
            if sweep < n_burnin:
                continue
            acc += a
            t = sweep - n_burnin
            _record(row, t, periodic, save_every, occupation[c], overlap[c], site_counts[c], snapshots[c])
            energy[c, t] = nn_energy(row, fields, couplings, periodic, occupation[c, t], potts)
        accepted[c] = acc


# ----------------------------------------------------------------------------- long range
