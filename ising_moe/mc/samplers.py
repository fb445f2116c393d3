"""Monte Carlo sampling of Potts/Ising chains: immutable sampler configuration, separate state.

>>> from ising_moe import PottsChain
>>> from ising_moe.mc import simulate
>>> run = simulate(PottsChain.potts(256, 4, coupling=1.0), "heat-bath", n_sweeps=2000, rng=1)
>>> print(run.stats("energy_per_site"))  # doctest: +SKIP
-1.274 ± 0.002 (tau=1.9, ess=4200, rhat=1.000)

Updates
-------
``metropolis``         sequential single-spin Metropolis (propose one of the ``q - 1`` other states;
                       for q = 2 the flip is proposed with probability 1/2, which keeps the sweep
                       ergodic at zero field: see :func:`~ising_moe.mc._kernels.metropolis_sweep`)
``metropolis-random``  the same at randomly chosen sites
``heat-bath``          sequential single-spin Gibbs updates
``swendsen-wang``      Swendsen-Wang clusters (nearest-neighbour chains; power-law chains by Fukui and
                       Todo's O(N) Poisson-process bonds over all distances)
``wolff``              Wolff single clusters (nearest-neighbour runs, or all pairs within range)

A :class:`~ising_moe.power_law.PowerLawChain` runs the local updates and Wolff with the long-range
kernels on all ``N - 1`` distances (``O(N^2)`` per sweep), and ``swendsen-wang`` with
:mod:`._power_law_kernels` (``O(N)`` per sweep; its ``energy`` is the unbiased bond-count estimate
of the configuration each sweep started from, see there).

Cluster updates need Potts-form couplings on every bond or distance: ``J delta_ab + c`` with
``J >= 0`` (Ising couplings ``J sigma sigma'`` are of this form with ``J_potts = 2 J``). Fields of
any shape are handled exactly (Swendsen-Wang: each cluster drawn from its conditional; Wolff: the
cluster flip is accepted with the Boltzmann ratio of the fields). Other couplings raise
:class:`~ising_moe.errors.InvalidParameterError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .._util import RngLike, as_generator, as_int
from ..chain import LongRangeChain, PottsChain
from ..errors import InvalidParameterError
from ..power_law import PowerLawChain
from ..stats import MIN_EVENTS, Stats, estimate
from . import _kernels as K
from . import _long_range_kernels as LRK
from . import _power_law_kernels as PLK

__all__ = ["UPDATES", "Sampler", "ChainState", "MCResult", "simulate", "potts_bond_couplings", "faster_update"]

UPDATES = {
    "metropolis": K.METROPOLIS,
    "metropolis-random": K.METROPOLIS_RANDOM,
    "heat-bath": K.HEAT_BATH,
    "swendsen-wang": K.SWENDSEN_WANG,
    "wolff": K.WOLFF,
}
_CLUSTER = ("swendsen-wang", "wolff")
#: beta times the spread of weights in one update's product must not underflow float64
_MAX_LOG_RANGE = 700.0
#: largest ``R q^2`` table of per-distance couplings the O(N R) kernels are given for a power-law chain
_MAX_TABLE = 1 << 22


@dataclass(frozen=True)
class Sampler:
    """Immutable sampler configuration.

    Parameters
    ----------
    update : str
        One of :data:`UPDATES`.
    """

    update: str = "heat-bath"

    def __post_init__(self):
        if self.update not in UPDATES:
            raise InvalidParameterError(f"unknown update {self.update!r}; choose one of {', '.join(UPDATES)}")


def ordered_states(model) -> np.ndarray:
    """States ``a`` ranked by the energy of the ordered configuration ``(a, a, ..., a)``, lowest
    first (ties by ``a``): the order in which dispersed starts seed the modes of an ordered chain.

    Returns
    -------
    ndarray of int, shape (n_states,)
    """
    q = model.n_states
    uniform = np.repeat(np.arange(q, dtype=np.int32)[:, None], model.n_sites, axis=1)
    energy = np.asarray(model.energy(uniform), dtype=float)
    return np.lexsort((np.arange(q), np.round(energy, 9)))


@dataclass
class ChainState:
    """Mutable state of ``n_chains`` independent chains: spins, RNG states, sweep counter.

    Attributes
    ----------
    spins : ndarray of int32, shape (n_chains, n_sites)
    rng_state : ndarray of uint64, shape (n_chains, 4)
        xoshiro256** state of each chain (derived from ``Generator.spawn``).
    n_sweeps : int
        Sweeps done so far (burn-in included).
    wolff_updates : ndarray of int64, shape (n_chains,)
        Wolff cluster updates per sweep, fixed after the first burn-in (0 = not yet fixed).
    """

    spins: np.ndarray
    rng_state: np.ndarray
    n_sweeps: int = 0
    wolff_updates: np.ndarray | None = None

    def __post_init__(self):
        if self.wolff_updates is None:
            self.wolff_updates = np.zeros(self.spins.shape[0], dtype=np.int64)

    @classmethod
    def initial(cls, model, n_chains: int = 4, rng: RngLike = None, start: str = "dispersed") -> ChainState:
        """Fresh chains.

        ``start="dispersed"`` (default): the ordered configurations (all sites in state ``a``) are
        ranked by their energy ``E(a, a, ..., a)`` (fields and couplings; ties by ``a``), the
        candidates for the modes of an ordered chain. Chain ``c < min(q, n_chains)`` starts in the
        ``c``-th lowest; the chains beyond ``q`` start from random spins. With ``n_chains >= q``
        every ordered state is seeded; with fewer, the ``n_chains`` most probable ones are (for an
        ordered chain the weight of mode ``a`` is about ``exp(-beta E(a, ..., a))``; a mode a chain
        never visits is invisible to every diagnostic, so seed the ones that matter). Chains that
        cannot leave the mode they started in then disagree, which split R-hat and the
        between-chain test see; from one common start every chain could sit in the same wrong mode
        with R-hat = 1. ``"random"``: every chain random; ``"ordered"``: every chain all 0.
        """
        n_chains = as_int(n_chains, "n_chains", minimum=1)
        if start not in ("dispersed", "random", "ordered"):
            raise InvalidParameterError(f"start must be 'dispersed', 'random' or 'ordered', got {start!r}")
        children = as_generator(rng).spawn(n_chains)
        states = np.empty((n_chains, 4), dtype=np.uint64)
        spins = np.zeros((n_chains, model.n_sites), dtype=np.int32)
        ranked = ordered_states(model) if start == "dispersed" else None
        for c, child in enumerate(children):
            states[c] = child.integers(0, 2**64, size=4, dtype=np.uint64, endpoint=False)
            if not states[c].any():
                states[c, 0] = 1  # the all-zero state is xoshiro's only fixed point
            if start == "random" or (start == "dispersed" and c >= model.n_states):
                spins[c] = child.integers(0, model.n_states, size=model.n_sites)
            elif start == "dispersed":
                spins[c] = ranked[c]
        return cls(spins, states, 0)

    def copy(self) -> ChainState:
        return ChainState(self.spins.copy(), self.rng_state.copy(), self.n_sweeps, self.wolff_updates.copy())


@dataclass(frozen=True, eq=False)
class MCResult:
    """Measurements of a Monte Carlo run.

    Attributes
    ----------
    energy : ndarray of shape (n_chains, n_sweeps)
        ``E(s)`` (without beta) after each measured sweep.
    occupation : ndarray of int32, shape (n_chains, n_sweeps, n_states)
        Number of sites in each state.
    overlap : ndarray of shape (n_chains, n_sweeps, max_distance + 1)
        Fraction of pairs ``(i, i + r)`` in the same state (empty if ``max_distance = 0``).
    site_counts : ndarray of int64, shape (n_chains, n_sites, n_states)
        How often each site was in each state over the measured sweeps (no sites when the run
        was made with ``count_sites=False``).
    samples : ndarray of int32, shape (n_chains, n_saved, n_sites)
        Configurations saved every ``save_every`` sweeps.
    acceptance : ndarray of shape (n_chains,)
        Metropolis: accepted fraction of moves; heat-bath: 1; Swendsen-Wang: clusters per site;
        Wolff: accepted cluster flips per sweep.
    state : ChainState
        Final state, to continue the run.
    """

    model: PottsChain | LongRangeChain | PowerLawChain
    sampler: Sampler
    n_burnin: int
    energy: np.ndarray
    occupation: np.ndarray
    overlap: np.ndarray
    site_counts: np.ndarray
    samples: np.ndarray
    acceptance: np.ndarray
    state: ChainState
    params: dict = field(default_factory=dict)

    @property
    def n_chains(self) -> int:
        return self.energy.shape[0]

    @property
    def n_sweeps(self) -> int:
        return self.energy.shape[1]

    def series(self, name: str) -> np.ndarray:
        """Time series (n_chains, n_sweeps) of an observable.

        ``energy``, ``energy_per_site``, ``occupation:a`` (fraction in state ``a``),
        ``magnetisation`` (q = 2: ``mean(sigma)``), ``overlap:r``.
        """
        n = self.model.n_sites
        if name == "energy":
            return self.energy
        if name == "energy_per_site":
            return self.energy / n
        if name == "magnetisation":
            if self.model.n_states != 2:
                raise InvalidParameterError("magnetisation is defined for q = 2; use occupation:a")
            return (self.occupation[..., 1] - self.occupation[..., 0]) / n
        kind, _, idx = name.partition(":")
        if kind in ("occupation", "overlap") and idx.isdigit():
            arr = self.occupation / n if kind == "occupation" else self.overlap
            if int(idx) >= arr.shape[-1]:
                raise InvalidParameterError(f"{name}: index out of range (0..{arr.shape[-1] - 1})")
            return arr[..., int(idx)]
        raise InvalidParameterError(
            f"unknown observable {name!r}: energy, energy_per_site, magnetisation, occupation:a, overlap:r"
        )

    def bounds(self, name: str) -> tuple[float, float] | None:
        """The values an observable cannot leave (``None`` for the energy)."""
        if name == "magnetisation":
            return (-1.0, 1.0)
        if name.startswith(("occupation:", "overlap:")):
            return (0.0, 1.0)
        return None

    @cached_property
    def _tau_run(self) -> float:
        """The largest ``tau_upper`` of the run's observables that varied: the ``tau`` assumed for
        one that never did (rule of three); ``nan`` when none varied."""
        from .sweep import observable_names

        taus = [estimate(self.series(name)).tau_upper
                for name in observable_names(self.model.n_states, self.overlap.shape[-1] - 1)]
        taus = [t for t in taus if np.isfinite(t)]
        return max(taus) if taus else float("nan")

    def stats(self, name: str) -> Stats:
        """Mean, autocorrelation-corrected error, tau, ESS, R-hat and the diagnostics of an
        observable (:func:`~ising_moe.stats.estimate` with the observable's bounds; a series that
        never varied is bounded by the rule of three with the run's largest ``tau``)."""
        series = self.series(name)
        constant = np.ptp(series) == 0
        notes = self._energy_notes(series) if name in ("energy", "energy_per_site") and not constant else ()
        return estimate(series, bounds=self.bounds(name), tau_constant=self._tau_run if constant else None,
                        notes=notes)

    def _energy_notes(self, series) -> tuple[str, ...]:
        """The energy is a sum of occupations and overlaps (``E / n = -sum_r J_r overlap:r -
        sum_a h_a occupation:a`` up to constants for Potts-form couplings): when one of those is fed
        by few events (a rare domain wall, a rare state) and weighs on the energy (its error times
        its weight, the spread of its couplings or fields, above a tenth of the energy's error), so
        is the energy, whose own series has no bound to show it."""
        q, n = self.model.n_states, self.model.n_sites
        own = estimate(series / n if series is self.energy else series).error
        weights = {f"occupation:{a}": float(np.ptp(self.model.fields.reshape(-1, q).mean(axis=0)))
                   for a in range(q)}
        spread = np.ptp(self.model.couplings.reshape(-1, q, q), axis=(1, 2))
        n_r = self.overlap.shape[-1] - 1
        if isinstance(self.model, LongRangeChain):
            weights.update({f"overlap:{r}": float(spread[r - 1]) for r in range(1, min(n_r, spread.size) + 1)})
        elif n_r >= 1:
            weights["overlap:1"] = float(spread.mean())
        weak = []
        for name, weight in weights.items():
            st = estimate(self.series(name), bounds=(0.0, 1.0)) if np.ptp(self.series(name)) > 0 else None
            if st is not None and st.events < MIN_EVENTS and weight * st.error > 0.1 * own:
                weak.append(name)
        return (f"depends on {', '.join(weak)} (few events)",) if weak else ()

    def marginals(self) -> np.ndarray:
        """Estimated one-site marginals, shape (n_sites, n_states), chains pooled."""
        if self.site_counts.shape[1] != self.model.n_sites:
            raise InvalidParameterError("this run did not count sites: run with count_sites=True for marginals")
        counts = self.site_counts.sum(axis=0)
        return counts / counts.sum(axis=1, keepdims=True)

    def correlation_function(self) -> np.ndarray:
        """Connected ``C(r)``: mean overlap minus ``sum_a p_i(a) p_{i+r}(a)`` averaged over pairs.

        The product term uses the run's own site marginals (its error is second order).
        """
        if self.overlap.shape[-1] == 0:
            raise InvalidParameterError("run with max_distance > 0 to measure C(r)")
        p = self.marginals()
        n = p.shape[0]
        out = self.overlap.mean(axis=(0, 1)).copy()
        for r in range(out.size):
            if self.model.periodic:
                out[r] -= (p * np.roll(p, -r, axis=0)).sum(axis=1).mean()
            else:
                out[r] -= (p[: n - r] * p[r:]).sum(axis=1).mean()
        return out


def potts_bond_couplings(couplings: np.ndarray) -> np.ndarray | None:
    """``J`` of each (q, q) matrix of the form ``J delta_ab + c``, or ``None`` if one is not.

    Parameters
    ----------
    couplings : ndarray of shape (..., q, q)

    Returns
    -------
    ndarray of shape (...,) or None
    """
    q = couplings.shape[-1]
    diag = np.diagonal(couplings, axis1=-2, axis2=-1)
    off = couplings[..., ~np.eye(q, dtype=bool)]
    scale = max(1.0, float(np.abs(couplings).max()))
    if np.ptp(diag, axis=-1).max() > 1e-12 * scale or np.ptp(off, axis=-1).max() > 1e-12 * scale:
        return None
    return diag[..., 0] - off[..., 0]


def faster_update(model: PottsChain | LongRangeChain | PowerLawChain, update: str) -> str | None:
    """The update that mixes faster than a local ``update`` on ``model``, or ``None``.

    Cluster updates flip whole correlated regions at once; on ordered chains their effective
    samples per second exceed single-spin updates' by up to ~1800x (benchmarks/bench_mc.py). They
    need Potts-form couplings with ``J >= 0``; Swendsen-Wang only nearest-neighbour chains.
    """
    if update in _CLUSTER:
        return None
    j = potts_bond_couplings(model.couplings.reshape(-1, model.n_states, model.n_states))
    if j is None or (j < 0).any():
        return None
    if isinstance(model, PowerLawChain):
        return "swendsen-wang"
    return "wolff" if isinstance(model, LongRangeChain) else "swendsen-wang or wolff"


def _cluster_probabilities(model, update: str) -> np.ndarray:
    """``p = 1 - exp(-beta J)`` per bond (or per distance) of a Potts-form model."""
    j = potts_bond_couplings(model.couplings.reshape(-1, model.n_states, model.n_states))
    if j is None or (j < 0).any():
        raise InvalidParameterError(
            f"{update} needs Potts-form couplings J delta_ab + const with J >= 0 on every "
            f"{'distance' if isinstance(model, LongRangeChain) else 'bond'} (ferromagnetic Potts or Ising); "
            "use metropolis or heat-bath for general couplings"
        )
    return -np.expm1(-model.beta * j)


def _log_range_check(lj, lf) -> None:
    """Nearest-neighbour updates multiply three table entries: that product must not underflow."""
    spread = 2 * np.ptp(lj, axis=(-2, -1)).max() + np.ptp(lf, axis=-1).max()
    if spread > _MAX_LOG_RANGE:
        raise InvalidParameterError(
            f"beta times the spread of couplings and fields ({spread:.3g}) is too large for Monte Carlo "
            "weights in float64; lower beta"
        )


def _power_law_table(model: PowerLawChain) -> np.ndarray:
    """Per-distance couplings ``(R, q, q)`` of a power-law chain in the long-range kernels' form.

    Open: ``R = N - 1``, ``table[d - 1] = w(d) K``. Ring: the kernels visit the pair at ring distance
    ``r`` from both of its ends only when ``r = N / 2`` (``N`` even), so ``R = N // 2`` and that last
    entry is halved (energy, local weights and Wolff's ``1 - (1 - p_half)^2`` all come out exact).
    """
    w = model.distance_weights()
    if model.periodic:
        w = w[: model.n_sites // 2].copy()
        if model.n_sites % 2 == 0:
            w[-1] /= 2
    if w.size * model.n_states**2 > _MAX_TABLE:
        raise InvalidParameterError(
            f"local updates of a power-law chain store {w.size} x {model.n_states}^2 couplings "
            f"(over {_MAX_TABLE}); use swendsen-wang (O(N) per sweep) or fewer sites/states"
        )
    return np.ascontiguousarray(w[:, None, None] * model.pair_couplings)


def _power_law_events(model: PowerLawChain) -> tuple[np.ndarray, np.ndarray, float]:
    """Alias table over the distances and the total event rate ``Lambda`` of one sweep."""
    j_potts = potts_bond_couplings(model.couplings)
    if j_potts is None or j_potts[0] < 0:
        raise InvalidParameterError(
            "swendsen-wang needs Potts-form couplings J delta_ab + const with J >= 0 (ferromagnetic Potts "
            "or Ising); use metropolis or heat-bath for general couplings"
        )
    n = model.n_sites
    w = model.distance_weights()
    if model.periodic:  # pairs (i, i + d mod n), i uniform: n of them per ring distance d < n/2
        rate = n * w[: n // 2]
        if n % 2 == 0:
            rate[-1] /= 2
    else:
        rate = model.n_pairs() * w
    rate = model.beta * j_potts[0] * rate
    lam_total = float(rate.sum())
    prob = np.ones(rate.size)
    alias = np.arange(rate.size, dtype=np.int64)
    if lam_total > 0:
        PLK.build_alias(rate, prob, alias)
    return prob, alias, lam_total


def _run_power_law_sw(model, state, fields, lf, n_burnin, save_every, energy, occupation, overlap, site_counts,
                      snapshots, accepted) -> None:
    prob, alias, lam_total = _power_law_events(model)
    k = np.ascontiguousarray(model.pair_couplings, dtype=float)
    weights = model.distance_weights()
    weight_total = float(model.n_pairs() @ weights)
    PLK.run_power_law(state.spins, state.rng_state, lf, prob, alias, lam_total, model.periodic, fields,
                      model.beta, float(k[0, 1]), weight_total, weights, k, model.beta > 0, n_burnin,
                      save_every, energy, occupation, overlap, site_counts, snapshots, accepted)


def simulate(model: PottsChain | LongRangeChain | PowerLawChain, sampler: Sampler | str = "heat-bath", n_sweeps: int = 1000, *,
             n_chains: int = 4, n_burnin: int = 100, rng: RngLike = None, state: ChainState | None = None,
             max_distance: int = 0, save_every: int = 0, start: str = "dispersed",
             count_sites: bool = True) -> MCResult:
    """Run ``n_chains`` independent Markov chains and measure after every sweep.

    Parameters
    ----------
    model : PottsChain or LongRangeChain
    sampler : Sampler or str
        Update (see :data:`UPDATES`).
    n_sweeps : int
        Measured sweeps. A sweep is ``n_sites`` attempted single-spin updates, one Swendsen-Wang
        update of all bonds, or a fixed number of Wolff clusters: ``n_sites`` over the mean cluster
        size seen in the burn-in (so Wolff needs ``n_burnin >= 1`` on fresh chains).
    n_chains : int, default 4
        Independent chains (``>= q`` seeds every ordered state; see ``start``), each with its own spawned RNG stream; run in parallel with numba
        threads; results for a seed do not depend on the number of threads.
    n_burnin : int, default 100
        Sweeps discarded first.
    rng : int, Generator or None
        Seeds the chains (ignored when continuing from ``state``).
    state : ChainState, optional
        Continue from a previous run's :attr:`MCResult.state` (``n_chains`` and ``rng`` are taken
        from it; continuing is bit-identical to one longer run).
    max_distance : int, default 0
        Measure the same-state overlap up to this distance.
    save_every : int, default 0
        Save the configuration every that many sweeps (0: never).
    count_sites : bool, default True
        Count how often each site is in each state (:attr:`MCResult.site_counts`, needed by
        :meth:`MCResult.marginals` and :meth:`MCResult.correlation_function`). At large q this
        scatter into an (n_sites, q) table costs as much as a Metropolis sweep; without it
        ``site_counts`` has no sites.
    start : {"dispersed", "random", "ordered"}
        Initial spins of fresh chains (see :meth:`ChainState.initial`): by default the chains
        start in different ordered states, those of lowest energy first (every one of them when
        ``n_chains >= q``; the rest from random spins), so that R-hat and the between-chain test
        detect chains stuck in different modes.
    """
    sampler = sampler if isinstance(sampler, Sampler) else Sampler(sampler)
    if not isinstance(model, (PottsChain, LongRangeChain, PowerLawChain)):
        raise InvalidParameterError(
            f"model must be a PottsChain, LongRangeChain or PowerLawChain, got {type(model).__name__}"
        )
    n_sweeps = as_int(n_sweeps, "n_sweeps", minimum=1)
    n_burnin = as_int(n_burnin, "n_burnin", minimum=0)
    max_distance = as_int(max_distance, "max_distance", 0, model.n_sites - 1)
    save_every = as_int(save_every, "save_every", minimum=0)
    power_law = isinstance(model, PowerLawChain)
    long_range = isinstance(model, LongRangeChain) or power_law
    if isinstance(model, LongRangeChain) and sampler.update == "swendsen-wang":
        raise InvalidParameterError("swendsen-wang is implemented for nearest-neighbour chains; use wolff")
    if state is None:
        state = ChainState.initial(model, n_chains, rng, start)
        if sampler.update == "wolff" and n_burnin == 0:
            raise InvalidParameterError("wolff needs n_burnin >= 1 to fix its cluster updates per sweep")
    else:
        if state.spins.shape[1] != model.n_sites or state.spins.max() >= model.n_states:
            raise InvalidParameterError("state does not fit the model (n_sites or n_states differ)")
        state = state.copy()
    n_chains, n, q = state.spins.shape[0], model.n_sites, model.n_states
    beta = model.beta
    fields = np.ascontiguousarray(model.fields.reshape(-1, q))
    if power_law and sampler.update != "swendsen-wang":
        couplings = _power_law_table(model)
    else:
        couplings = np.ascontiguousarray(model.couplings.reshape(-1, q, q))
    lf = beta * fields
    lj = beta * couplings
    if not long_range:
        _log_range_check(lj, lf)
    wf = np.exp(lf - lf.max(axis=1, keepdims=True))
    wj = np.exp(lj - lj.max(axis=(1, 2), keepdims=True))
    if power_law and sampler.update == "wolff":
        j_potts = potts_bond_couplings(couplings)
        if j_potts is None or (j_potts < 0).any():
            _cluster_probabilities(model, sampler.update)  # raises the common message
        bond_p = -np.expm1(-beta * j_potts)
    else:
        bond_p = _cluster_probabilities(model, sampler.update) if sampler.update in _CLUSTER else np.zeros(1)
    kind = UPDATES[sampler.update]
    n_r = max_distance + 1 if max_distance > 0 else 0
    energy = np.zeros((n_chains, n_sweeps))
    occupation = np.zeros((n_chains, n_sweeps, q), dtype=np.int32)
    overlap = np.zeros((n_chains, n_sweeps, n_r))
    n_counted = n if count_sites else 0
    site_counts = np.zeros((n_chains, q, n_counted) if q == 2 else (n_chains, n_counted, q), dtype=np.int64)
    if not count_sites and q == 2:  # the kernels test the leading axis of a chain's counts
        site_counts = np.zeros((n_chains, 0, 0), dtype=np.int64)
    n_saved = n_sweeps // save_every if save_every else 0
    snapshots = np.zeros((n_chains, n_saved, n), dtype=np.int32)
    accepted = np.zeros(n_chains, dtype=np.int64)
    if power_law and sampler.update == "swendsen-wang":
        _run_power_law_sw(model, state, fields, lf, n_burnin, save_every, energy, occupation, overlap,
                          site_counts, snapshots, accepted)
    elif long_range:
        LRK.run_long_range(kind, state.spins, state.rng_state, lf, lj, bond_p, fields, couplings, model.periodic,
                         n_burnin, save_every, energy, occupation, overlap, site_counts, snapshots, accepted,
                         state.wolff_updates)
    else:
        j_potts = potts_bond_couplings(couplings) if couplings.shape[0] == 1 else None
        potts = np.zeros(0) if j_potts is None else np.array([j_potts[0], couplings[0, 0, 1]])
        K.run_nearest_neighbour(kind, state.spins, state.rng_state, wf, wj, lf, bond_p, fields, couplings, potts,
                                model.periodic, n_burnin, save_every, energy, occupation, overlap,
                                site_counts, snapshots, accepted, state.wolff_updates)
    state.n_sweeps += n_burnin + n_sweeps
    if q == 2 and count_sites:  # state-major, and the kernels count state 1 only
        site_counts[:, 0] = n_sweeps - site_counts[:, 1]
    if q == 2:
        site_counts = np.ascontiguousarray(site_counts.transpose(0, 2, 1))
    if sampler.update == "heat-bath":
        acceptance = np.ones(n_chains)
    elif sampler.update == "wolff":
        acceptance = accepted / n_sweeps
    else:
        acceptance = accepted / (n_sweeps * n)
    params = {"update": sampler.update, "n_sweeps": n_sweeps, "n_burnin": n_burnin, "n_chains": n_chains,
              "max_distance": max_distance, "save_every": save_every, "count_sites": count_sites}
    return MCResult(model=model, sampler=sampler, n_burnin=n_burnin, energy=energy, occupation=occupation,
                    overlap=overlap, site_counts=site_counts, samples=snapshots, acceptance=acceptance,
                    state=state, params=params)
