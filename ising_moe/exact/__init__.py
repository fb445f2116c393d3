"""Exact solution of 1D Potts/Ising chains by transfer matrices (see :mod:`.solver`).

``solver`` holds :class:`ExactSolution` and the function API; ``_kernels`` the Numba forward/backward
recursions it runs on. :mod:`.product` is the exact forward-backward of chains whose site state is a
tuple of factors (a hidden topic and an expert, or a column of layers), with Kronecker transitions.
"""

from .solver import (
    MAX_LOG_RANGE,
    ExactSolution,
    correlation,
    correlation_function,
    correlation_length,
    decay_length,
    free_energy,
    indicator_correlation,
    joint_marginal,
    log_partition,
    marginals,
    pair_marginals,
    sample,
    solve,
    transfer_eigenvalues,
)

__all__ = [
    "ExactSolution", "solve", "log_partition", "free_energy", "marginals", "pair_marginals", "joint_marginal",
    "correlation", "indicator_correlation", "correlation_function", "correlation_length", "transfer_eigenvalues",
    "sample", "decay_length", "MAX_LOG_RANGE",
]
