"""Exact chain log-likelihood, its gradient and the block preconditioner used by maximum likelihood."""

from __future__ import annotations

import numpy as np

from ..exact import _kernels as _exact_kernels
from . import _kernels as K
from .data import ChainData
from .params import ChainParametrization

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

    def moment_response(self, theta):
        """Model moments in ``theta`` coordinates (the gradient of ``sum_L c_L log Z_L``)."""
        return self.par.adjoint(*self._model_moments(*self.par.expand(theta))[1:])
