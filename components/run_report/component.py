"""The RunReport TFX component: a static HTML report of the run, written after the Pusher.

    report = RunReport(statistics=statistics_gen.outputs['statistics'],
                       retrieval_evaluation=retrieval_evaluator.outputs['evaluation'],
                       evaluation=evaluator.outputs['evaluation'],
                       model_run=trainer.outputs['model_run'],
                       pushed_model=pusher.outputs['pushed_model'],
                       serving_model_dir=serving_model_dir)

Its `report` artifact holds report.html and the PNG charts it shows. With `serving_model_dir`
(the Pusher's base directory), it also keeps a record of each version pushed there and shows
their history (`history`). With `distill_results` (the path of a `benchmarks/distill.py` JSON
file), the report also shows the distillation frontier; the file's content is fingerprinted
when the component is built, so a changed local file re-runs a cached report.
"""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import component_spec
from tfx.types import standard_artifacts

from components import artifacts
from components.run_report import executor


class RunReportSpec(component_spec.ComponentSpec):
  """Inputs, outputs and parameters of `RunReport`."""
  PARAMETERS = {
      executor.TITLE_KEY: component_spec.ExecutionParameter(type=str, optional=True),
      executor.DISTILL_RESULTS_KEY: component_spec.ExecutionParameter(type=str, optional=True),
      executor.DISTILL_RESULTS_FINGERPRINT_KEY: component_spec.ExecutionParameter(
          type=str, optional=True),
      executor.SERVING_MODEL_DIR_KEY: component_spec.ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
      executor.RETRIEVAL_EVALUATION_KEY: component_spec.ChannelParameter(
          type=artifacts.RetrievalEvaluation),
      executor.STATISTICS_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.ExampleStatistics, optional=True),
      executor.EVALUATION_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.ModelEvaluation, optional=True),
      executor.MODEL_RUN_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.ModelRun, optional=True),
      executor.PUSHED_MODEL_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.PushedModel, optional=True),
  }
  OUTPUTS = {
      executor.REPORT_KEY: component_spec.ChannelParameter(type=artifacts.RunReport),
  }


class RunReport(base_component.BaseComponent):
  """Writes report.html: data statistics, metrics, charts, gate decisions and the push."""
  SPEC_CLASS = RunReportSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, retrieval_evaluation: types.BaseChannel,
               statistics: Optional[types.BaseChannel] = None,
               evaluation: Optional[types.BaseChannel] = None,
               model_run: Optional[types.BaseChannel] = None,
               pushed_model: Optional[types.BaseChannel] = None,
               title: Optional[str] = None, distill_results: str = '',
               serving_model_dir: str = ''):
    """
    Args:
      retrieval_evaluation: the RetrievalEvaluator's evaluation (metrics and gate decisions).
      statistics: StatisticsGen's statistics of the raw examples.
      evaluation: the Evaluator's TFMA evaluation.
      model_run: the Trainer's run directory (training_summary.json).
      pushed_model: the Pusher's outcome.
      title: the page title.
      distill_results: the path of a distillation benchmark's JSON rows to draw as the
        frontier ('' for none). A file that cannot be read is named in the report with the
        reason; it does not fail the run.
      serving_model_dir: the Pusher's base directory: the report writes the record of the
        version this run pushed there (`history.write_record`) and shows every pushed version's
        ('' for none).
    """
    super().__init__(spec=RunReportSpec(
        retrieval_evaluation=retrieval_evaluation, statistics=statistics,
        evaluation=evaluation, model_run=model_run, pushed_model=pushed_model, title=title,
        distill_results=distill_results or None,
        distill_results_fingerprint=executor.results_fingerprint(distill_results) or None,
        serving_model_dir=serving_model_dir or None,
        report=types.Channel(type=artifacts.RunReport)))
