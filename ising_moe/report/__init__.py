"""Summaries (plain sentences, tables, JSON payloads) and figure sets (PNG + PDF) of the CLI commands.

:mod:`.measure` reports ``isingmoe measure`` (and the comparison of two files); :mod:`.fit` reports
``isingmoe fit``.
"""

from .fit import fit_figures, fit_summary
from .measure import (
    comparison_figures,
    comparison_summary,
    fmt_pm,
    measurement_figures,
    measurement_summary,
    null_fractions,
)

__all__ = ["measurement_summary", "measurement_figures", "comparison_summary", "comparison_figures", "null_fractions",
           "fit_summary", "fit_figures", "fmt_pm"]
