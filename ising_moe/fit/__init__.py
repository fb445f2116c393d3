"""Fitting Potts/Ising chains to expert sequences (scikit-learn conventions).

Estimators: :mod:`.max_likelihood` (exact maximum likelihood, independent sites) and
:mod:`.baselines` (pseudo-likelihood, mean field), sharing :mod:`._base`; the data they take
(:mod:`.data`), the likelihood they compute (:mod:`.likelihood`, kernels in :mod:`._kernels`), the
parametrisation and gauge (:mod:`.params`) and the result (:mod:`.result`). The pipeline behind
``isingmoe fit`` is separate: :mod:`.comparison` (one layer), :mod:`.indicators` (top-k per expert),
:mod:`.pipeline` (all layers) and :mod:`.files` (its HDF5 file).
"""

from .baselines import ChainMeanField, ChainPseudoLikelihood
from .data import ChainData
from .likelihood import chain_log_likelihood
from .max_likelihood import ChainMaxLikelihood, IndependentSites
from .params import ChainParametrization, zero_sum_gauge
from .result import ChainFitResult

__all__ = [
    "ChainData", "ChainFitResult", "ChainMaxLikelihood", "ChainPseudoLikelihood", "ChainMeanField",
    "IndependentSites", "chain_log_likelihood", "ChainParametrization", "zero_sum_gauge",
]
