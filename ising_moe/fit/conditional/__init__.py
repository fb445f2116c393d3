"""Token-conditional chains (linear-chain CRF) and sequence-level mixtures: what routing depends on.

:mod:`.model` (``ConditionalChain``: position fields + token fields + couplings), :mod:`.mixture`
(``ChainMixture``: a latent "topic" per sequence), :mod:`.topic_chain` (``TopicChain``: a hidden topic
that moves along the sequence), their parametrisation and gauge (:mod:`.params`),
exact objective (:mod:`.objective`, kernels in :mod:`._kernels`, :mod:`._message_kernels`), exact
sampler (:mod:`.sampling`) and the model-implied C(r) with goodness of fit (:mod:`.goodness`).
"""

from .goodness import GoodnessOfFit, goodness_of_fit, model_correlation_function
from .mixture import (
           ChainMixture,
           ComponentSummary,
           NComponentsSelection,
           select_n_components,
)
from .model import ConditionalChain, ConditionalFitResult
from .sampling import sample_chains
from .topic_chain import TopicChain, TopicStatistics

__all__ = ["ConditionalChain", "ConditionalFitResult", "ChainMixture", "ComponentSummary", "NComponentsSelection",
           "select_n_components", "GoodnessOfFit", "goodness_of_fit", "model_correlation_function", "sample_chains",
           "TopicChain", "TopicStatistics"]
