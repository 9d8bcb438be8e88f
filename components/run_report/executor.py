"""Executor of `RunReport`: gathers a run's outputs and writes report.html with its charts.

Reads the StatisticsGen statistics (examples, distinct users and items, mean rating per split),
the RetrievalEvaluator's metrics.json, the Evaluator's TFMA metrics and validation result, the
Trainer's training_summary.json (loss curves) and the Pusher's outcome; with `distill_results`,
also a distillation benchmark's JSON rows (`benchmarks/distill.py`), drawn as the frontier
chart. A results file that cannot be read does not fail the run: the report says why. With
`serving_model_dir` (the Pusher's base directory), it writes the record of the version the run
pushed there and shows every pushed version's (`history`).
"""
import hashlib
import json
import os
from typing import Any, Dict, List, Mapping, Optional

from absl import logging
from google.protobuf import json_format
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.retrieval_evaluator import executor as retrieval_executor
from components.run_report import charts
from components.run_report import history as history_lib
from components.run_report import page
from contract import features
from models import layout

STATISTICS_KEY = 'statistics'
RETRIEVAL_EVALUATION_KEY = 'retrieval_evaluation'
EVALUATION_KEY = 'evaluation'
MODEL_RUN_KEY = 'model_run'
PUSHED_MODEL_KEY = 'pushed_model'
REPORT_KEY = 'report'
TITLE_KEY = 'title'
DISTILL_RESULTS_KEY = 'distill_results'
DISTILL_RESULTS_FINGERPRINT_KEY = 'distill_results_fingerprint'
SERVING_MODEL_DIR_KEY = 'serving_model_dir'

REPORT_FILE = 'report.html'
STATISTICS_FILE = 'FeatureStats.pb'


def split_statistics(statistics: types.Artifact) -> Dict[str, Dict[str, Optional[float]]]:
  """Examples, distinct users and items, and mean rating of every split."""
  summary = {}
  for split in artifact_utils.decode_split_names(statistics.split_names):
    path = os.path.join(artifact_utils.get_split_uri([statistics], split), STATISTICS_FILE)
    stats_list = statistics_pb2.DatasetFeatureStatisticsList()
    stats_list.ParseFromString(io_utils.read_bytes_file(path))
    dataset = stats_list.datasets[0]
    by_name = {(f.path.step[0] if f.path.step else f.name): f for f in dataset.features}

    def unique(name):
      return by_name[name].string_stats.unique if name in by_name else None

    rating = by_name.get(features.RATING)
    summary[split] = {
        'examples': dataset.num_examples,
        'users': unique(features.USER_ID),
        'items': unique(features.ITEM_ID),
        'mean_rating': rating.num_stats.mean if rating is not None else None,
    }
  return summary


def tfma_summary(evaluation: types.Artifact) -> Dict[str, Any]:
  """The overall slice's TFMA metrics and the validation outcome with its failures."""
  metrics = {}
  for metrics_for_slice in tfma.load_metrics(evaluation.uri):
    if metrics_for_slice.slice_key.single_slice_keys:
      continue
    for entry in metrics_for_slice.metric_keys_and_values:
      if entry.value.HasField('double_value'):
        name = entry.key.name + (' (change vs baseline)' if entry.key.is_diff else '')
        if entry.key.model_name and not entry.key.is_diff:
          name = f'{entry.key.model_name}: {entry.key.name}'
        metrics[name] = entry.value.double_value.value
  validation_ok, failures = None, []
  try:
    validation = tfma.load_validation_result(evaluation.uri)
  except (FileNotFoundError, tf.errors.NotFoundError, IndexError):
    validation = None
  if validation is not None:
    validation_ok = validation.validation_ok
    for per_slice in validation.metric_validations_per_slice:
      for failure in per_slice.failures:
        failures.append(f'{failure.metric_key.name}'
                        f'{" change" if failure.metric_key.is_diff else ""}: '
                        f'{failure.metric_value.double_value.value:.4f} violates '
                        f'{json.dumps(json_format.MessageToDict(failure.metric_threshold))}')
  return {'metrics': metrics, 'validation_ok': validation_ok, 'failures': failures}


def push_outcome(pushed_model: types.Artifact) -> Dict[str, Any]:
  """Whether the Pusher pushed, and which version where."""
  pushed = pushed_model.get_int_custom_property('pushed') == 1
  return {'pushed': pushed,
          'version': pushed_model.get_string_custom_property('pushed_version') or None,
          'destination': pushed_model.get_string_custom_property('pushed_destination') or None}


# The keys of a distillation benchmark row the report reads, and the types each may hold
# (None where a row has no value: EASE has no dimension, the teacher no gap recovered).
_NUMBER = (int, float)
FRONTIER_ROW_TYPES = {
    'model': (str,),
    'embedding_dim': (int, type(None)),
    'ndcg@10_mean': _NUMBER,
    'ndcg@10_std': _NUMBER,
    'recall@100_mean': _NUMBER,
    'recall@100_std': _NUMBER,
    'bytes': _NUMBER + (type(None),),
    'gap_recovered': _NUMBER + (type(None),),
}


def results_fingerprint(path: str) -> str:
  """A digest of a local results file's content ('' for none, a remote or an unreadable path),
  so that a changed file re-runs the cached RunReport."""
  if not path or '://' in path or not os.path.isfile(path):
    return ''
  try:
    with open(path, 'rb') as f:
      return hashlib.sha256(f.read()).hexdigest()[:16]
  except OSError:
    return ''


