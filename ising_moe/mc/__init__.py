"""Monte Carlo simulation of Potts/Ising chains (Numba), and parameter sweeps."""

from .samplers import UPDATES, ChainState, MCResult, Sampler, simulate

__all__ = ["UPDATES", "Sampler", "ChainState", "MCResult", "simulate"]
