"""Position ablation at extraction: the ``position_ids`` a RoPE model is given (no torch needed).

Rotary models (OLMoE, Mixtral, Qwen2/3-MoE) see token positions only through the ``position_ids``
that rotate queries and keys; the causal mask follows the order of the tokens in the input
(``attention_mask`` is always passed, so transformers never reads the positions as packed
sequences). Replacing the positions therefore removes or scrambles the positional information
while the text and its causal context stay the same, and routing with and without positions can be
compared causally:

- ``natural``: ``0 .. n-1`` (what the model was trained with);
- ``constant``: every token at position 0 (RoPE becomes the identity: no positional information);
- ``shuffled``: a random permutation of ``0 .. n-1`` per sequence (positional information present
  but unrelated to the order), seeded per sequence so that it does not depend on batching or
  sharding;
- ``reversed``: ``n-1 .. 0``.

Switch Transformers (T5) have no position ids: a relative position bias, computed inside each
attention layer from the order of the tokens, is their only positional input, so they are refused.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError

__all__ = ["POSITION_MODES", "ROPE_FAMILIES", "check_positions", "position_ids"]

POSITION_MODES = ("natural", "constant", "shuffled", "reversed")
#: families whose only positional input is the rotary embedding of ``position_ids``
ROPE_FAMILIES = ("olmoe", "mixtral", "qwen2_moe", "qwen3_moe")


def check_positions(mode: str, family: str | None = None) -> str:
    """Validate a position mode (and, once the family is known, that the model takes position ids)."""
    if mode not in POSITION_MODES:
        raise InvalidParameterError(f"positions must be one of {', '.join(POSITION_MODES)}, got {mode!r}")
    if family is not None and mode != "natural" and family not in ROPE_FAMILIES:
        raise InvalidParameterError(
            f"--positions {mode} needs a model with rotary position ids ({', '.join(ROPE_FAMILIES)}); "
            f"{family} has none: Switch/T5 attention adds a relative position bias computed from the "
            "order of the tokens inside each layer, which position ids cannot change")
    return mode


def _permutation(seed: int, sequence: int, n: int) -> np.ndarray:
    """The shuffled positions of one sequence: its own stream, ``SeedSequence(seed, spawn_key=(i,))``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(sequence),)))
    return rng.permutation(n)


def position_ids(attention_mask: np.ndarray, mode: str, *, seed: int = 0, first_sequence: int = 0) -> np.ndarray:
    """Position ids of a batch.

    Parameters
    ----------
    attention_mask : ndarray of {0, 1}, shape (batch, length)
        The batch as the model receives it (valid tokens contiguous, padding on either side).
    mode : {"natural", "constant", "shuffled", "reversed"}
    seed : int
        Seed of the shuffled positions.
    first_sequence : int
        Corpus index of the batch's first sequence (the shuffles are per corpus sequence).

    Returns
    -------
    ndarray of int64, shape (batch, length)
        For ``natural``: ``cumsum(mask) - 1`` clipped at 0 (as transformers' generation does);
        otherwise the mode's positions on the valid tokens and 0 on padding.
    """
    att = np.asarray(attention_mask).astype(np.int64)
    if mode == "natural":
        return np.clip(np.cumsum(att, axis=1) - 1, 0, None)
    out = np.zeros_like(att)
    for row in range(att.shape[0]):
        where = np.flatnonzero(att[row])
        n = where.size
        if mode == "constant":
            values = np.zeros(n, dtype=np.int64)
        elif mode == "reversed":
            values = np.arange(n - 1, -1, -1, dtype=np.int64)
        elif mode == "shuffled":
            values = _permutation(seed, first_sequence + row, n).astype(np.int64)
        else:
            raise InvalidParameterError(f"positions must be one of {', '.join(POSITION_MODES)}, got {mode!r}")
        out[row, where] = values
    return out
