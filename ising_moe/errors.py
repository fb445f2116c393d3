"""Named exceptions and warnings of ising-moe.

Every exception raised at a boundary (public constructors, file readers, the CLI) is one of these,
and its message says how to fix the problem. The CLI turns any :class:`IsingMoeError` into a
one-line message and exit status 2.
"""

from __future__ import annotations


class IsingMoeError(Exception):
    """Base class of every error that ising-moe raises on purpose."""


class InvalidParameterError(IsingMoeError, ValueError):
    """A parameter has the wrong shape, type or value."""


class DataFormatError(IsingMoeError, ValueError):
    """A file or array is malformed, unfinished or of an unsupported schema."""


class OutputExistsError(IsingMoeError, FileExistsError):
    """An output file exists and ``overwrite`` was not requested."""


class OutputLockedError(IsingMoeError):
    """Another live process is writing the same output."""


class OutputNotWritableError(IsingMoeError, PermissionError):
    """The output directory cannot be created or written."""


class DiskFullError(IsingMoeError, OSError):
    """The device of an output is full (or over quota); the partial outputs were removed."""


class NonFiniteError(IsingMoeError, FloatingPointError):
    """A loss, a weight or a router logit is NaN or infinite (training stopped, extraction refused)."""


class ExecutorUnavailableError(IsingMoeError):
    """An executor (e.g. a Dask scheduler address) cannot be reached or created."""


class ModelNotAvailableError(IsingMoeError):
    """Model weights (or a tokenizer) cannot be found locally and cannot be downloaded."""


class UnsupportedModelError(IsingMoeError, ValueError):
    """A checkpoint's architecture is not one whose router ising-moe knows how to read."""


class MissingDependencyError(IsingMoeError, ImportError):
    """An optional dependency (an ``extra``) is needed for this feature but is not installed."""


class IsingMoeWarning(UserWarning):
    """Base class of ising-moe's warnings."""


class ConvergenceWarning(IsingMoeWarning):
    """An optimiser or estimator did not converge; the result says so in ``success``/``message``."""


class SparseDataWarning(IsingMoeWarning):
    """The data has empty cells (e.g. an expert never chosen at a position): the fit leans on its prior."""


class NumericalPrecisionWarning(IsingMoeWarning):
    """A result is limited by floating-point precision (e.g. a nearly degenerate spectrum)."""



def require(module: str, extra: str, feature: str):
    """Import an optional dependency or raise :class:`MissingDependencyError` saying how to get it.

    Parameters
    ----------
    module : str
        Importable module name, e.g. ``"sklearn"``.
    extra : str
        The ``pip`` extra of ising-moe that installs it, e.g. ``"probe"``.
    feature : str
        What the user was trying to do, for the message.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the optional dependency {module!r}: install it with "
            f"`pip install 'ising-moe[{extra}]'`"
        ) from exc
