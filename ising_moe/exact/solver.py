"""Exact solution of 1D Potts/Ising chains by transfer matrices.

All quantities come from one :class:`ExactSolution` (build it once with :func:`solve` when you need
several); the module-level functions are thin wrappers. Three strategies, all exact:

- **open chains**: forward/backward messages rescaled at every step (``O(n q^2)``), so ``log Z``
  is exact to rounding for ``n_sites = 1e5`` and ``beta |J| = 50``. The Boltzmann distribution of
  an open chain is a Markov chain with transition matrices ``M_i``; joints of two sites are
  ``diag(p_i) M_i ... M_{j-1}``.
- **periodic chains** are mixtures over the state ``c`` of site 0: clamp ``s_0 = c`` and fold the
  closing bond ``J(s_{n-1}, c)`` into the last site's field; each component is an open chain with
  weight ``Z_c / Z = P(s_0 = c)`` (``O(n q^3)``; sampling draws ``c`` first).
- **homogeneous periodic chains** use matrix powers ``Z = Tr T^n`` by repeated squaring with
  rescaling; ``P(s_0 = a, s_r = b) = T^r_{ab} T^{n-r}_{ba} / Z``.

Conventions (``docs/conventions.md``): ``C(i, j) = P(s_i = s_j) - sum_a P(s_i = a) P(s_j = a)``,
``C_a(i, j) = P(s_i = a, s_j = a) - P(s_i = a) P(s_j = a)``; ``C(r)`` averages over the valid pairs
``(i, i + r)`` (all ``n`` pairs ``(i, (i + r) mod n)`` on a periodic chain).
"""

from __future__ import annotations

import warnings
from functools import cached_property

import numpy as np
from scipy.special import logsumexp

from .._util import RngLike, as_generator, as_int
from ..chain import PottsChain
from ..errors import InvalidParameterError, NumericalPrecisionWarning
from . import _kernels

__all__ = [
    "ExactSolution",
    "solve",
    "log_partition",
    "free_energy",
    "marginals",
    "pair_marginals",
    "joint_marginal",
    "correlation",
    "indicator_correlation",
    "correlation_function",
    "correlation_length",
    "transfer_eigenvalues",
    "sample",
]

#: largest log-weight range (beta * spread of couplings plus fields of one bond) that cannot
#: underflow a whole message in float64
MAX_LOG_RANGE = 700.0
_CHUNK_ELEMENTS = 1 << 22


def _check_model(model) -> PottsChain:
    if not isinstance(model, PottsChain):
        raise InvalidParameterError(
            f"expected a PottsChain, got {type(model).__name__} (long-range chains are solved by "
            "enumeration in tests and by ising_moe.fit's range-R transfer matrix)"
        )
    return model


