"""Every model of a run, and the reference baselines, evaluated on one split with one protocol.

The protocol is `evaluation.protocol` (full-catalogue ranking, items seen before the split
excluded). Exported models rank with `rank_catalogue`; popularity and EASE are computed here on
the same `EvalData`. Every model also gets the slice metrics (`metrics.SLICE_METRIC_KEYS`): for
the new-users slice an exported model ranks every query again with the user id replaced by
`unknown_user_id` (it falls into the model's OOV bucket); popularity and EASE read no user id, so
their new-user rankings are their rankings. The result is one JSON-ready dictionary: per-model
metrics, Recall@k curves, a sample of reference-vs-candidate scores, sizes and latencies.
"""
from typing import Dict, Mapping, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import pandas as pd
import tensorflow as tf

from contract import features
from evaluation import baselines
from evaluation import metrics as metrics_lib
from evaluation import protocol
from evaluation import saved_models

POPULARITY = 'popularity'  # the baselines' names in the result
EASE = 'ease'
DEPTH = max(metrics_lib.RECALL_KS)  # of rankings and Recall@k curves
SCATTER_USERS = 50
SCATTER_ITEMS_PER_USER = 40
SEED = 0
NEW_USER_ID = 'new-user'  # the id of the new-users slice's queries, unless a known user has it
AMONG_COLD_ITEMS_K = 50
# Recall@50 of the cold-items slice with each ranking cut down to the cold items: how a model
# orders new items among themselves, whatever it makes of them against warm ones (exported
# models only: the baselines score every cold item 0).
AMONG_COLD_ITEMS = metrics_lib.slice_key(f'recall@{AMONG_COLD_ITEMS_K}', 'among_cold_items')


def example_ratings(examples: Sequence[bytes]) -> np.ndarray:
  """The rating label of every serialized tf.Example."""
  spec = {features.RATING: tf.io.FixedLenFeature([], tf.float32)}
  return tf.io.parse_example(tf.constant(list(examples)), spec)[features.RATING].numpy()


def unknown_user_id(known_users) -> str:
  """`NEW_USER_ID`, with '+' appended until it is none of `known_users`."""
  known = set(known_users)
  user = NEW_USER_ID
  while user in known:
    user += '+'
  return user


def _top_metrics(top: np.ndarray, new_user_top: np.ndarray, eval_data: protocol.EvalData,
                 slices: Mapping[str, protocol.Slice],
                 reference_top: Optional[np.ndarray]) -> Dict[str, Optional[float]]:
  metrics = metrics_lib.metrics_of_top(top, eval_data)
  metrics['novelty@10'] = metrics_lib.novelty(top, eval_data)
  metrics['fidelity@10'] = (None if reference_top is None
                            else metrics_lib.fidelity(top, reference_top))
  metrics.update(metrics_lib.slice_metrics(top, new_user_top, slices))
  return metrics


def _among_cold_items(model, eval_data: protocol.EvalData, cold: protocol.Slice,
                      histories: Sequence[Sequence[str]], side_features: Mapping[str, np.ndarray],
                      cold_columns: np.ndarray) -> Optional[float]:
  """`AMONG_COLD_ITEMS` of an exported model: the cold-items slice's users rank the whole
  catalogue, of which their unseen cold items are kept; None without such users."""
  if not len(cold.rows):
    return None
  rankings, _ = saved_models.catalogue_rankings(
      model, eval_data.users[cold.rows].tolist(), [histories[row] for row in cold.rows],
      {name: values[cold.rows] for name, values in side_features.items()},
      [len(eval_data.items)] * len(cold.rows))
  # The cold ids of each whole ranking, in its order, before they are looked up (most of a
  # ranking's ids are warm ones).
  is_cold = np.frompyfunc(
      set(eval_data.items[cold_columns].astype(str).str.encode('utf-8')).__contains__, 1, 1)
  top = metrics_lib.top_from_ids([ids[is_cold(ids).astype(bool)] for ids in rankings],
                                 cold.eval_data, AMONG_COLD_ITEMS_K)
  return metrics_lib.metrics_of_top(top, cold.eval_data)[f'recall@{AMONG_COLD_ITEMS_K}']


