"""Exact maximum likelihood of Potts chains (hidden sites summed exactly) and independent sites."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
from scipy import optimize

from ..errors import InvalidParameterError, SparseDataWarning
from ._base import _ChainFitter
from .information import parameter_covariance
from .likelihood import _independent_start, _MLObjective, _Preconditioner
from .result import StandardErrors

log = logging.getLogger(__name__)

#: largest number of parameters for which the Fisher information is computed
MAX_FISHER_PARAMS = 6000


def _lazy_covariance(objective, theta, success):
    """The deferred covariance of a maximum-likelihood fit (see :class:`StandardErrors`)."""

    def compute():
        if not success:
            return None, "no standard errors: the fit did not converge"
        if theta.size > MAX_FISHER_PARAMS:
            return None, f"no standard errors above {MAX_FISHER_PARAMS} parameters"
        return parameter_covariance(objective, theta)

    return compute


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
    bias_correction : {"auto", "jackknife", "none"}, default "auto"
        ``"jackknife"``: the couplings are corrected for the ``O(1/N)`` bias of free position fields
        by the half-sample (split-panel) jackknife, ``J = 2 J_all - (J_A + J_B) / 2`` with ``A``, ``B``
        the even- and odd-numbered sequences (two extra fits, warm-started; Dhaene and Jochmans
        2015); the fields stay the maximum-likelihood ones. ``"auto"``: the jackknife for free
        position fields (``fields="position"``) with couplings and at least 4 sequences, else none.
        The standard errors stay the Fisher ones (evaluated at the corrected parameters): the
        correction ``D = J_all - (J_A + J_B) / 2`` moves ``J`` by its bias but has an sd of only
        0.14-0.19 Fisher errors over seeds, anti-correlated with ``J_all`` (r ~ -0.15), so the
        corrected ``J`` spreads as much as ``J_all`` (ratio 0.99; Fisher errors of ``J_all``:
        sd/se 0.97-1.08, the largest at ``N = 50``); no delete-group variance is needed.
    standard_errors : bool, default True
        Provide ``result_.fields_stderr``, ``couplings_stderr`` and ``theta_stderr``: the inverse of the
        expected Fisher information plus prior precision, propagated to every per-state entry with
        its full covariance. Computed on first access (the fit itself stays as fast as without
        errors); not available above 6000 parameters or for a fit that did not converge. With
        hidden sites this is the complete-data information: errors are slightly too small there.

    Attributes
    ----------
    result_ : ChainFitResult
    fields_ : ndarray of shape (n_sites, q)
        Gauge-fixed fields.
    couplings_ : ndarray of shape (max_range, n_c, q, q)
        Gauge-fixed coupling matrices: a Potts coupling ``J`` appears as ``J (delta_ab - 1/q)``.
    potts_coupling_ : float or ndarray
        The Potts coupling ``J`` itself (see :attr:`ChainFitResult.potts_coupling`).

    Notes
    -----
    Bias from many position fields (removed by default, see ``bias_correction``): with free fields at every position (``n_sites (q - 1)``
    nuisance parameters, each estimated from ``N`` tokens) the maximum-likelihood coupling is biased
    upward by ``O(1/N)`` for ``N`` sequences: the fields fit each position's sampling noise, and the
    coupling absorbs the part that neighbouring sites share (about +0.003 for ``N = 2000``,
    ``L = 512``, ``q = 8``; +0.026 +- 0.006 for ``N = 50``, ``L = 64``, ``q = 4``, ``J = 1``).
    Smooth position fields remove it when the true fields are smooth: in the same benchmark
    ``field_smoothing=20`` gives -0.007 +- 0.006 and ``fields="blocks:16"`` -0.012 +- 0.006
    (``benchmarks/bench_fit.py --only bias``). Too strong a smoothing (200 there) flattens real
    positional structure, which the coupling then absorbs (+0.038 +- 0.005): choose it by held-out
    likelihood. Without correction 95% intervals of ``J`` cover 0.42 of the time (``L = 256``,
    ``N = 100``, ``q = 4``, ``J = 2``; mean z +2.2); with the jackknife 0.955 (mean z 0.02, sd
    0.99); 0.94 and 0.94 for ``(L, q, J, N) = (64, 4, 1, 50)`` and ``(128, 8, 2, 200)`` (sd of z
    1.07 and 0.96; 400 seeds per case, coverage error +-0.011; ``benchmarks/bench_fit_coverage.py``).
    """

    _method = "exact-ml"

    def __init__(self, fields: str = "position", couplings: str = "potts", max_range: int = 1, l2: float = 0.1,
                 field_smoothing: float = 0.0, max_iter: int = 2000, tol: float = 1e-7,
                 standard_errors: bool = True, bias_correction: str = "auto"):
        super().__init__(fields=fields, couplings=couplings, max_range=max_range, l2=l2,
                         field_smoothing=field_smoothing, max_iter=max_iter, tol=tol, standard_errors=standard_errors)
        self.bias_correction = bias_correction

    def get_params(self) -> dict:
        return {**super().get_params(), "bias_correction": self.bias_correction}

    def _jackknife(self, data, par, theta) -> tuple[np.ndarray, str]:
        """Couplings of ``theta`` corrected by the half-sample jackknife, and a note for the message."""
        mode = getattr(self, "bias_correction", "auto")
        if mode not in ("auto", "jackknife", "none"):
            raise InvalidParameterError(f"bias_correction must be 'auto', 'jackknife' or 'none', got {mode!r}")
        active = mode == "jackknife" or (mode == "auto" and par.fields == "position" and par.couplings != "none")
        if not active or par.couplings == "none":
            return theta, ""
        n_seq = data.states.shape[0]
        if n_seq < 4:
            return theta, "; no jackknife bias correction (fewer than 4 sequences)"
        halves = []
        for rows in (np.arange(0, n_seq, 2), np.arange(1, n_seq, 2)):
            half = type(self)(**{**self.get_params(), "standard_errors": False, "bias_correction": "none"})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                half.fit(data.subset(rows), init=theta)
            if not half.result_.success:
                return theta, "; no jackknife bias correction (a half-sample fit did not converge)"
            halves.append(half.result_.theta)
        nf = par.n_field_params
        out = theta.copy()
        out[nf:] = 2 * theta[nf:] - 0.5 * (halves[0][nf:] + halves[1][nf:])
        return out, "; couplings bias-corrected by the half-sample jackknife"

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
        corrected, note = self._jackknife(data, par, theta) if success else (theta, "")
        message += note
        errors = None
        if self.standard_errors:  # at the reported parameters (to first order those of the maximum too)
            errors = StandardErrors(par, _lazy_covariance(objective, corrected, success),
                                    message="inverse Fisher information plus prior precision"
                                    + (" (at the jackknife-corrected couplings, whose spread is that of the "
                                       "uncorrected ones)" if "bias-corrected" in note else ""))
        self._finish(data, par, corrected, success=success, message=message, n_iter=res.nit, errors=errors)
        if self.result_.sparse_cells:
            warnings.warn(
                f"{self.result_.sparse_cells} (position, state) cells are never observed: their fields are set "
                f"by the L2 prior (l2={self.l2}); consider fields='blocks:B' or field_smoothing",
                SparseDataWarning, stacklevel=2)
        return self


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
        errors = None
        if self.standard_errors:
            blocks = (np.linalg.inv(hess), np.zeros((0, 0, 0)))  # field groups are independent
            errors = StandardErrors(par, lambda: (blocks, ""), message="inverse Hessian (exact, per field group)")
        return self._finish(data, par, theta.ravel(), success=True, n_iter=it + 1, errors=errors,
                            message=f"Newton converged in {it + 1} steps (max step {np.abs(step).max():.1e})")