class ExactSolution:
    """Exact transfer-matrix solution of a :class:`~ising_moe.chain.PottsChain`.

    Parameters
    ----------
    model : PottsChain

    Notes
    -----
    Results are computed lazily and kept, so reuse one object for several quantities.
    """

    def __init__(self, model: PottsChain):
        self.model = _check_model(model)
        beta = model.beta
        n, q = model.n_sites, model.n_states
        self._log_fields = np.ascontiguousarray(beta * model.fields.reshape(-1, q))
        couplings = model.couplings.reshape(-1, q, q)
        if model.periodic and couplings.shape[0] > 1:
            self._closing = beta * couplings[-1]
            couplings = couplings[:-1]
        else:
            self._closing = beta * couplings[0] if model.periodic else None
        self._log_couplings = np.ascontiguousarray(beta * couplings)
        spread = np.ptp(self._log_couplings, axis=(1, 2)).max() + np.ptp(self._log_fields, axis=1).max()
        if model.periodic:
            spread += np.ptp(self._closing)
        if spread > MAX_LOG_RANGE:
            raise InvalidParameterError(
                f"beta times the spread of couplings and fields is {spread:.3g} > {MAX_LOG_RANGE:g}: "
                "weights that far apart underflow float64; rescale beta or the parameters"
            )
        self._power_mode = model.periodic and model.homogeneous
        self._n, self._q = n, q

    # ------------------------------------------------------------------ components
    def _component(self, first, last_extra):
        n, q = self._n, self._q
        alphas = np.empty((n, q))
        log_z = _kernels.forward(self._log_fields, self._log_couplings, first, last_extra, alphas)
        return {"first": first, "last_extra": last_extra, "log_z": log_z, "alphas": alphas}

    def _messages(self, comp):
        if "betas" not in comp:
            n, q = self._n, self._q
            betas = np.empty((n, q))
            _kernels.backward(self._log_fields, self._log_couplings, comp["first"],
                              comp["last_extra"], betas)
            marg = comp["alphas"] * betas
            marg /= marg.sum(axis=1, keepdims=True)
            comp["betas"], comp["marginals"] = betas, marg
        return comp

    def _args(self, comp):
        return self._log_fields, self._log_couplings, comp["first"], comp["last_extra"]

    @cached_property
    def _components(self):
        """Open-chain components and their weights ``P(s_0 = c)`` (one component if open)."""
        q = self._q
        if not self.model.periodic:
            comp = self._component(self._log_fields[0].copy(), np.zeros(q))
            return [comp], np.ones(1)
        comps = []
        for c in range(q):
            first = np.full(q, -np.inf)
            first[c] = self._log_fields[0, c]
            comps.append(self._component(first, np.ascontiguousarray(self._closing[:, c])))
        log_zs = np.array([comp["log_z"] for comp in comps])
        weights = np.exp(log_zs - logsumexp(log_zs))
        return comps, weights

    # ------------------------------------------------------------------ matrix powers
    def _log_power(self, k: int):
        """``T^k = mat * exp(log_scale)`` with ``T_ab = exp(J_ab + f_b)`` (homogeneous only)."""
        q = self._q
        if k == 0:
            return np.eye(q), 0.0
        log_t = self._log_couplings[0] + self._log_fields[0][None, :]
        shift = log_t.max()
        base, base_scale = np.exp(log_t - shift), shift
        result, scale = None, 0.0
        while k:
            if k & 1:
                if result is None:
                    result, scale = base.copy(), base_scale
                else:
                    result = result @ base
                    scale += base_scale
                    m = result.max()
                    result /= m
                    scale += np.log(m)
            k >>= 1
            if k:
                base = base @ base
                base_scale *= 2
                m = base.max()
                base /= m
                base_scale += np.log(m)
        return result, scale

    @cached_property
    def _full_power(self):
        return self._log_power(self._n)

    # ------------------------------------------------------------------ public API
    @cached_property
    def log_partition(self) -> float:
        """``log Z``."""
        if self._power_mode:
            mat, scale = self._full_power
            return float(np.log(np.trace(mat)) + scale)
        comps, _ = self._components
        return float(logsumexp([comp["log_z"] for comp in comps]))

    @property
    def free_energy(self) -> float:
        """Free energy per site ``f = -log Z / (beta n_sites)`` (``-inf`` at ``beta = 0``)."""
        if self.model.beta == 0:
            return float("-inf")
        return -self.log_partition / (self.model.beta * self._n)

    @cached_property
    def marginals(self) -> np.ndarray:
        """One-site marginals ``P(s_i = a)``, shape (n_sites, n_states)."""
        if self._power_mode:
            mat, _ = self._full_power
            p = np.diag(mat) / np.trace(mat)
            out = np.broadcast_to(p, (self._n, self._q)).copy()
        else:
            comps, weights = self._components
            out = sum(w * self._messages(c)["marginals"] for c, w in zip(comps, weights))
        out.setflags(write=False)
        return out

    @cached_property
    def pair_marginals(self) -> np.ndarray:
        """Bond marginals ``P(s_i = a, s_{i+1} = b)``, shape (n_bonds, n_states, n_states).

        Bond ``b`` joins sites ``b`` and ``(b + 1) % n_sites`` (the closing bond last).
        """
        n, q = self._n, self._q
        if self._power_mode:
            one = self._power_joint(1)
            out = np.broadcast_to(one, (n, q, q)).copy()
        else:
            out = np.zeros((self.model.n_bonds, q, q))
            comps, weights = self._components
            buf = np.empty((n - 1, q, q))
            for c, (comp, w) in enumerate(zip(comps, weights)):
                comp = self._messages(comp)
                _kernels.pair_marginals(*self._args(comp), comp["marginals"], comp["betas"], buf)
                out[: n - 1] += w * buf
                if self.model.periodic:
                    out[n - 1, :, c] += w * comp["marginals"][n - 1]
        out.setflags(write=False)
        return out

    def _power_joint(self, r: int) -> np.ndarray:
        """``P(s_0 = a, s_r = b)`` of a homogeneous periodic chain, ``0 <= r < n``."""
        if r == 0:
            return np.diag(self.marginals[0])
        a, sa = self._log_power(r)
        b, sb = self._log_power(self._n - r)
        joint = a * b.T
        return joint / joint.sum()

    def joint_marginal(self, i: int, j: int) -> np.ndarray:
        """``P(s_i = a, s_j = b)``, shape (n_states, n_states)."""
        n, q = self._n, self._q
        i = as_int(i, "i", 0, n - 1)
        j = as_int(j, "j", 0, n - 1)
        if i == j:
            return np.diag(self.marginals[i])
        if self._power_mode:
            return self._power_joint((j - i) % n)
        if i > j:
            return self.joint_marginal(j, i).T
        out = np.zeros((q, q))
        buf = np.empty((q, q))
        comps, weights = self._components
        for comp, w in zip(comps, weights):
            comp = self._messages(comp)
            _kernels.joint(*self._args(comp), comp["marginals"], comp["betas"], i, j, buf)
            out += w * buf
        return out

    def _joint_diagonals(self, comp, starts, d_lo, d_hi):
        """Chunked :func:`_kernels.joint_diagonals` (bounded memory)."""
        q = self._q
        width = d_hi - d_lo + 1
        out = np.zeros((len(starts), width, q))
        chunk = max(1, _CHUNK_ELEMENTS // (width * q))
        for lo in range(0, len(starts), chunk):
            part = np.ascontiguousarray(starts[lo: lo + chunk], dtype=np.int64)
            _kernels.joint_diagonals(*self._args(comp), comp["marginals"], comp["betas"],
                                     part, d_lo, d_hi, out[lo: lo + chunk])
        return out

    def same_state_joint(self, max_distance: int) -> np.ndarray:
        """``sum_i P(s_i = a, s_{i+r} = a) / n_pairs(r)`` for ``r = 0..max_distance``, shape (R+1, q)."""
        n, q = self._n, self._q
        max_distance = as_int(max_distance, "max_distance", 0, n - 1)
        out = np.zeros((max_distance + 1, q))
        if self._power_mode:
            for r in range(max_distance + 1):
                out[r] = np.diag(self._power_joint(r))
            return out
        comps, weights = self._components
        starts = np.arange(n)
        for comp, w in zip(comps, weights):
            comp = self._messages(comp)
            diag = self._joint_diagonals(comp, starts, 0, max_distance)
            out += w * diag.sum(axis=0)
            if self.model.periodic and max_distance > 0:
                # wrapping pairs (i, i + r - n): from j = i + r - n to i is a distance n - r, j < r
                wrap = self._joint_diagonals(comp, starts[:max_distance], n - max_distance, n - 1)
                for r in range(1, max_distance + 1):
                    out[r] += w * wrap[:r, max_distance - r].sum(axis=0)
        n_pairs = np.full(max_distance + 1, n) if self.model.periodic else n - np.arange(max_distance + 1)
        return out / n_pairs[:, None]

    def correlation_function(self, max_distance: int, per_state: bool = False) -> np.ndarray:
        """Connected same-state correlation ``C(r)`` (or ``C_a(r)``), ``r = 0..max_distance``.

        Returns
        -------
        ndarray of shape (max_distance + 1,), or (max_distance + 1, n_states) if ``per_state``
        """
        joint = self.same_state_joint(max_distance)
        p = self.marginals
        n = self._n
        prod = np.empty_like(joint)
        for r in range(joint.shape[0]):
            if self.model.periodic:
                prod[r] = (p * np.roll(p, -r, axis=0)).mean(axis=0)
            else:
                prod[r] = (p[: n - r] * p[r:]).mean(axis=0)
        c = joint - prod
        return c if per_state else c.sum(axis=1)

    def transfer_eigenvalues(self) -> np.ndarray:
        """Eigenvalues of the homogeneous transfer matrix divided by ``lambda_0``, by modulus.

        ``T_ab = exp(beta (J_ab + (h_a + h_b) / 2))``; the first entry is 1.
        """
        log_t = self._symmetric_log_transfer()
        ev = np.linalg.eigvals(np.exp(log_t - log_t.max()))
        ev = ev[np.argsort(-np.abs(ev), kind="stable")]
        ev = ev / ev[0]
        ev[0] = 1.0  # Perron root: real and positive; remove rounding in the division
        return ev

    def _symmetric_log_transfer(self) -> np.ndarray:
        if not self.model.homogeneous:
            raise InvalidParameterError(
                "the transfer-matrix spectrum needs a homogeneous chain (fields of shape (q,), "
                "couplings of shape (q, q)); use correlation_length(), which falls back to the "
                "decay of C(r)"
            )
        f = self._log_fields[0]
        coupling = self._closing if self.model.periodic else self._log_couplings[0]
        return coupling + (f[:, None] + f[None, :]) / 2

    def log_eigenvalue_ratio(self) -> float:
        """``ln(lambda_0 / |lambda_1|)`` computed without subtracting large logs.

        The spectrum is taken of ``T^2 e^{-m} - 1`` with ``m`` the largest diagonal log-weight of
        ``T^2`` (``T^2`` formed in log space; diagonal entries via ``expm1``), and the ratio is half
        that of ``T^2``. Squaring makes every eigenvalue of modulus near ``lambda_0`` lie near
        ``lambda_0^2 > 0``: ferromagnetic spectra (``lambda_1 / lambda_0 = 1 - O(e^{-2 beta J})``)
        and antiferromagnetic ones (``lambda_1 / lambda_0 = -1 + O(e^{-2 beta |J|})``, which in
        ``T`` itself sit at opposite ends of the spectrum) both keep full relative precision
        (Ising: ``xi = 1 / ln coth(beta |J|)`` for either sign, finite at any beta). A complex or
        negative ``lambda_1`` enters through its modulus (``C(r)`` then oscillates inside the
        envelope ``e^{-r / xi}``); a degenerate ``lambda_1`` changes nothing.
        """
        log_t = _log_square(self._symmetric_log_transfer())
        m = np.max(np.diag(log_t))
        shifted = np.exp(log_t - m)
        np.fill_diagonal(shifted, np.expm1(np.diag(log_t) - m))
        mu = np.linalg.eigvals(shifted)  # eigenvalues of T e^{-m}, minus 1
        # |1 + mu|^2 - 1, accurate when every |lambda| is close to lambda_0
        order = np.argsort(-(2.0 * mu.real + np.abs(mu) ** 2), kind="stable")
        mu0, mu1 = mu[order[0]], mu[order[1]]
        lam1_sq = abs(1.0 + mu1) ** 2
        if lam1_sq == 0.0:
            return float("inf")
        # |lam0|^2 - |lam1|^2 with lam = 1 + mu, mu0 real: no cancellation of the leading 1
        x0, x1, y1 = mu0.real, mu1.real, mu1.imag
        diff = (x0 - x1) * (2.0 + x0 + x1) - y1 * y1
        # eigenvalues carry an absolute error of about eps * ||shifted||; propagate it to diff
        tol = 16 * np.finfo(float).eps * np.linalg.norm(shifted, 2)
        err = 2 * tol * (abs(x0 - x1) + abs(2.0 + x0 + x1) + abs(y1))
        if diff <= 8 * err:
            warnings.warn(
                "the two leading transfer-matrix eigenvalues are degenerate to float64 precision: "
                "the correlation length is reported as infinite",
                NumericalPrecisionWarning,
                stacklevel=3,
            )
            return 0.0
        return 0.25 * float(np.log1p(diff / lam1_sq))  # a quarter: the spectrum is that of T^2

    def correlation_length(self, max_distance: int | None = None) -> float:
        """Correlation length ``xi``.

        Homogeneous chains: ``xi = 1 / ln(lambda_0 / |lambda_1|)`` (the bulk value, also for
        open chains; ``0`` if ``lambda_1 = 0``, ``inf`` if numerically degenerate).
        Inhomogeneous chains: an estimate, ``-1 / slope`` of a least-squares line through
        ``ln C(r)`` for ``1 <= r <= max_distance`` (default ``min(64, n_sites - 1)``) over the
        points where ``C(r) > 1e-12 C(1)``; ``nan`` if fewer than two such points.
        """
        if self.model.homogeneous:
            gap = self.log_eigenvalue_ratio()
            return float("inf") if gap == 0 else 1.0 / gap
        if max_distance is None:
            max_distance = min(64, self._n - 1)
        if self.model.periodic:
            max_distance = min(max_distance, self._n // 2)
        c = self.correlation_function(max_distance)[1:]
        return decay_length(np.arange(1, max_distance + 1), c)

    def sample(self, n_samples: int, rng: RngLike = None) -> np.ndarray:
        """Exact independent samples (forward filtering, backward sampling).

        Periodic chains draw ``s_0 = c`` from ``P(s_0 = c)`` first, then the clamped open chain.

        Returns
        -------
        ndarray of int32, shape (n_samples, n_sites)
        """
        n_samples = as_int(n_samples, "n_samples", minimum=0)
        gen = as_generator(rng)
        out = np.empty((n_samples, self._n), dtype=np.int32)
        comps, weights = self._components
        if len(comps) == 1:
            rows_by_comp = [np.arange(n_samples, dtype=np.int64)]
        else:
            which = gen.choice(len(comps), size=n_samples, p=weights)
            rows_by_comp = [np.flatnonzero(which == c).astype(np.int64) for c in range(len(comps))]
        for comp, rows in zip(comps, rows_by_comp):
            if rows.size:
                _kernels.sample_backward(self._log_couplings, comp["alphas"], gen, rows, out)
        return out


def _log_square(log_t: np.ndarray) -> np.ndarray:
    """``log(T @ T)`` from ``log T`` (q, q), each entry a sum of positive terms (no cancellation)."""
    row = log_t.max(axis=1, keepdims=True)
    col = log_t.max(axis=0, keepdims=True)
    with np.errstate(divide="ignore"):  # an entry below e^-1400 of its row and column maxima is 0
        return np.log(np.exp(log_t - row) @ np.exp(log_t - col)) + row + col


def decay_length(distances, values) -> float:
    """``-1 / slope`` of the least-squares line through ``log values`` (positive values only).

    Points below ``1e-12`` times the first value are dropped (they are rounding noise).
    """
    r = np.asarray(distances, dtype=float)
    c = np.asarray(values, dtype=float)
    keep = c > (1e-12 * c[0] if c.size and c[0] > 0 else 0.0)
    keep &= c > 0
    if keep.sum() < 2:
        return float("nan")
    slope = np.polyfit(r[keep], np.log(c[keep]), 1)[0]
    return float("inf") if slope >= 0 else float(-1.0 / slope)


def solve(model: PottsChain) -> ExactSolution:
    """Exact solution object of ``model`` (compute once, query many quantities)."""
    return ExactSolution(model)


def log_partition(model: PottsChain) -> float:
    """``log Z`` of ``model``."""
    return solve(model).log_partition


def free_energy(model: PottsChain) -> float:
    """Free energy per site ``-log Z / (beta n_sites)``."""
    return solve(model).free_energy


def marginals(model: PottsChain) -> np.ndarray:
    """One-site marginals, shape (n_sites, n_states)."""
    return solve(model).marginals


def pair_marginals(model: PottsChain) -> np.ndarray:
    """Nearest-neighbour pair marginals, shape (n_bonds, n_states, n_states)."""
    return solve(model).pair_marginals


def joint_marginal(model: PottsChain, i: int, j: int) -> np.ndarray:
    """``P(s_i = a, s_j = b)``, shape (n_states, n_states)."""
    return solve(model).joint_marginal(i, j)


def correlation(model: PottsChain, i: int, j: int) -> float:
    """Connected same-state correlation ``C(i, j) = P(s_i = s_j) - sum_a P(s_i=a) P(s_j=a)``."""
    return float(indicator_correlation(model, i, j).sum())


def indicator_correlation(model: PottsChain, i: int, j: int) -> np.ndarray:
    """Per-state ``C_a(i, j) = P(s_i = a, s_j = a) - P(s_i = a) P(s_j = a)``, shape (n_states,)."""
    sol = solve(model)
    p = sol.marginals
    return np.diag(sol.joint_marginal(i, j)) - p[i] * p[j]


def correlation_function(model: PottsChain, max_distance: int, per_state: bool = False) -> np.ndarray:
    """``C(r)`` averaged over valid pairs, ``r = 0..max_distance`` (see :class:`ExactSolution`)."""
    return solve(model).correlation_function(max_distance, per_state=per_state)


def correlation_length(model: PottsChain, max_distance: int | None = None) -> float:
    """Correlation length (spectral for homogeneous chains, else from the decay of ``C(r)``)."""
    return solve(model).correlation_length(max_distance)


def transfer_eigenvalues(model: PottsChain) -> np.ndarray:
    """Normalised transfer-matrix spectrum of a homogeneous chain, by decreasing modulus."""
    return solve(model).transfer_eigenvalues()


def sample(model: PottsChain, n_samples: int, rng: RngLike = None) -> np.ndarray:
    """Exact independent samples, int32 array of shape (n_samples, n_sites)."""
    return solve(model).sample(n_samples, rng)
