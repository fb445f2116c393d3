"""Small validation and randomness helpers shared by every module (no heavy imports)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .errors import InvalidParameterError

RngLike = int | np.random.Generator | np.random.SeedSequence | None


def as_generator(rng: RngLike) -> np.random.Generator:
    """Normalise an ``rng`` argument (``int``, ``None``, ``SeedSequence`` or ``Generator``).

    Never touches the global NumPy or Python random state.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(rng, numbers.Integral) and int(rng) < 0:
            raise InvalidParameterError(f"rng seed must be >= 0, got {rng}")
        return np.random.default_rng(rng)
    raise InvalidParameterError(
        f"rng must be an int seed, None or a numpy.random.Generator, got {type(rng).__name__}"
    )


def as_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """Validate an integer parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InvalidParameterError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidParameterError(f"{name} must be <= {maximum}, got {value}")
    return value


def as_float(value: Any, name: str, minimum: float | None = None, finite: bool = True) -> float:
    """Validate a real scalar parameter."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a real number, got {value!r}") from None
    if finite and not np.isfinite(out):
        raise InvalidParameterError(f"{name} must be finite, got {value!r}")
    if minimum is not None and out < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {out}")
    return out


def as_float_array(value: Any, name: str, ndims: tuple[int, ...] | None = None) -> np.ndarray:
    """Convert to a finite float64 array with one of the allowed numbers of dimensions."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a real array, got {type(value).__name__}") from None
    if ndims is not None and arr.ndim not in ndims:
        raise InvalidParameterError(
            f"{name} must have {' or '.join(map(str, ndims))} dimensions, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidParameterError(f"{name} must be finite (no NaN or inf)")
    return arr


def frozen(arr: np.ndarray) -> np.ndarray:
    """Return a read-only copy, so frozen model objects stay frozen."""
    arr = np.array(arr, copy=True)
    arr.setflags(write=False)
    return arr


def as_samples(samples: Any, n_states: int | None = None, n_sites: int | None = None,
               name: str = "samples") -> np.ndarray:
    """Validate integer state sequences of shape ``(n_samples, n_sites)``; return int32."""
    arr = np.asarray(samples)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidParameterError(f"{name} must have shape (n_samples, n_sites), got {arr.shape}")
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
            pass
        else:
            raise InvalidParameterError(f"{name} must hold integer states, got dtype {arr.dtype}")
    if n_sites is not None and arr.shape[1] != n_sites:
        raise InvalidParameterError(f"{name} has {arr.shape[1]} sites, the model has {n_sites}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or (n_states is not None and hi >= n_states):
            raise InvalidParameterError(
                f"{name} must hold states in 0..{'n_states-1' if n_states is None else n_states - 1}, "
                f"found values in [{lo}, {hi}]"
                + (" (Ising spins ±1? convert with ising_moe.spins_to_states)" if lo == -1 else "")
            )
    return np.ascontiguousarray(arr, dtype=np.int32)


def as_mask(mask: Any, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    """Validate a boolean mask of a given shape (``None`` means all valid)."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    arr = np.asarray(mask)
    if arr.shape != shape:
        raise InvalidParameterError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise InvalidParameterError(f"{name} must be boolean (True = valid position)")
        arr = arr.astype(bool)
    return np.ascontiguousarray(arr)
