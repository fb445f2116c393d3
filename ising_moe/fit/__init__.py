"""Fitting Potts/Ising chains to expert sequences (scikit-learn conventions).

See :mod:`ising_moe.fit.fitters` for the estimators and :mod:`ising_moe.fit.compare` for the
comparison of fitted and empirical correlations behind ``isingmoe fit``.
"""

from .fitters import (
    ChainData,
    ChainFitResult,
    ChainMaxLikelihood,
    ChainMeanField,
    ChainPseudoLikelihood,
    IndependentSites,
    chain_log_likelihood,
)
from .params import ChainParametrization, zero_sum_gauge

__all__ = [
    "ChainData", "ChainFitResult", "ChainMaxLikelihood", "ChainPseudoLikelihood", "ChainMeanField",
    "IndependentSites", "chain_log_likelihood", "ChainParametrization", "zero_sum_gauge",
]
