"""The TFX pipeline definition, shared by the local (Beam) and Kubeflow runners.

Everything it is built from comes in as arguments (the runners pass `pipeline.configs` values).
"""
import json
from typing import List, Optional

import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from components import baseline_resolver
from components import gates as gates_lib
from components import pusher as pusher_lib
from components import data_gate
from components import raw_example_gen
from components import schema_import
from components import teacher_model as teacher_model_lib
from components import tfma_metrics
from components.retrieval_evaluator import component as retrieval_evaluator_lib
from components.run_report import component as run_report_lib
from contract import features
from contract import signatures
from models import hparams

BASELINE_RESOLVER_ID = 'latest_blessed_model_resolver'
WARM_START_RESOLVER_ID = 'warm_start_model_resolver'


def eval_config(thresholds: gates_lib.Gates) -> tfma.EvalConfig:
  """TFMA evaluation of the student's rating signature on the eval split: MAE, RMSE (bounded, and
  at most `rmse_max_increase` above the baseline's) and the AUC of "rating >= `liked_rating`"
  (bounded), all on the data's rating scale (the `thresholds`' values).

  The baseline is the latest blessed model; without one (the first run) TFX drops the baseline
  and its change threshold, and only the value thresholds decide."""
  # A generic SavedModel (the signatures of `models.export`): naming the type spares TFMA a trial
  # Keras load of every model to guess it.
  model_spec = dict(signature_name=signatures.SCORE, label_key=features.LABEL,
                    prediction_key=signatures.RATING, model_type=tfma.TF_GENERIC)
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(name='candidate', **model_spec),
                   tfma.ModelSpec(name='baseline', is_baseline=True, **model_spec)],
      slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(class_name='ExampleCount'),
          tfma.MetricConfig(class_name='MeanAbsoluteError'),
          tfma.MetricConfig(
              class_name='RootMeanSquaredError',
              threshold=tfma.MetricThreshold(
                  value_threshold=tfma.GenericValueThreshold(
                      upper_bound={'value': thresholds.rmse_upper_bound}),
                  change_threshold=tfma.GenericChangeThreshold(
                      direction=tfma.MetricDirection.LOWER_IS_BETTER,
                      absolute={'value': thresholds.rmse_max_increase}))),
          tfma.MetricConfig(
              class_name=tfma_metrics.LikedAUC.__name__, module=tfma_metrics.__name__,
              config=json.dumps({'liked_rating': thresholds.liked_rating}),
              threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
                  lower_bound={'value': thresholds.rating_auc_lower_bound}))),
      ])])


def baseline_model_resolver(candidate: tfx.dsl.Channel, kfp_v2: bool = False,
                            resolver_id: str = BASELINE_RESOLVER_ID) -> tfx.dsl.Resolver:
  """The latest model that passed every gate (the RetrievalEvaluator's blessing, not the
  Evaluator's own) before the `candidate` artifacts: the baseline of the Evaluator's change
  threshold (before the Trainer's model), or the model a run warm-starts from (before the run's
  examples, so that a re-run on the same examples resolves the same model and hits the cache).

  KFP v2 compiles only TFX's own LatestBlessedModelStrategy, into its own query: there the
  baseline is the latest model with any positive blessing, which can be the candidate itself."""
  if kfp_v2:
    return tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(resolver_id)
  return tfx.dsl.Resolver(
      strategy_class=baseline_resolver.LatestBlessedModelBeforeCandidateStrategy,
      candidate=candidate,
      # Every Model of the pipeline (a channel keyed apart from `candidate`, this run's model).
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(
          type=tfx.types.standard_artifacts.ModelBlessing,
          producer_component_id=retrieval_evaluator_lib.RetrievalEvaluator.__name__,
          output_key='blessing'),
  ).with_id(resolver_id)


