"""Exact means of the observables the samplers measure (the oracle of MC runs and sweeps)."""

from __future__ import annotations

import itertools

import numpy as np

from ..chain import LongRangeChain, PottsChain
from ..exact import solve
from ..power_law import PowerLawChain

__all__ = ["exact_observables", "MAX_ENUMERATION"]

#: largest q**n_sites that :func:`exact_observables` enumerates for long-range chains
MAX_ENUMERATION = 1 << 16


def _enumerate(model: LongRangeChain | PowerLawChain):
    q, n = model.n_states, model.n_sites
    conf = np.array(list(itertools.product(range(q), repeat=n)), dtype=np.int32)
    logw = -model.beta * model.energy(conf)
    p = np.exp(logw - np.logaddexp.reduce(logw))
    return conf, p


def exact_observables(model, max_distance: int = 0) -> dict[str, float] | None:
    """Exact ``energy``, ``energy_per_site``, ``occupation:a``, ``magnetisation`` (q = 2) and
    ``overlap:r`` (``1 <= r <= max_distance``) of a model.

    Transfer matrices for :class:`PottsChain`; enumeration for small :class:`LongRangeChain` and
    :class:`~ising_moe.power_law.PowerLawChain` (all distances, no cutoff; ``q**n_sites <=
    MAX_ENUMERATION``); ``None`` when no exact value is available.
    """
    q, n = model.n_states, model.n_sites
    if isinstance(model, PottsChain):
        sol = solve(model)
        energy = -(np.einsum("bxy,bxy->", sol.pair_marginals, model.bond_couplings())
                   + np.einsum("ia,ia->", sol.marginals, model.site_fields()))
        occupation = sol.marginals.mean(axis=0)
        overlap = sol.same_state_joint(max_distance).sum(axis=1)
    elif isinstance(model, (LongRangeChain, PowerLawChain)) and q**n <= MAX_ENUMERATION:
        conf, p = _enumerate(model)
        energy = float(p @ model.energy(conf))
        occupation = np.array([p @ (conf == a).mean(axis=1) for a in range(q)])
        overlap = [1.0]
        for r in range(1, max_distance + 1):
            same = (conf == np.roll(conf, -r, axis=1)).mean(axis=1) if model.periodic else \
                (conf[:, : n - r] == conf[:, r:]).mean(axis=1)
            overlap.append(float(p @ same))
        overlap = np.array(overlap)
    else:
        return None
    out = {"energy": float(energy), "energy_per_site": float(energy) / n}
    out.update({f"occupation:{a}": float(v) for a, v in enumerate(occupation)})
    if q == 2:
        out["magnetisation"] = float(occupation[1] - occupation[0])
    out.update({f"overlap:{r}": float(overlap[r]) for r in range(1, max_distance + 1)})
    return out
