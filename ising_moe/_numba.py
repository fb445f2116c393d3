"""One configured ``njit`` for the whole package (on-disk cache, GIL released).

Threading layer: unless ``NUMBA_THREADING_LAYER`` is set, ising-moe selects numba's ``workqueue``
layer. The fitters alternate short parallel kernels with serial NumPy work; with the OpenMP layer's
spin-waiting threads this made one in four kernel calls 4-5x slower on 2-core machines (measured,
see the closing notes). Every parallel kernel splits its work in fixed chunks, so results do not
depend on the layer or the number of threads.
"""

from __future__ import annotations

import functools
import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

njit = functools.partial(numba.njit, cache=True, nogil=True)
