"""The ``isingmoe`` command line: parses options, calls the library, writes, prints a summary.

User errors (bad options, malformed files, missing weights) exit with status 2 and a one-line
message, never a traceback.

Commands live by subject: ``chains`` (exact, simulate, sweep) and ``routing`` (extract, measure, fit),
``traces`` (import, export), ``train`` (train, card);
``_main`` holds the group, its error handling and the shared parsing helpers.
"""

from . import chains, routing, traces, train  # noqa: F401  (registers the commands)
from ._main import main

__all__ = ["main"]
