"""Evaluation harness: how well does a metric agree with human ratings?

* :mod:`.agreement`: inconsistency (K-CROSS Algorithm 4: ``rank``, ``regression``, ``legacy``),
  SROCC, PLCC (logistic), KROCC, bootstrap CIs, 2AFC accuracy.
* :mod:`.readers`: reader-study helpers (trimmed reader mean, correlation with the mean of the
  readers, leave-one-out inter-reader variability).
* :mod:`.nirps`: readers for the NIRPS radiologist scores (published CSV, the prototype's
  per-item folder tree, the pre-fill list).
* :mod:`.rated`: score rated image sets and 2AFC pair sets with registered metrics.
* :mod:`.tables`: :class:`ScoreTable`, agreement tables, markdown/CSV output, atomic writes.

The ``kcross-eval`` command (``kcross_metric.cli.eval``) wraps all of it; see
``docs/evaluation.md``. Importing this package loads numpy only (scipy and torch on first use).
"""

from __future__ import annotations

from .agreement import (
    CI,
    INCONSISTENCY_MODES,
    MetricAgreement,
    PLCCResult,
    assigned_levels,
    bootstrap_ci,
    chance_inconsistency,
    evaluate_metric,
    inconsistency,
    krocc,
    plcc,
    srocc,
    two_afc_accuracy,
    two_afc_per_pair,
)
from .nirps import attach_prefill, load_nirps_prefill, load_nirps_scores, load_nirps_tree
from .readers import (
    correlation_with_reader_mean,
    inter_reader_variability,
    leave_one_out_correlations,
    trimmed_reader_mean,
)
from .tables import AgreementRow, ScoreTable, agreement_table

__all__ = [
    "CI",
    "INCONSISTENCY_MODES",
    "MetricAgreement",
    "PLCCResult",
    "AgreementRow",
    "ScoreTable",
    "agreement_table",
    "assigned_levels",
    "attach_prefill",
    "bootstrap_ci",
    "chance_inconsistency",
    "correlation_with_reader_mean",
    "evaluate_metric",
    "inconsistency",
    "inter_reader_variability",
    "krocc",
    "leave_one_out_correlations",
    "load_nirps_prefill",
    "load_nirps_scores",
    "load_nirps_tree",
    "plcc",
    "srocc",
    "trimmed_reader_mean",
    "two_afc_accuracy",
    "two_afc_per_pair",
]
