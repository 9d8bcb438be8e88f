"""The pipeline's data stages for the benchmarks: run them, then read their outputs the way the
Trainer and the RetrievalEvaluator do, so that the benchmarks train and evaluate with the
pipeline's own code (`models.training`, `evaluation.evaluate`)."""
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from contract import features
from contract import versions
from models import hparams
from models import training
from pipeline import configs
from pipeline import pipeline

PIPELINE_ROOT = 'pipeline_root'
METADATA = 'metadata.sqlite'


def run_data_components(data_source: str, output_dir: str, pipeline_name: str,
                        beam_pipeline_args: Sequence[str], enable_cache: bool,
                        feedback: str = features.EXPLICIT) -> None:
  """Runs the pipeline's data components (`pipeline.data_components`, with the `configs`
  values) on `data_source`, of the kind of `feedback`, into `output_dir`; with `enable_cache`,
  unchanged inputs reuse the previous run's outputs."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from tfx.orchestration.beam import beam_dag_runner  # pylint: disable=g-import-not-at-top

  beam_dag_runner.BeamDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=os.path.join(output_dir, PIPELINE_ROOT),
      components=pipeline.data_components(
          data_source, configs.SCHEMA_FILE, configs.PREPROCESSING_FN, configs.RAW_DATA,
          configs.TRANSFORM, feedback),
      enable_cache=enable_cache,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          os.path.join(output_dir, METADATA)),
      beam_pipeline_args=list(beam_pipeline_args)))


def latest_output(output_dir: str, component: str, output: str) -> str:
  """The newest execution's directory of one component output (a cached run reuses it)."""
  root = os.path.join(output_dir, PIPELINE_ROOT)
  run = versions.latest_version_dir(os.path.join(root, component, output))
  if run is None:
    raise FileNotFoundError(f'no {component} {output} under {root}')
  return run


def _examples(uri: str, splits: List[str]):
  from tfx.types import artifact_utils  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  examples = standard_artifacts.Examples()
  examples.uri = uri
  examples.split_names = artifact_utils.encode_split_names(splits)
  return examples


def training_data(output_dir: str, transform: hparams.TransformHParams,
                  training_hparams: hparams.TrainingHParams,
                  with_eval: bool = True) -> training.TrainingData:
  """The Transform outputs of the data components' run in `output_dir`, read with the training
  API (`training.read_data`) as the Trainer reads them; without the eval split unless
  `with_eval`."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from tfx.components.trainer import fn_args_utils  # pylint: disable=g-import-not-at-top
  from tfx.components.util import tfxio_utils  # pylint: disable=g-import-not-at-top

  uri = latest_output(output_dir, 'Transform', 'transformed_examples')
  examples = _examples(uri, [features.TRAIN_SPLIT, features.EVAL_SPLIT, features.ITEMS_SPLIT])
  data_accessor = fn_args_utils.DataAccessor(
      tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
      record_batch_factory=None, data_view_decode_fn=None)
  files = lambda split: [os.path.join(uri, f'Split-{split}', '*')]
  return training.read_data(
      files(features.TRAIN_SPLIT), files(features.EVAL_SPLIT) if with_eval else [],
      files(features.ITEMS_SPLIT), data_accessor,
      tft.TFTransformOutput(latest_output(output_dir, 'Transform', 'transform_graph')),
      transform, training_hparams)


def raw_examples(output_dir: str):
  """The RawExampleGen output of the data components' run in `output_dir`, as an Examples
  artifact with the interaction splits, and the items split where it was written."""
  uri = latest_output(output_dir, 'RawExampleGen', 'examples')
  return _examples(uri, [split for split in features.EXAMPLE_SPLITS if split in features.SPLITS
                         or os.path.isdir(os.path.join(uri, f'Split-{split}'))])


def evaluation_inputs(
    output_dir: str) -> Tuple[pd.DataFrame, np.ndarray, List[bytes], Optional[List[str]]]:
  """Every split's interactions, their split names, the test examples and the catalogue items
  (None without an items split), from the RawExampleGen output of the data components' run in
  `output_dir` (what `evaluation.evaluate.evaluate` takes), read as the RetrievalEvaluator reads
  them."""
  from components.retrieval_evaluator import executor  # pylint: disable=g-import-not-at-top
  examples = raw_examples(output_dir)
  return (*executor.read_examples(examples), executor.read_catalogue_items(examples))

