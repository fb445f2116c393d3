"""Standard errors of maximum-likelihood chain fits: Fisher information and the covariance blocks.

``Sigma = (F + prior precision)^-1`` with ``F`` the expected (complete-data) Fisher information,
``F = sum_L c_L d^2 log Z_L / d theta^2``, by central differences of the exact model moments.

A chain's information between the fields of sites ``i`` and ``j`` decays like
``exp(-|i - j| / xi)``. With position fields, the field columns are therefore obtained many at a
time (Curtis-Powell-Reid colouring: all sites ``i = c mod (2 w + 1)`` perturbed together, each
response assigned to the perturbed site within the band ``w``), ``~2 (2 w + 1)(q - 1)`` moment
evaluations instead of ``2 n (q - 1)``; the band is where the information falls below 1e-9 of its
on-site value (above the finite-difference noise). Coupling columns are computed one by one. The
covariance then follows from a banded Cholesky factor of the field block ``A`` and the Schur
complement ``S = D - C^T A^-1 C`` of the few coupling parameters:
``Sigma_ff = A^-1 + A^-1 C S^-1 C^T A^-1``, ``Sigma_cc = S^-1``; only the band of ``A^-1`` is formed
(Takahashi's recurrence), ``O(p w^2)`` instead of ``O(p^3)``. Per-entry errors need only the
diagonal blocks (:meth:`~ising_moe.fit.params.ChainParametrization.expand_stderr`).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

from ._linalg_kernels import banded_cholesky, banded_inverse_band

__all__ = ["fisher_information", "parameter_covariance"]

_NOT_PD = "the Fisher information plus prior precision is not positive definite"


def _column(objective, theta, columns):
    """Central difference of the model moments when ``theta[columns]`` all move together."""
    step = 1e-5 * max(1.0, float(np.abs(theta[columns]).max()))
    plus, minus = theta.copy(), theta.copy()
    plus[columns] += step
    minus[columns] -= step
    return (objective.moment_response(plus) - objective.moment_response(minus)) / (2 * step)


def _band(objective, theta):
    """Band (in sites) of the field-field information, or ``None`` when colouring does not apply."""
    par = objective.par
    if par.fields != "position" or par.couplings.endswith("-bond"):
        return None
    n, k = par.n_sites, par.n_states - 1
    band = par.max_range
    for site in (n // 4, n // 2, (3 * n) // 4):
        resp = np.abs(_column(objective, theta, np.array([site * k]))[: n * k].reshape(n, k)).max(axis=1)
        if not (np.isfinite(resp[site]) and resp[site] > 0):
            # no information on this site's field (e.g. a position no training sequence reaches in
            # ragged data): it says nothing about the band
            continue
        big = np.flatnonzero(resp > 1e-9 * resp[site])
        band = max(band, int(np.abs(big - site).max()))
    band += 2
    return band if 2 * band + 1 < n else None


def _banded_fisher(objective, theta, band):
    """Lower band (u + 1, nf) of the field-field block (symmetrised) and the coupling columns (p, m)."""
    par = objective.par
    p, n, k, nf = theta.size, par.n_sites, par.n_states - 1, par.n_field_params
    u = (band + 1) * k - 1
    both = np.zeros((2 * u + 1, nf))  # both[u + off, c] = F[c + off, c]
    period = 2 * band + 1
    sites = np.arange(n)
    for color in range(period):
        owner = color + np.round((sites - color) / period).astype(int) * period
        near = (owner >= 0) & (owner < n) & (np.abs(sites - owner) <= band)
        rows = (sites[near, None] * k + np.arange(k)).ravel()
        for a in range(k):
            resp = _column(objective, theta, np.arange(color, n, period) * k + a)[:nf]
            cols = np.repeat(owner[near] * k + a, k)
            both[u + rows - cols, cols] = resp[rows]
    lower = np.zeros((u + 1, nf))
    for d in range(u + 1):
        lower[d, : nf - d] = 0.5 * (both[u + d, : nf - d] + both[u - d, d:])
    coupling_cols = np.stack([_column(objective, theta, np.array([c])) for c in range(nf, p)], axis=1) \
        if p > nf else np.zeros((p, 0))
    return lower, coupling_cols


def _dense_fisher(objective, theta):
    fisher = np.stack([_column(objective, theta, np.array([c])) for c in range(theta.size)], axis=1)
    return 0.5 * (fisher + fisher.T)


def fisher_information(objective, theta, dense: bool = False) -> np.ndarray:
    """Expected Fisher information of ``theta`` (p, p) (banded where it applies, see the module).

    ``dense=True`` computes every column separately (the reference).
    """
    band = None if dense else _band(objective, theta)
    if band is None:
        return _dense_fisher(objective, theta)
    lower, cols = _banded_fisher(objective, theta, band)
    nf = lower.shape[1]
    fisher = np.zeros((theta.size, theta.size))
    for d in range(lower.shape[0]):
        idx = np.arange(nf - d)
        fisher[idx + d, idx] = fisher[idx, idx + d] = lower[d, : nf - d]
    fisher[:, nf:] = cols
    fisher[nf:, :nf] = cols[:nf].T
    return fisher


def parameter_covariance(objective, theta, dense: bool = False):
    """Diagonal blocks ``(field_blocks, coupling_blocks)`` of ``Sigma = (F + prior precision)^-1``
    and ``""``, or ``None`` and the reason they are not available.

    Parameters
    ----------
    objective : _MLObjective
        Provides ``par``, ``l2``, ``smoothing`` and ``moment_response(theta)``.
    theta : ndarray of shape (p,)
    dense : bool
        Dense Fisher information and inverse (the reference; ``O(p^3)``).
    """
    par = objective.par
    p, n, k, nf = theta.size, par.n_sites, par.n_states - 1, par.n_field_params
    smooth = objective.smoothing if par.fields == "position" else 0.0
    band = None if dense else _band(objective, theta)
    if band is None:
        precision = _dense_fisher(objective, theta) + objective.l2 * np.eye(p)
        if smooth:
            lap = np.diff(np.eye(n), axis=0)
            precision[:nf, :nf] += smooth * np.kron(lap.T @ lap, np.eye(k))
        try:
            chol = np.linalg.cholesky(precision)
        except np.linalg.LinAlgError:
            return None, _NOT_PD
        inv_chol = scipy.linalg.solve_triangular(chol, np.eye(p), lower=True)
        return par.covariance_blocks(inv_chol.T @ inv_chol), ""
    ab, cols = _banded_fisher(objective, theta, band)
    ab[0] += objective.l2
    if smooth:  # smoothing / 2 sum |h_{i+1} - h_i|^2: a path Laplacian per field direction
        degree = np.full(n, 2.0)
        degree[[0, -1]] = 1.0
        ab[0] += smooth * np.repeat(degree, k)
        ab[k, : nf - k] -= smooth
    cb = np.zeros_like(ab)
    if not banded_cholesky(ab, cb):
        return None, _NOT_PD
    c = cols[:nf]
    y = np.zeros((nf, 0))
    s_inv = np.zeros((0, 0))
    if c.shape[1]:
        d = cols[nf:]
        d = 0.5 * (d + d.T) + objective.l2 * np.eye(d.shape[0])
        y, info = scipy.linalg.lapack.dpbtrs(cb, c, lower=1)
        if info != 0:
            return None, _NOT_PD
        try:
            s_inv = np.linalg.inv(d - c.T @ y)
        except np.linalg.LinAlgError:
            return None, _NOT_PD
    band_inv = np.zeros_like(cb)
    banded_inverse_band(cb, band_inv)
    a_idx, b_idx = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    rows = np.arange(par.n_field_groups)[:, None, None] * k + np.minimum(a_idx, b_idx)
    field_blocks = band_inv[np.abs(a_idx - b_idx)[None], rows]
    yg = y.reshape(par.n_field_groups, k, -1)
    field_blocks = field_blocks + np.einsum("gam,mn,gbn->gab", yg, s_inv, yg)
    kc = par._per_coupling if par.couplings != "none" else 0
    n_groups = s_inv.shape[0] // kc if kc else 0
    coupling_blocks = np.array([s_inv[g * kc:(g + 1) * kc, g * kc:(g + 1) * kc] for g in range(n_groups)])
    return (field_blocks, coupling_blocks.reshape(n_groups, kc, kc)), ""