def data_components(data_source: str, schema_file: str, preprocessing_fn: str,
                    data: hparams.DataHParams, transform: hparams.TransformHParams,
                    feedback: str = features.EXPLICIT) -> list:
  """RawExampleGen → StatisticsGen → ImportSchemaGen → ExampleValidator → DataGate → Transform
  from the raw data at `data_source`: the pipeline's data stages, in that order.

  RawExampleGen reads the source (for spans, the latest `data.span_window`), splits per user
  (`data`'s fractions) and keeps `transform.history_length` items of history and the item text
  of `transform.item_text_columns`; ExampleValidator checks the statistics against the curated
  schema in `schema_file` with the rating domain `data.rating_range` (none for implicit `feedback`:
  `components.schema_import`), and DataGate stops the run on any anomaly, or when the test
  split's ratings drifted from the train split's beyond `data.rating_drift_threshold`
  (Jensen-Shannon); for `feedback` explicit, also when the train split has a single rating value
  (the data is implicit: the rating gates could never pass), and for implicit feedback ratings
  are not checked for drift. Transform runs `preprocessing_fn` (a dotted path) with `transform`
  on the schema the gate passes on."""
  example_gen = raw_example_gen.RawExampleGen(
      data_source, history_length=transform.history_length, eval_fraction=data.eval_fraction,
      test_fraction=data.test_fraction, span_window=data.span_window,
      item_text_columns=transform.item_text_columns)
  schema_gen = schema_import.ImportSchemaGen(schema_file, data.rating_range, feedback)
  statistics_gen = tfx.components.StatisticsGen(
      examples=example_gen.outputs['examples'],
      # Top values and unique counts from sketches (Misra-Gries, KMV: exact below 16,384 distinct
      # values) instead of a count per distinct value: `history` is nearly unique per example,
      # and those counts grew with the data, held by the DirectRunner's driver.
      stats_options=tfdv.StatsOptions(use_sketch_based_topk_uniques=True),
      # The items split holds no interactions: the schema's checks are for interactions.
      exclude_splits=[features.ITEMS_SPLIT])
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema'])
  gate = data_gate.DataGate(anomalies=example_validator.outputs['anomalies'],
                            statistics=statistics_gen.outputs['statistics'],
                            schema=schema_gen.outputs['schema'],
                            rating_drift_threshold=data.rating_drift_threshold,
                            feedback=feedback)
  transform_component = tfx.components.Transform(
      examples=example_gen.outputs['examples'],
      schema=gate.outputs['validated_schema'],
      preprocessing_fn=preprocessing_fn,
      splits_config=tfx.proto.SplitsConfig(
          analyze=[features.TRAIN_SPLIT],
          transform=[features.TRAIN_SPLIT, features.EVAL_SPLIT, features.ITEMS_SPLIT]),
      custom_config=hparams.to_dict(transform),
      # StatisticsGen already describes the data; Transform's own pre- and post-transform
      # statistics (two more TFDV passes) would be read by nothing.
      disable_statistics=True)
  return [example_gen, statistics_gen, schema_gen, example_validator, gate, transform_component]


def _pusher(model: tfx.dsl.Channel, retrieval_evaluator: retrieval_evaluator_lib.RetrievalEvaluator,
            base_directory: str) -> pusher_lib.Pusher:
  """A Pusher of `model` into `base_directory` when the `retrieval_evaluator` blesses (TFX's,
  whose version directories appear complete, once: `components.pusher`)."""
  return pusher_lib.Pusher(
      model=model, model_blessing=retrieval_evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=base_directory)))


