"""A synthetic "real trace" of a serving engine: few requests, ragged lengths, top-k, many layers.

The routing depends on the token (each token id has preferred experts per layer), on the request
(a topic bias shared by its tokens) and weakly on the previous token's first choice (persistence):
the situation of a user who brings a handful of requests of a production MoE model.
"""

from __future__ import annotations

import numpy as np


def real_trace(seed: int = 0, lengths=(78, 131, 190, 252), n_layers: int = 32, n_experts: int = 8, top_k: int = 2,
               vocabulary: int = 400, persistence: float = 0.25, with_token_ids: bool = True) -> dict:
    """Arrays of the ``.npz`` layout (``experts`` (S, L, n, k), ``mask``, ``token_ids``, ``n_experts``)."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    n_seq, n = lengths.size, int(lengths.max())
    mask = np.arange(n)[None, :] < lengths[:, None]
    zipf = 1.0 / np.arange(1, vocabulary + 1)
    tokens = rng.choice(vocabulary, size=(n_seq, n), p=zipf / zipf.sum())
    token_logits = rng.normal(0, 1.5, size=(n_layers, vocabulary, n_experts))
    topic = rng.normal(0, 0.7, size=(n_seq, n_layers, n_experts))
    experts = np.zeros((n_seq, n_layers, n, top_k), dtype=np.int64)
    for s in range(n_seq):
        for layer in range(n_layers):
            prev = -1
            for i in range(lengths[s]):
                logits = token_logits[layer, tokens[s, i]] + topic[s, layer]
                if prev >= 0 and rng.random() < persistence:
                    logits = logits.copy()
                    logits[prev] += 3.0
                g = logits + rng.gumbel(size=n_experts)  # Gumbel top-k: sampling without replacement
                choice = np.argsort(-g)[:top_k]
                experts[s, layer, i] = choice
                prev = choice[0]
    out = {"experts": experts, "mask": mask, "n_experts": np.int64(n_experts)}
    if with_token_ids:
        out["token_ids"] = np.where(mask, tokens, 0).astype(np.int64)
    return out
