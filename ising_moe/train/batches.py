"""Deterministic batches: the windows of optimiser step ``s`` are a pure function of (seed, s).

Resuming therefore needs only the step number. Sample ``g = s * batch_size + j`` is window
``perm_e[g mod n]`` of epoch ``e = g // n``, with ``perm_e`` a permutation drawn from
``default_rng([seed, e])``; the span corruption of sample ``g`` draws from ``default_rng([seed, 1, g])``.
"""

from __future__ import annotations

import numpy as np
import torch

from .corpus import PAD_ID, span_corrupt

__all__ = ["Batcher"]


class Batcher:
    """Builds the tensors of a step (causal LM or span corruption).

    Parameters
    ----------
    windows : list of ndarray of int32
    family : {"olmoe", "switch_transformers"}
    seq_len, batch_size, seed : int
    corruption : dict, optional
        ``noise_density``, ``mean_span`` and ``sentinel_ids`` (span corruption; Switch).
    """

    def __init__(self, windows, family: str, seq_len: int, batch_size: int, seed: int, corruption=None):
        self.windows = windows
        self.family = family
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.corruption = corruption
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.windows))}
        return self._perms[epoch]

    def step_windows(self, step: int) -> np.ndarray:
        """Window indices of the samples of optimiser step ``step``, shape (batch_size,)."""
        n = len(self.windows)
        g = step * self.batch_size + np.arange(self.batch_size)
        return np.array([self._perm(int(x // n))[x % n] for x in g], dtype=np.int64)

    def step_batch(self, step: int, device="cpu") -> dict:
        idx = self.step_windows(step)
        g0 = step * self.batch_size
        return self.batch([self.windows[i] for i in idx], device, sample_ids=range(g0, g0 + len(idx)))

    def batch(self, rows, device="cpu", sample_ids=None, stream: int = 1) -> dict:
        """Model inputs for windows ``rows`` (``sample_ids`` and ``stream`` seed the span corruption: 1 training, 2 evaluation)."""
        if self.family != "switch_transformers":
            ids, mask = _pad(rows, self.seq_len)
            labels = ids.masked_fill(~mask, -100)
            return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}
        sample_ids = range(len(rows)) if sample_ids is None else sample_ids
        c = self.corruption
        pairs = [span_corrupt(r, np.random.default_rng([self.seed, stream, int(g)]), c["noise_density"],
                              c["mean_span"], c["sentinel_ids"]) for r, g in zip(rows, sample_ids)]
        inp, imask = _pad([p[0] for p in pairs])
        tgt, tmask = _pad([p[1] for p in pairs])
        labels = tgt.masked_fill(~tmask, -100)
        return {"input_ids": inp.to(device), "attention_mask": imask.to(device), "labels": labels.to(device),
                "decoder_attention_mask": tmask.to(device)}


def _pad(rows, length: int | None = None):
    length = length or max(len(r) for r in rows)
    ids = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.as_tensor(np.asarray(r, dtype=np.int64))
        mask[i, :len(r)] = True
    return ids, mask


def router_masks(batch: dict, capture, family: str):
    """Valid-token mask (flattened) of each captured router layer."""
    enc = batch["attention_mask"].reshape(-1)
    if family != "switch_transformers":
        return [enc] * len(capture.names)
    dec = batch["decoder_attention_mask"].reshape(-1)
    return [dec if capture.is_decoder(i) else enc for i in range(len(capture.names))]


