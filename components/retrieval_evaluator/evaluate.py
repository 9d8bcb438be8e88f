"""Every model of a run, and the reference baselines, evaluated on one split with one protocol.

The protocol is `models.evaluation` (full-catalogue ranking, items seen before the split
excluded). Exported models rank with `rank_catalogue`; popularity and EASE are computed here on
the same `EvalData`. The result is one JSON-ready dictionary: per-model metrics, Recall@k curves,
a sample of teacher-vs-candidate scores, sizes and latencies.
"""
from typing import Dict, List, Mapping, Optional, Sequence

from absl import logging
import numpy as np
import pandas as pd
import tensorflow as tf

from components.retrieval_evaluator import saved_models
from models import baselines
from models import evaluation
from contract import features
from pipeline.data import split as split_lib

REFERENCE = 'teacher'  # fidelity is the top-10 overlap with this model
DEPTH = max(evaluation.RECALL_KS)  # of rankings and Recall@k curves
SCATTER_USERS = 50
SCATTER_ITEMS_PER_USER = 40
SEED = 0


def query_histories(interactions: pd.DataFrame, splits: np.ndarray,
                    eval_data: evaluation.EvalData) -> List[List[str]]:
  """Each evaluated user's items before the evaluated split, oldest first."""
  earlier = features.SPLITS[:features.SPLITS.index(eval_data.split)]
  before = interactions[np.isin(splits, earlier)]
  before = before.iloc[split_lib.chronological_order(before)]
  items = before.groupby(features.USER_ID)[features.ITEM_ID].apply(list)
  return [items.get(user, []) for user in eval_data.users]


def example_ratings(examples: Sequence[bytes]) -> np.ndarray:
  """The rating label of every serialized tf.Example."""
  spec = {features.RATING: tf.io.FixedLenFeature([], tf.float32)}
  return tf.io.parse_example(tf.constant(list(examples)), spec)[features.RATING].numpy()


def _top_metrics(top: np.ndarray, eval_data: evaluation.EvalData,
                 reference_top: Optional[np.ndarray]) -> Dict[str, Optional[float]]:
  metrics = evaluation.metrics_of_top(top, eval_data)
  metrics['novelty@10'] = evaluation.novelty(top, eval_data)
  metrics['fidelity@10'] = (None if reference_top is None
                            else evaluation.fidelity(top, reference_top))
  return metrics


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


def evaluate(interactions: pd.DataFrame, splits: Sequence[str], test_examples: Sequence[bytes],
             model_dirs: Mapping[str, str], candidate: str, latency_requests: int,
             split: str = features.TEST_SPLIT) -> Dict[str, object]:
  """Evaluates exported models and the baselines on `split`.

  Args:
    interactions: every interaction (USER_ID, ITEM_ID, RATING, TIMESTAMP, and the user side
      features that `models.evaluation.user_side_features` reads) of every split.
    splits: the split name of each interaction, aligned with `interactions`.
    test_examples: the serialized tf.Examples of `split`, for the rating RMSE and as requests
      for the latency measurement.
    model_dirs: model name -> SavedModel directory, in report order; the reference model
      (`REFERENCE`) should be one of them (without it fidelity and the score sample are None).
    candidate: the name in `model_dirs` of the model whose scores are sampled against the
      reference's (the pushed candidate).
    latency_requests: timed single-request calls per exported model.
    split: the evaluated split.

  Returns:
    {'split', 'users', 'catalogue_items', 'models': {name: metrics}, 'recall_curves':
    {name: [Recall@1 .. Recall@DEPTH]}, 'score_sample': {'reference', 'candidate', 'pearson'}
    or None}. Exported models' metrics include 'rmse', 'bytes', 'latency_mean_ms' and
    'latency_p99_ms'.
  """
  if candidate not in model_dirs:
    raise ValueError(f'candidate {candidate!r} is not one of the models {sorted(model_dirs)}')
  if not test_examples:
    raise ValueError(f'no {split} examples to evaluate on')
  splits = np.asarray(splits, dtype=object)
  eval_data = evaluation.build_eval_data(interactions, splits, split)
  histories = query_histories(interactions, splits, eval_data)
  side_features = evaluation.user_side_features(interactions, eval_data.users)
  depths = (DEPTH + np.asarray(eval_data.seen.sum(axis=1)).ravel().astype(int)).tolist()
  ratings = example_ratings(test_examples)
  rng = np.random.default_rng(SEED)
  scatter_users = rng.choice(len(eval_data.users), min(SCATTER_USERS, len(eval_data.users)),
                             replace=False).tolist()
  logging.info('Retrieval evaluation on %s: %d users, %d catalogue items', split,
               len(eval_data.users), len(eval_data.items))

  tops, metrics, sampled_scores = {}, {}, {}
  for name in sorted(model_dirs, key=lambda n: n != REFERENCE):  # the reference first
    model = saved_models.load(model_dirs[name])
    if model is None:
      raise FileNotFoundError(f'no SavedModel for {name} in {model_dirs[name]}')
    rankings, sampled_scores[name] = saved_models.catalogue_rankings(
        model, eval_data.users, histories, side_features, depths,
        keep_scores=scatter_users if name in (REFERENCE, candidate) else ())
    tops[name] = evaluation.top_from_ids(rankings, eval_data, DEPTH)
    metrics[name] = _top_metrics(tops[name], eval_data, tops.get(REFERENCE))
    predicted = saved_models.predicted_ratings(model, test_examples)
    metrics[name]['rmse'] = evaluation.rmse(predicted, ratings)
    metrics[name]['bytes'] = saved_models.variables_bytes(model_dirs[name])
    metrics[name].update(saved_models.serving_latency_ms(model, test_examples[0],
                                                         latency_requests))
    logging.info('%s: %s', name, ', '.join(f'{k}={v:.4g}' for k, v in metrics[name].items()
                                           if v is not None))

  train = interactions[splits == features.TRAIN_SPLIT]
  baseline_scores = {'popularity': baselines.popularity_scores(train, eval_data),
                     'ease': baselines.ease_scores(eval_data)}
  for name, scores in baseline_scores.items():
    tops[name] = evaluation.top_from_scores(scores, eval_data, DEPTH)
    metrics[name] = _top_metrics(tops[name], eval_data, tops.get(REFERENCE))
  metrics['popularity']['rmse'] = baselines.mean_rating_rmse(train, eval_data)

  score_sample = None
  if REFERENCE in model_dirs and candidate != REFERENCE:
    score_sample = _score_sample(sampled_scores[REFERENCE], sampled_scores[candidate],
                                 eval_data.items, rng)
  return {
      'split': split,
      'users': len(eval_data.users),
      'catalogue_items': len(eval_data.items),
      'models': {name: metrics[name] for name in list(model_dirs) + list(baseline_scores)},
      'recall_curves': {name: evaluation.recall_curve(top, eval_data).tolist()
                        for name, top in tops.items()},
      'score_sample': score_sample,
  }
