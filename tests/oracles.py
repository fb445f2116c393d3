"""Independent oracles for the tests: brute-force enumeration and chi-square checks."""

from __future__ import annotations

import itertools

import numpy as np
from scipy import stats as sps


def enumerate_chain(model):
    """All q^n configurations of a small chain and their Boltzmann probabilities.

    Uses only ``model.energy`` (a direct sum over sites and bonds), nothing from the solvers.
    """
    n, q = model.n_sites, model.n_states
    conf = np.array(list(itertools.product(range(q), repeat=n)), dtype=np.int32)
    logw = -model.beta * model.energy(conf)
    log_z = np.logaddexp.reduce(logw)
    return conf, np.exp(logw - log_z), float(log_z)


def brute_marginals(conf, p, q):
    n = conf.shape[1]
    return np.array([[p[conf[:, i] == a].sum() for a in range(q)] for i in range(n)])


def brute_joint(conf, p, q, i, j):
    return np.array([[p[(conf[:, i] == a) & (conf[:, j] == b)].sum() for b in range(q)] for a in range(q)])


def brute_correlation_function(conf, p, q, max_distance, periodic):
    """C(r) and C_a(r) averaged over valid pairs, straight from the definition."""
    n = conf.shape[1]
    marg = brute_marginals(conf, p, q)
    out = np.zeros((max_distance + 1, q))
    for r in range(max_distance + 1):
        pairs = [(i, (i + r) % n) for i in range(n)] if periodic else [(i, i + r) for i in range(n - r)]
        for i, j in pairs:
            joint = brute_joint(conf, p, q, i, j)
            out[r] += np.diag(joint) - marg[i] * marg[j]
        out[r] /= len(pairs)
    return out


def config_index(samples, q):
    n = samples.shape[1]
    return (samples.astype(np.int64) * q ** np.arange(n - 1, -1, -1)).sum(axis=1)


def chi_square_pvalue(samples, probs, q, min_expected=5.0):
    """Pearson chi-square p-value of independent samples against exact configuration probabilities.

    Cells with expected count below ``min_expected`` are pooled into one.
    """
    counts = np.bincount(config_index(samples, q), minlength=probs.size)
    expected = probs * len(samples)
    small = expected < min_expected
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    stat = ((obs - exp) ** 2 / exp).sum()
    return float(sps.chi2.sf(stat, df=len(exp) - 1))


def random_chain(rng, n_sites, n_states, periodic, homogeneous, per_bond=False, beta=0.8, scale=1.0):
    from ising_moe import PottsChain

    n_bonds = n_sites if periodic else n_sites - 1
    if per_bond:
        couplings = scale * rng.normal(size=(n_bonds, n_states, n_states))
    else:
        couplings = scale * rng.normal(size=(n_states, n_states))
    fields = scale * rng.normal(size=(n_states,) if homogeneous else (n_sites, n_states))
    return PottsChain(n_sites, couplings, fields, beta=beta, periodic=periodic)
