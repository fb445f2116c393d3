"""Monte Carlo on the layer x position lattice, conditional on the tokens.

A :class:`LatticeTarget` is the conditional distribution ``P(x | t)`` of a set of sequences (one
chain per sequence: its token rows and length; see :mod:`ising_moe.fit.lattice.params` for the
model); a :class:`LatticeState` holds the chains' spins and RNG states (mutable, separate from the
target, so that persistent chains follow a target whose parameters change: Monte Carlo learning).

Updates: ``"heat-bath"`` (each site drawn from its conditional given its two neighbours along the
text, its cross-layer partners and its token) and ``"metropolis"`` (a uniform other state accepted
with ``min(1, w'/w)``; for q = 2 the lazy proposal of :mod:`ising_moe.mc._kernels`). A sweep visits
the layers in order and, in each, the positions in order. Both satisfy detailed balance site by
site; the tests check them against exact enumeration (ergodicity chi-square) and the exact column
solver (z-scores).

>>> import numpy as np
>>> from ising_moe.mc.lattice import LatticeTarget, LatticeState, sweep
>>> lam, q, n = 2, 3, 8
>>> target = LatticeTarget(np.zeros((lam, 1, q)), np.zeros((lam, q, q)), np.eye(q)[None], [(0, 1)],
...                        rows=np.zeros((4, n), np.int64), lengths=np.full(4, n))
>>> state = sweep(target, LatticeState.initial(target, rng=0), 10)
>>> state.spins.shape
(4, 2, 8)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._util import RngLike, as_generator, as_int
from ..errors import InvalidParameterError
from . import _lattice_kernels as LK

__all__ = ["LATTICE_UPDATES", "LatticeTarget", "LatticeState", "sweep", "sample"]

LATTICE_UPDATES = {"heat-bath": LK.HEAT_BATH, "metropolis": LK.METROPOLIS}


def transposed(tables: np.ndarray) -> np.ndarray:
    """(K, q, q) tables with their last two axes swapped, contiguous (the kernels read rows)."""
    return np.ascontiguousarray(np.swapaxes(tables, -1, -2))


@dataclass(frozen=True, eq=False)
class LatticeTarget:
    """Conditional lattice distribution of ``C`` sequences (one chain each).

    Parameters
    ----------
    token : ndarray, shape (Λ, R, q)
        Token fields (log-weights).
    coupling : ndarray, shape (Λ, q, q)
        Couplings along the text, ``coupling[l, x_i, x_{i+1}]``.
    cross : ndarray, shape (P, q, q)
        Cross-layer couplings ``cross[p, x_l, x_m]`` for ``pairs[p] = (l, m)``.
    pairs : array_like of int, shape (P, 2)
    rows : ndarray of int, shape (C, n_sites)
        Token row of every position of every chain.
    lengths : ndarray of int, shape (C,)
    """

    token: np.ndarray
    coupling: np.ndarray
    cross: np.ndarray
    pairs: np.ndarray
    rows: np.ndarray
    lengths: np.ndarray

    def __post_init__(self):
        tok = np.ascontiguousarray(self.token, dtype=float)
        if tok.ndim != 3 or tok.shape[2] < 2:
            raise InvalidParameterError(f"token fields must have shape (n_layers, n_rows, q >= 2), got {tok.shape}")
        lam, n_rows, q = tok.shape
        coup = np.ascontiguousarray(self.coupling, dtype=float)
        pairs = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)
        cross = np.ascontiguousarray(self.cross, dtype=float).reshape(-1, q, q) if len(pairs) else np.zeros((1, q, q))
        rows = np.ascontiguousarray(self.rows, dtype=np.int64)
        lengths = np.ascontiguousarray(self.lengths, dtype=np.int64)
        if coup.shape != (lam, q, q):
            raise InvalidParameterError(f"couplings must have shape {(lam, q, q)}, got {coup.shape}")
        if len(pairs) and (cross.shape[0] != len(pairs) or pairs.min() < 0 or pairs.max() >= lam
                           or (pairs[:, 0] == pairs[:, 1]).any()):
            raise InvalidParameterError(f"cross-layer couplings must be ({len(pairs)}, q, q) for pairs of distinct "
                                        f"layers in 0..{lam - 1}")
        if rows.ndim != 2 or lengths.shape != (rows.shape[0],) or lengths.min() < 1 or lengths.max() > rows.shape[1]:
            raise InvalidParameterError("rows must be (n_chains, n_sites) and lengths (n_chains,) in 1..n_sites")
        if rows.min() < 0 or rows.max() >= n_rows:
            raise InvalidParameterError(f"token rows must be in 0..{n_rows - 1}")
        if not (np.isfinite(tok).all() and np.isfinite(coup).all() and np.isfinite(cross).all()):
            raise InvalidParameterError("lattice parameters must be finite")
        for name, value in (("token", tok), ("coupling", coup), ("cross", cross), ("pairs", pairs), ("rows", rows),
                            ("lengths", lengths)):
            object.__setattr__(self, name, value)

    @property
    def n_chains(self) -> int:
        return self.rows.shape[0]

    @property
    def n_layers(self) -> int:
        return self.token.shape[0]

    @property
    def n_states(self) -> int:
        return self.token.shape[2]

    @property
    def n_sites(self) -> int:
        return self.rows.shape[1]

    def with_parameters(self, token, coupling, cross) -> LatticeTarget:
        """The same sequences under other parameters."""
        return LatticeTarget(token, coupling, cross, self.pairs, self.rows, self.lengths)


@dataclass
class LatticeState:
    """Spins (C, Λ, n_sites) int64 and xoshiro256** states (C, 4) of the chains; sweeps and accepted moves."""

    spins: np.ndarray
    rng_state: np.ndarray
    n_sweeps: int = 0
    accepted: np.ndarray | None = None

    def __post_init__(self):
        if self.accepted is None:
            self.accepted = np.zeros(self.spins.shape[0], dtype=np.int64)

    @classmethod
    def initial(cls, target: LatticeTarget, rng: RngLike = None, start=None) -> LatticeState:
        """Chains from uniformly random spins, or from ``start`` (C, Λ, n_sites), e.g. the data
        (persistent chains of Monte Carlo learning start at the data, as in PCD)."""
        children = as_generator(rng).spawn(target.n_chains)
        states = np.empty((target.n_chains, 4), dtype=np.uint64)
        spins = np.zeros((target.n_chains, target.n_layers, target.n_sites), dtype=np.int64)
        for c, child in enumerate(children):
            states[c] = child.integers(0, 2**64, size=4, dtype=np.uint64, endpoint=False)
            if not states[c].any():
                states[c, 0] = 1
            if start is None:
                spins[c] = child.integers(0, target.n_states, size=spins.shape[1:])
        if start is not None:
            start = np.asarray(start)
            if start.shape != spins.shape or start.min() < 0 or start.max() >= target.n_states:
                raise InvalidParameterError(f"start must be states in 0..{target.n_states - 1} of shape {spins.shape}")
            spins[:] = start
        return cls(spins, states)

    def copy(self) -> LatticeState:
        return LatticeState(self.spins.copy(), self.rng_state.copy(), self.n_sweeps, self.accepted.copy())


def sweep(target: LatticeTarget, state: LatticeState, n_sweeps: int = 1, update: str = "heat-bath") -> LatticeState:
    """Advance every chain by ``n_sweeps`` sweeps, in place; returns ``state``."""
    if update not in LATTICE_UPDATES:
        raise InvalidParameterError(f"unknown update {update!r}; choose one of {', '.join(LATTICE_UPDATES)}")
    n_sweeps = as_int(n_sweeps, "n_sweeps", minimum=0)
    if state.spins.shape != (target.n_chains, target.n_layers, target.n_sites):
        raise InvalidParameterError(f"state of shape {state.spins.shape} for a target of {target.n_chains} chains x "
                                    f"{target.n_layers} layers x {target.n_sites} sites")
    LK.run_sweeps(state.spins, target.rows, target.lengths, state.rng_state, target.token, target.coupling,
                  transposed(target.coupling), target.cross, transposed(target.cross), target.pairs, n_sweeps,
                  LATTICE_UPDATES[update], state.accepted)
    state.n_sweeps += n_sweeps
    return state


def sample(target: LatticeTarget, n_samples: int, *, thin: int = 1, n_burnin: int = 100, update: str = "heat-bath",
           rng: RngLike = None, state: LatticeState | None = None) -> tuple[np.ndarray, LatticeState]:
    """``n_samples`` configurations of every chain, ``thin`` sweeps apart after ``n_burnin``.

    Returns ``(samples, state)`` with samples of shape (n_samples, C, Λ, n_sites).
    """
    n_samples = as_int(n_samples, "n_samples", minimum=1)
    thin = as_int(thin, "thin", minimum=1)
    state = LatticeState.initial(target, rng) if state is None else state
    sweep(target, state, n_burnin, update)
    out = np.empty((n_samples, *state.spins.shape), dtype=np.int64)
    for k in range(n_samples):
        sweep(target, state, thin, update)
        out[k] = state.spins
    return out, state
