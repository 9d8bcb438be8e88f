"""SavedModel warmup requests in TF Serving's format, and reading them back.

TF Serving replays `<export_dir>/assets.extra/tf_serving_warmup_requests` when it loads a version:
a TFRecord file of `PredictionLog` protos (at most 1000), so the first real request does not pay
for lazy initialisation. The local server (`serving.server`) replays the same file.
"""
import os
from typing import List, Sequence

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from contract import requests as requests_lib

ASSETS_EXTRA_DIR = 'assets.extra'
WARMUP_FILE = 'tf_serving_warmup_requests'
MAX_RECORDS = 1000  # TF Serving refuses a warmup file with more records


def warmup_path(export_dir: str) -> str:
  return os.path.join(export_dir, ASSETS_EXTRA_DIR, WARMUP_FILE)


def write_warmup_requests(export_dir: str, user_ids: Sequence[str],
                          histories: Sequence[Sequence[str]], with_reasons: bool = False) -> str:
  """Writes one `recommend` and one `serving_default` warmup request into `export_dir`, and
  with `with_reasons` one `recommend_with_reasons` request (for models that have it).

  Every request carries the whole batch (`user_ids[i]` with `histories[i]`, ids oldest first).
  Returns the path of the warmup file.
  """
  if not user_ids or len(user_ids) != len(histories):
    raise ValueError(f'need one history per user id and at least one user, got '
                     f'{len(user_ids)} user ids and {len(histories)} histories')
  path = warmup_path(export_dir)
  tf.io.gfile.makedirs(os.path.dirname(path))
  requests = [requests_lib.recommend(user_ids, histories),
              requests_lib.serving_default(user_ids, histories)]
  if with_reasons:
    requests.append(requests_lib.recommend(user_ids, histories, with_reasons=True))
  with tf.io.TFRecordWriter(path) as writer:
    for request in requests:
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
  return path


def read_warmup_requests(export_dir: str) -> List[prediction_log_pb2.PredictionLog]:
  """The PredictionLogs of a SavedModel's warmup file ([] when it has none)."""
  path = warmup_path(export_dir)
  if not tf.io.gfile.exists(path):
    return []
  logs = []
  for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
    if len(logs) == MAX_RECORDS:
      raise ValueError(f'{path} has more than {MAX_RECORDS} warmup records')
    logs.append(prediction_log_pb2.PredictionLog.FromString(record))
  return logs
