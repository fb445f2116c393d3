"""The pipeline behind ``isingmoe fit``: every layer of an expert-sequence file, fitted and compared.

:mod:`.run` (all layers, executors, per-layer resume), :mod:`.layer` (one layer: variants, held-out
likelihood, C(r) and xi against the empirical ones, Monte Carlo check), :mod:`.indicators` (top-k
routing: one Ising chain per expert), :mod:`.drops` (the position effect of Switch capacity drops),
:mod:`.decomposition` (what routing depends on: the nested table token / position / neighbours / topic),
:mod:`.files` (the fit file).
"""

from .decomposition import ROWS as DECOMPOSITION_ROWS
from .decomposition import LayerDecomposition, decompose_layer
from .files import write_fit_report
from .layer import (
           DEFAULT_VARIANTS,
           MAIN_PRIORITY,
           VARIANTS,
           LayerComparison,
           compare_layer,
           variant_fitter,
)
from .run import FitReport, default_variants, fit_checkpoint, fit_expert_data

__all__ = ["fit_expert_data", "FitReport", "default_variants", "fit_checkpoint", "compare_layer", "LayerComparison",
           "variant_fitter", "VARIANTS", "DEFAULT_VARIANTS", "MAIN_PRIORITY", "write_fit_report", "decompose_layer",
           "LayerDecomposition", "DECOMPOSITION_ROWS"]