def read_frontier_rows(path: str) -> List[Dict[str, Any]]:
  """The rows of a distillation benchmark's JSON file; FileNotFoundError or ValueError naming
  what is wrong."""
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError('no such file')
  rows = _read_json(path)
  if not isinstance(rows, list) or not rows:
    raise ValueError('expected a non-empty JSON list of rows')
  for number, row in enumerate(rows):
    if not isinstance(row, dict):
      raise ValueError(f'row {number} is not a JSON object')
    for key, types_ in FRONTIER_ROW_TYPES.items():
      if key not in row:
        raise ValueError(f'row {number} has no {key!r}')
      if not isinstance(row[key], types_) or isinstance(row[key], bool):
        raise ValueError(f'row {number}: {key!r} is {row[key]!r}')
  return rows


def _reason(error: BaseException) -> str:
  """The first line of `error`'s message, or its type's name without one."""
  return str(error).splitlines()[0] if str(error) else type(error).__name__


def frontier_report(path: str, out_dir: str) -> Optional[Dict[str, Any]]:
  """The report's distillation section: {'path', 'rows', 'chart'} (the frontier PNG's name,
  None when no student row has bytes), or {'path', 'error'} when the file cannot be read; None
  without a path."""
  if not path:
    return None
  try:
    rows = read_frontier_rows(path)
    chart = charts.frontier(rows, out_dir, charts.FRONTIER,
                            title=f'Distillation frontier: {os.path.basename(path)}')
  except (OSError, tf.errors.OpError, ValueError, TypeError, KeyError) as error:
    reason = _reason(error)
    logging.warning('Distillation results %s left out of the report: %s', path, reason)
    return {'path': path, 'error': reason}
  return {'path': path, 'rows': rows, 'chart': chart}


def history_report(base_dir: str, push: Optional[Mapping[str, Any]],
                   retrieval: Mapping[str, Any], out_dir: str) -> Optional[Dict[str, Any]]:
  """The report's pushed versions: writes the record of the version this run pushed (`push`)
  into `base_dir`'s history, then reads them all back: {'base_dir', 'rows', 'chart'} (the
  chart's PNG name, None under two versions with metrics), or {'base_dir', 'error'} when the
  base directory cannot be read; None without a base directory. A record that cannot be written
  is logged, and its version's row says it has no record."""
  if not base_dir:
    return None
  if push and push.get('pushed') and push.get('version'):
    try:
      path = history_lib.write_record(base_dir,
                                      history_lib.make_record(push['version'], retrieval))
      logging.info('Recorded pushed version %s: %s', push['version'], path)
    except (OSError, tf.errors.OpError, ValueError) as error:
      logging.warning('No history record of pushed version %s in %s: %s', push['version'],
                      base_dir, error)
  try:
    rows = history_lib.read_history(base_dir)
  except (OSError, tf.errors.OpError) as error:
    reason = _reason(error)
    logging.warning('Pushed versions in %s left out of the report: %s', base_dir, reason)
    return {'base_dir': base_dir, 'error': reason}
  return {'base_dir': base_dir, 'rows': rows, 'chart': charts.version_history(rows, out_dir)}


def _optional_single(input_dict: Dict[str, List[types.Artifact]],
                     key: str) -> Optional[types.Artifact]:
  artifacts = input_dict.get(key) or []
  return artifacts[0] if artifacts else None


def _read_json(path: str) -> Any:
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


class Executor(base_executor.BaseExecutor):
  """Writes report.html and its charts into the report artifact."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    out_dir = artifact_utils.get_single_uri(output_dict[REPORT_KEY])
    tf.io.gfile.makedirs(out_dir)
    retrieval = _read_json(os.path.join(
        artifact_utils.get_single_uri(input_dict[RETRIEVAL_EVALUATION_KEY]),
        retrieval_executor.METRICS_FILE))
    summary = {}
    model_run = _optional_single(input_dict, MODEL_RUN_KEY)
    if model_run and tf.io.gfile.exists(os.path.join(model_run.uri, layout.SUMMARY_FILE)):
      summary = _read_json(os.path.join(model_run.uri, layout.SUMMARY_FILE))
    evaluation = _optional_single(input_dict, EVALUATION_KEY)
    pushed_model = _optional_single(input_dict, PUSHED_MODEL_KEY)
    statistics = _optional_single(input_dict, STATISTICS_KEY)

    push = push_outcome(pushed_model) if pushed_model else None

    report = {
        'title': exec_properties.get(TITLE_KEY) or 'Pipeline run report',
        'data': split_statistics(statistics) if statistics else {},
        'retrieval': retrieval,
        'tfma': tfma_summary(evaluation) if evaluation else None,
        'push': push,
        'history': history_report(exec_properties.get(SERVING_MODEL_DIR_KEY) or '', push,
                                  retrieval, out_dir),
        'charts': {
            'recall_curves': charts.recall_curves(retrieval.get('recall_curves') or {}, out_dir),
            'score_scatter': charts.score_scatter(retrieval.get('score_sample'),
                                                  retrieval.get('candidate', 'student'), out_dir),
            'size_latency': charts.size_and_latency(retrieval.get('models') or {}, out_dir),
            'training_loss': charts.training_loss(summary, out_dir),
        },
        'distillation': frontier_report(exec_properties.get(DISTILL_RESULTS_KEY) or '', out_dir),
    }
    path = os.path.join(out_dir, REPORT_FILE)
    io_utils.write_string_file(path, page.render(report))
    logging.info('Run report: %s', path)
