"""Numba kernels of the empirical statistics (private; see :mod:`ising_moe.measure`).

Routing is given as ``ids`` of shape (n_sequences, n_positions, k): the top-k expert ids of each
token (k = 1 for a chain of states), ids distinct within a token; ``mask`` marks valid tokens. The
indicator of expert ``e`` at a token is ``x^e = 1[e in ids]``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._numba import njit


@njit(parallel=True)
def pair_counts(ids, mask, n_experts, max_distance, joint, n_pairs, counts, n_valid):
    """Counts for the per-position correlation estimator (``prange`` over positions).

    ``joint[i, r, e]``: sequences with ``e`` at both ``i`` and ``i + r``; ``n_pairs[i, r]``:
    sequences valid at both; ``counts[i, e]``: sequences with ``e`` at ``i``; ``n_valid[i]``.
    Outputs are overwritten.
    """
    n_seq, n, k = ids.shape
    for i in prange(n):
        joint[i] = 0.0
        n_pairs[i] = 0
        counts[i] = 0.0
        n_valid[i] = 0
        for s in range(n_seq):
            if not mask[s, i]:
                continue
            n_valid[i] += 1
            for a in range(k):
                counts[i, ids[s, i, a]] += 1.0
            for r in range(max_distance + 1):
                j = i + r
                if j >= n:
                    break
                if not mask[s, j]:
                    continue
                n_pairs[i, r] += 1
                for a in range(k):
                    e = ids[s, i, a]
                    for b in range(k):
                        if ids[s, j, b] == e:
                            joint[i, r, e] += 1.0


@njit(parallel=True)
def influence(ids, mask, p, pair_weight, pos_norm, block_of, phi_state, phi_block):
    """Data part of each sequence's influence on ``C_e(r)`` and on block-pooled sums of ``C(i, i+r)``.

    For a valid pair ``(i, j = i + r)`` the linearised ``C_e(i, j)`` moves by
    ``x_i^e x_j^e - p_j^e x_i^e - p_i^e x_j^e`` (plus a constant) per sequence, times
    ``pair_weight[i, r]`` (``N / n_pairs``). ``phi_state[s, r, e]`` accumulates it times
    ``pos_norm[r]`` (the average over positions); ``phi_block[m, s, r]`` accumulates the total over
    states for pairs inside one block of the ``m``-th partition (``block_of[m, i]``, -1 = none).
    Callers centre the results over sequences. ``prange`` over sequences.
    """
    n_seq, n, k = ids.shape
    n_r = phi_state.shape[1]
    n_blocks = block_of.shape[0]
    for s in prange(n_seq):
        phi_state[s] = 0.0
        for m in range(n_blocks):
            phi_block[m, s] = 0.0
        for i in range(n):
            if not mask[s, i]:
                continue
            for r in range(n_r):
                j = i + r
                if j >= n:
                    break
                if not mask[s, j]:
                    continue
                w = pair_weight[i, r]
                if w == 0.0:
                    continue
                wn = w * pos_norm[r]
                total = 0.0
                for a in range(k):
                    e = ids[s, i, a]
                    v = -p[j, e]
                    for b in range(k):
                        if ids[s, j, b] == e:
                            v += 1.0
                    phi_state[s, r, e] += wn * v
                    total += v
                for b in range(k):
                    e = ids[s, j, b]
                    phi_state[s, r, e] -= wn * p[i, e]
                    total -= p[i, e]
                for m in range(n_blocks):
                    if block_of[m, i] >= 0 and block_of[m, i] == block_of[m, j]:
                        phi_block[m, s, r] += w * total


@njit(parallel=True)
def segment_statistics(ids, mask, n_experts, length, match, pred, top, n_windows):
    """Per-sequence sums over every window of ``length`` consecutive valid tokens (``prange`` over sequences).

    With ``c_e`` the number of tokens of the window that activated expert ``e``:
    ``match[s, j] = sum_{windows} sum_{e: c_e >= j} c_e``, ``pred[s, j] = sum_{windows} #{e: c_e >= j}``
    (``j = 0..length``), ``top[s, c - 1] = sum_{windows}`` of the ``c`` largest ``c_e``
    (``c = 1..n_experts``), ``n_windows[s]``. Windows containing an invalid token are skipped.
    """
    n_seq, n, k = ids.shape
    for s in prange(n_seq):
        cnt = np.zeros(n_experts, dtype=np.int64)
        hist = np.zeros(length + 1, dtype=np.int64)
        match[s] = 0.0
        pred[s] = 0.0
        top[s] = 0.0
        n_windows[s] = 0
        run = 0
        for t in range(n):
            if not mask[s, t]:
                cnt[:] = 0
                run = 0
                continue
            for a in range(k):
                cnt[ids[s, t, a]] += 1
            run += 1
            if run > length:
                for a in range(k):
                    cnt[ids[s, t - length, a]] -= 1
                run = length
            if run < length:
                continue
            n_windows[s] += 1
            hist[:] = 0
            for e in range(n_experts):
                hist[cnt[e]] += 1
            # thresholds j from high to low: experts with c_e >= j
            acc_match = 0.0
            acc_pred = 0.0
            for j in range(length, -1, -1):
                acc_match += j * hist[j]
                acc_pred += hist[j]
                match[s, j] += acc_match
                pred[s, j] += acc_pred
            # top-c sums: walk the counts from the largest value down
            c = 0
            acc = 0.0
            for v in range(length, -1, -1):
                for _ in range(hist[v]):
                    acc += v
                    top[s, c] += acc
                    c += 1


@njit(parallel=True)
def reflected_tables(seq_tables, flips, out):
    """Expert x block tables after reversing some sequences: ``out[b] = sum_s`` of ``seq_tables[s]``,
    its block order reversed where ``flips[b, s]``.

    ``seq_tables`` of shape (n_sequences, n_blocks, n_states) holds each sequence's per-block counts
    (blocks of equal length, so a reversed sequence fills the blocks exactly). ``prange`` over
    shuffles; ``out`` is overwritten.
    """
    n_seq, n_blocks, n_states = seq_tables.shape
    for b in prange(flips.shape[0]):
        out[b] = 0.0
        for s in range(n_seq):
            for j in range(n_blocks):
                u = n_blocks - 1 - j if flips[b, s] else j
                for a in range(n_states):
                    out[b, u, a] += seq_tables[s, j, a]


@njit(parallel=True)
def online_cache_hits(ids, mask, n_experts, look_ahead, hits, n_access):
    """Hits of moe-lrc's segment cache for every cache size at once (``prange`` over sequences).

    The cache always fetches the requested experts; when full it evicts the cached expert with the
    fewest uses among the next ``look_ahead`` tokens (the current token included, its already
    processed experts excluded), ties broken by the least recent use. Eviction by a priority that does
    not depend on the cache size is a stack algorithm (Mattson et al. 1970): the cache of ``c``
    experts always holds the top ``c`` entries of one priority stack. An expert is a hit for cache
    sizes above its stack depth before the token; an expert never seen before sits just below the
    experts seen so far (a free slot holds it at no cost). The token's experts are then moved to the
    top one by one: the displaced entry is carried down, at each depth the lower-priority one of
    the carried entry and the resident moves on.

    ``hits[s, c - 1]``: accesses of sequence ``s`` served by a cache of ``c`` experts;
    ``n_access[s]``: ``top_k`` times its valid tokens (masked tokens are skipped: the valid tokens
    of a sequence are read as one stream).
    """
    n_seq, n, k = ids.shape
    for s in prange(n_seq):
        valid = np.flatnonzero(mask[s])
        n_tok = valid.size
        future = np.zeros(n_experts, dtype=np.int64)
        last_use = np.zeros(n_experts, dtype=np.int64)
        depth = np.full(n_experts, -1, dtype=np.int64)
        stack = np.zeros(n_experts, dtype=np.int64)
        stat = np.zeros(n_experts, dtype=np.int64)
        n_seen = 0
        clock = 0
        for u in range(min(look_ahead, n_tok)):
            for a in range(k):
                future[ids[s, valid[u], a]] += 1
        for u in range(n_tok):
            t = valid[u]
            fresh = n_seen
            for a in range(k):
                d = depth[ids[s, t, a]]
                if d < 0:
                    stat[fresh] += 1
                    fresh += 1
                else:
                    stat[d] += 1
            for a in range(k):
                x = ids[s, t, a]
                d = depth[x]
                if d < 0:
                    d = n_seen
                    n_seen += 1
                if d > 0:
                    carry = stack[0]
                    for j in range(1, d):
                        y = stack[j]
                        if future[carry] > future[y] or (future[carry] == future[y] and last_use[carry] > last_use[y]):
                            stack[j] = carry
                            depth[carry] = j
                            carry = y
                    stack[d] = carry
                    depth[carry] = d
                stack[0] = x
                depth[x] = 0
                clock += 1
                future[x] -= 1
                last_use[x] = clock
            if u + look_ahead < n_tok:
                for a in range(k):
                    future[ids[s, valid[u + look_ahead], a]] += 1
        acc = 0
        for c in range(n_experts):
            acc += stat[c]
            hits[s, c] = acc
        n_access[s] = n_tok * k