def create_pipeline(pipeline_name: str, pipeline_root: str, data_source: str,
                    schema_file: str, serving_model_dir: str, teacher_serving_model_dir: str,
                    preprocessing_fn: str, run_fn: str, data: hparams.DataHParams,
                    transform: hparams.TransformHParams, teacher: hparams.TowerHParams,
                    student: hparams.TowerHParams, training: hparams.TrainingHParams,
                    distillation: hparams.DistillationHParams,
                    export: hparams.ExportHParams, item_item: hparams.ItemItemHParams,
                    content_path: hparams.ContentPathHParams, gates: gates_lib.Gates, latency_requests: int,
                    feedback: str = features.EXPLICIT, train_student_scratch: bool = False,
                    distill_results: str = '',
                    metadata_connection_config=None,
                    beam_pipeline_args: Optional[List[str]] = None,
                    enable_cache: bool = True, kfp_v2: bool = False) -> tfx.dsl.Pipeline:
  """RawExampleGen → StatisticsGen → ImportSchemaGen → ExampleValidator → DataGate →
  Transform → Trainer → Evaluator → RetrievalEvaluator → Pusher → RunReport from the raw data at
  `data_source`.

  Args:
    pipeline_name: the pipeline's name (and the run report's title).
    pipeline_root: where components write their artifacts.
    data_source: the raw data (`components.raw_example_gen.RawExampleGen`'s `source`): a
      directory (CSV schema or MovieLens-100K files) or a .csv file, local or a URL, or a
      series of them named with a span spec (`.../span-{SPAN}`).
    schema_file: the curated schema the data is validated against (any anomaly stops the run
      before Transform).
    serving_model_dir: where the Pusher pushes the student, `<serving_model_dir>/<version>/`;
      the run report keeps the pushed versions' records beside them, in `history/`.
    teacher_serving_model_dir: where the teacher is pushed beside it.
    preprocessing_fn: the dotted path of Transform's `preprocessing_fn`.
    run_fn: the dotted path of the Trainer's `run_fn`.
    data: how the raw data is split and checked (`data_components`).
    transform: how Transform makes the features.
    teacher: the teacher's size.
    student: the student's size.
    training: how the teacher (and the student's ground-truth loss) is trained.
    distillation: how the student is distilled and fine-tuned with quantization.
    export: what the exported signatures return.
    item_item: how the hybrid teacher's item-to-item component is fitted.
    content_path: how the content path that embeds cold items is fitted.
    gates: the Evaluator's thresholds (`eval_config`) and the RetrievalEvaluator's.
    latency_requests: timed single-request calls of each SavedModel in the RetrievalEvaluator.
    feedback: the kind of feedback the data is, `features.EXPLICIT` (ratings) or
      `features.IMPLICIT` (runners resolve the 'auto' setting before: `loaders.resolve_feedback`).
      Implicit runs train retrieval only (the Trainer drops the rating head and the rating
      distillation term), and have no Evaluator: the RetrievalEvaluator's gates bless alone.
    train_student_scratch: also train the student without the teacher (a benchmark reference).
    distill_results: the path of a distillation benchmark's JSON rows (`benchmarks/distill.py`)
      that the run report draws as the frontier; '' for none. A file the RunReport cannot read
      is named in the report; it does not fail the run.
    metadata_connection_config: the ML Metadata store (None: the orchestrator's own).
    beam_pipeline_args: the Beam arguments of the Beam-based components.
    enable_cache: reuse the outputs of executions whose inputs are unchanged.
    kfp_v2: pick the baseline resolver that the KFP v2 compiler supports (see
      `baseline_model_resolver`).

  For data given as spans (`data_source` with `{SPAN}`), the Trainer starts from the latest
  model blessed on earlier data (`models.warm_start`; `training.warm_start_epochs` 0: cold).
  The Pusher pushes only what the RetrievalEvaluator blesses: its retrieval gates hold and, for
  explicit feedback, the Evaluator blessed the model's rating metrics.
  """
  if feedback not in features.FEEDBACK_KINDS:
    raise ValueError(f'feedback {feedback!r}: the pipeline takes one of {features.FEEDBACK_KINDS} '
                     "(a runner resolves 'auto' from the data: loaders.resolve_feedback)")
  explicit = feedback == features.EXPLICIT
  example_gen, statistics_gen, schema_gen, example_validator, gate, transform_component = (
      data_components(data_source, schema_file, preprocessing_fn, data, transform, feedback))
  # Data given as spans grows run after run: the Trainer starts from the models blessed on
  # earlier data (`models.warm_start`).
  warm_start = []
  if raw_example_gen.is_span_source(data_source) and training.warm_start_epochs > 0:
    warm_start = [baseline_model_resolver(example_gen.outputs['examples'], kfp_v2,
                                          WARM_START_RESOLVER_ID)]
  trainer = tfx.components.Trainer(
      run_fn=run_fn,
      examples=transform_component.outputs['transformed_examples'],
      transform_graph=transform_component.outputs['transform_graph'],
      schema=gate.outputs['validated_schema'],
      base_model=warm_start[0].outputs['model'] if warm_start else None,
      # `run_fn` reads the items split (the catalogue) as the second train split.
      train_args=tfx.proto.TrainArgs(splits=[features.TRAIN_SPLIT, features.ITEMS_SPLIT]),
      eval_args=tfx.proto.EvalArgs(splits=[features.EVAL_SPLIT]),
      custom_config=hparams.to_dict(hparams.TrainerHParams(feedback=feedback,
          transform=transform, teacher=teacher, student=student, training=training,
          distillation=distillation, export=export, item_item=item_item,
          content_path=content_path, train_student_scratch=train_student_scratch)))
  # The Evaluator gates the rating signature: without ratings there is nothing for it to check.
  rating_gates = []
  if explicit:
    baseline = baseline_model_resolver(trainer.outputs['model'], kfp_v2)
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs['examples'],
        model=trainer.outputs['model'],
        baseline_model=baseline.outputs['model'],
        eval_config=eval_config(gates))
    rating_gates = [baseline, evaluator]
  retrieval_evaluator = retrieval_evaluator_lib.RetrievalEvaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      model_run=trainer.outputs['model_run'],
      gates=gates.retrieval,
      latency_requests=latency_requests, feedback=feedback,
      evaluator_blessing=evaluator.outputs['blessing'] if explicit else None)
  pusher = _pusher(trainer.outputs['model'], retrieval_evaluator, serving_model_dir)
  # The teacher is pushed beside the student when the student is (TF Serving serves both).
  teacher_model = teacher_model_lib.TeacherModel(model_run=trainer.outputs['model_run'])
  teacher_pusher = _pusher(teacher_model.outputs['model'], retrieval_evaluator,
                           teacher_serving_model_dir).with_id('TeacherPusher')
  report = run_report_lib.RunReport(
      retrieval_evaluation=retrieval_evaluator.outputs['evaluation'],
      statistics=statistics_gen.outputs['statistics'],
      evaluation=evaluator.outputs['evaluation'] if explicit else None,
      model_run=trainer.outputs['model_run'],
      pushed_model=pusher.outputs['pushed_model'],
      title=f'{pipeline_name} run report',
      distill_results=distill_results, serving_model_dir=serving_model_dir)

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=[example_gen, statistics_gen, schema_gen, example_validator, gate,
                  transform_component, *warm_start, trainer, *rating_gates,
                  retrieval_evaluator, pusher, teacher_model, teacher_pusher, report],
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args)
