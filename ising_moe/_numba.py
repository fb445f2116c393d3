"""One configured ``njit`` for the whole package (on-disk cache, GIL released)."""

from __future__ import annotations

import functools

import numba

njit = functools.partial(numba.njit, cache=True, nogil=True)
