"""How much of the position dependence of Switch routing the capacity drops themselves produce.

A Switch token is dropped because its expert is full, which happens more often late in a sequence:
drops are not missing at random. Excluding them (``dropped="exclude"``) leaves a position-dependent
sample of the router's choices, so position fields appear to explain routing even when the router
itself ignores position. The comparison here fits independent sites with and without position
fields to the same split under both policies; the difference of the held-out gains is the part of
the position effect that the drops produce.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ..data import ChainData
from ..max_likelihood import IndependentSites

log = logging.getLogger(__name__)

__all__ = ["DropEffect", "position_gain", "drop_position_effect"]


@dataclass(frozen=True)
class DropEffect:
    """Held-out gain of position fields (bits/token) with drops excluded and with the router's choice.

    Attributes
    ----------
    dropped_fraction : float
        Share of valid tokens dropped by capacity.
    gain_exclude, error_exclude : float
        Gain of independent sites with position fields over homogeneous rates, drops excluded.
    gain_router, error_router : float
        The same with every token at the router's choice.
    """

    dropped_fraction: float
    gain_exclude: float
    error_exclude: float
    gain_router: float
    error_router: float

    @property
    def produced_by_drops(self) -> float:
        """``gain_exclude - gain_router`` (bits/token)."""
        return self.gain_exclude - self.gain_router

    @property
    def produced_error(self) -> float:
        """Its error (the two errors in quadrature: conservative, the policies share the sequences)."""
        return math.hypot(self.error_exclude, self.error_router)

    def sentence(self) -> str:
        """One plain sentence for a summary."""
        return (f"capacity drops ({self.dropped_fraction:.1%} of tokens) produce "
                f"{self.produced_by_drops:+.4f} ± {self.produced_error:.4f} bits/token of position effect: "
                f"position fields gain {self.gain_exclude:+.4f} ± {self.error_exclude:.4f} bits/token when "
                f"dropped tokens are excluded and {self.gain_router:+.4f} ± {self.error_router:.4f} with the "
                "router's choice (the default here)")


def position_gain(states, mask, lengths, n_states: int, test: np.ndarray, train: np.ndarray):
    """Held-out gain (bits/token, paired error over test sequences) of position fields over
    homogeneous rates for independent sites."""
    data = ChainData.from_arrays(states, mask, lengths, n_states)
    train_data, test_data = data.subset(train), data.subset(test)
    per_seq = {}
    for fields in ("position", "homogeneous"):
        fit = IndependentSites(fields=fields).fit(train_data)
        per_seq[fields] = fit.log_likelihood(test_data.states, test_data.observed, test_data.lengths)
    d = (per_seq["position"] - per_seq["homogeneous"]) / math.log(2)
    tokens = test_data.n_tokens
    err = math.sqrt(len(d)) * d.std(ddof=1) / tokens if len(d) > 1 else math.nan
    return float(d.sum() / tokens), float(err)


def drop_position_effect(router, excluded, lengths, n_states: int, *, test_fraction: float = 0.2,
                         seed: int = 0) -> DropEffect | None:
    """:class:`DropEffect` of one layer.

    Parameters
    ----------
    router, excluded : tuple (states, mask)
        The layer's sequences under ``dropped="router"`` and ``dropped="exclude"``, shape
        (n_sequences, n_positions) each.
    lengths : ndarray of shape (n_sequences,)
    n_states : int
    test_fraction, seed
        The held-out split (the same sequences for both policies).

    Returns ``None`` when no token is dropped or too few sequences remain.
    """
    (xr, mr), (xe, me) = router, excluded
    dropped = float((mr & ~me).sum() / max(mr.sum(), 1))
    keep = me.any(axis=1) & (lengths >= 2)
    if dropped == 0 or keep.sum() < 3:
        return None
    rng = np.random.default_rng(seed)
    n_seq = int(keep.sum())
    n_test = max(1, round(test_fraction * n_seq))
    order = rng.permutation(n_seq)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    ge = position_gain(xe[keep], me[keep], lengths[keep], n_states, test, train)
    gr = position_gain(xr[keep], mr[keep], lengths[keep], n_states, test, train)
    return DropEffect(dropped, ge[0], ge[1], gr[0], gr[1])
