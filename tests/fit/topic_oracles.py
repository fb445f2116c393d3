"""A known topic chain for the tests (exact samples)."""

import numpy as np

from ising_moe.exact import product as PR


def plant(n_seq, n_sites, q, k, kappa, bias, coupling, vocab, tok_scale, seed, topics=True):
    """Sequences of a known topic chain (random field given tokens): experts, topics, tokens."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, size=(n_seq, n_sites))
    tok = tok_scale * rng.normal(size=(vocab, q))
    b = np.zeros((k, q))
    if topics:
        for z in range(k):
            b[z, z % q] = bias
        b -= b.mean(axis=0)
    u = tok[tokens][:, :, None, :] + b[None, None]
    trans = PR.Transition.kronecker(kappa * np.eye(k), coupling * (np.eye(q) - 1.0 / q))
    zs = PR.unravel(PR.sample(u.reshape(n_seq, n_sites, k * q), trans, rng=rng), (k, q))
    return zs[..., 1], zs[..., 0], tokens
