"""Brute-force oracles for conditional chains and their mixtures (enumeration of all configurations)."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import logsumexp


def configurations(q: int, length: int) -> np.ndarray:
    return np.array(list(itertools.product(range(q), repeat=length)), dtype=np.int64)


def log_weights(params: dict, k: int, rows_s, length: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """All configurations of one sequence and their log-weights under component ``k``."""
    conf = configurations(q, length)
    pos, tok = params["position"][k], params["token"][k]
    e = np.zeros(len(conf))
    for i in range(length):
        e += pos[i, conf[:, i]] + tok[rows_s[i], conf[:, i]]
    for i in range(length - 1):
        e += params["coupling"][k][conf[:, i], conf[:, i + 1]]
    for i in range(length - 2):
        e += params["coupling2"][k] * ((conf[:, i] == conf[:, i + 2]) - 1.0 / q)
    return conf, e


def moments(conf, probs, length, q):
    site = np.zeros((length, q))
    pair = np.zeros((q, q))
    for i in range(length):
        np.add.at(site[i], conf[:, i], probs)
    for i in range(length - 1):
        np.add.at(pair, (conf[:, i], conf[:, i + 1]), probs)
    same2 = sum(probs @ (conf[:, i] == conf[:, i + 2]) for i in range(length - 2))
    return site, pair, float(same2)


def sequence_terms(params, k, rows_s, x_s, obs_s, length, q):
    """``log p_k(observed x_s)`` and the data (posterior) and model moments of one sequence."""
    conf, e = log_weights(params, k, rows_s, length, q)
    log_z = logsumexp(e)
    consistent = np.all((conf == x_s[:length]) | ~obs_s[:length], axis=1)
    log_obs = logsumexp(e[consistent])
    data = moments(conf, np.where(consistent, np.exp(e - log_obs), 0.0), length, q)
    model = moments(conf, np.exp(e - log_z), length, q)
    return log_obs - log_z, data, model


def mixture_terms(params, rows, states, observed, lengths, weights, q):
    """Total weighted mixture log-likelihood, per-sequence per-component log-likelihoods and the
    weighted moment differences ``sum_s w_s r_sk (data - model)`` (site, token rows, pairs, distance 2)."""
    n_seq, n = states.shape
    n_comp = params["position"].shape[0]
    n_rows = params["token"].shape[1]
    ll = np.empty((n_seq, n_comp))
    terms = {}
    for s in range(n_seq):
        for k in range(n_comp):
            ll[s, k], d, m = sequence_terms(params, k, rows[s], states[s], observed[s], lengths[s], q)
            terms[s, k] = (d, m)
    joint = ll + params["log_pi"]
    total = float(weights @ logsumexp(joint, axis=1))
    resp = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    g_pos = np.zeros((n_comp, n, q))
    g_tok = np.zeros((n_comp, n_rows, q))
    g_pair = np.zeros((n_comp, q, q))
    g_j2 = np.zeros(n_comp)
    for (s, k), ((ds, dp, d2), (ms, mp, m2)) in terms.items():
        om = weights[s] * resp[s, k]
        length = lengths[s]
        g_pos[k, :length] += om * (ds - ms)
        np.add.at(g_tok[k], rows[s, :length], om * (ds - ms))
        g_pair[k] += om * (dp - mp)
        g_j2[k] += om * (d2 - m2)
    return total, ll, (g_pos, g_tok, g_pair, g_j2)


def estimator(configs: np.ndarray, mask: np.ndarray, q: int, max_distance: int) -> np.ndarray:
    """The empirical C(r) estimator of :mod:`ising_moe.measure`, written out directly, on a batch of
    data sets ``configs`` (C, S, n) with one mask (S, n)."""
    n = configs.shape[2]
    onehot = (configs[..., None] == np.arange(q)) * mask[None, :, :, None]
    n_i = mask.sum(axis=0)
    p = onehot.sum(axis=1) / np.maximum(n_i, 1)[None, :, None]
    out = np.full((configs.shape[0], max_distance + 1), np.nan)
    for r in range(max_distance + 1):
        vals = []
        for i in range(n - r):
            m = (mask[:, i] & mask[:, i + r]).sum()
            if m < 2:
                continue
            joint = (onehot[:, :, i] * onehot[:, :, i + r]).sum(axis=(1, 2)) / m
            vals.append(m / (m - 1) * (joint - (p[:, i] * p[:, i + r]).sum(axis=-1)))
        if vals:
            out[:, r] = np.mean(vals, axis=0)
    return out


def estimator_expectation(params, rows, mask, q, max_distance) -> np.ndarray:
    """Exact expectation of :func:`estimator` over every joint configuration of the sequences (each
    drawn independently from the mixture), by enumeration (tiny sizes only)."""
    n_seq, n = mask.shape
    conf = configurations(q, n)
    n_comp = params["position"].shape[0]
    probs = []
    for s in range(n_seq):
        comp = []
        for k in range(n_comp):
            _, e = log_weights(params, k, rows[s], n, q)
            comp.append(params["log_pi"][k] + e - logsumexp(e))
        probs.append(np.exp(logsumexp(comp, axis=0)))
    index = np.array(list(itertools.product(range(len(conf)), repeat=n_seq)))
    joint = np.prod([probs[s][index[:, s]] for s in range(n_seq)], axis=0)
    return joint @ estimator(conf[index], mask, q, max_distance)
