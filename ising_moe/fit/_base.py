"""Shared hyperparameters and data handling of the chain fitters."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np

from ..errors import ConvergenceWarning, InvalidParameterError
from .data import ChainData
from .likelihood import chain_log_likelihood
from .params import ChainParametrization
from .result import ChainFitResult

log = logging.getLogger(__name__)


class _ChainFitter:
    """Shared hyperparameters and data handling."""

    _method = ""

    def __init__(self, fields: str = "position", couplings: str = "potts", max_range: int = 1, l2: float = 0.1,
                 field_smoothing: float = 0.0, max_iter: int = 2000, tol: float = 1e-7,
                 standard_errors: bool = True):
        self.fields = fields
        self.couplings = couplings
        self.max_range = max_range
        self.l2 = l2
        self.field_smoothing = field_smoothing
        self.max_iter = max_iter
        self.tol = tol
        self.standard_errors = standard_errors

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("fields", "couplings", "max_range", "l2", "field_smoothing",
                                              "max_iter", "tol", "standard_errors")}

    def _prepare(self, X, mask, lengths, n_states, spins):
        data = X if isinstance(X, ChainData) else ChainData.from_arrays(X, mask, lengths, n_states, spins)
        if self.l2 < 0 or self.field_smoothing < 0:
            raise InvalidParameterError("l2 and field_smoothing must be >= 0")
        par = ChainParametrization(data.n_sites, data.n_states, self.fields, self.couplings, self.max_range)
        return data, par

    def _finish(self, data, par, theta, *, success, message, n_iter, errors=None):
        h, j = par.expand(theta)
        ll = float(chain_log_likelihood(data, h, j).sum())
        k = par.n_params
        rates = np.zeros((data.n_sites, data.n_states))
        pos = np.broadcast_to(np.arange(data.n_sites), data.states.shape)
        np.add.at(rates, (pos[data.observed], data.states[data.observed]), 1.0)
        sparse = int((rates == 0).sum()) if par.fields == "position" else 0
        self.result_ = ChainFitResult(
            method=self._method, fields_variant=par.fields, couplings_variant=par.couplings,
            max_range=par.max_range, success=bool(success), message=message, n_iter=int(n_iter),
            log_likelihood=ll, n_tokens=data.n_tokens, n_parameters=k, aic=2 * k - 2 * ll,
            bic=k * math.log(data.n_tokens) - 2 * ll, l2=float(self.l2), fields=h, couplings=j,
            theta=theta, sparse_cells=sparse, errors=errors)
        self.fields_, self.couplings_ = h, j
        self.potts_coupling_ = self.result_.potts_coupling
        self.n_states_, self.n_sites_ = data.n_states, data.n_sites
        self.parametrization_ = par
        self.model_ = self.result_.model()
        if not success:
            warnings.warn(f"{type(self).__name__} did not converge: {message}", ConvergenceWarning, stacklevel=3)
        return self

    def _check_fitted(self):
        if not hasattr(self, "result_"):
            raise InvalidParameterError(f"this {type(self).__name__} is not fitted yet: call fit(X) first")

    def log_likelihood(self, X, mask=None, lengths=None, spins: bool = False) -> np.ndarray:
        """Exact log-likelihood of every sequence under the fitted parameters (hidden sites summed)."""
        self._check_fitted()
        data = ChainData.from_arrays(X, mask, lengths, self.n_states_, spins)
        if data.n_sites > self.n_sites_:
            raise InvalidParameterError(f"sequences of {data.n_sites} positions, the fit has {self.n_sites_}")
        h = self.fields_[: data.n_sites]
        j = self.couplings_ if self.couplings_.shape[1] == 1 else self.couplings_[:, : data.n_sites - 1]
        return chain_log_likelihood(data, h, j)

    def score(self, X, mask=None, lengths=None, spins: bool = False) -> float:
        """Mean log-likelihood per observed token (held-out data: the test score)."""
        self._check_fitted()
        data = ChainData.from_arrays(X, mask, lengths, self.n_states_, spins)
        return float(self.log_likelihood(X, mask, lengths, spins).sum() / data.n_tokens)
