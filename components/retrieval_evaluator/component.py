"""The RetrievalEvaluator TFX component: top-K evaluation of the teacher and the student, and
the blessing that the Pusher obeys.

    retrieval_evaluator = RetrievalEvaluator(
        examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
        model_run=trainer.outputs['model_run'],
        gates=configs.GATES.retrieval,
        latency_requests=configs.LATENCY_REQUESTS, evaluator_blessing=evaluator.outputs['blessing'])
    pusher = Pusher(model=..., model_blessing=retrieval_evaluator.outputs['blessing'], ...)

The blessing is positive only when every retrieval gate holds and the Evaluator (TFMA) blessed
the model, so a Pusher fed with it pushes only when both agree.
"""
import dataclasses
import json
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import component_spec
from tfx.types import standard_artifacts

from components import artifacts
from components import gates as gates_lib
from components.retrieval_evaluator import executor
from contract import features


class RetrievalEvaluatorSpec(component_spec.ComponentSpec):
  """Inputs, outputs and parameters of `RetrievalEvaluator`."""
  PARAMETERS = {
      executor.GATES_KEY: component_spec.ExecutionParameter(type=str),
      executor.LATENCY_REQUESTS_KEY: component_spec.ExecutionParameter(type=int),
      executor.FEEDBACK_KEY: component_spec.ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
      executor.EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
      executor.MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
      executor.MODEL_RUN_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelRun),
      executor.EVALUATOR_BLESSING_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.ModelBlessing, optional=True),
  }
  OUTPUTS = {
      executor.EVALUATION_KEY: component_spec.ChannelParameter(type=artifacts.RetrievalEvaluation),
      executor.BLESSING_KEY: component_spec.ChannelParameter(
          type=standard_artifacts.ModelBlessing),
  }


class RetrievalEvaluator(base_component.BaseComponent):
  """Evaluates the Trainer's models on the test split and blesses the candidate through gates."""
  SPEC_CLASS = RetrievalEvaluatorSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
               model_run: types.BaseChannel, gates: gates_lib.RetrievalGates,
               latency_requests: int, evaluator_blessing: Optional[types.BaseChannel] = None,
               feedback: str = features.EXPLICIT):
    """
    Args:
      examples: RawExampleGen's raw examples with splits train, eval and test.
      model: the Trainer's model (the pushed candidate, the quantized student).
      model_run: the Trainer's run directory (teacher/; student_scratch/ and student_fp32/
        when present).
      gates: the retrieval gates' thresholds.
      latency_requests: timed single-request calls per exported model.
      evaluator_blessing: the TFMA Evaluator's blessing; when given, it must be positive too.
      feedback: the data's kind (`features.EXPLICIT` or `features.IMPLICIT`); implicit runs
        compute no RMSE and have no Evaluator blessing to wait for.
    """
    spec = RetrievalEvaluatorSpec(
        examples=examples, model=model, model_run=model_run,
        evaluator_blessing=evaluator_blessing,
        gates=json.dumps(dataclasses.asdict(gates), sort_keys=True),
        latency_requests=latency_requests, feedback=feedback,
        evaluation=types.Channel(type=artifacts.RetrievalEvaluation),
        blessing=types.Channel(type=standard_artifacts.ModelBlessing))
    super().__init__(spec=spec)
