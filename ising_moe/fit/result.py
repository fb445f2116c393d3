"""The frozen result of a chain fit (:class:`ChainFitResult`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .._util import as_int
from ..chain import LongRangeChain, PottsChain, potts_to_ising
from ..errors import InvalidParameterError
from .params import ChainParametrization

log = logging.getLogger(__name__)


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
    fields_stderr, couplings_stderr : ndarray or None
    theta, theta_stderr : ndarray
        Parameters in the fitter's basis (see :class:`~ising_moe.fit.params.ChainParametrization`).
    sparse_cells : int
        (position, state) cells never observed.
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
    fields_stderr: np.ndarray | None = field(default=None, repr=False)
    couplings_stderr: np.ndarray | None = field(default=None, repr=False)
    theta: np.ndarray | None = field(default=None, repr=False)
    theta_stderr: np.ndarray | None = field(default=None, repr=False)
    sparse_cells: int = 0

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
