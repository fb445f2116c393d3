"""The frozen result of a chain fit (:class:`ChainFitResult`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .._util import as_int
from ..chain import LongRangeChain, PottsChain, potts_to_ising
from ..errors import InvalidParameterError
from .params import ChainParametrization

log = logging.getLogger(__name__)


class StandardErrors:
    """Standard errors of a fit's parameters, computed on first access.

    The covariance of ``theta`` (the inverse of Fisher information plus prior precision) costs
    seconds for thousands of parameters, far more than the fit itself: it is computed only when
    ``theta``, ``fields`` or ``couplings`` is first read, then cached (the covariance itself is not
    kept). Pickling computes it first.

    Parameters
    ----------
    parametrization : ChainParametrization
    covariance : callable or None
        ``() -> ((field_blocks, coupling_blocks), "")`` (the diagonal blocks of the covariance of
        ``theta``, see :meth:`ChainParametrization.covariance_blocks`) or ``(None, reason)``.
    theta, fields, couplings : ndarray, optional
        Precomputed errors (e.g. from bootstrap refits); then ``covariance`` is not needed.
    message : str
        How the errors were (or why they were not) obtained.
    """

    def __init__(self, parametrization, covariance: Callable | None = None, *, theta=None, fields=None,
                 couplings=None, message: str = ""):
        self._par = parametrization
        self._compute = covariance
        self._values = None if theta is None else (theta, fields, couplings)
        self.message = message

    def _get(self):
        if self._values is None:
            blocks, reason = self._compute()
            self._compute = None
            if blocks is None:
                self._values = (None, None, None)
                self.message = reason
            else:
                diag = [np.diagonal(b, axis1=1, axis2=2).ravel() for b in blocks]
                theta = np.sqrt(np.clip(np.concatenate(diag), 0, None))
                self._values = (theta, *self._par.expand_stderr(*blocks))
        return self._values

    @property
    def theta(self) -> np.ndarray | None:
        return self._get()[0]

    @property
    def fields(self) -> np.ndarray | None:
        return self._get()[1]

    @property
    def couplings(self) -> np.ndarray | None:
        return self._get()[2]

    def __getstate__(self):
        self._get()
        return {"_par": self._par, "_compute": None, "_values": self._values, "message": self.message}


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
    theta : ndarray
        Parameters in the fitter's basis (see :class:`~ising_moe.fit.params.ChainParametrization`).
    sparse_cells : int
        (position, state) cells never observed.
    error : str
        Non-empty when the fitter raised instead of returning a fit (see :meth:`failed`): the
        parameters are then NaN and ``success`` is False.
    errors : StandardErrors or None
        Lazily computed standard errors, read through ``theta_stderr``, ``fields_stderr`` (n_sites,
        q) and ``couplings_stderr`` (like ``couplings``): ``None`` when not requested or not available
        (the reason is in ``errors.message``).
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
    theta: np.ndarray | None = field(default=None, repr=False)
    sparse_cells: int = 0
    errors: StandardErrors | None = field(default=None, repr=False)
    error: str = ""

    @classmethod
    def failed(cls, fitter, n_sites: int, n_states: int, n_tokens: int, exc: BaseException) -> ChainFitResult:
        """The record of a fitter that raised ``exc``: NaN parameters, ``success=False``, the reason."""
        params = fitter.get_params()
        par = ChainParametrization(n_sites, n_states, params.get("fields", "position"),
                                   params.get("couplings", "none"), params.get("max_range", 1))
        reason = f"{type(exc).__name__}: {exc}"
        nan = math.nan
        return cls(method=fitter._method, fields_variant=par.fields, couplings_variant=par.couplings,
                   max_range=par.max_range, success=False, message=f"failed: {reason}", n_iter=0,
                   log_likelihood=nan, n_tokens=n_tokens, n_parameters=par.n_params, aic=nan, bic=nan,
                   l2=float(params.get("l2", nan)), fields=np.full((n_sites, n_states), nan),
                   couplings=np.full(par.coupling_shape, nan), theta=np.full(par.n_params, nan), error=reason)

    @property
    def theta_stderr(self) -> np.ndarray | None:
        return None if self.errors is None else self.errors.theta

    @property
    def fields_stderr(self) -> np.ndarray | None:
        return None if self.errors is None else self.errors.fields

    @property
    def couplings_stderr(self) -> np.ndarray | None:
        return None if self.errors is None else self.errors.couplings

    @property
    def potts_coupling(self):
        """The Potts coupling ``J_r`` of ``-E = sum J_r delta(s_i, s_{i+r})``: a float for one
        homogeneous nearest-neighbour coupling, else an array of shape (R, n_c).

        The stored matrices are gauge-fixed (zero-sum): a Potts coupling ``J`` appears as
        ``J (delta_ab - 1/q)``, so ``couplings[0, 0, 0, 0] = J (1 - 1/q)``, not ``J``. For a
        full matrix this is its projection on the Potts direction, ``sum_ab J_ab P_ab / (q - 1)``
        with ``P = 1 - 1/q`` on the diagonal (the same-state preference averaged over states).
        ``nan`` for fits without couplings.
        """
        if self.couplings_variant == "none":
            return math.nan
        q = self.fields.shape[1]
        proj = np.eye(q) - 1.0 / q
        j = np.einsum("rcab,ab->rc", self.couplings, proj) / (q - 1)
        return float(j[0, 0]) if j.shape == (1, 1) else j

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
