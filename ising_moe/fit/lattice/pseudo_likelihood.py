"""Pseudo-likelihood of the lattice: every site given its neighbours and its token.

.. math::

    \\mathrm{PL}(\\theta) = \\sum_s \\sum_{l, i < n_s} \\log P(x_{l,i} \\mid x_{l,i\\pm 1},
    x_{m,i}\\ (m \\ne l), t_i),

each conditional a softmax over the ``q`` states of the site's token field, its two neighbours
along the text and its cross-layer partners (:func:`~ising_moe.mc._lattice_kernels.site_logits`,
the function the heat-bath sampler draws from). Cost O(S Λ n q (2 + pairs per layer)) for any
size: the fitter for lattices whose column is too large for the exact transfer operator (OLMoE's
16 layers x 64 experts), and the start of the exact and Monte Carlo fits. Maximum pseudo-likelihood
is consistent (it converges to the true parameters as the data grow) but not efficient; the
tests compare it with exact maximum likelihood on the same data.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from ...mc.lattice import transposed
from . import _kernels as LK
from .params import LatticeData, LatticeLayout

__all__ = ["PseudoLikelihood", "minimize_lbfgs", "chunk_bounds"]

#: fixed work split over sequences: results independent of the thread count
N_CHUNKS = 16


def chunk_bounds(n: int, n_chunks: int = N_CHUNKS) -> np.ndarray:
    """Boundaries of ``min(n, n_chunks)`` near-equal consecutive chunks of ``n`` items."""
    k = max(1, min(n, n_chunks))
    return np.linspace(0, n, k + 1).round().astype(np.int64)


class PseudoLikelihood:
    """Negative log pseudo-posterior per token, ``(-PL(theta) + l2 |theta|^2 / 2) / N``, and its gradient.

    ``N`` is the number of sites (tokens x layers).
    """

    def __init__(self, layout: LatticeLayout, data: LatticeData, l2: float = 0.0):
        layout.check(data)
        self.layout, self.data, self.l2 = layout, data, float(l2)
        self.bounds = chunk_bounds(data.n_sequences)
        self.n_sites = float(data.n_tokens * data.n_layers)
        self.n_evaluations = 0

    def log_pseudo_likelihood(self, theta, want_grad: bool = True):
        """``PL(theta)`` (total, not per token) and its gradient with respect to ``theta``."""
        lay, d = self.layout, self.data
        p = lay.expand(theta)
        k = len(self.bounds) - 1
        q = lay.n_states
        value = np.zeros(k)
        g_tok = np.zeros((k, lay.n_layers, lay.n_rows, q))
        g_coup = np.zeros((k, lay.n_layers, q, q))
        g_cross = np.zeros((k, max(lay.n_pairs, 1), q, q))
        g_coup_t, g_cross_t = np.zeros_like(g_coup), np.zeros_like(g_cross)
        cross = p["cross"] if lay.n_pairs else np.zeros((1, q, q))
        LK.pseudo_likelihood(d.states, d.rows, d.lengths, p["token"], p["coupling"], transposed(p["coupling"]),
                             cross, transposed(cross), lay.pairs, self.bounds, value, g_tok, g_coup, g_coup_t,
                             g_cross, g_cross_t)
        self.n_evaluations += 1
        total = float(value.sum())
        if not want_grad:
            return total, None
        grad = lay.project({"token": g_tok.sum(axis=0),
                            "coupling": g_coup.sum(axis=0) + transposed(g_coup_t.sum(axis=0)),
                            "cross": (g_cross.sum(axis=0) + transposed(g_cross_t.sum(axis=0)))[: lay.n_pairs]})
        return total, grad

    def __call__(self, theta):
        value, grad = self.log_pseudo_likelihood(theta)
        return ((-value + 0.5 * self.l2 * theta @ theta) / self.n_sites,
                (-grad + self.l2 * theta) / self.n_sites)


def parameter_scale(layout: LatticeLayout, data: LatticeData, l2: float) -> np.ndarray:
    """Diagonal preconditioner: ``sqrt`` of each coordinate's share of the sites, so that a rare
    token row (a few occurrences) gets the curvature of a frequent one in the scaled variables."""
    counts = layout.counts(data)["token"].sum(axis=2)  # (Λ, R): occurrences of each row in each layer
    n_sites = data.n_tokens * data.n_layers
    scale = np.ones(layout.n_params)
    per = np.repeat(((counts + l2) / n_sites * layout.n_layers).ravel(), layout.n_states - 1)
    scale[layout.slices["token"]] = np.sqrt(np.maximum(per, 1e-12))
    return scale


def minimize_lbfgs(fun, x0, scale, max_iter: int, tol: float):
    """L-BFGS on ``fun(theta) -> (value, grad)`` in the variables ``phi = theta * scale``.

    Returns ``(theta, success, message, n_iter)``; ``tol`` bounds the largest scaled gradient
    component (per site).
    """
    def scaled(phi):
        value, grad = fun(phi / scale)
        return value, grad / scale

    res = optimize.minimize(scaled, np.asarray(x0, float) * scale, jac=True, method="L-BFGS-B",
                            options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-15, "maxcor": 30})
    grad_max = float(np.max(np.abs(res.jac))) if res.jac is not None and res.jac.size else 0.0
    success = (bool(res.success) or grad_max < 10 * tol) and math.isfinite(res.fun)
    message = f"{res.message} (|grad|_max = {grad_max:.2e} per site, {res.nit} iterations)"
    return res.x / scale, success, message, int(res.nit)
