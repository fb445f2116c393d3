"""Approximate chain fitters: pseudo-likelihood and naive mean field."""

from __future__ import annotations

import logging

import numpy as np
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
