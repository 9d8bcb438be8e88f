"""PredictRequests of the serving contract, built once for the client, the warmup file and the
benchmark (the model spec's name and version are left to the caller)."""
from typing import Dict, List, Optional, Sequence

import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import predict_pb2

from contract import features
from contract import signatures
from contract import tensor_codec


def padded_histories(histories: Sequence[Sequence[str]]) -> List[List[str]]:
  """Histories padded with '' to one width, at least the model's history length: requests of
  one shape, which TF Serving's batching can merge without padding them itself."""
  width = max([signatures.HISTORY_LENGTH] + [len(history) for history in histories])
  return [list(history) + [''] * (width - len(history)) for history in histories]


def _utf8(value: str) -> bytes:
  """`value` as UTF-8; a ValueError that names it when it is not text (a command-line argument
  with bytes that are not UTF-8 arrives as a str with surrogates). Pass bytes for raw ids."""
  try:
    return value.encode()
  except UnicodeEncodeError:
    raise ValueError(f'{value!r} is not UTF-8 text') from None


def _strings(values: Sequence, shape: Optional[tuple] = None):
  array = np.array([_utf8(value) if isinstance(value, str) else value for value in values],
                   dtype=object)
  return tensor_codec.from_numpy(array.reshape(shape) if shape else array)


def _request(signature: str, inputs: Dict[str, object]) -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.signature_name = signature
  for name, proto in inputs.items():
    request.inputs[name].CopyFrom(proto)
  return request


def check_k(k: int) -> int:
  """`k` when it is an integer in [1, TOP_K] (models return TOP_K items and a client keeps the
  first k); a one-line ValueError otherwise."""
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not (
      1 <= k <= signatures.TOP_K):
    raise ValueError(f'k must be an integer in [1, {signatures.TOP_K}], got {k!r}')
  return int(k)


def recommend(user_ids: Sequence[str], histories: Sequence[Sequence[str]],
              with_reasons: bool = False) -> predict_pb2.PredictRequest:
  """`recommend`: user_id [B], history [B, N] padded with '' (every input has the batch
  dimension; the model answers its top TOP_K items per row); with `with_reasons`, the same
  inputs to `recommend_with_reasons`, which also answers each item's reason."""
  if len(user_ids) != len(histories):
    raise ValueError(f'{len(user_ids)} user ids but {len(histories)} histories')
  padded = padded_histories(histories)
  signature = signatures.RECOMMEND_WITH_REASONS if with_reasons else signatures.RECOMMEND
  return _request(signature, {
      signatures.USER_ID: _strings(user_ids),
      signatures.HISTORY: _strings([item for row in padded for item in row],
                                   (len(padded), len(padded[0])))})


def _example(**values: str) -> bytes:
  example = example_pb2.Example()
  for name, value in values.items():
    example.features.feature[name].bytes_list.value.append(_utf8(value))
  return example.SerializeToString()


def serving_default(user_ids: Sequence[str],
                    histories: Sequence[Sequence[str]]) -> predict_pb2.PredictRequest:
  """`serving_default`: serialized tf.Examples with user_id and history (space-separated)."""
  examples = [_example(**{features.USER_ID: user_id,
                          features.HISTORY: features.HISTORY_SEPARATOR.join(history)})
              for user_id, history in zip(user_ids, histories)]
  return _request(signatures.SERVING_DEFAULT, {signatures.EXAMPLES: _strings(examples)})


def score(user_id: str, item_ids: Sequence[str], history: Sequence[str] = (),
          history_ratings: Sequence[float] = ()) -> predict_pb2.PredictRequest:
  """`score`: one tf.Example per item, with the user, the user's history and, optionally, the
  ratings the user gave those history items (one per item; they sharpen the prediction)."""
  if history_ratings and len(history_ratings) != len(history):
    raise ValueError(f'history_ratings needs one rating per history item: got '
                     f'{len(history_ratings)} ratings for {len(history)} items')
  ratings = features.HISTORY_SEPARATOR.join(features.rating_text(r) for r in history_ratings)
  examples = [_example(**{features.USER_ID: user_id, features.ITEM_ID: item_id,
                          features.HISTORY: features.HISTORY_SEPARATOR.join(history),
                          features.HISTORY_RATINGS: ratings})
              for item_id in item_ids]
  return _request(signatures.SCORE, {signatures.EXAMPLES: _strings(examples)})
