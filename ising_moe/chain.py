"""Model objects: 1D multi-state Potts/Ising chains.

Conventions (``docs/conventions.md``): sites ``i = 0 .. n_sites-1``, states ``a = 0 .. q-1``,

.. math::

    E(s) = -\\sum_i h_i(s_i) - \\sum_{b=(i,i+1)} J_b(s_i, s_{i+1}), \\qquad
    P(s) = e^{-\\beta E(s)} / Z,

open chains have ``n_sites - 1`` bonds, periodic chains add the bond ``(n_sites-1, 0)``.
Ising (q = 2) spins are ``sigma = 2 s - 1`` and ``-J sigma sigma' - h sigma`` corresponds to
``couplings = J [[1, -1], [-1, 1]]``, ``fields = h [-1, 1]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ._util import as_float, as_float_array, as_int, as_samples, frozen
from .errors import InvalidParameterError

__all__ = [
    "PottsChain",
    "LongRangeChain",
    "ising_to_potts",
    "potts_to_ising",
    "spins_to_states",
    "states_to_spins",
]

_ISING_COUPLING = np.array([[1.0, -1.0], [-1.0, 1.0]])
_ISING_FIELD = np.array([-1.0, 1.0])


@dataclass(frozen=True, eq=False)
class PottsChain:
    """A 1D chain of ``n_sites`` q-state spins with nearest-neighbour couplings.

    Parameters
    ----------
    n_sites : int
        Number of sites, >= 2.
    couplings : array_like of shape (n_states, n_states) or (n_bonds, n_states, n_states)
        ``J_b(a, b)``: homogeneous, or one matrix per bond (``n_bonds = n_sites - 1`` for open,
        ``n_sites`` for periodic chains; bond ``b`` joins sites ``b`` and ``(b + 1) % n_sites``).
    fields : array_like of shape (n_states,) or (n_sites, n_states), optional
        ``h_i(a)``: homogeneous or position-dependent. Default zero.
    beta : float, default 1
        Inverse temperature, >= 0.
    periodic : bool, default False
        Close the chain with the bond ``(n_sites - 1, 0)``.

    Notes
    -----
    The object is immutable (its arrays are read-only); use :meth:`replace` to change a parameter.
    """

    n_sites: int
    couplings: np.ndarray
    fields: np.ndarray | None = None
    beta: float = 1.0
    periodic: bool = False

    def __post_init__(self):
        n_sites = as_int(self.n_sites, "n_sites", minimum=2)
        couplings = as_float_array(self.couplings, "couplings", ndims=(2, 3))
        q = couplings.shape[-1]
        if couplings.shape[-2] != q:
            raise InvalidParameterError(
                f"couplings must be square in the state dimensions, got shape {couplings.shape}"
            )
        if q < 2:
            raise InvalidParameterError(f"n_states must be >= 2, got {q}")
        periodic = bool(self.periodic)
        n_bonds = n_sites if periodic else n_sites - 1
        if couplings.ndim == 3 and couplings.shape[0] != n_bonds:
            raise InvalidParameterError(
                f"per-bond couplings need shape ({n_bonds}, {q}, {q}) for a "
                f"{'periodic' if periodic else 'open'} chain of {n_sites} sites, got {couplings.shape}"
            )
        fields = np.zeros(q) if self.fields is None else as_float_array(self.fields, "fields", (1, 2))
        if fields.shape[-1] != q or (fields.ndim == 2 and fields.shape[0] != n_sites):
            raise InvalidParameterError(
                f"fields must have shape ({q},) or ({n_sites}, {q}), got {fields.shape}"
            )
        beta = as_float(self.beta, "beta", minimum=0.0)
        object.__setattr__(self, "n_sites", n_sites)
        object.__setattr__(self, "couplings", frozen(couplings))
        object.__setattr__(self, "fields", frozen(fields))
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "periodic", periodic)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def potts(cls, n_sites: int, n_states: int, coupling=1.0, field=None, beta: float = 1.0,
              periodic: bool = False) -> PottsChain:
        """Potts chain ``J_b(a, b) = J_b delta_ab``.

        Parameters
        ----------
        coupling : float or array_like of shape (n_bonds,)
            ``J`` (homogeneous) or one ``J_b`` per bond.
        field : array_like of shape (n_states,) or (n_sites, n_states), optional
            Fields ``h_i(a)``.
        """
        q = as_int(n_states, "n_states", minimum=2)
        coupling = as_float_array(coupling, "coupling", ndims=(0, 1))
        couplings = coupling[..., None, None] * np.eye(q)
        return cls(n_sites, couplings, field, beta=beta, periodic=periodic)

    @classmethod
    def ising(cls, n_sites: int, coupling=1.0, field=0.0, beta: float = 1.0,
              periodic: bool = False) -> PottsChain:
        """Ising chain ``E = -sum J_b sigma_i sigma_{i+1} - sum h_i sigma_i`` (states ``s = (sigma+1)/2``).

        Parameters
        ----------
        coupling : float or array_like of shape (n_bonds,)
        field : float or array_like of shape (n_sites,)
        """
        couplings, fields = ising_to_potts(coupling, field)
        return cls(n_sites, couplings, fields, beta=beta, periodic=periodic)

    def replace(self, **changes) -> PottsChain:
        """A copy with some parameters changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ properties
    @property
    def n_states(self) -> int:
        """Number of states q."""
        return self.couplings.shape[-1]

    @property
    def n_bonds(self) -> int:
        """Number of bonds: ``n_sites - 1`` (open) or ``n_sites`` (periodic)."""
        return self.n_sites if self.periodic else self.n_sites - 1

    @property
    def homogeneous(self) -> bool:
        """True when fields and couplings do not depend on position."""
        return self.fields.ndim == 1 and self.couplings.ndim == 2

    def site_fields(self) -> np.ndarray:
        """Fields broadcast to shape (n_sites, n_states) (a read-only view)."""
        return np.broadcast_to(self.fields, (self.n_sites, self.n_states))

    def bond_couplings(self) -> np.ndarray:
        """Couplings broadcast to shape (n_bonds, n_states, n_states) (a read-only view)."""
        return np.broadcast_to(self.couplings, (self.n_bonds, self.n_states, self.n_states))

    def energy(self, samples) -> np.ndarray:
        """Energy ``E(s)`` (without beta) of each configuration.

        Parameters
        ----------
        samples : array_like of int, shape (n_samples, n_sites)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        s = as_samples(samples, self.n_states, self.n_sites)
        sites = np.arange(self.n_sites)
        e = -self.site_fields()[sites, s].sum(axis=1)
        left = s if self.periodic else s[:, :-1]
        right = np.roll(s, -1, axis=1) if self.periodic else s[:, 1:]
        bonds = np.arange(self.n_bonds)
        e -= self.bond_couplings()[bonds, left, right].sum(axis=1)
        return e

    def __repr__(self) -> str:
        kind = "homogeneous" if self.homogeneous else "inhomogeneous"
        return (f"PottsChain(n_sites={self.n_sites}, n_states={self.n_states}, beta={self.beta:g}, "
                f"{'periodic' if self.periodic else 'open'}, {kind})")


@dataclass(frozen=True, eq=False)
class LongRangeChain:
    """A chain with translation-invariant couplings up to distance ``max_distance``.

    .. math::

        E(s) = -\\sum_i h_i(s_i) - \\sum_{r=1}^{R} \\sum_{i} J_r(s_i, s_{i+r}),

    where the inner sum runs over ``i + r < n_sites`` (open) or over all ``i`` with ``i + r``
    taken modulo ``n_sites`` (periodic, ``R < n_sites / 2`` so that no pair is counted twice).

    Parameters
    ----------
    n_sites : int
    couplings : array_like of shape (max_distance, n_states, n_states)
        ``couplings[r - 1] = J_r``.
    fields : array_like of shape (n_states,) or (n_sites, n_states), optional
    beta : float, default 1
    periodic : bool, default False
    """

    n_sites: int
    couplings: np.ndarray
    fields: np.ndarray | None = None
    beta: float = 1.0
    periodic: bool = False

    def __post_init__(self):
        n_sites = as_int(self.n_sites, "n_sites", minimum=2)
        couplings = as_float_array(self.couplings, "couplings", ndims=(3,))
        max_distance, q, q2 = couplings.shape
        if q != q2 or q < 2:
            raise InvalidParameterError(
                f"couplings must have shape (max_distance, n_states, n_states) with n_states >= 2, "
                f"got {couplings.shape}"
            )
        periodic = bool(self.periodic)
        limit = (n_sites - 1) // 2 if periodic else n_sites - 1
        if not 1 <= max_distance <= limit:
            raise InvalidParameterError(
                f"max_distance must be in 1..{limit} for a {'periodic' if periodic else 'open'} "
                f"chain of {n_sites} sites, got {max_distance}"
            )
        fields = np.zeros(q) if self.fields is None else as_float_array(self.fields, "fields", (1, 2))
        if fields.shape[-1] != q or (fields.ndim == 2 and fields.shape[0] != n_sites):
            raise InvalidParameterError(f"fields must have shape ({q},) or ({n_sites}, {q})")
        object.__setattr__(self, "n_sites", n_sites)
        object.__setattr__(self, "couplings", frozen(couplings))
        object.__setattr__(self, "fields", frozen(fields))
        object.__setattr__(self, "beta", as_float(self.beta, "beta", minimum=0.0))
        object.__setattr__(self, "periodic", periodic)

    @classmethod
    def power_law(cls, n_sites: int, n_states: int = 2, coupling: float = 1.0, alpha: float = 1.5,
                  max_distance: int | None = None, field=None, beta: float = 1.0,
                  periodic: bool = False) -> LongRangeChain:
        """Potts-type power-law couplings ``J_r(a, b) = J r^{-alpha} delta_ab``.

        For ``n_states = 2`` this is the long-range Ising chain with ``J_ising(r) = J r^{-alpha} / 2``
        (``delta_ab = (1 + sigma sigma') / 2``), which orders at finite temperature for
        ``1 < alpha <= 2``. ``max_distance`` defaults to all pairs.
        """
        q = as_int(n_states, "n_states", minimum=2)
        n = as_int(n_sites, "n_sites", minimum=2)
        if max_distance is None:
            max_distance = (n - 1) // 2 if periodic else n - 1
        r = np.arange(1, as_int(max_distance, "max_distance", minimum=1) + 1, dtype=float)
        alpha = as_float(alpha, "alpha", minimum=0.0)
        couplings = (as_float(coupling, "coupling") * r ** -alpha)[:, None, None] * np.eye(q)
        return cls(n, couplings, field, beta=beta, periodic=periodic)

    @property
    def n_states(self) -> int:
        return self.couplings.shape[-1]

    @property
    def max_distance(self) -> int:
        return self.couplings.shape[0]

    def site_fields(self) -> np.ndarray:
        return np.broadcast_to(self.fields, (self.n_sites, self.n_states))

    def replace(self, **changes) -> LongRangeChain:
        return dataclasses.replace(self, **changes)

    def energy(self, samples) -> np.ndarray:
        """Energy of each configuration, shape (n_samples,)."""
        s = as_samples(samples, self.n_states, self.n_sites)
        e = -self.site_fields()[np.arange(self.n_sites), s].sum(axis=1)
        for r in range(1, self.max_distance + 1):
            right = np.roll(s, -r, axis=1) if self.periodic else s[:, r:]
            left = s if self.periodic else s[:, :-r]
            e -= self.couplings[r - 1][left, right].sum(axis=1)
        return e

    def __repr__(self) -> str:
        return (f"LongRangeChain(n_sites={self.n_sites}, n_states={self.n_states}, "
                f"max_distance={self.max_distance}, beta={self.beta:g}, "
                f"{'periodic' if self.periodic else 'open'})")


def ising_to_potts(coupling, field=0.0) -> tuple[np.ndarray, np.ndarray]:
    """Ising ``(J, h)`` to Potts/lattice-gas ``(couplings, fields)`` for q = 2.

    ``-J sigma sigma' - h sigma`` equals ``-couplings[s, s'] - fields[s]`` with
    ``couplings = J [[1, -1], [-1, 1]]`` and ``fields = h [-1, 1]`` (no constant is dropped).

    Parameters
    ----------
    coupling : float or array_like of shape (n_bonds,)
    field : float or array_like of shape (n_sites,)

    Returns
    -------
    couplings : ndarray of shape (2, 2) or (n_bonds, 2, 2)
    fields : ndarray of shape (2,) or (n_sites, 2)
    """
    j = as_float_array(coupling, "coupling", ndims=(0, 1))
    h = as_float_array(field, "field", ndims=(0, 1))
    return j[..., None, None] * _ISING_COUPLING, h[..., None] * _ISING_FIELD


def potts_to_ising(model: PottsChain) -> tuple[np.ndarray, np.ndarray, float]:
    """Exact Ising form of any q = 2 chain.

    Every two-state bond term ``K(s, s')`` is ``c + a sigma + b sigma' + J sigma sigma'``; the
    ``a``, ``b`` parts become site fields, so the returned parameters give the same distribution
    for any couplings matrix and boundary condition.

    Returns
    -------
    coupling : ndarray of shape (n_bonds,)
        ``J_b`` in ``-sum_b J_b sigma_i sigma_j``.
    field : ndarray of shape (n_sites,)
        ``h_i`` in ``-sum_i h_i sigma_i``.
    offset : float
        Constant with ``E_potts(s) = E_ising(sigma) + offset``.
    """
    if model.n_states != 2:
        raise InvalidParameterError(f"potts_to_ising needs n_states == 2, got {model.n_states}")
    k = model.bond_couplings()
    f = model.site_fields()
    j = (k[:, 1, 1] + k[:, 0, 0] - k[:, 1, 0] - k[:, 0, 1]) / 4
    a = (k[:, 1, 1] + k[:, 1, 0] - k[:, 0, 1] - k[:, 0, 0]) / 4
    b = (k[:, 1, 1] + k[:, 0, 1] - k[:, 1, 0] - k[:, 0, 0]) / 4
    h = (f[:, 1] - f[:, 0]) / 2
    left = np.arange(model.n_bonds)
    right = (left + 1) % model.n_sites
    np.add.at(h, left, a)
    np.add.at(h, right, b)
    offset = -(k.sum(axis=(1, 2)).sum() / 4 + f.sum() / 2)
    return j, h, float(offset)


def spins_to_states(spins) -> np.ndarray:
    """Ising spins ``±1`` to states ``{0, 1}`` (``s = (sigma + 1) / 2``); rejects other values."""
    arr = np.asarray(spins)
    if arr.size and not np.isin(arr, (-1, 1)).all():
        raise InvalidParameterError("spins must be -1 or +1 (pass states 0/1 directly instead)")
    return ((arr.astype(np.int32) + 1) // 2).astype(np.int32)


def states_to_spins(states) -> np.ndarray:
    """States ``{0, 1}`` to Ising spins ``±1``; rejects other values."""
    arr = np.asarray(states)
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise InvalidParameterError("states must be 0 or 1 to convert to Ising spins")
    return (2 * arr.astype(np.int32) - 1).astype(np.int32)