def _score_sample(reference: Dict[int, Dict[str, float]], candidate: Dict[int, Dict[str, float]],
                  items: pd.Index, rng: np.random.Generator) -> Dict[str, object]:
  """Scores of the same sampled (user, item) pairs by the reference and the candidate."""
  pairs = []
  for user in sorted(reference):
    chosen = rng.choice(len(items), min(SCATTER_ITEMS_PER_USER, len(items)), replace=False)
    for item in items[chosen]:
      if item in reference[user] and item in candidate[user]:
        pairs.append((reference[user][item], candidate[user][item]))
  if not pairs:
    return None
  reference_scores, candidate_scores = (np.array(values) for values in zip(*pairs))
  correlation = np.corrcoef(reference_scores, candidate_scores)[0, 1] if len(pairs) > 1 else None
  return {'reference': reference_scores.tolist(), 'candidate': candidate_scores.tolist(),
          'pearson': None if correlation is None or not np.isfinite(correlation)
                     else float(correlation)}


def tuned_ease(interactions: pd.DataFrame, splits: np.ndarray, eval_data: protocol.EvalData,
               catalogue_items: Optional[Sequence[str]]) -> Tuple[float, np.ndarray]:
  """EASE's L2 weight and its scores of `eval_data`'s queries: the L2 weight tuned on the eval
  split (`baselines.tuned_ease`) when `eval_data`'s split comes after it and it has rows; else
  `baselines.EASE_L2`."""
  if eval_data.split == features.EVAL_SPLIT or not np.any(splits == features.EVAL_SPLIT):
    return baselines.EASE_L2, baselines.ease_scores(eval_data, baselines.EASE_L2)
  l2, scores = baselines.tuned_ease(
      protocol.build_eval_data(interactions, splits, features.EVAL_SPLIT, catalogue_items),
      eval_data)
  logging.info('EASE: L2 weight %g, chosen on the eval split', l2)
  return l2, scores


