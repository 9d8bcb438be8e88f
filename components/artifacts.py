"""Artifact types of the project's custom components."""
from tfx import types


class RetrievalEvaluation(types.Artifact):
  """metrics.json of the RetrievalEvaluator: every model's top-K metrics and the gate decisions."""
  TYPE_NAME = 'RetrievalEvaluation'


class RunReport(types.Artifact):
  """report.html and its PNG charts: the static report of one pipeline run."""
  TYPE_NAME = 'RunReport'
