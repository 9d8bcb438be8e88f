"""Executor of `RetrievalEvaluator`: reads the artifacts, evaluates, applies the gates, blesses.

The evaluation catalogue is the train items and the items of the examples' items split, where
they have one (`read_catalogue_items`): the items the exported models rank.

Writes `metrics.json` into the evaluation artifact: `evaluation.evaluate.evaluate`'s result plus
'candidate' (the model name gated and pushed), 'feedback' (the data's kind: for implicit
feedback no RMSE is computed, and the retrieval gates bless alone), 'window_spans' (the spans
the examples were read from, oldest first; None for data without spans: all of it), 'gates'
(thresholds, decisions with reasons, 'blessed'). The blessing artifact gets a BLESSED or
NOT_BLESSED file and the custom properties the Pusher and the latest-blessed-model resolver read
('blessed', 'current_model', 'current_model_id').
"""
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from absl import logging
import numpy as np
import pandas as pd
import tensorflow as tf
from tfx import types
from tfx.components.evaluator import constants as blessing_constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils
from tfx.utils import path_utils

from components import gates as gates_lib
from components import raw_example_gen
from contract import features
from evaluation import evaluate as evaluate_lib
from models import layout

EXAMPLES_KEY = 'examples'
MODEL_KEY = 'model'
MODEL_RUN_KEY = 'model_run'
EVALUATOR_BLESSING_KEY = 'evaluator_blessing'
EVALUATION_KEY = 'evaluation'
BLESSING_KEY = 'blessing'
GATES_KEY = 'gates'
LATENCY_REQUESTS_KEY = 'latency_requests'
FEEDBACK_KEY = 'feedback'

METRICS_FILE = 'metrics.json'
_READ_BATCH = 8192
_INTERACTION_SPEC = {
    features.USER_ID: tf.io.FixedLenFeature([], tf.string),
    features.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
    features.RATING: tf.io.FixedLenFeature([], tf.float32),
    features.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
    **{name: tf.io.FixedLenFeature([], tf.int64 if name in features.INT_FEATURES else tf.string,
                                   features.default_value(name))
       for name in features.USER_SIDE_FEATURES},
}
_ITEM_SPEC = {features.ITEM_ID: tf.io.FixedLenFeature([], tf.string)}


def read_split(split_uri: str, spec: Mapping[str, tf.io.FixedLenFeature] = _INTERACTION_SPEC
               ) -> Tuple[pd.DataFrame, List[bytes]]:
  """The features of `spec` (by default the interactions'), strings decoded, and the serialized
  tf.Examples of one ExampleGen split directory."""
  files = sorted(tf.io.gfile.glob(os.path.join(split_uri, '*')))
  if not files:
    raise FileNotFoundError(f'no example files in {split_uri}')
  compression = 'GZIP' if files[0].endswith('.gz') else ''
  # In batches: iterating a dataset record by record costs ~0.25 ms a record in eager mode.
  records, columns = [], {name: [] for name in spec}
  for batch in tf.data.TFRecordDataset(files, compression_type=compression).batch(_READ_BATCH):
    records.extend(batch.numpy())
    for name, values in tf.io.parse_example(batch, spec).items():
      columns[name].append(values.numpy())
  frame = pd.DataFrame({name: np.concatenate(values) if values else []
                        for name, values in columns.items()})
  for name, values in frame.items():
    if values.dtype == object:
      frame[name] = values.str.decode('utf-8')
  return frame, records


def read_examples(examples: types.Artifact) -> Tuple[pd.DataFrame, np.ndarray, List[bytes]]:
  """Every split's interactions (in split order), their split names, and the test examples."""
  frames, names, test_examples = [], [], []
  for split in features.SPLITS:
    frame, records = read_split(artifact_utils.get_split_uri([examples], split))
    frames.append(frame)
    names.append(np.full(len(frame), split, dtype=object))
    if split == features.TEST_SPLIT:
      test_examples = records
  return pd.concat(frames, ignore_index=True), np.concatenate(names), test_examples


def read_catalogue_items(examples: types.Artifact) -> Optional[List[str]]:
  """The item ids of the examples' items split (`features.ITEMS_SPLIT`: every item known at
  export time), the `catalogue_items` of `evaluation.evaluate.evaluate`; None when the artifact
  has no such split (examples written before it existed)."""
  if features.ITEMS_SPLIT not in artifact_utils.decode_split_names(examples.split_names):
    return None
  frame, _ = read_split(artifact_utils.get_split_uri([examples], features.ITEMS_SPLIT),
                        _ITEM_SPEC)
  return frame[features.ITEM_ID].tolist()


