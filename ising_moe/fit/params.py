"""Linear, gauge-fixed parametrisations of chain models: ``theta -> (fields, couplings)``.

Fields are stored in the zero-sum gauge through an orthonormal basis ``B`` (q, q - 1) of the
zero-sum vectors, so ``||theta||`` is the Euclidean norm of the gauge-fixed parameters and an L2
penalty on ``theta`` is a Gaussian prior on them.

Variants
--------
fields
    ``"position"`` (one zero-sum vector per site), ``"homogeneous"``, ``"blocks:B"`` (one per block of
    consecutive positions, ``B`` equal blocks), ``"none"``.
couplings (``J_r`` for pairs at distance ``r = 1..max_range``)
    ``"potts"`` (``J_r (delta_ab - 1/q)``), ``"full"`` (a (q, q) matrix), ``"potts-bond"`` and
    ``"full-bond"`` (one per bond, ``max_range = 1`` only), ``"none"`` (independent sites).

Gauge: every coupling matrix is zero-sum in rows and columns (its row and column shifts are moved
into the fields): with position fields this is the zero-sum gauge of ``docs/conventions.md``.
With homogeneous or block fields it is a restriction that drops only directions acting at the
chain's ends (an open chain's end sites have one bond, so a row shift is not a field there);
those directions are barely determined by data and slow every optimiser. Without fields
(``"none"``) the full matrix keeps its row/column sums and only the constant is removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from .._util import as_int
from ..errors import InvalidParameterError

__all__ = ["ChainParametrization", "zero_sum_basis", "zero_sum_gauge", "FIELD_VARIANTS", "COUPLING_VARIANTS"]

FIELD_VARIANTS = ("position", "homogeneous", "blocks:B", "none")
COUPLING_VARIANTS = ("potts", "full", "potts-bond", "full-bond", "none")


def zero_sum_basis(q: int) -> np.ndarray:
    """Orthonormal basis of ``{v in R^q : sum v = 0}``, shape (q, q - 1)."""
    return scipy.linalg.null_space(np.ones((1, q)))


def _constant_free_basis(q: int) -> np.ndarray:
    """Orthonormal basis of (q, q) matrices orthogonal to the all-ones matrix, shape (q*q, q*q - 1)."""
    return scipy.linalg.null_space(np.ones((1, q * q)))


def zero_sum_gauge(fields: np.ndarray, couplings: np.ndarray):
    """Move row/column shifts of every coupling matrix into the fields, then centre the fields.

    Parameters
    ----------
    fields : ndarray of shape (n_sites, q)
    couplings : ndarray of shape (R, n_c, q, q)
        ``J_r`` for pairs ``(j, j + r)``, per left site ``j`` when ``n_c > 1``.

    Returns
    -------
    fields, couplings : the same distribution up to a constant, every coupling matrix zero-sum in
    rows and columns and every field zero-sum.
    """
    h = np.array(fields, dtype=float)
    j = np.array(couplings, dtype=float)
    n = h.shape[0]
    big_r, n_c = j.shape[:2]
    for r in range(1, big_r + 1):
        for left in range(n - r):
            c = j[r - 1, left if n_c > 1 else 0]
            row = c.mean(axis=1) - c.mean()
            col = c.mean(axis=0) - c.mean()
            h[left] += row
            h[left + r] += col
    j = j - j.mean(axis=3, keepdims=True) - j.mean(axis=2, keepdims=True) + j.mean(axis=(2, 3), keepdims=True)
    return h - h.mean(axis=1, keepdims=True), j


@dataclass(frozen=True)
class ChainParametrization:
    """``theta`` (flat) to ``fields`` (n_sites, q) and ``couplings`` (max_range, n_c, q, q), and back.

    Parameters
    ----------
    n_sites, n_states : int
    fields : str
        One of :data:`FIELD_VARIANTS` (``blocks:B`` with an integer ``B``).
    couplings : str
        One of :data:`COUPLING_VARIANTS`.
    max_range : int, default 1
    """

    n_sites: int
    n_states: int
    fields: str = "position"
    couplings: str = "potts"
    max_range: int = 1

    def __post_init__(self):
        as_int(self.n_sites, "n_sites", minimum=2)
        as_int(self.n_states, "n_states", minimum=2)
        as_int(self.max_range, "max_range", 1, self.n_sites - 1)
        if not (self.fields in ("position", "homogeneous", "none") or self.fields.startswith("blocks:")):
            raise InvalidParameterError(f"fields must be one of {FIELD_VARIANTS}, got {self.fields!r}")
        if self.fields.startswith("blocks:"):
            try:
                b = int(self.fields.split(":")[1])
            except ValueError:
                raise InvalidParameterError(f"fields 'blocks:B' needs an integer B, got {self.fields!r}") from None
            as_int(b, "number of field blocks", 1, self.n_sites)
        if self.couplings not in COUPLING_VARIANTS:
            raise InvalidParameterError(f"couplings must be one of {COUPLING_VARIANTS}, got {self.couplings!r}")
        if self.couplings.endswith("-bond") and self.max_range > 1:
            raise InvalidParameterError("per-bond couplings are nearest-neighbour only (max_range = 1)")
        if self.couplings == "none" and self.max_range > 1:
            raise InvalidParameterError("couplings='none' has no range")
        b = zero_sum_basis(self.n_states)
        object.__setattr__(self, "_b", b)
        object.__setattr__(self, "_p", np.eye(self.n_states) - 1.0 / self.n_states)
        object.__setattr__(self, "_c", None if self.zero_sum_couplings else _constant_free_basis(self.n_states))

    # ------------------------------------------------------------------ layout
    @property
    def zero_sum_couplings(self) -> bool:
        return self.fields != "none"

    @property
    def n_field_groups(self) -> int:
        if self.fields == "position":
            return self.n_sites
        if self.fields == "homogeneous":
            return 1
        if self.fields == "none":
            return 0
        return int(self.fields.split(":")[1])

    def field_group(self) -> np.ndarray:
        """Field group of every site, shape (n_sites,)."""
        if self.fields == "position":
            return np.arange(self.n_sites)
        if self.fields.startswith("blocks:"):
            return np.arange(self.n_sites) * self.n_field_groups // self.n_sites
        return np.zeros(self.n_sites, dtype=int)

    @property
    def n_coupling_groups(self) -> int:
        """Coupling matrices per distance: ``n_sites - 1`` (per bond) or 1."""
        return self.n_sites - 1 if self.couplings.endswith("-bond") else 1

    @property
    def _per_coupling(self) -> int:
        q = self.n_states
        if self.couplings.startswith("potts"):
            return 1
        if self.couplings.startswith("full"):
            return (q - 1) ** 2 if self.zero_sum_couplings else q * q - 1
        return 0

    @property
    def n_field_params(self) -> int:
        return self.n_field_groups * (self.n_states - 1)

    @property
    def n_params(self) -> int:
        n_couplings = 0 if self.couplings == "none" else self.max_range * self.n_coupling_groups
        return self.n_field_params + n_couplings * self._per_coupling

    @property
    def coupling_shape(self) -> tuple[int, int, int, int]:
        return (max(self.max_range, 1), self.n_coupling_groups, self.n_states, self.n_states)

    # ------------------------------------------------------------------ maps
    def expand(self, theta: np.ndarray):
        """``theta`` to ``fields`` (n_sites, q) and ``couplings`` (R, n_c, q, q)."""
        q = self.n_states
        theta = np.asarray(theta, dtype=float)
        nf = self.n_field_params
        if self.n_field_groups:
            per_group = theta[:nf].reshape(self.n_field_groups, q - 1) @ self._b.T
            fields = per_group[self.field_group()]
        else:
            fields = np.zeros((self.n_sites, q))
        rest = theta[nf:]
        couplings = np.zeros(self.coupling_shape)
        if self.couplings.startswith("potts"):
            couplings = rest.reshape(self.coupling_shape[:2])[..., None, None] * self._p
        elif self.couplings.startswith("full"):
            k = self._per_coupling
            blocks = rest.reshape(*self.coupling_shape[:2], k)
            if self.zero_sum_couplings:
                couplings = self._b @ blocks.reshape(*self.coupling_shape[:2], q - 1, q - 1) @ self._b.T
            else:
                couplings = (blocks @ self._c.T).reshape(self.coupling_shape)
        return np.ascontiguousarray(fields), np.ascontiguousarray(couplings)

    def adjoint(self, g_fields: np.ndarray, g_couplings: np.ndarray) -> np.ndarray:
        """Gradient with respect to ``theta`` from gradients with respect to fields and couplings."""
        q = self.n_states
        parts = []
        if self.n_field_groups:
            grouped = np.zeros((self.n_field_groups, q))
            np.add.at(grouped, self.field_group(), g_fields)
            parts.append((grouped @ self._b).ravel())
        if self.couplings.startswith("potts"):
            parts.append(np.einsum("rcab,ab->rc", g_couplings, self._p).ravel())
        elif self.couplings.startswith("full"):
            if self.zero_sum_couplings:
                parts.append((self._b.T @ g_couplings @ self._b).ravel())
            else:
                parts.append((g_couplings.reshape(*self.coupling_shape[:2], q * q) @ self._c).ravel())
        return np.concatenate(parts) if parts else np.zeros(0)

    def project(self, fields: np.ndarray, couplings: np.ndarray) -> np.ndarray:
        """Least-squares ``theta`` of given (gauge-fixed) fields and couplings (for initial guesses)."""
        q = self.n_states
        g_fields = np.asarray(fields, dtype=float)
        g_c = np.broadcast_to(couplings, self.coupling_shape) if self.couplings != "none" else None
        parts = []
        if self.n_field_groups:
            grouped = np.zeros((self.n_field_groups, q))
            np.add.at(grouped, self.field_group(), g_fields)
            counts = np.bincount(self.field_group(), minlength=self.n_field_groups)[:, None]
            parts.append(((grouped / counts) @ self._b).ravel())
        if self.couplings.startswith("potts"):
            parts.append(np.einsum("rcab,ab->rc", g_c, self._p).ravel() / (q - 1))
        elif self.couplings.startswith("full"):
            if self.zero_sum_couplings:
                parts.append((self._b.T @ g_c @ self._b).ravel())
            else:
                parts.append((g_c.reshape(*self.coupling_shape[:2], q * q) @ self._c).ravel())
        return np.concatenate(parts) if parts else np.zeros(0)

    def coupling_jacobian(self) -> np.ndarray:
        """``d vec(J_r) / d theta`` of one coupling group, shape (q * q, parameters per group)."""
        q = self.n_states
        if self.couplings.startswith("potts"):
            return self._p.reshape(q * q, 1)
        if self.couplings.startswith("full"):
            return np.kron(self._b, self._b) if self.zero_sum_couplings else self._c
        return np.zeros((q * q, 0))

    def covariance_blocks(self, covariance: np.ndarray):
        """The diagonal blocks of a ``theta`` covariance that per-entry errors need: field groups
        (G, q - 1, q - 1) and coupling groups (R * n_c, k, k)."""
        cov = np.asarray(covariance, dtype=float)
        if cov.shape != (self.n_params, self.n_params):
            raise InvalidParameterError(f"covariance must have shape {(self.n_params,) * 2}, got {cov.shape}")
        k = self.n_states - 1
        idx = np.arange(self.n_field_params).reshape(self.n_field_groups, k)
        fields = cov[idx[:, :, None], idx[:, None, :]]
        kc = self._per_coupling if self.couplings != "none" else 0
        n_groups = self.max_range * self.n_coupling_groups if kc else 0
        idx = self.n_field_params + np.arange(n_groups * kc).reshape(n_groups, kc)
        return fields, cov[idx[:, :, None], idx[:, None, :]]

    def expand_stderr(self, field_blocks: np.ndarray, coupling_blocks: np.ndarray):
        """Standard errors of the expanded fields and couplings from the covariance of ``theta``.

        Every expanded entry is linear in the parameters of one group only (a field group's
        ``q - 1`` parameters, or one coupling matrix's): ``h_i = B theta_g``, ``vec J = K theta_c``.
        Its variance is therefore the diagonal of ``A Sigma_gg A^T`` with ``Sigma_gg`` the group's
        diagonal block of the covariance (all covariances inside the block kept: dropping them
        makes per-state errors wrong entry by entry).

        Parameters
        ----------
        field_blocks : ndarray of shape (n_field_groups, q - 1, q - 1)
        coupling_blocks : ndarray of shape (R * n_c, k, k)
            As returned by :meth:`covariance_blocks`.

        Returns
        -------
        fields_stderr : ndarray of shape (n_sites, q)
        couplings_stderr : ndarray of shape (R, n_c, q, q)
        """
        q = self.n_states
        h_err = np.zeros((self.n_sites, q))
        if self.n_field_groups:
            var = np.einsum("ac,gcd,ad->ga", self._b, field_blocks, self._b)
            h_err = np.sqrt(np.clip(var, 0, None))[self.field_group()]
        j_err = np.zeros(self.coupling_shape)
        if self.couplings != "none" and self._per_coupling:
            jac = self.coupling_jacobian()
            var = np.einsum("ec,gcd,ed->ge", jac, coupling_blocks, jac)
            j_err = np.sqrt(np.clip(var, 0, None)).reshape(self.coupling_shape)
        return h_err, j_err
