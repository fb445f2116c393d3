"""Numba kernel of the banded selected inverse behind the fitters' standard errors (private)."""

from __future__ import annotations

from .._numba import njit


@njit
def banded_inverse_band(chol, out):
    """Band of ``A^-1`` from the lower banded Cholesky factor of a symmetric positive definite ``A``.

    Takahashi's recurrence: with ``A = L L^T``, ``L^T Z = L^-1`` gives, for ``j >= i`` and rows
    from the last up, ``Z_ij = (delta_ij / L_ii - sum_{k=i+1}^{i+u} L_ki Z_kj) / L_ii``; every ``Z_kj``
    it needs lies inside the band, so the band of ``Z = A^-1`` costs ``O(n u^2)`` (the full inverse
    ``O(n^3)``).

    Parameters
    ----------
    chol : ndarray of shape (u + 1, n)
        ``chol[d, j] = L[j + d, j]`` (LAPACK ``pbtrf`` lower storage).
    out : ndarray of shape (u + 1, n)
        Receives ``out[d, j] = Z[j + d, j]``.
    """
    u = chol.shape[0] - 1
    n = chol.shape[1]
    for i in range(n - 1, -1, -1):
        m = min(u, n - 1 - i)
        for jj in range(m, 0, -1):
            j = i + jj
            s = 0.0
            for kk in range(1, m + 1):
                k = i + kk
                z = out[k - j, j] if k >= j else out[j - k, k]
                s += chol[kk, i] * z
            out[jj, i] = -s / chol[0, i]
        s = 0.0
        for kk in range(1, m + 1):
            s += chol[kk, i] * out[kk, i]
        out[0, i] = (1.0 / chol[0, i] - s) / chol[0, i]


@njit
def banded_cholesky(ab, out):
    """Lower Cholesky factor of a symmetric positive definite band matrix, ``O(n u^2)``.

    (LAPACK's blocked ``pbtrf`` goes through threaded BLAS calls on tiny blocks: on a busy 2-core
    machine it took seconds for a problem this loop solves in tens of milliseconds.)

    Parameters
    ----------
    ab : ndarray of shape (u + 1, n)
        ``ab[d, j] = A[j + d, j]`` (LAPACK lower band storage).
    out : ndarray of shape (u + 1, n)
        Receives ``out[d, j] = L[j + d, j]`` (the same storage, usable by ``pbtrs``).

    Returns
    -------
    ok : bool
        False when ``A`` is not positive definite (``out`` is then incomplete).
    """
    u = ab.shape[0] - 1
    n = ab.shape[1]
    for j in range(n):
        s = ab[0, j]
        for k in range(max(0, j - u), j):
            s -= out[j - k, k] ** 2
        if not s > 0.0:
            return False
        ljj = s**0.5
        out[0, j] = ljj
        for i in range(j + 1, min(n, j + u + 1)):
            s = ab[i - j, j]
            for k in range(max(0, i - u), j):
                s -= out[i - k, k] * out[j - k, k]
            out[i - j, j] = s / ljj
    return True