def model_dirs(model: types.Artifact, model_run: types.Artifact) -> Dict[str, str]:
  """The SavedModels to evaluate, in report order: the teacher, the Trainer run's other
  SavedModels when it wrote them (student_scratch, student_fp32), and the candidate."""
  dirs = {}
  for name, directory in layout.SAVED_MODEL_DIRS.items():
    path = os.path.join(model_run.uri, directory)
    if name == layout.TEACHER or tf.io.gfile.exists(path):
      dirs[name] = path
    else:
      logging.debug('No %s in the Trainer run: it is not evaluated', directory)
  dirs[layout.CANDIDATE] = path_utils.serving_model_path(
      model.uri, path_utils.is_old_model_artifact(model))
  return dirs


def write_blessing(blessing: types.Artifact, model: types.Artifact, blessed: bool) -> None:
  """Marks `blessing` the way the Evaluator does, for the Pusher and the model resolver."""
  file_name = (blessing_constants.BLESSED_FILE_NAME if blessed
               else blessing_constants.NOT_BLESSED_FILE_NAME)
  io_utils.write_string_file(os.path.join(blessing.uri, file_name), '')
  blessing.set_int_custom_property(
      blessing_constants.ARTIFACT_PROPERTY_BLESSED_KEY,
      blessing_constants.BLESSED_VALUE if blessed else blessing_constants.NOT_BLESSED_VALUE)
  blessing.set_string_custom_property(
      blessing_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
  blessing.set_int_custom_property(
      blessing_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)


class Executor(base_executor.BaseExecutor):
  """Evaluates every model, gates the candidate and writes metrics.json and the blessing."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    thresholds = gates_lib.RetrievalGates(**json.loads(exec_properties[GATES_KEY]))
    feedback = exec_properties.get(FEEDBACK_KEY) or features.EXPLICIT
    if feedback not in features.FEEDBACK_KINDS:
      raise ValueError(f'feedback {feedback!r}: expected one of {features.FEEDBACK_KINDS}')
    model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
    model_run = artifact_utils.get_single_instance(input_dict[MODEL_RUN_KEY])
    examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
    interactions, splits, test_examples = read_examples(examples)

    result = evaluate_lib.evaluate(
        interactions, splits, test_examples, model_dirs(model, model_run), layout.CANDIDATE,
        layout.TEACHER, int(exec_properties[LATENCY_REQUESTS_KEY]),
        catalogue_items=read_catalogue_items(examples),
        rating_metrics=feedback == features.EXPLICIT)
    decisions = gates_lib.decide(result['models'].get(layout.CANDIDATE),
                                 result['models'].get(layout.TEACHER),
                                 result['models'].get(evaluate_lib.POPULARITY), thresholds)
    if input_dict.get(EVALUATOR_BLESSING_KEY):
      upstream = artifact_utils.get_single_instance(input_dict[EVALUATOR_BLESSING_KEY])
      decisions.append(gates_lib.upstream_blessing_decision(
          upstream.get_int_custom_property(blessing_constants.ARTIFACT_PROPERTY_BLESSED_KEY)
          == blessing_constants.BLESSED_VALUE))
    blessed = gates_lib.all_passed(decisions)
    for decision in decisions:
      log = logging.info if decision.passed else logging.warning
      log('Gate %s %s: %s', decision.gate, 'passed' if decision.passed else 'FAILED',
          decision.reason)
    if blessed:
      logging.info('Retrieval gates: %s blessed', layout.CANDIDATE)
    else:
      logging.warning('Retrieval gates: %s NOT blessed, it will not be pushed', layout.CANDIDATE)

    result.update(candidate=layout.CANDIDATE, feedback=feedback,
                  window_spans=raw_example_gen.examples_window(examples), gates={
        'thresholds': json.loads(exec_properties[GATES_KEY]),
        'decisions': gates_lib.to_dicts(decisions),
        'blessed': blessed,
    })
    evaluation_artifact = artifact_utils.get_single_instance(output_dict[EVALUATION_KEY])
    io_utils.write_string_file(os.path.join(evaluation_artifact.uri, METRICS_FILE),
                               json.dumps(result, indent=1))
    write_blessing(artifact_utils.get_single_instance(output_dict[BLESSING_KEY]), model, blessed)
