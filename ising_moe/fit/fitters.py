"""Fitters of Potts/Ising chains to state sequences (scikit-learn conventions).

``__init__`` stores hyperparameters only; ``fit(X, mask=None, lengths=None)`` returns ``self`` and
sets the learned attributes ``fields_``, ``couplings_``, ``n_states_``, ``n_sites_``, ``result_``
(a frozen :class:`ChainFitResult`) and ``model_``; ``beta`` is fixed to 1.

Data: ``X`` holds states 0..q-1, shape (n_sequences, n_positions). Sequence ``s`` is a chain of
``lengths[s]`` sites (default: up to its last valid position); inside that length, sites with
``mask = False`` are hidden and summed over exactly (e.g. Switch tokens dropped by capacity).
Ising data: pass ``spins=True`` for ±1 spins (never guessed).

Methods
-------
:class:`ChainMaxLikelihood`
    Exact maximum likelihood: ``log Z`` and its gradient (data minus model moments) from
    forward-backward passes; convex in ``theta``; L-BFGS with the exact gradient; an L2 prior
    (default ``l2 = 0.1``, a Gaussian prior of standard deviation ~3 on every gauge-fixed
    parameter) keeps cells that the data never shows (an expert never chosen at a position) finite.
    Standard errors from the inverse Fisher information (expected information of the fitted
    model plus the prior precision; with hidden sites slightly optimistic: bootstrap for honest ones).
:class:`ChainPseudoLikelihood`
    Maximises ``sum_i log P(s_i | neighbours)`` (consistent, no partition function).
:class:`ChainMeanField`
    Naive mean-field inversion ``J = -C^{-1}`` of the connected one-hot correlations, kept on the
    bonds of the variant (a baseline).
:class:`IndependentSites`
    Exact maximum likelihood without couplings (position-dependent rates).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from .._util import as_int
from ..chain import LongRangeChain, PottsChain, potts_to_ising, spins_to_states
from ..errors import ConvergenceWarning, InvalidParameterError, SparseDataWarning
from .. import _kernels as _exact_kernels
from . import _kernels as K
from .params import ChainParametrization, zero_sum_gauge

log = logging.getLogger(__name__)

__all__ = [
    "ChainData", "ChainFitResult", "ChainMaxLikelihood", "ChainPseudoLikelihood", "ChainMeanField",
    "IndependentSites", "chain_log_likelihood",
]

#: largest number of parameters for which the Fisher information is computed
MAX_FISHER_PARAMS = 6000


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class ChainData:
    """Validated sequences and their sufficient statistics for a given coupling range.

    Attributes
    ----------
    states : ndarray of int64, shape (n_sequences, n_sites)
    observed : ndarray of bool, shape (n_sequences, n_sites)
        Valid sites inside each sequence's length.
    lengths : ndarray of int64, shape (n_sequences,)
    n_states : int
    full_rows, hole_rows : ndarray of int64
        Sequences without / with hidden sites inside their length.
    length_counts : dict of int -> int
        Number of sequences of each length.
    n_tokens : int
        Observed sites.
    """

    states: np.ndarray
    observed: np.ndarray
    lengths: np.ndarray
    n_states: int
    full_rows: np.ndarray
    hole_rows: np.ndarray
    length_counts: dict
    n_tokens: int

    @property
    def n_sites(self) -> int:
        return self.states.shape[1]

    @classmethod
    def from_arrays(cls, X, mask=None, lengths=None, n_states=None, spins: bool = False) -> ChainData:
        arr = np.asarray(X)
        if arr.ndim != 2 or arr.shape[1] < 2 or arr.shape[0] < 1:
            raise InvalidParameterError(f"X must have shape (n_sequences, n_positions >= 2), got {arr.shape}")
        if spins:
            m0 = np.ones(arr.shape, bool) if mask is None else np.asarray(mask, bool)
            arr = np.where(m0, arr, 1)
            arr = spins_to_states(arr)
            n_states = 2 if n_states is None else n_states
        if not np.issubdtype(arr.dtype, np.integer):
            raise InvalidParameterError(f"X must hold integer states, got dtype {arr.dtype} (Ising ±1: spins=True)")
        m = np.ones(arr.shape, bool) if mask is None else np.asarray(mask)
        if m.shape != arr.shape or m.dtype != bool:
            raise InvalidParameterError(f"mask must be boolean of shape {arr.shape}")
        if lengths is None:
            any_valid = m.any(axis=1)
            if not any_valid.all():
                raise InvalidParameterError(
                    f"{int((~any_valid).sum())} sequence(s) have no valid position: drop them before fitting")
            lengths = arr.shape[1] - np.argmax(m[:, ::-1], axis=1)
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.shape != (arr.shape[0],) or lengths.min() < 2 or lengths.max() > arr.shape[1]:
            raise InvalidParameterError(f"lengths must be integers in 2..{arr.shape[1]}, one per sequence")
        inside = np.arange(arr.shape[1])[None, :] < lengths[:, None]
        observed = m & inside
        valid = arr[observed]
        if valid.size == 0:
            raise InvalidParameterError("no valid position in the data")
        if valid.min() < 0:
            raise InvalidParameterError(f"states must be >= 0, found {valid.min()} (Ising ±1: spins=True)")
        if n_states is None:
            n_states = int(valid.max()) + 1
        n_states = as_int(n_states, "n_states", minimum=2)
        if valid.max() >= n_states:
            raise InvalidParameterError(f"states must be < n_states = {n_states}, found {valid.max()}")
        states = np.where(observed, arr, 0).astype(np.int64)
        holes = (inside & ~m).any(axis=1)
        unique, counts = np.unique(lengths, return_counts=True)
        return cls(np.ascontiguousarray(states), np.ascontiguousarray(observed), lengths, n_states,
                   np.flatnonzero(~holes), np.flatnonzero(holes), dict(zip(unique.tolist(), counts.tolist())),
                   int(observed.sum()))

    def counts(self, max_range: int, per_bond: bool, rows=None):
        """Site counts (n, q) and counts (R, n_c, q, q) of pairs of observed sites, over ``rows``
        (default the fully observed sequences)."""
        n, q = self.n_sites, self.n_states
        rows = self.full_rows if rows is None else rows
        site = np.zeros((n, q))
        pair = np.zeros((max_range, n - 1 if per_bond else 1, q, q))
        if rows.size == 0:
            return site, pair
        x = self.states[rows]
        inside = self.observed[rows]
        pos = np.broadcast_to(np.arange(n), x.shape)
        np.add.at(site, (pos[inside], x[inside]), 1.0)
        for r in range(1, max_range + 1):
            ok = inside[:, :-r] & inside[:, r:]
            left = pos[:, :-r][ok]
            np.add.at(pair[r - 1], (left if per_bond else 0, x[:, :-r][ok], x[:, r:][ok]), 1.0)
        return site, pair

    def hidden_runs(self) -> np.ndarray:
        """Maximal runs of hidden sites inside the sequences' lengths: rows ``(first, last, left, right)``
        with the observed states next to the run (-1 at a chain end), shape (n_runs, 4)."""
        inside = np.arange(self.n_sites)[None, :] < self.lengths[:, None]
        hidden = inside & ~self.observed
        padded = np.zeros((hidden.shape[0], hidden.shape[1] + 2), dtype=np.int8)
        padded[:, 1:-1] = hidden
        d = np.diff(padded, axis=1)
        s_start, start = np.nonzero(d == 1)
        s_end, end = np.nonzero(d == -1)
        order_s = np.lexsort((start, s_start))
        order_e = np.lexsort((end, s_end))
        seq, first, last = s_start[order_s], start[order_s], end[order_e] - 1
        left = np.where(first > 0, self.states[seq, np.maximum(first - 1, 0)], -1)
        right_ok = last + 1 < self.lengths[seq]
        right = np.where(right_ok, self.states[seq, np.minimum(last + 1, self.n_sites - 1)], -1)
        return np.ascontiguousarray(np.stack([first, last, left, right], axis=1).astype(np.int64))

    def subset(self, rows) -> ChainData:
        rows = np.asarray(rows)
        return ChainData.from_arrays(self.states[rows], self.observed[rows], self.lengths[rows], self.n_states)


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class ChainFitResult:
    """Result of a chain fit.

    Attributes
    ----------
    method : str
        ``"exact-ml"``, ``"pseudo-likelihood"``, ``"mean-field"`` or ``"independent"``.
    fields_variant, couplings_variant : str
    max_range : int
    success : bool
    message : str
    n_iter : int
    log_likelihood : float
        Exact log-likelihood of the training data at the fitted parameters (no prior term).
    n_tokens : int
    n_parameters : int
    aic, bic : float
    l2 : float
        Prior precision used.
    fields : ndarray of shape (n_sites, n_states)
        Gauge-fixed (zero-sum with position fields).
    couplings : ndarray of shape (max_range, n_c, n_states, n_states)
    fields_stderr, couplings_stderr : ndarray or None
    theta, theta_stderr : ndarray
        Parameters in the fitter's basis (see :class:`~ising_moe.fit.params.ChainParametrization`).
    sparse_cells : int
        (position, state) cells never observed.
    """

    method: str
    fields_variant: str
    couplings_variant: str
    max_range: int
    success: bool
    message: str
    n_iter: int
    log_likelihood: float
    n_tokens: int
    n_parameters: int
    aic: float
    bic: float
    l2: float
    fields: np.ndarray = field(repr=False)
    couplings: np.ndarray = field(repr=False)
    fields_stderr: np.ndarray | None = field(default=None, repr=False)
    couplings_stderr: np.ndarray | None = field(default=None, repr=False)
    theta: np.ndarray | None = field(default=None, repr=False)
    theta_stderr: np.ndarray | None = field(default=None, repr=False)
    sparse_cells: int = 0

    @property
    def log_likelihood_per_token(self) -> float:
        return self.log_likelihood / self.n_tokens

    @property
    def variant(self) -> str:
        rng = f"+range{self.max_range}" if self.max_range > 1 else ""
        return f"{self.method}:{self.fields_variant}/{self.couplings_variant}{rng}"

    def parametrization(self) -> ChainParametrization:
        """The parametrisation the fit used (``theta`` lives in it)."""
        n, q = self.fields.shape
        return ChainParametrization(n, q, self.fields_variant, self.couplings_variant, self.max_range)

    def model(self, n_sites: int | None = None) -> PottsChain | LongRangeChain:
        """The fitted chain (``beta = 1``), optionally truncated to ``n_sites``."""
        n = self.fields.shape[0] if n_sites is None else as_int(n_sites, "n_sites", 2, self.fields.shape[0])
        fields = self.fields[:n]
        if self.max_range > 1:
            return LongRangeChain(n, self.couplings[:, 0], fields)
        couplings = self.couplings[0]
        couplings = couplings[0] if couplings.shape[0] == 1 else couplings[: n - 1]
        return PottsChain(n, couplings, fields)

    def ising_parameters(self):
        """For q = 2 nearest-neighbour fits: ``(J per bond, h per site, offset)`` of the Ising form."""
        if self.fields.shape[1] != 2 or self.max_range > 1:
            raise InvalidParameterError("ising_parameters needs q = 2 and max_range = 1")
        return potts_to_ising(self.model())

    def plot(self, ax=None):
        """Heat map of the fitted (homogeneous) coupling matrix, or ``J_b`` along the chain (per bond)."""
        from ..plot import plot_couplings

        return plot_couplings(self.couplings, ax=ax, title=self.variant)


_N_CHUNKS = 16  # fixed work split of the data term: results independent of the thread count


def chain_log_likelihood(data: ChainData, fields: np.ndarray, couplings: np.ndarray) -> np.ndarray:
    """Exact log-likelihood of every sequence, hidden sites summed over (shape (n_sequences,))."""
    tables = K.weights(np.ascontiguousarray(fields, dtype=float), np.ascontiguousarray(couplings, dtype=float))
    out = np.empty(data.states.shape[0])
    K.data_log_likelihood(data.states, data.observed, data.lengths, np.arange(data.states.shape[0]), *tables, out)
    dummy_site = np.zeros((1, 1))
    dummy_pair = np.zeros((1, 1, 1, 1))
    for length in data.length_counts:
        log_z = K.chain_moments(*tables, -np.ones(length, dtype=np.int64), 1.0, dummy_site, dummy_pair, False)
        out[data.lengths == length] -= log_z
    return out


# ----------------------------------------------------------------------------- base fitter
class _ChainFitter:
    """Shared hyperparameters and data handling."""

    _method = ""

    def __init__(self, fields: str = "position", couplings: str = "potts", max_range: int = 1, l2: float = 0.1,
                 field_smoothing: float = 0.0, max_iter: int = 2000, tol: float = 1e-7,
                 standard_errors: bool = True):
        self.fields = fields
        self.couplings = couplings
        self.max_range = max_range
        self.l2 = l2
        self.field_smoothing = field_smoothing
        self.max_iter = max_iter
        self.tol = tol
        self.standard_errors = standard_errors

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("fields", "couplings", "max_range", "l2", "field_smoothing",
                                              "max_iter", "tol", "standard_errors")}

    def _prepare(self, X, mask, lengths, n_states, spins):
        data = X if isinstance(X, ChainData) else ChainData.from_arrays(X, mask, lengths, n_states, spins)
        if self.l2 < 0 or self.field_smoothing < 0:
            raise InvalidParameterError("l2 and field_smoothing must be >= 0")
        par = ChainParametrization(data.n_sites, data.n_states, self.fields, self.couplings, self.max_range)
        return data, par

    def _finish(self, data, par, theta, *, success, message, n_iter, theta_stderr=None):
        h, j = par.expand(theta)
        ll = float(chain_log_likelihood(data, h, j).sum())
        k = par.n_params
        rates = np.zeros((data.n_sites, data.n_states))
        pos = np.broadcast_to(np.arange(data.n_sites), data.states.shape)
        np.add.at(rates, (pos[data.observed], data.states[data.observed]), 1.0)
        sparse = int((rates == 0).sum()) if par.fields == "position" else 0
        f_err = c_err = None
        if theta_stderr is not None:
            f_err, c_err = par.expand_stderr(theta_stderr)
        self.result_ = ChainFitResult(
            method=self._method, fields_variant=par.fields, couplings_variant=par.couplings,
            max_range=par.max_range, success=bool(success), message=message, n_iter=int(n_iter),
            log_likelihood=ll, n_tokens=data.n_tokens, n_parameters=k, aic=2 * k - 2 * ll,
            bic=k * math.log(data.n_tokens) - 2 * ll, l2=float(self.l2), fields=h, couplings=j,
            fields_stderr=f_err, couplings_stderr=c_err, theta=theta, theta_stderr=theta_stderr,
            sparse_cells=sparse)
        self.fields_, self.couplings_ = h, j
        self.n_states_, self.n_sites_ = data.n_states, data.n_sites
        self.parametrization_ = par
        self.model_ = self.result_.model()
        if not success:
            warnings.warn(f"{type(self).__name__} did not converge: {message}", ConvergenceWarning, stacklevel=3)
        return self

    def _check_fitted(self):
        if not hasattr(self, "result_"):
            raise InvalidParameterError(f"this {type(self).__name__} is not fitted yet: call fit(X) first")

    def log_likelihood(self, X, mask=None, lengths=None, spins: bool = False) -> np.ndarray:
        """Exact log-likelihood of every sequence under the fitted parameters (hidden sites summed)."""
        self._check_fitted()
        data = ChainData.from_arrays(X, mask, lengths, self.n_states_, spins)
        if data.n_sites > self.n_sites_:
            raise InvalidParameterError(f"sequences of {data.n_sites} positions, the fit has {self.n_sites_}")
        h = self.fields_[: data.n_sites]
        j = self.couplings_ if self.couplings_.shape[1] == 1 else self.couplings_[:, : data.n_sites - 1]
        return chain_log_likelihood(data, h, j)

    def score(self, X, mask=None, lengths=None, spins: bool = False) -> float:
        """Mean log-likelihood per observed token (held-out data: the test score)."""
        self._check_fitted()
        data = ChainData.from_arrays(X, mask, lengths, self.n_states_, spins)
        return float(self.log_likelihood(X, mask, lengths, spins).sum() / data.n_tokens)


# ----------------------------------------------------------------------------- exact ML
class ChainMaxLikelihood(_ChainFitter):
    """Exact maximum-likelihood fit of a chain (see the module docstring).

    Parameters
    ----------
    fields : str, default "position"
        ``"position"``, ``"homogeneous"``, ``"blocks:B"`` or ``"none"``.
    couplings : str, default "potts"
        ``"potts"``, ``"full"``, ``"potts-bond"``, ``"full-bond"`` or ``"none"``.
    max_range : int, default 1
        Couplings ``J_r`` for ``r <= max_range`` (exact through windows of ``max_range`` sites;
        the cost grows like ``q^max_range`` per hidden site).
    l2 : float, default 0.1
        Prior precision on every gauge-fixed parameter (MAP estimate).
    field_smoothing : float, default 0
        Extra penalty ``field_smoothing / 2 * sum_i ||h_{i+1} - h_i||^2`` on position fields.
    max_iter, tol : int, float
        L-BFGS iterations and gradient tolerance (on the objective per token).
    standard_errors : bool, default True
        Invert the Fisher information (skipped above 6000 parameters).
    """

    _method = "exact-ml"

    def fit(self, X, mask=None, lengths=None, *, n_states: int | None = None, spins: bool = False,
            init: np.ndarray | None = None) -> ChainMaxLikelihood:
        """Fit to sequences ``X`` (n_sequences, n_positions); returns ``self``."""
        data, par = self._prepare(X, mask, lengths, n_states, spins)
        objective = _MLObjective(data, par, self.l2, self.field_smoothing)
        x0 = _independent_start(data, par) if init is None else np.asarray(init, dtype=float)
        if x0.shape != (par.n_params,):
            raise InvalidParameterError(f"init must have {par.n_params} entries")
        pre = _Preconditioner(data, par, self.l2)

        def scaled(phi):
            value, grad = objective(pre.to_theta(phi))
            return value, pre.grad_to_phi(grad)

        res = optimize.minimize(scaled, pre.to_phi(x0), jac=True, method="L-BFGS-B",
                                options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": 1e-15,
                                         "maxcor": 30})
        theta = pre.to_theta(res.x)
        grad_norm = float(np.max(np.abs(res.jac))) if res.jac is not None else math.nan
        success = bool(res.success) or grad_norm < 1e-6
        message = f"{res.message} (|grad|_max = {grad_norm:.2e} per token, {res.nit} iterations)"
        stderr = None
        if self.standard_errors and success:
            if par.n_params <= MAX_FISHER_PARAMS:
                stderr = objective.standard_errors(theta)
            else:
                message += f"; no standard errors above {MAX_FISHER_PARAMS} parameters"
        self._finish(data, par, theta, success=success, message=message, n_iter=res.nit, theta_stderr=stderr)
        if self.result_.sparse_cells:
            warnings.warn(
                f"{self.result_.sparse_cells} (position, state) cells are never observed: their fields are set "
                f"by the L2 prior (l2={self.l2}); consider fields='blocks:B' or field_smoothing",
                SparseDataWarning, stacklevel=2)
        return self


class _Preconditioner:
    """Linear change of variables ``theta = P phi`` that makes the objective's curvature ~1.

    Fields: per field group, ``P_g = L_g^{-T}`` with ``L_g L_g^T`` the Hessian of the
    independent-site objective per token, ``(n_g B^T (diag p_g - p_g p_g^T) B + l2) / N_tokens``
    (``p_g`` the group's state frequencies): rare states make the curvatures of field directions
    differ by orders of magnitude, which otherwise stalls L-BFGS. Couplings: ``1 / sqrt`` of the
    share of pairs each parameter acts on.
    """

    def __init__(self, data: ChainData, par: ChainParametrization, l2: float):
        q = par.n_states
        self.n_field = par.n_field_params
        self.groups = par.n_field_groups
        n_tok = data.n_tokens
        if self.groups:
            counts = np.zeros((data.n_sites, q))
            pos = np.broadcast_to(np.arange(data.n_sites), data.states.shape)
            np.add.at(counts, (pos[data.observed], data.states[data.observed]), 1.0)
            grouped = np.zeros((self.groups, q))
            np.add.at(grouped, par.field_group(), counts)
            n_g = grouped.sum(axis=1)
            p = (grouped + 0.5) / (n_g[:, None] + 0.5 * q)
            cov = np.einsum("ga,gb->gab", p, -p)
            cov[:, np.arange(q), np.arange(q)] += p
            b = par._b
            hess = (n_g[:, None, None] * (b.T @ cov @ b) + max(l2, 1e-3) * np.eye(q - 1)) / n_tok
            chol = np.linalg.cholesky(hess)
            self.chol_t = np.swapaxes(chol, 1, 2)  # L^T: phi = L^T theta
            self.inv_t = np.linalg.inv(self.chol_t)  # L^{-T}: theta = L^{-T} phi
        if par.couplings != "none":
            # pairs at distance r with left site j: sequences longer than j + r
            n = par.n_sites
            longer = np.bincount(data.lengths, minlength=n + 1)[::-1].cumsum()[::-1]  # length >= L
            j = np.arange(n - 1)
            per_bond = np.array([np.where(j + r < n, longer[np.minimum(j + r + 1, n)], 0)
                                 for r in range(1, par.max_range + 1)], dtype=float) / n_tok
            share = per_bond if par.couplings.endswith("-bond") else per_bond.sum(axis=1, keepdims=True)
            # curvature of each coupling parameter under independent sites with the mean frequencies
            p_bar = np.bincount(data.states[data.observed], minlength=q) + 0.5
            p_bar /= p_bar.sum()
            if par.couplings.startswith("potts"):
                same = (p_bar**2).sum()
                unit = np.array([same * (1 - same)])
            elif par.zero_sum_couplings:
                m = np.diag(par._b.T @ np.diag(p_bar) @ par._b)
                u = par._b.T @ p_bar
                unit = (np.outer(m, m) - np.outer(u, u) ** 2).ravel()
            else:
                unit = np.full(par._c.shape[1], 1.0 / q**2)
            curvature = share.ravel()[:, None] * np.maximum(unit, 1e-12)[None, :] + max(l2, 1e-3) / n_tok
            self.coupling_scale = 1.0 / np.sqrt(curvature.ravel())
        else:
            self.coupling_scale = np.ones(0)

    def _split(self, v):
        return v[: self.n_field].reshape(self.groups, -1) if self.groups else None, v[self.n_field:]

    def to_theta(self, phi):
        f, c = self._split(phi)
        parts = [np.einsum("gab,gb->ga", self.inv_t, f).ravel()] if self.groups else []
        return np.concatenate(parts + [c * self.coupling_scale])

    def to_phi(self, theta):
        f, c = self._split(theta)
        parts = [np.einsum("gab,gb->ga", self.chol_t, f).ravel()] if self.groups else []
        return np.concatenate(parts + [c / self.coupling_scale])

    def grad_to_phi(self, grad):
        f, c = self._split(grad)
        parts = [np.einsum("gba,gb->ga", self.inv_t, f).ravel()] if self.groups else []
        return np.concatenate(parts + [c * self.coupling_scale])


def _independent_start(data: ChainData, par: ChainParametrization) -> np.ndarray:
    """Fields of the independent-site fit (log frequencies with a half pseudocount), no couplings."""
    q = par.n_states
    counts = np.zeros((data.n_sites, q))
    pos = np.broadcast_to(np.arange(data.n_sites), data.states.shape)
    np.add.at(counts, (pos[data.observed], data.states[data.observed]), 1.0)
    fields = np.log(counts + 0.5)
    fields -= fields.mean(axis=1, keepdims=True)
    return par.project(fields, np.zeros(par.coupling_shape))


def _penalty(theta, par: ChainParametrization, l2: float, smoothing: float):
    """``l2/2 |theta|^2 + smoothing/2 sum_i |h_{i+1} - h_i|^2`` (position fields) and its gradient."""
    value = 0.5 * l2 * theta @ theta
    grad = l2 * theta
    if smoothing and par.fields == "position":
        f = theta[: par.n_field_params].reshape(par.n_sites, par.n_states - 1)
        d = np.diff(f, axis=0)
        value += 0.5 * smoothing * (d * d).sum()
        g = np.zeros_like(f)
        g[1:] += smoothing * d
        g[:-1] -= smoothing * d
        grad = grad.copy()
        grad[: par.n_field_params] += g.ravel()
    return value, grad


class _MLObjective:
    """Negative log-posterior per token and its exact gradient."""

    def __init__(self, data: ChainData, par: ChainParametrization, l2: float, smoothing: float):
        self.data, self.par = data, par
        self.l2, self.smoothing = l2, smoothing
        per_bond = par.couplings.endswith("-bond")
        # nearest neighbour: the observed parts of every sequence enter through counts, and only the
        # hidden runs need work at each step; longer range: whole sequences with hidden sites
        self.runs = data.hidden_runs() if par.max_range == 1 else None
        rows = np.arange(data.states.shape[0]) if par.max_range == 1 else None
        self.site_counts, self.pair_counts = data.counts(par.max_range, per_bond, rows)
        self.scale = 1.0 / data.n_tokens
        self.lengths = sorted(data.length_counts.items())

    def _model_moments(self, h, j, tables=None):
        """``sum_L c_L log Z_L`` and the model moments summed over the sequences' lengths."""
        site = np.zeros_like(h)
        pair = np.zeros_like(j)
        log_z = 0.0
        if self.par.max_range == 1:  # dense transfer-matrix kernels of the exact solver: faster
            for length, count in self.lengths:
                lf = h[:length]
                lj = j[0] if j.shape[1] == 1 else j[0, : length - 1]
                alphas = np.empty((length, h.shape[1]))
                betas = np.empty_like(alphas)
                lz = _exact_kernels.forward(lf, lj, lf[0].copy(), np.zeros(h.shape[1]), alphas)
                _exact_kernels.backward(lf, lj, lf[0].copy(), np.zeros(h.shape[1]), betas)
                marg = alphas * betas
                marg /= marg.sum(axis=1, keepdims=True)
                pairs = np.empty((length - 1, h.shape[1], h.shape[1]))
                _exact_kernels.pair_marginals(lf, lj, lf[0].copy(), np.zeros(h.shape[1]), marg, betas, pairs)
                log_z += count * lz
                site[:length] += count * marg
                if j.shape[1] == 1:
                    pair[0, 0] += count * pairs.sum(axis=0)
                else:
                    pair[0, : length - 1] += count * pairs
            return log_z, site, pair
        tables = K.weights(h, j) if tables is None else tables
        for length, count in self.lengths:
            log_z += count * K.chain_moments(*tables, -np.ones(length, dtype=np.int64), float(count), site, pair, True)
        return log_z, site, pair

    def _penalty(self, theta):
        return _penalty(theta, self.par, self.l2, self.smoothing)

    def __call__(self, theta):
        h, j = self.par.expand(theta)
        tables = K.weights(h, j)
        log_z, m_site, m_pair = self._model_moments(h, j, tables)
        d_site = self.site_counts.copy()
        d_pair = self.pair_counts.copy()
        ll = float((self.site_counts * h).sum() + (self.pair_counts * j).sum())
        if self.runs is not None:
            if self.runs.size:
                ll += K.nn_run_moments(self.runs, *tables, _N_CHUNKS, d_site, d_pair)
        elif self.data.hole_rows.size:
            ll += K.data_moments(self.data.states, self.data.observed, self.data.lengths, self.data.hole_rows,
                                 *tables, _N_CHUNKS, d_site, d_pair)
        ll -= log_z
        grad = self.par.adjoint(d_site - m_site, d_pair - m_pair)
        pen, pen_grad = self._penalty(theta)
        return (-ll + pen) * self.scale, (-grad + pen_grad) * self.scale

    def standard_errors(self, theta) -> np.ndarray:
        """Square roots of the diagonal of ``(F + prior precision)^-1`` (F by central differences of
        the model moments: the expected information of complete data)."""
        p = theta.size
        fisher = np.empty((p, p))
        for k in range(p):
            step = 1e-5 * max(1.0, abs(theta[k]))
            plus, minus = theta.copy(), theta.copy()
            plus[k] += step
            minus[k] -= step
            gp = self.par.adjoint(*self._model_moments(*self.par.expand(plus))[1:])
            gm = self.par.adjoint(*self._model_moments(*self.par.expand(minus))[1:])
            fisher[:, k] = (gp - gm) / (2 * step)
        fisher = 0.5 * (fisher + fisher.T)
        precision = fisher + self.l2 * np.eye(p)
        if self.smoothing and self.par.fields == "position":
            precision += self._penalty_hessian()
        try:
            cov = np.linalg.inv(precision)
        except np.linalg.LinAlgError:
            return np.full(p, np.nan)
        return np.sqrt(np.clip(np.diag(cov), 0, None))

    def _penalty_hessian(self):
        q = self.par.n_states
        n = self.par.n_sites
        d = np.diff(np.eye(n), axis=0)
        lap = self.smoothing * d.T @ d
        hess = np.zeros((self.par.n_params, self.par.n_params))
        hess[: self.par.n_field_params, : self.par.n_field_params] = np.kron(lap, np.eye(q - 1))
        return hess


# ----------------------------------------------------------------------------- pseudo-likelihood
class ChainPseudoLikelihood(_ChainFitter):
    """Maximum pseudo-likelihood: ``sum_i log P(s_i | s_{i-R..i+R})`` over sites whose neighbours
    within range are all observed (same parameters and prior as :class:`ChainMaxLikelihood`).

    Standard errors are not computed (the inverse Hessian is not the covariance of a PL estimate).
    """

    _method = "pseudo-likelihood"

    def fit(self, X, mask=None, lengths=None, *, n_states: int | None = None, spins: bool = False):
        data, par = self._prepare(X, mask, lengths, n_states, spins)
        valid = data.observed
        n_cond = int(valid.sum())

        def objective(theta):
            h, j = par.expand(theta)
            site = np.zeros_like(h)
            pair = np.zeros_like(j)
            pl = K.pseudo_likelihood(data.states, valid, data.lengths, h, j, site, pair)
            pen, pen_grad = _penalty(theta, par, self.l2, self.field_smoothing)
            return (-pl + pen) / n_cond, (-par.adjoint(site, pair) + pen_grad) / n_cond

        pre = _Preconditioner(data, par, self.l2)

        def scaled(phi):
            value, grad = objective(pre.to_theta(phi))
            return value, pre.grad_to_phi(grad)

        res = optimize.minimize(scaled, pre.to_phi(_independent_start(data, par)), jac=True, method="L-BFGS-B",
                                options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": 1e-15, "maxcor": 30})
        grad_norm = float(np.max(np.abs(res.jac)))
        success = bool(res.success) or grad_norm < 1e-6
        return self._finish(data, par, pre.to_theta(res.x), success=success, n_iter=res.nit,
                            message=f"{res.message} (|grad|_max = {grad_norm:.2e})")


# ----------------------------------------------------------------------------- mean field
class ChainMeanField(_ChainFitter):
    """Naive mean-field inversion restricted to the chain's bonds (a baseline).

    One-hot variables (the last state as reference) of all positions; connected correlations
    ``C`` from pairwise-complete frequencies with a pseudocount; ``J_ij(a, b) = -(C^{-1})_{ia, jb}``
    for ``|i - j| <= max_range``; ``h_i(a) = ln(p_i(a) / p_i(ref)) - sum_{j, b} J_ij(a, b) p_j(b)``.
    The couplings are then averaged onto the variant (per bond, homogeneous, Potts).

    Parameters
    ----------
    pseudocount : float, default 0.5
        Added to every count (as in the inverse-Potts literature) so that ``C`` is invertible.
    """

    _method = "mean-field"

    def __init__(self, fields: str = "position", couplings: str = "full", max_range: int = 1,
                 pseudocount: float = 0.5):
        super().__init__(fields=fields, couplings=couplings, max_range=max_range, l2=0.0, standard_errors=False)
        self.pseudocount = pseudocount

    def get_params(self) -> dict:
        return {"fields": self.fields, "couplings": self.couplings, "max_range": self.max_range,
                "pseudocount": self.pseudocount}

    def fit(self, X, mask=None, lengths=None, *, n_states: int | None = None, spins: bool = False):
        data, par = self._prepare(X, mask, lengths, n_states, spins)
        if par.fields != "position":
            raise InvalidParameterError("the mean-field fit gives position-dependent fields: use fields='position'")
        n, q = data.n_sites, data.n_states
        obs = data.observed.astype(float)
        onehot = (data.states[:, :, None] == np.arange(q)) * obs[:, :, None]
        lam = self.pseudocount
        n_i = obs.sum(axis=0)
        p = (onehot.sum(axis=0) + lam / q) / (n_i[:, None] + lam)
        x = onehot[:, :, : q - 1].reshape(len(obs), -1)
        valid = np.repeat(obs, q - 1, axis=1)
        n_ij = valid.T @ valid
        joint = (x.T @ x + lam / q**2) / (n_ij + lam)
        pv = p[:, : q - 1].ravel()
        cov = joint - np.outer(pv, pv)
        for i in range(n):  # within-site block: exact form with the pseudocounted marginals
            sl = slice(i * (q - 1), (i + 1) * (q - 1))
            cov[sl, sl] = np.diag(p[i, : q - 1]) - np.outer(p[i, : q - 1], p[i, : q - 1])
        cov += 1e-8 * np.eye(cov.shape[0])
        inv = np.linalg.inv(cov)
        big_r = par.max_range
        couplings = np.zeros((big_r, n - 1, q, q))
        for r in range(1, big_r + 1):
            for i in range(n - r):
                couplings[r - 1, i, : q - 1, : q - 1] = -inv[i * (q - 1):(i + 1) * (q - 1),
                                                            (i + r) * (q - 1):(i + r + 1) * (q - 1)]
        fields = np.log(p / p[:, -1:])
        for r in range(1, big_r + 1):
            for i in range(n - r):
                fields[i] -= couplings[r - 1, i] @ p[i + r]
                fields[i + r] -= couplings[r - 1, i].T @ p[i]
        if not par.couplings.endswith("-bond"):
            couplings = couplings.mean(axis=1, keepdims=True)
        if par.couplings == "none":
            couplings = np.zeros_like(couplings)
        fields, couplings = zero_sum_gauge(fields, couplings)
        theta = par.project(fields, couplings)
        return self._finish(data, par, theta, success=True, n_iter=0,
                            message="closed-form naive mean-field inversion")


class IndependentSites(ChainMaxLikelihood):
    """Independent sites with (by default) position-dependent rates: the baseline of every chain fit.

    Without couplings the hidden sites drop out and the objective separates into one small convex
    problem per field group, ``max -sum_a c_a h_a + n log sum_a e^{h_a} - l2/2 |theta|^2``, solved by
    vectorised Newton steps (exact to the tolerance; no L-BFGS).
    """

    _method = "independent"

    def __init__(self, fields: str = "position", l2: float = 0.1, standard_errors: bool = False):
        super().__init__(fields=fields, couplings="none", l2=l2, standard_errors=standard_errors)

    def get_params(self) -> dict:
        return {"fields": self.fields, "l2": self.l2, "standard_errors": self.standard_errors}

    def fit(self, X, mask=None, lengths=None, *, n_states: int | None = None, spins: bool = False,
            init: np.ndarray | None = None) -> IndependentSites:
        data, par = self._prepare(X, mask, lengths, n_states, spins)
        q = data.n_states
        if par.n_field_groups == 0:
            return self._finish(data, par, np.zeros(0), success=True, n_iter=0, message="no parameters")
        counts = np.zeros((data.n_sites, q))
        pos = np.broadcast_to(np.arange(data.n_sites), data.states.shape)
        np.add.at(counts, (pos[data.observed], data.states[data.observed]), 1.0)
        grouped = np.zeros((par.n_field_groups, q))
        np.add.at(grouped, par.field_group(), counts)
        total = grouped.sum(axis=1, keepdims=True)
        b = par._b
        theta = (np.log(grouped + 0.5) - np.log(grouped + 0.5).mean(axis=1, keepdims=True)) @ b
        eye = np.eye(q - 1)
        for it in range(100):
            h = theta @ b.T
            p = np.exp(h - h.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            grad = (grouped - total * p) @ b - self.l2 * theta
            cov = np.einsum("ga,gb->gab", p, -p)
            cov[:, np.arange(q), np.arange(q)] += p
            hess = total[:, :, None] * (b.T @ cov @ b) + self.l2 * eye
            step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
            theta = theta + step
            if np.abs(step).max() < 1e-12:
                break
        stderr = None
        if self.standard_errors:
            stderr = np.sqrt(np.diagonal(np.linalg.inv(hess), axis1=1, axis2=2)).ravel()
        return self._finish(data, par, theta.ravel(), success=True, n_iter=it + 1, theta_stderr=stderr,
                            message=f"Newton converged in {it + 1} steps (max step {np.abs(step).max():.1e})")
