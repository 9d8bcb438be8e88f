"""The TFX pipeline definition, shared by the local (Beam) and Kubeflow runners."""
import os
from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from models import export
from models import features
from models import hparams
from pipeline import configs


def trainer_config() -> dict:
  """Hyper-parameters handed to `run_fn` (and part of the Trainer's cache key)."""
  return {
      'transform': hparams.to_dict(configs.TRANSFORM),
      'teacher': hparams.to_dict(configs.TEACHER),
      'student': hparams.to_dict(configs.STUDENT),
      'training': hparams.to_dict(configs.TRAINING),
      'export': hparams.to_dict(configs.EXPORT),
  }


def eval_config(rmse_upper_bound: float) -> tfma.EvalConfig:
  """TFMA evaluation of the student's rating signature on the eval split."""
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name=export.SCORE_SIGNATURE,
                                  label_key=features.LABEL, prediction_key='rating')],
      slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(class_name='ExampleCount'),
          tfma.MetricConfig(class_name='MeanAbsoluteError'),
          tfma.MetricConfig(
              class_name='RootMeanSquaredError',
              threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
                  upper_bound={'value': rmse_upper_bound}))),
      ])])


def data_components(examples_dir: str) -> list:
  """ExampleGen → StatisticsGen → SchemaGen → ExampleValidator → Transform over prepared
  examples in `examples_dir`/{train,eval,test}/: the pipeline's data stages, in that order."""
  example_gen = tfx.components.ImportExampleGen(
      input_base=examples_dir,
      input_config=tfx.proto.Input(splits=[
          tfx.proto.Input.Split(name=split, pattern=f'{split}/*') for split in features.SPLITS]))
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema'])
  transform = tfx.components.Transform(
      examples=example_gen.outputs['examples'],
      schema=schema_gen.outputs['schema'],
      preprocessing_fn=configs.PREPROCESSING_FN,
      splits_config=tfx.proto.SplitsConfig(
          analyze=[features.TRAIN_SPLIT], transform=[features.TRAIN_SPLIT, features.EVAL_SPLIT]),
      custom_config=hparams.to_dict(configs.TRANSFORM))
  return [example_gen, statistics_gen, schema_gen, example_validator, transform]


def create_pipeline(pipeline_name: str, pipeline_root: str, examples_dir: str, serving_dir: str,
                    metadata_connection_config=None,
                    beam_pipeline_args: Optional[List[str]] = None,
                    rmse_upper_bound: float = configs.RMSE_UPPER_BOUND,
                    enable_cache: bool = True) -> tfx.dsl.Pipeline:
  """The data components (`data_components`) → Trainer → Evaluator → Pusher over prepared
  examples in `examples_dir`/{train,eval,test}/."""
  example_gen, statistics_gen, schema_gen, example_validator, transform = data_components(
      examples_dir)
  trainer = tfx.components.Trainer(
      run_fn=configs.RUN_FN,
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(splits=[features.TRAIN_SPLIT]),
      eval_args=tfx.proto.EvalArgs(splits=[features.EVAL_SPLIT]),
      custom_config=trainer_config())
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      eval_config=eval_config(rmse_upper_bound))
  pusher = tfx.components.Pusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=os.path.join(serving_dir, configs.MODEL_NAME))))

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=[example_gen, statistics_gen, schema_gen, example_validator, transform,
                  trainer, evaluator, pusher],
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args)