def evaluate(interactions: pd.DataFrame, splits: Sequence[str], test_examples: Sequence[bytes],
             model_dirs: Mapping[str, str], candidate: str, reference: str,
             latency_requests: int, split: str = features.TEST_SPLIT,
             catalogue_items: Optional[Sequence[str]] = None,
             rating_metrics: bool = True) -> Dict[str, object]:
  """Evaluates exported models and the baselines on `split`.

  Args:
    interactions: every interaction (USER_ID, ITEM_ID, RATING, TIMESTAMP, and the user side
      features that `protocol.user_side_features` reads) of every split.
    splits: the split name of each interaction, aligned with `interactions`.
    test_examples: the serialized tf.Examples of `split`, for the rating RMSE and as requests
      for the latency measurement.
    model_dirs: model name -> SavedModel directory, in report order; the reference model should
      be one of them (without it fidelity and the score sample are None).
    candidate: the name in `model_dirs` of the model whose scores are sampled against the
      reference's (the pushed candidate).
    reference: the name of the model that fidelity is measured against (the teacher).
    latency_requests: timed single-request calls per exported model (the models taking turns).
    split: the evaluated split.
    catalogue_items: the item ids known besides the train ones (those of the examples' items
      split, `features.ITEMS_SPLIT`, which the exported models rank too); the catalogue is
      their union with the train items (`protocol.build_eval_data`). None: the train items.
    rating_metrics: whether the ratings mean something (explicit feedback): without them (a log
      of implicit feedback, every rating 1.0) every 'rmse' is None.

  Returns:
    {'split', 'users', 'catalogue_items', 'models': {name: metrics}, 'recall_curves':
    {name: [Recall@1 .. Recall@DEPTH]}, 'score_sample': {'reference', 'candidate', 'pearson'}
    or None, 'slice_users': {slice: number of users}}. Models are those of `model_dirs`, then
    `POPULARITY` and `EASE` (with its L2 weight tuned on the eval split, 'l2'). Every model's
    metrics include the `metrics.SLICE_METRIC_KEYS` (None for a slice without users); exported models' metrics include 'rmse', 'bytes',
    'latency_mean_ms', 'latency_p50_ms' and 'latency_p99_ms'; popularity's 'rmse' is that of the
    mean train rating.
  """
  if candidate not in model_dirs:
    raise ValueError(f'candidate {candidate!r} is not one of the models {sorted(model_dirs)}')
  if not test_examples:
    raise ValueError(f'no {split} examples to evaluate on')
  splits = np.asarray(splits, dtype=object)
  eval_data = protocol.build_eval_data(interactions, splits, split, catalogue_items)
  histories = protocol.query_histories(interactions, splits, eval_data)
  side_features = protocol.user_side_features(interactions, eval_data.users)
  slices = protocol.build_slices(interactions, splits, eval_data)
  new_users = [unknown_user_id(interactions[features.USER_ID])] * len(eval_data.users)
  cold_columns = ~eval_data.items.isin(
      interactions[splits == features.TRAIN_SPLIT][features.ITEM_ID].unique())
  depths = (DEPTH + np.asarray(eval_data.seen.sum(axis=1)).ravel().astype(int)).tolist()
  ratings = example_ratings(test_examples)
  rng = np.random.default_rng(SEED)
  scatter_users = rng.choice(len(eval_data.users), min(SCATTER_USERS, len(eval_data.users)),
                             replace=False).tolist()
  logging.info('Retrieval evaluation on %s: %d users, %d catalogue items', split,
               len(eval_data.users), len(eval_data.items))

  tops, metrics, sampled_scores, loaded = {}, {}, {}, {}
  for name in sorted(model_dirs, key=lambda n: n != reference):  # the reference first
    model = saved_models.load(model_dirs[name])
    if model is None:
      raise FileNotFoundError(f'no SavedModel for {name} in {model_dirs[name]}')
    rankings, sampled_scores[name] = saved_models.catalogue_rankings(
        model, eval_data.users, histories, side_features, depths,
        keep_scores=scatter_users if name in (reference, candidate) else ())
    tops[name] = metrics_lib.top_from_ids(rankings, eval_data, DEPTH)
    new_user_rankings, _ = saved_models.catalogue_rankings(model, new_users, histories,
                                                           side_features, depths)
    metrics[name] = _top_metrics(tops[name],
                                 metrics_lib.top_from_ids(new_user_rankings, eval_data, DEPTH),
                                 eval_data, slices, tops.get(reference))
    metrics[name][AMONG_COLD_ITEMS] = _among_cold_items(
        model, eval_data, slices[protocol.COLD_ITEMS], histories, side_features, cold_columns)
    metrics[name]['rmse'] = (metrics_lib.rmse(saved_models.predicted_ratings(
        model, test_examples), ratings) if rating_metrics else None)
    metrics[name]['bytes'] = saved_models.variables_bytes(model_dirs[name])
    loaded[name] = model
  # Side by side, after the rankings: the models take turns, so that their latencies compare.
  for name, latency in saved_models.serving_latencies_ms(loaded, test_examples[0],
                                                         latency_requests).items():
    metrics[name].update(latency)
    logging.info('%s: %s', name, ', '.join(f'{k}={v:.4g}' for k, v in metrics[name].items()
                                           if v is not None))
  del loaded

  train = interactions[splits == features.TRAIN_SPLIT]
  ease_l2, ease_scores = tuned_ease(interactions, splits, eval_data, catalogue_items)
  baseline_scores = {POPULARITY: baselines.popularity_scores(train, eval_data),
                     EASE: ease_scores}
  for name, scores in baseline_scores.items():
    tops[name] = metrics_lib.top_from_scores(scores, eval_data, DEPTH)
    metrics[name] = _top_metrics(tops[name], tops[name], eval_data, slices, tops.get(reference))
    metrics[name][AMONG_COLD_ITEMS] = None
  metrics[POPULARITY]['rmse'] = baselines.mean_rating_rmse(train, ratings)
  metrics[EASE]['l2'] = ease_l2

  score_sample = None
  if not rating_metrics:  # constant ratings: no rating error to report, not even the mean's
    metrics[POPULARITY]['rmse'] = None
  if reference in model_dirs and candidate != reference:
    score_sample = _score_sample(sampled_scores[reference], sampled_scores[candidate],
                                 eval_data.items, rng)
  return {
      'split': split,
      'users': len(eval_data.users),
      'catalogue_items': len(eval_data.items),
      'models': {name: metrics[name] for name in list(model_dirs) + list(baseline_scores)},
      'recall_curves': {name: metrics_lib.recall_curve(top, eval_data).tolist()
                        for name, top in tops.items()},
      'score_sample': score_sample,
      'slice_users': {name: len(part.rows) for name, part in slices.items()},
  }
