"""Routing as a layer x position lattice: cross-layer couplings, fitted exactly, by
pseudo-likelihood or by Monte Carlo learning (see :mod:`.params` for the model)."""

from .exact import MAX_COLUMN_STATES, ExactLattice, column_digits
from .model import LATTICE_METHODS, ConditionalLattice, LatticeFitResult
from .params import LATTICE_COUPLINGS, LatticeData, LatticeLayout
from .pseudo_likelihood import PseudoLikelihood

__all__ = ["ConditionalLattice", "LatticeFitResult", "LatticeLayout", "LatticeData", "ExactLattice",
           "PseudoLikelihood", "column_digits", "LATTICE_METHODS", "LATTICE_COUPLINGS", "MAX_COLUMN_STATES"]
