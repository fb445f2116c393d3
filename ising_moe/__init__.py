"""ising-moe: statistical physics of Mixture-of-Experts routing.

Light to import: numpy, scipy and numba only. torch/transformers are imported by
:mod:`ising_moe.extract` when it is used.
"""

from ._version import __version__
from .chain import (
    LongRangeChain,
    PottsChain,
    ising_to_potts,
    potts_to_ising,
    spins_to_states,
    states_to_spins,
)
from .errors import (
    DataFormatError,
    InvalidParameterError,
    IsingMoeError,
    ModelNotAvailableError,
    OutputExistsError,
    UnsupportedModelError,
)
from .exact import solve
from .power_law import PowerLawChain

__all__ = [
    "__version__",
    "PottsChain",
    "LongRangeChain",
    "PowerLawChain",
    "ising_to_potts",
    "potts_to_ising",
    "spins_to_states",
    "states_to_spins",
    "solve",
    "IsingMoeError",
    "InvalidParameterError",
    "DataFormatError",
    "ModelNotAvailableError",
    "OutputExistsError",
    "UnsupportedModelError",
]
