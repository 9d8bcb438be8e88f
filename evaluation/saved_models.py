"""What the evaluation asks of an exported SavedModel: rankings, ratings, size and latency.

Every function but `load` and `variables_bytes` takes a model loaded with `tf.saved_model.load`
that keeps the serving contract (`contract.signatures`: signatures `serving_default` and `score`,
tf.function `rank_catalogue`).
"""
import os
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from contract import signatures

BATCH_SIZE = 256


def load(saved_model_dir: Optional[str]):
  """The loaded SavedModel, or None when `saved_model_dir` holds none."""
  if saved_model_dir and tf.saved_model.contains_saved_model(saved_model_dir):
    return tf.saved_model.load(saved_model_dir)
  return None


def variables_bytes(saved_model_dir: str) -> int:
  """Bytes of a SavedModel's variables (what serving keeps in memory)."""
  variables_dir = os.path.join(saved_model_dir, 'variables')
  if not tf.io.gfile.isdir(variables_dir):
    raise FileNotFoundError(f'no SavedModel variables in {saved_model_dir}')
  return sum(tf.io.gfile.stat(os.path.join(variables_dir, name)).length
             for name in tf.io.gfile.listdir(variables_dir))


def catalogue_rankings(model, users: Sequence[str], histories: Sequence[Sequence[str]],
                       side_features: Mapping[str, np.ndarray],
                       depths: Sequence[int], keep_scores: Sequence[int] = ()
                       ) -> Tuple[List[List[str]], Dict[int, Dict[str, float]]]:
  """Each user's ranking of the whole catalogue by `rank_catalogue`, cut at the user's depth.

  Args:
    model: the loaded SavedModel.
    users: the user ids.
    histories: each user's item ids, oldest first.
    side_features: each user's age, gender, occupation and zip code (arrays aligned with users).
    depths: how many ids to keep of each user's ranking.
    keep_scores: positions (in `users`) of users whose score of every item is also returned.

  Returns:
    (rankings, scores): rankings[i] holds user i's best `depths[i]` ids (str), best first;
    scores[i] maps every catalogue id to its score, for i in `keep_scores`.
  """
  if not len(users) == len(histories) == len(depths):
    raise ValueError(f'need as many histories and depths as users, got {len(users)}, '
                     f'{len(histories)} and {len(depths)}')
  rank = getattr(model, signatures.RANK_CATALOGUE)
  keep_scores = set(keep_scores)
  rankings, scores = [], {}
  for start in range(0, len(users), BATCH_SIZE):
    batch = [list(history) for history in histories[start:start + BATCH_SIZE]]
    width = max(1, max(len(history) for history in batch))
    padded = [history + [''] * (width - len(history)) for history in batch]
    outputs = rank(**{signatures.USER_ID: tf.constant(list(users[start:start + BATCH_SIZE])),
                      signatures.HISTORY: tf.constant(padded)},
                   **{name: tf.constant(values[start:start + BATCH_SIZE])
                      for name, values in side_features.items()})
    item_ids = outputs[signatures.ITEM_IDS].numpy()
    item_scores = outputs[signatures.SCORES].numpy()
    for row, ids in enumerate(item_ids):
      position = start + row
      rankings.append([item.decode() for item in ids[:depths[position]]])
      if position in keep_scores:
        scores[position] = dict(zip((item.decode() for item in ids), item_scores[row].tolist()))
  return rankings, scores


def predicted_ratings(model, examples: Sequence[bytes], batch_size: int = 4096) -> np.ndarray:
  """The `score` signature's rating of every serialized example."""
  score = model.signatures[signatures.SCORE]
  predictions = []
  for start in range(0, len(examples), batch_size):
    batch = tf.constant(list(examples[start:start + batch_size]))
    predictions.append(score(**{signatures.EXAMPLES: batch})[signatures.RATING].numpy().reshape(-1))
  return np.concatenate(predictions) if predictions else np.empty(0)


def serving_latency_ms(model, request: bytes, requests: int, warmup: int = 20) -> Dict[str, float]:
  """Mean, median and p99 milliseconds of single-example calls of the `serving_default`
  signature (a recommendation of the top `contract.signatures.TOP_K` items).

  Args:
    model: the loaded SavedModel.
    request: one serialized tf.Example (a user and their history).
    requests: the number of timed calls.
    warmup: untimed calls made first (tracing, caches).
  """
  if requests < 1:
    raise ValueError(f'requests must be >= 1, got {requests}')
  serve = model.signatures[signatures.SERVING_DEFAULT]
  inputs = {signatures.EXAMPLES: tf.constant([request])}
  for _ in range(warmup):
    serve(**inputs)
  timings = np.empty(requests)
  for i in range(requests):
    started = time.perf_counter()
    serve(**inputs)[signatures.ITEM_IDS].numpy()
    timings[i] = time.perf_counter() - started
  return {'latency_mean_ms': float(timings.mean() * 1e3),
          'latency_p50_ms': float(np.percentile(timings, 50) * 1e3),
          'latency_p99_ms': float(np.percentile(timings, 99) * 1e3)}
