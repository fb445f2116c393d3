"""Empirical spatial statistics of expert sequences, with uncertainties.

Input: top-k expert ids ``ids`` of shape (n_sequences, n_positions) or (n_sequences, n_positions,
top_k) with a boolean ``mask`` (``False`` = padding or an excluded token), or an
:class:`~ising_moe.data.ExpertSequences` for :func:`measure`.

Estimators (``docs/conventions.md``)
--------------------------------------
- Rates ``P(e at position i)`` are frequencies over the sequences valid at ``i`` (Wilson intervals).
- ``C_e(i, j) = P(x_i^e x_j^e) - P(x_i^e) P(x_j^e)`` with ``x^e = 1[e in top-k]``, from frequencies
  over sequences at fixed positions (position-dependent marginals: a rate that varies with
  position is not a correlation), times ``N / (N - 1)``, which makes it unbiased when no token is
  masked. ``C(i, j) = sum_e C_e(i, j)`` (for top-1: ``P(s_i = s_j) - sum_e P_i(e) P_j(e)``);
  ``C(r)`` averages ``C(i, i + r)`` over the positions ``i`` with at least two valid pairs.
- Errors of ``C(r)`` come from the influence function (linearised jackknife/bootstrap over
  sequences): ``C(r) - C_true(r) ~ (1 / N) sum_s phi_s(r)``, ``se = sqrt(sum_s phi_s^2 / (N (N - 1)))``
  (``N - 1`` degrees of freedom); bootstrap replicates reweight the same ``phi`` with multinomial
  counts over sequences, so fits can be bootstrapped without recomputing the correlations (each
  sequence's ``phi`` includes the constant part of its own pairs, so ragged lengths are not noise).
- Nulls: the same estimator after shuffling within each position (noise floor), within each
  sequence (sequence composition kept, order destroyed) and among the occurrences of each token
  id (token statistics kept, routing memory destroyed).
- Correlation length: the window above noise is a fixed-sequence test from ``r = 1`` (family-wise
  level 5%, ``t_{N-1}`` quantiles; none below 4 sequences); weighted least squares of
  ``C(r) = A exp(-r / xi)`` on it, a Hotelling-corrected goodness of fit, a split-window test of a
  single exponential, a flag when the window reaches the cap, and a summed estimator exact for a
  truncated exponential; ``xi`` is NaN with the reason unless the data support it
  (:mod:`.correlation_length`).
- ``xi`` vs block size ``b``: positions split into consecutive blocks ``[m b, (m + 1) b)``;
  ``C_b(r)`` averages ``C(i, i + r)`` over pairs inside one block (pooled over blocks), and ``xi(b)``
  is its correlation length on ``1 <= r < b``: the decay length of correlations between tokens at
  most ``b - 1`` apart. It equals the chain's ``xi`` once the window ends inside the block; growth
  with ``b`` means slower-than-exponential decay at larger separations.
"""

from ._input import as_routing
from .balance import LoadBalance, StaticRouting, load_balance, static_routing
from .correlation import CorrelationEstimate, correlation_function
from .correlation_length import (
    CorrelationLength,
    fit_correlation_length,
    fit_exponential,
    noise_window,
)
from .files import load_measurements, write_measurements
from .locality import LocalRoutingConsistency, local_routing_consistency
from .pipeline import LayerStatistics, Measurements, empirical_correlations, measure
from .probe import ProbeResult, expert_features, positional_probe
from .rates import PositionTest, RateEstimate, position_dependence, position_rates

__all__ = [
    "RateEstimate", "position_rates", "PositionTest", "position_dependence", "CorrelationEstimate",
    "correlation_function", "CorrelationLength", "fit_correlation_length", "fit_exponential", "LoadBalance",
    "load_balance",
    "StaticRouting", "static_routing", "LocalRoutingConsistency", "local_routing_consistency",
    "ProbeResult", "positional_probe", "expert_features", "LayerStatistics", "Measurements", "measure", "write_measurements",
    "load_measurements", "as_routing", "empirical_correlations", "noise_window",
]

