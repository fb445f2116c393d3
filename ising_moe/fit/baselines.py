"""Approximate chain fitters: pseudo-likelihood and naive mean field."""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg
from scipy import optimize

from ..errors import InvalidParameterError
from . import _kernels as K
from ._base import _ChainFitter
from .likelihood import _independent_start, _penalty, _Preconditioner
from .params import zero_sum_gauge

log = logging.getLogger(__name__)


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


def _shrinkage_intensity(x: np.ndarray, observed_cols: np.ndarray, q_minus_1: int) -> float:
    """Schaefer-Strimmer / Ledoit-Wolf intensity of shrinking the between-site covariances to zero.

    ``lambda* = sum Var(c_kl) / sum c_kl^2`` over pairs of one-hot variables at different sites
    (``c_kl`` the sample covariance; ``Var(c_kl) = N / (N - 1)^3 sum_s (w_sk w_sl - mean_kl)^2`` with
    ``w`` the centred variables, unobserved entries set to their mean), clipped to [0, 1]. The sums
    over all pairs need no (d, d) matrix: ``sum_kl sum_s w_sk^2 w_sl^2 = sum_s (sum_k w_sk^2)^2`` and
    ``sum_kl (W^T W)_kl^2 = ||W W^T||_F^2``; the within-site pairs are subtracted site by site.
    """
    n = len(x)
    if n < 3:
        return 1.0
    n_obs = observed_cols.sum(axis=0)
    mean = np.where(n_obs > 0, (x * observed_cols).sum(axis=0) / np.maximum(n_obs, 1), 0.0)
    w = np.where(observed_cols, x - mean, 0.0)
    w2 = w * w
    sq_all = float((w2.sum(axis=1) ** 2).sum())
    gram = w @ w.T
    prod2_all = float((gram * gram).sum())
    per_site = w.reshape(n, -1, q_minus_1)
    sq_within = float((((per_site**2).sum(axis=2)) ** 2).sum())
    site_gram = np.einsum("sia,sib->iab", per_site, per_site)
    prod2_within = float((site_gram**2).sum())
    var_sum = n / (n - 1) ** 3 * ((sq_all - sq_within) - (prod2_all - prod2_within) / n)
    denom = (prod2_all - prod2_within) / (n - 1) ** 2
    if denom <= 0:
        return 1.0
    return float(np.clip(var_sum / denom, 0.0, 1.0))


class ChainMeanField(_ChainFitter):
    """Naive mean-field inversion restricted to the chain's bonds: a rough initialiser, not an estimator.

    Not consistent: its couplings depend on the number of sequences ``N`` through the shrinkage
    and do not converge to the true ones (for a true Potts ``J = 3``: 2.1 at ``N = 200``, 56 at
    ``N = 2000``; naive mean field is biased even at ``N = infinity`` beyond weak coupling). Use it
    as a starting point or a cheap sanity baseline only: it is not among the variants of
    ``isingmoe fit`` and its numbers belong in no report (use :class:`ChainMaxLikelihood`).

    One-hot variables (the last state as reference) of all positions; connected correlations
    ``C`` from pairwise-complete frequencies with a pseudocount; ``J_ij(a, b) = -(C^{-1})_{ia, jb}``
    for ``|i - j| <= max_range``; ``h_i(a) = ln(p_i(a) / p_i(ref)) - sum_{j, b} J_ij(a, b) p_j(b)``.
    The couplings are then averaged onto the variant (per bond, homogeneous, Potts).

    With fewer sequences than variables (``N <= n_sites (q - 1)``, every realistic routing data
    set) the sample ``C`` is singular and its inverse meaningless (couplings ~ 1e3). The
    between-site covariances are therefore shrunk towards zero (independent sites),
    ``C_s = D + (1 - lambda)(C - D)`` with ``D`` the within-site blocks, with the intensity
    ``lambda`` of Schaefer and Strimmer (2005) / Ledoit and Wolf (2004), estimated from the data
    (``shrinkage="auto"``) or given.

    Parameters
    ----------
    pseudocount : float, default 0.5
        Added to every count (as in the inverse-Potts literature).
    shrinkage : "auto" or float in [0, 1], default "auto"

    Attributes
    ----------
    shrinkage_ : float
        The intensity used.
    """

    _method = "mean-field"

    def __init__(self, fields: str = "position", couplings: str = "full", max_range: int = 1,
                 pseudocount: float = 0.5, shrinkage="auto"):
        super().__init__(fields=fields, couplings=couplings, max_range=max_range, l2=0.0, standard_errors=False)
        self.pseudocount = pseudocount
        self.shrinkage = shrinkage

    def get_params(self) -> dict:
        return {"fields": self.fields, "couplings": self.couplings, "max_range": self.max_range,
                "pseudocount": self.pseudocount, "shrinkage": self.shrinkage}

    def fit(self, X, mask=None, lengths=None, *, n_states: int | None = None, spins: bool = False):
        data, par = self._prepare(X, mask, lengths, n_states, spins)
        if par.fields != "position":
            raise InvalidParameterError("the mean-field fit gives position-dependent fields: use fields='position'")
        if not (self.shrinkage == "auto" or (isinstance(self.shrinkage, (int, float))
                                             and 0 <= self.shrinkage <= 1)):
            raise InvalidParameterError(f"shrinkage must be 'auto' or in [0, 1], got {self.shrinkage!r}")
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
        within = np.zeros_like(cov)
        for i in range(n):  # within-site block: exact form with the pseudocounted marginals
            sl = slice(i * (q - 1), (i + 1) * (q - 1))
            within[sl, sl] = np.diag(p[i, : q - 1]) - np.outer(p[i, : q - 1], p[i, : q - 1])
            cov[sl, sl] = 0.0
        shrink = _shrinkage_intensity(x, valid.astype(bool), q - 1) if self.shrinkage == "auto" \
            else float(self.shrinkage)
        # the pseudocounted, pairwise-complete C need not be positive definite: shrink further if not
        while True:
            try:
                chol = scipy.linalg.cho_factor(within + (1 - shrink) * cov, lower=True, check_finite=False)
                break
            except np.linalg.LinAlgError:
                if shrink >= 1:
                    raise
                shrink = min(1.0, shrink + 0.5 * (1 - shrink) + 0.01)
        self.shrinkage_ = shrink
        inv = scipy.linalg.cho_solve(chol, np.eye(cov.shape[0]), check_finite=False)
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
                            message=f"closed-form naive mean-field inversion (between-site covariances "
                                    f"shrunk by {shrink:.3f}): a rough initialiser, not consistent in N")
