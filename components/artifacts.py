"""Artifact types of the project's custom components.

Type names are `namespace.Name`, the form KFP v2 requires of custom artifact types.
"""
from tfx import types


class RetrievalEvaluation(types.Artifact):
  """metrics.json of the RetrievalEvaluator: every model's top-K metrics and the gate decisions."""
  TYPE_NAME = 'recsys_distill.RetrievalEvaluation'


class RunReport(types.Artifact):
  """report.html and its PNG charts: the static report of one pipeline run."""
  TYPE_NAME = 'recsys_distill.RunReport'
