"""Exact negative log-posterior of conditional chains and their mixtures, its optimiser and errors.

Shared by :class:`~ising_moe.fit.conditional.ConditionalChain` (one component) and
:class:`~ising_moe.fit.conditional.mixture.ChainMixture`. The objective per (weighted) observed token is

.. math::

    f(\\theta) = \\frac{1}{N} \\Big[-\\sum_s w_s \\log \\sum_k \\pi_k\\, p_k(x_s | t_s)
                 + \\frac{l_2}{2} \\theta^T \\Lambda \\theta\\Big],

exact through :func:`~ising_moe.fit.conditional._kernels.crf_pass` (forward-backward per sequence;
hidden sites summed over); its gradient is ``sum_s w_s r_sk`` times data minus model moments,
``r_sk`` the responsibilities (for a mixture this is the EM gradient: direct L-BFGS on the exact
mixture likelihood and EM share their fixed points).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize
from scipy.special import logsumexp

from . import _kernels as CK
from .params import ConditionalData, CRFLayout

__all__ = ["MAX_HESSIAN_PARAMS", "CRFObjective", "CRFPreconditioner", "minimize"]

#: fixed work split over sequences: results independent of the thread count
N_CHUNKS = 16
#: largest number of parameters for which standard errors are computed (finite-difference Hessian)
MAX_HESSIAN_PARAMS = 3000


class CRFObjective:
    """Value and exact gradient of the negative log-posterior per token.

    Parameters
    ----------
    data : ConditionalData
    rows : ndarray of int64, shape (n_sequences, n_sites)
        Token-table row of every site (zeros without token fields).
    layout : CRFLayout
    l2 : float
        Prior precision (``l2 Lambda``, :meth:`~ising_moe.fit.conditional.params.CRFLayout.penalty`).
    weights : ndarray, shape (n_sequences,), optional
        Per-sequence weights (bootstrap counts, EM responsibilities).
    """

    def __init__(self, data: ConditionalData, rows: np.ndarray, layout: CRFLayout, l2: float, weights=None):
        self.data, self.layout, self.l2 = data, layout, float(l2)
        self.rows = np.ascontiguousarray(rows, dtype=np.int64)
        n_seq = data.n_sequences
        self.weights = np.ones(n_seq) if weights is None else np.ascontiguousarray(weights, dtype=float)
        self.n_tokens = float(self.weights @ data.chain.observed.sum(axis=1))
        self.n_evaluations = 0

    def log_likelihoods(self, theta, want_grad: bool = False):
        """Per-sequence, per-component ``log p_k(x_s)`` (S, K), the weighted mixture total and, with
        ``want_grad``, the gradient of the total with respect to ``theta``."""
        lay, chain = self.layout, self.data.chain
        params = lay.expand(theta)
        tables = lay.tables(params)
        n_comp, q = lay.n_components, lay.n_states
        ll = np.empty((self.data.n_sequences, n_comp))
        shape_pos = (n_comp, chain.n_sites, q) if want_grad else (n_comp, 1, q)
        g_pos = np.zeros(shape_pos)
        g_tok = np.zeros((n_comp, tables[2].shape[1] if want_grad else 1, q))
        g_pair = np.zeros((n_comp, q, q))
        g_j2 = np.zeros(n_comp)
        total = CK.crf_pass(chain.states, chain.observed, self.rows, chain.lengths, self.data.holes, self.weights,
                            *tables, lay.max_range, params["log_pi"], N_CHUNKS, want_grad, ll, g_pos, g_tok, g_pair,
                            g_j2)
        self.n_evaluations += 1
        if not want_grad:
            return ll, total, None
        joint = ll + params["log_pi"]
        resp = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
        g_logpi = self.weights @ (resp - np.exp(params["log_pi"]))
        return ll, total, lay.adjoint(g_pos, g_tok, g_pair, g_j2, g_logpi)

    def __call__(self, theta):
        _, total, grad = self.log_likelihoods(theta, want_grad=True)
        pen, pen_grad = self.layout.penalty(theta)
        value = -total + self.l2 * pen
        return value / self.n_tokens, (-grad + self.l2 * pen_grad) / self.n_tokens

    def hessian(self, theta, step: float = 1e-5) -> np.ndarray:
        """Hessian of the total negative log-posterior (central differences of the exact gradient)."""
        p = theta.size
        hess = np.empty((p, p))
        for k in range(p):
            h = step * max(1.0, abs(theta[k]))
            plus, minus = theta.copy(), theta.copy()
            plus[k] += h
            minus[k] -= h
            hess[:, k] = (self(plus)[1] - self(minus)[1]) * self.n_tokens / (2 * h)
        return 0.5 * (hess + hess.T)

    def covariance(self, theta) -> np.ndarray | None:
        """Inverse Hessian of the negative log-posterior (observed information plus the prior), or
        ``None`` when it is not positive definite."""
        hess = self.hessian(theta)
        try:
            np.linalg.cholesky(hess)
        except np.linalg.LinAlgError:
            return None
        return np.linalg.inv(hess)


class CRFPreconditioner:
    """Linear change of variables ``theta = P phi`` with curvature ~1 per token.

    Every block of ``q - 1`` field parameters gets ``P = L^{-T}`` with ``L L^T`` its curvature under
    independent sites, ``(n_g B^T (diag p_g - p_g p_g^T) B + l2) / N`` (``n_g`` the weighted number of
    tokens the block acts on, ``p_g`` their state frequencies, a component's share ``1/K``); every
    other parameter ``1 / sqrt(curvature)``.
    """

    def __init__(self, data: ConditionalData, rows, layout: CRFLayout, l2: float, weights=None):
        chain = data.chain
        q = layout.n_states
        n_comp = layout.n_components
        w = np.ones(data.n_sequences) if weights is None else np.asarray(weights, dtype=float)
        obs = chain.observed
        sw = np.broadcast_to(w[:, None], obs.shape)[obs]
        states = chain.states[obs]
        pos = np.broadcast_to(np.arange(chain.n_sites), obs.shape)[obs]
        site_counts = np.zeros((chain.n_sites, q))
        np.add.at(site_counts, (pos, states), sw)
        row_counts = np.zeros((max(layout.n_token_rows, 1), q))
        np.add.at(row_counts, (rows[obs], states), sw)
        n_tok = max(site_counts.sum(), 1e-300)
        total = site_counts.sum(axis=0)
        b = layout.b
        share = 1.0 / n_comp
        groups = layout.field_groups()
        counts, freqs = np.empty(len(groups)), np.empty((len(groups), q))
        for m, (_, (kind, k, idx)) in enumerate(groups):
            if kind == "position":
                if layout.phi is None:
                    c = site_counts[idx]
                    counts[m] = c.sum()
                else:
                    phi = layout.phi[:, idx]
                    c = (np.abs(phi)[:, None] * site_counts).sum(axis=0)
                    counts[m] = (phi**2) @ site_counts.sum(axis=1)
            elif kind == "token":
                c = row_counts[idx]
                counts[m] = c.sum()
            else:
                c = total
                counts[m] = total.sum()
            if layout.n_components > 1 and (kind == "bias" or layout.slots[kind][0] != layout.slots[kind][-1]):
                counts[m] *= share
            freqs[m] = (c + 0.5) / (c.sum() + 0.5 * q)
        cov = np.einsum("ga,gb->gab", freqs, -freqs)
        cov[:, np.arange(q), np.arange(q)] += freqs
        hess = (counts[:, None, None] * (b.T @ cov @ b) + max(l2, 1e-3) * np.eye(q - 1)) / n_tok
        chol = np.linalg.cholesky(hess)
        self.index = np.array([np.arange(sl.start, sl.stop) for sl, _ in groups], dtype=np.int64).reshape(-1, q - 1)
        self.chol_t = np.swapaxes(chol, 1, 2)
        self.inv_t = np.linalg.inv(self.chol_t)
        # the remaining parameters: couplings and mixture logits
        scale = np.ones(layout.n_params)
        n_bonds = float(w @ (chain.lengths - 1))
        p_bar = (total + 0.5) / (total.sum() + 0.5 * q)
        same = (p_bar**2).sum()
        for name in ("coupling", "coupling2"):
            bonds = n_bonds if name == "coupling" else float(w @ np.maximum(chain.lengths - 2, 0))
            slots = layout.slots[name]
            own = n_comp > 1 and slots[0] != slots[-1]
            if layout.couplings == "full" and name == "coupling":
                m = np.diag(b.T @ np.diag(p_bar) @ b)
                u = b.T @ p_bar
                unit = np.maximum((np.outer(m, m) - np.outer(u, u) ** 2).ravel(), 1e-12)
            else:
                unit = np.array([same * (1 - same)])
            for sl in (slots if own else slots[:1]):
                if sl.stop > sl.start:
                    scale[sl] = 1.0 / np.sqrt(((share if own else 1.0) * bonds * unit + max(l2, 1e-3)) / n_tok)
        if n_comp > 1:
            scale[layout.logit_slot] = 1.0 / np.sqrt((w.sum() * share * (1 - share) + max(l2, 1e-3)) / n_tok)
        self.scale = scale

    def to_theta(self, phi):
        theta = phi * self.scale
        if self.index.size:
            theta[self.index] = np.einsum("gab,gb->ga", self.inv_t, phi[self.index])
        return theta

    def to_phi(self, theta):
        phi = theta / self.scale
        if self.index.size:
            phi[self.index] = np.einsum("gab,gb->ga", self.chol_t, theta[self.index])
        return phi

    def grad_to_phi(self, grad):
        out = grad * self.scale
        if self.index.size:
            out[self.index] = np.einsum("gba,gb->ga", self.inv_t, grad[self.index])
        return out


def minimize(objective: CRFObjective, preconditioner: CRFPreconditioner, x0, max_iter: int, tol: float):
    """L-BFGS on the preconditioned objective; returns ``(theta, success, message, n_iter, value)``
    (``value``: the final objective per token).

    ``tol`` bounds the largest preconditioned gradient component (per token): with the
    preconditioner's unit curvature it is about the remaining step in units of the parameters'
    statistical errors times ``sqrt(N)``.
    """

    def scaled(phi):
        value, grad = objective(preconditioner.to_theta(phi))
        return value, preconditioner.grad_to_phi(grad)

    res = optimize.minimize(scaled, preconditioner.to_phi(np.asarray(x0, dtype=float)), jac=True,
                            method="L-BFGS-B", options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-15,
                                                        "maxcor": 30})
    grad_norm = float(np.max(np.abs(res.jac))) if res.jac is not None and res.jac.size else 0.0
    success = bool(res.success) or grad_norm < 10 * tol
    message = (f"{res.message} (|grad|_max = {grad_norm:.2e} per token, {res.nit} iterations, "
               f"{objective.n_evaluations} evaluations)")
    if not math.isfinite(res.fun):
        success = False
    return preconditioner.to_theta(res.x), success, message, int(res.nit), float(res.fun)
