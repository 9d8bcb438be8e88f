"""SavedModel warmup requests in TF Serving's format, and reading them back.

TF Serving replays `<export_dir>/assets.extra/tf_serving_warmup_requests` when it loads a version:
a TFRecord file of `PredictionLog` protos (at most 1000), so the first real request does not pay
for lazy initialisation. The local server (`serving.server`) replays the same file.
"""
import os
from typing import List, Sequence

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from models import features
from serving import client

ASSETS_EXTRA_DIR = 'assets.extra'
WARMUP_FILE = 'tf_serving_warmup_requests'
MAX_RECORDS = 1000  # TF Serving refuses a warmup file with more records
RECOMMEND_SIGNATURE = 'recommend'
SERVING_DEFAULT_SIGNATURE = 'serving_default'


def warmup_path(export_dir: str) -> str:
  return os.path.join(export_dir, ASSETS_EXTRA_DIR, WARMUP_FILE)


def recommend_request(user_ids: Sequence[str], histories: Sequence[Sequence[str]],
                      k: int) -> predict_pb2.PredictRequest:
  """A `recommend` PredictRequest: user_id [B], history [B, N] padded with '', k scalar."""
  request = predict_pb2.PredictRequest()
  request.model_spec.signature_name = RECOMMEND_SIGNATURE
  request.inputs['user_id'].CopyFrom(tf.make_tensor_proto(list(user_ids), tf.string))
  request.inputs['history'].CopyFrom(
      tf.make_tensor_proto(client.padded_histories(histories), tf.string))
  request.inputs['k'].CopyFrom(tf.make_tensor_proto(k, tf.int32))
  return request


def example_request(user_ids: Sequence[str],
                    histories: Sequence[Sequence[str]]) -> predict_pb2.PredictRequest:
  """A `serving_default` PredictRequest of serialized tf.Examples (user_id, history)."""
  examples = []
  for user_id, history in zip(user_ids, histories):
    example = tf.train.Example()
    example.features.feature[features.USER_ID].bytes_list.value.append(user_id.encode())
    example.features.feature[features.HISTORY].bytes_list.value.append(
        features.HISTORY_SEPARATOR.join(history).encode())
    examples.append(example.SerializeToString())
  request = predict_pb2.PredictRequest()
  request.model_spec.signature_name = SERVING_DEFAULT_SIGNATURE
  request.inputs['examples'].CopyFrom(tf.make_tensor_proto(examples, tf.string))
  return request


def write_warmup_requests(export_dir: str, user_ids: Sequence[str],
                          histories: Sequence[Sequence[str]], k: int) -> str:
  """Writes one `recommend` and one `serving_default` warmup request into `export_dir`.

  Both requests carry the whole batch (`user_ids[i]` with `histories[i]`, ids oldest first).
  Returns the path of the warmup file.
  """
  if not user_ids or len(user_ids) != len(histories):
    raise ValueError(f'need one history per user id and at least one user, got '
                     f'{len(user_ids)} user ids and {len(histories)} histories')
  path = warmup_path(export_dir)
  tf.io.gfile.makedirs(os.path.dirname(path))
  requests = [recommend_request(user_ids, histories, k), example_request(user_ids, histories)]
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
