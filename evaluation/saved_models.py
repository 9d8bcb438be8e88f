"""What the evaluation asks of an exported SavedModel: rankings, ratings, size and latency.

Every function but `load` and `variables_bytes` takes a model loaded with `tf.saved_model.load`
that keeps the serving contract (`contract.signatures`: signatures `serving_default` and `score`,
tf.function `rank_catalogue`).
"""
import os
import time
from typing import Callable, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

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
  """Each user's ranking of the catalogue by `rank_catalogue`, cut at the user's depth.

  Args:
    model: the loaded SavedModel.
    users: the user ids.
    histories: each user's item ids, oldest first.
    side_features: each user's age, gender, occupation and zip code (arrays aligned with users).
    depths: how many ids to keep of each user's ranking.
    keep_scores: positions (in `users`) of users whose score of every item is also returned.

  Returns:
    (rankings, scores): rankings[i] holds user i's best `depths[i]` ids, best first, as the
    model returns them: an array of UTF-8 `bytes` (`metrics.top_from_ids` reads them so; not
    decoding a deep ranking id by id saves most of its cost); scores[i] maps every catalogue
    id (str) outside user i's history to its score, for i in `keep_scores`.
  """
  if not len(users) == len(histories) == len(depths):
    raise ValueError(f'need as many histories and depths as users, got {len(users)}, '
                     f'{len(histories)} and {len(depths)}')
  rank = getattr(model, signatures.RANK_CATALOGUE)

  def ranked(positions: Sequence[int], depth: int) -> Tuple[np.ndarray, np.ndarray]:
    batch = [list(histories[position]) for position in positions]
    width = max(1, max(len(history) for history in batch))
    outputs = rank(**{signatures.USER_ID: tf.constant([users[p] for p in positions]),
                      signatures.HISTORY: tf.constant(
                          [history + [''] * (width - len(history)) for history in batch])},
                   **{name: tf.constant(values[list(positions)])
                      for name, values in side_features.items()},
                   **{signatures.DEPTH: tf.constant(depth, tf.int32)})
    return outputs[signatures.ITEM_IDS].numpy(), outputs[signatures.SCORES].numpy()

  rankings = []
  for start in range(0, len(users), BATCH_SIZE):
    positions = range(start, min(start + BATCH_SIZE, len(users)))
    # Only as deep as the batch needs: fewer ids to sort and to copy out of the graph.
    item_ids, _ = ranked(positions, max(depths[position] for position in positions))
    rankings.extend(ids[:depths[position]] for position, ids in zip(positions, item_ids))
  scores = {}
  if keep_scores:
    positions = sorted(set(keep_scores))
    item_ids, item_scores = ranked(positions, np.iinfo(np.int32).max)  # every item
    for position, ids, values in zip(positions, item_ids, item_scores):
      # Without the history's items, which `rank_catalogue` puts last with score -inf.
      scores[position] = {item.decode(): value for item, value in zip(ids, values.tolist())
                          if np.isfinite(value)}
  return rankings, scores


def predicted_ratings(model, examples: Sequence[bytes], batch_size: int = 4096) -> np.ndarray:
  """The `score` signature's rating of every serialized example."""
  score = model.signatures[signatures.SCORE]
  predictions = []
  for start in range(0, len(examples), batch_size):
    batch = tf.constant(list(examples[start:start + batch_size]))
    predictions.append(score(**{signatures.EXAMPLES: batch})[signatures.RATING].numpy().reshape(-1))
  return np.concatenate(predictions) if predictions else np.empty(0)


def timed_in_turns(calls: Mapping[Hashable, Callable[[], object]], requests: int,
                   warmup: int) -> Dict[Hashable, Dict[str, float]]:
  """Mean, median and p99 milliseconds of each of `calls` ('mean_ms', 'p50_ms', 'p99_ms'), by
  key. The calls take turns, one each per round in a rotating order, so that the machine's load
  falls on all of them alike and their figures compare; `warmup` untimed rounds first."""
  if requests < 1:
    raise ValueError(f'requests must be >= 1, got {requests}')
  keys = list(calls)
  timings = {key: [] for key in keys}
  for round_index in range(warmup + requests):
    offset = round_index % len(keys)
    for key in keys[offset:] + keys[:offset]:
      started = time.perf_counter()
      calls[key]()
      if round_index >= warmup:
        timings[key].append(time.perf_counter() - started)
  results = {}
  for key, seconds in timings.items():
    millis = np.asarray(seconds) * 1e3
    results[key] = {'mean_ms': float(millis.mean()), 'p50_ms': float(np.percentile(millis, 50)),
                    'p99_ms': float(np.percentile(millis, 99))}
  return results


def serving_latencies_ms(models: Mapping[str, object], request: bytes, requests: int,
                         warmup: int = 20) -> Dict[str, Dict[str, float]]:
  """'latency_mean_ms', 'latency_p50_ms' and 'latency_p99_ms' of single-example calls of each
  model's `serving_default` signature (a recommendation of the top `contract.signatures.TOP_K`
  items), by model name, the models taking turns (`timed_in_turns`).

  Args:
    models: the loaded SavedModels by name.
    request: one serialized tf.Example (a user and their history).
    requests: the number of timed calls of each model.
    warmup: untimed rounds made first (tracing, caches).
  """
  inputs = {signatures.EXAMPLES: tf.constant([request])}
  calls = {name: (lambda serve=model.signatures[signatures.SERVING_DEFAULT]:
                  serve(**inputs)[signatures.ITEM_IDS].numpy())
           for name, model in models.items()}
  return {name: {f'latency_{stat}': value for stat, value in stats.items()}
          for name, stats in timed_in_turns(calls, requests, warmup).items()}
