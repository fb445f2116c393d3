"""The power-law chain: Potts/Ising couplings ``J / r^(1 + sigma)`` between every pair of sites.

Conventions (``docs/conventions.md``, *The power-law chain*):

.. math::

    E(s) = -\\sum_i h_i(s_i) - \\sum_{i < j} w(j - i) K(s_i, s_j),

with ``w(d) = d^{-(1 + sigma)}`` on an open chain and, on a ring, the sum over all periodic images
``w_P(d) = sum_{m in Z} |d + m N|^{-(1 + sigma)} = N^{-(1+sigma)} [zeta(1+sigma, d/N) +
zeta(1+sigma, 1 - d/N)]`` (Hurwitz zeta; every pair counted once, ``w_P(d) = w_P(N - d)``).
``K = J eye(q)`` for the Potts chain and ``K = J [[1, -1], [-1, 1]]`` for the Ising chain
(``-J sigma_i sigma_j``), so ``J(r) = J / r^(1 + sigma)`` is the coupling of the model's own form.
No cutoff: every distance ``1 <= d <= N - 1`` enters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import special

from ._util import as_float, as_float_array, as_int, as_samples, frozen
from .chain import LongRangeChain, ising_to_potts
from .errors import InvalidParameterError

__all__ = ["PowerLawChain", "power_law_weights"]


def power_law_weights(n_sites: int, sigma: float, periodic: bool) -> np.ndarray:
    """Distance weights ``w(d)``, ``d = 1 .. n_sites - 1`` (index ``d - 1``).

    Open: ``d^{-(1+sigma)}``. Periodic: the image sum ``sum_m |d + m N|^{-(1+sigma)}`` in closed
    form with the Hurwitz zeta function (needs ``sigma > 0``).

    Returns
    -------
    ndarray of shape (n_sites - 1,)
    """
    d = np.arange(1, n_sites, dtype=float)
    s = 1.0 + sigma
    if not periodic:
        return d ** -s
    x = d / n_sites
    return n_sites ** -s * (special.zeta(s, x) + special.zeta(s, 1.0 - x))


@dataclass(frozen=True, eq=False)
class PowerLawChain:
    """A chain whose every pair of sites interacts with ``w(|i - j|) K(s_i, s_j)``.

    Parameters
    ----------
    n_sites : int
        >= 2.
    pair_couplings : array_like of shape (n_states, n_states)
        ``K``, symmetric: ``J eye(q)`` (Potts, :meth:`potts`) or ``J [[1, -1], [-1, 1]]``
        (Ising, :meth:`ising`).
    sigma : float
        Decay exponent: ``J(r) = J / r^(1 + sigma)``. ``sigma > -1`` on open chains, ``sigma > 0``
        on rings (the image sum must converge).
    fields : array_like of shape (n_states,) or (n_sites, n_states), optional
    beta : float, default 1
    periodic : bool, default False
        Ring with image-summed weights ``w_P`` (see the module docstring).
    """

    n_sites: int
    pair_couplings: np.ndarray
    sigma: float
    fields: np.ndarray | None = None
    beta: float = 1.0
    periodic: bool = False

    def __post_init__(self):
        n_sites = as_int(self.n_sites, "n_sites", minimum=2)
        k = as_float_array(self.pair_couplings, "pair_couplings", ndims=(2,))
        q = k.shape[0]
        if k.shape != (q, q) or q < 2:
            raise InvalidParameterError(f"pair_couplings must be (q, q) with q >= 2, got shape {k.shape}")
        if not np.allclose(k, k.T, rtol=0, atol=1e-12 * max(1.0, np.abs(k).max())):
            raise InvalidParameterError("pair_couplings must be symmetric (K(a, b) = K(b, a))")
        periodic = bool(self.periodic)
        sigma = as_float(self.sigma, "sigma")
        low = 0.0 if periodic else -1.0
        if not sigma > low:
            raise InvalidParameterError(
                f"sigma must be > {low:g} for a {'periodic' if periodic else 'open'} power-law chain "
                f"(the couplings J / r^(1 + sigma) must decay{' and their image sum converge' if periodic else ''}), "
                f"got {sigma}"
            )
        fields = np.zeros(q) if self.fields is None else as_float_array(self.fields, "fields", (1, 2))
        if fields.shape[-1] != q or (fields.ndim == 2 and fields.shape[0] != n_sites):
            raise InvalidParameterError(f"fields must have shape ({q},) or ({n_sites}, {q}), got {fields.shape}")
        object.__setattr__(self, "n_sites", n_sites)
        object.__setattr__(self, "pair_couplings", frozen(k))
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "fields", frozen(fields))
        object.__setattr__(self, "beta", as_float(self.beta, "beta", minimum=0.0))
        object.__setattr__(self, "periodic", periodic)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def potts(cls, n_sites: int, n_states: int, coupling: float = 1.0, sigma: float = 1.0, field=None,
              beta: float = 1.0, periodic: bool = False) -> PowerLawChain:
        """Potts chain ``E = -sum_{i<j} J w(j - i) delta(s_i, s_j) - sum_i h_i(s_i)``."""
        q = as_int(n_states, "n_states", minimum=2)
        return cls(n_sites, as_float(coupling, "coupling") * np.eye(q), sigma, field, beta=beta, periodic=periodic)

    @classmethod
    def ising(cls, n_sites: int, coupling: float = 1.0, sigma: float = 1.0, field=0.0, beta: float = 1.0,
              periodic: bool = False) -> PowerLawChain:
        """Ising chain ``E = -sum_{i<j} J w(j - i) sigma_i sigma_j - sum_i h_i sigma_i`` (states ``(sigma+1)/2``).

        Parameters
        ----------
        field : float or array_like of shape (n_sites,)
        """
        k, f = ising_to_potts(as_float(coupling, "coupling"), field)
        return cls(n_sites, k, sigma, f, beta=beta, periodic=periodic)

    def replace(self, **changes) -> PowerLawChain:
        """A copy with some parameters changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ properties
    @property
    def n_states(self) -> int:
        return self.pair_couplings.shape[0]

    @property
    def couplings(self) -> np.ndarray:
        """``K`` as a (1, q, q) array (the form the samplers' Potts-form check reads)."""
        return self.pair_couplings[None]

    def site_fields(self) -> np.ndarray:
        return np.broadcast_to(self.fields, (self.n_sites, self.n_states))

    def distance_weights(self) -> np.ndarray:
        """``w(d)`` for ``d = 1 .. n_sites - 1``, shape (n_sites - 1,) (image-summed on a ring)."""
        return power_law_weights(self.n_sites, self.sigma, self.periodic)

    def n_pairs(self) -> np.ndarray:
        """Number of pairs ``i < j`` at separation ``j - i = d``: ``n_sites - d``, shape (n_sites - 1,)."""
        return self.n_sites - np.arange(1, self.n_sites)

    def to_long_range(self) -> LongRangeChain:
        """The same distribution as a :class:`LongRangeChain` (the O(N R) samplers' model).

        Open chains: ``max_distance = n_sites - 1``. Rings: ``LongRangeChain`` counts the pair at
        ring distance ``r <= (N - 1) / 2`` once with ``J_r = w_P(r) K``, which covers every pair
        only for odd ``n_sites``.
        """
        w = self.distance_weights()
        if self.periodic:
            if self.n_sites % 2 == 0:
                raise InvalidParameterError(
                    "a LongRangeChain ring cannot hold the pairs at distance N/2 once; use an odd n_sites"
                )
            w = w[: (self.n_sites - 1) // 2]
        return LongRangeChain(self.n_sites, w[:, None, None] * self.pair_couplings, self.fields,
                              beta=self.beta, periodic=self.periodic)

    def energy(self, samples) -> np.ndarray:
        """Energy ``E(s)`` (without beta) of each configuration, straight from the pair sum.

        Parameters
        ----------
        samples : array_like of int, shape (n_samples, n_sites)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        s = as_samples(samples, self.n_states, self.n_sites)
        e = -self.site_fields()[np.arange(self.n_sites), s].sum(axis=1)
        w = self.distance_weights()
        for d in range(1, self.n_sites):
            e -= w[d - 1] * self.pair_couplings[s[:, :-d], s[:, d:]].sum(axis=1)
        return e

    def __repr__(self) -> str:
        return (f"PowerLawChain(n_sites={self.n_sites}, n_states={self.n_states}, sigma={self.sigma:g}, "
                f"beta={self.beta:g}, {'periodic' if self.periodic else 'open'})")
