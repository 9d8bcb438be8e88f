"""Eval-split quality of the models in memory, for the Trainer's training summary.

Same protocol as `evaluation` (full catalogue, items seen in train excluded), in index
space, on up to `max_users` eval users: a user's query is their first eval example (history =
their latest items before the eval split), their targets every eval item. Both splits are
streamed; memory grows with the sampled users, not with the data set.
"""
import dataclasses
from typing import Dict, Tuple

import numpy as np
import pandas as pd
from scipy import sparse
import tensorflow as tf

from contract import features
from evaluation import metrics as metrics_lib
from evaluation import protocol
from models import quantization
from models import towers


@dataclasses.dataclass(frozen=True)
class EvalQueries:
  queries: Dict[str, np.ndarray]  # query-tower features, one row per user
  eval_data: protocol.EvalData  # in index space: item i is catalogue index i + 1


def collect(train: tf.data.Dataset, eval_split: tf.data.Dataset, num_catalogue_items: int,
            max_users: int) -> EvalQueries:
  """The first `max_users` users of the eval split, their queries, targets and seen items."""
  queries, targets = {}, {}
  for batch in eval_split:
    columns = {name: batch[name].numpy() for name in towers.QUERY_FEATURES}
    items = batch[features.ITEM_INDEX].numpy()
    for row, user in enumerate(columns[features.USER_INDEX]):
      if user not in queries and len(queries) < max_users:
        queries[user] = {name: column[row] for name, column in columns.items()}
      if user in queries:
        targets.setdefault(user, set()).add(items[row])
  seen = {user: set() for user in queries}
  for batch in train:
    for user, item in zip(batch[features.USER_INDEX].numpy(), batch[features.ITEM_INDEX].numpy()):
      if user in seen:
        seen[user].add(item)
  users = list(queries)

  def matrix(item_sets):
    rows = [row for row, user in enumerate(users) for _ in item_sets[user]]
    columns = [item - 1 for user in users for item in item_sets[user]]
    inside = [0 <= c < num_catalogue_items for c in columns]
    return sparse.csr_matrix(
        (np.ones(sum(inside)), (np.array(rows)[inside], np.array(columns)[inside])),
        shape=(len(users), num_catalogue_items))

  eval_data = protocol.EvalData(
      split=features.EVAL_SPLIT, items=pd.Index(np.arange(1, num_catalogue_items + 1)),
      users=pd.Index(users), seen=matrix(seen), targets=matrix(targets),
      num_targets=np.array([len(targets[user]) for user in users]))
  stacked = {name: np.stack([queries[user][name] for user in users])
             for name in towers.QUERY_FEATURES}
  return EvalQueries(stacked, eval_data)


def catalogue_scores(model, eval_queries: EvalQueries, catalogue: Dict[str, np.ndarray],
                     int8_index: bool) -> np.ndarray:
  """[users, catalogue] scores as the exported index computes them."""
  candidates = model.embed_candidates(
      {name: tf.constant(catalogue[name]) for name in towers.CANDIDATE_FEATURES}).numpy()
  if int8_index:
    candidates = quantization.dequantize_rows(*quantization.quantize_rows(candidates))
  queries = model.embed_queries(
      {name: tf.constant(values) for name, values in eval_queries.queries.items()}).numpy()
  return queries @ candidates.T


def ranking(model, eval_queries: EvalQueries, catalogue: Dict[str, np.ndarray],
            int8_index: bool = False) -> Tuple[Dict[str, float], np.ndarray]:
  """The ranking metrics and each user's top-10 catalogue indices."""
  scores = catalogue_scores(model, eval_queries, catalogue, int8_index)
  eval_data = eval_queries.eval_data
  top = metrics_lib.top_from_scores(scores, eval_data, metrics_lib.CUTOFF)
  return metrics_lib.ranking_metrics(scores, eval_data), top


def rmse(model, eval_split: tf.data.Dataset) -> float:
  predictions, ratings = [], []
  for batch in eval_split:
    predictions.append(model(batch)['rating'].numpy())
    ratings.append(batch[features.LABEL].numpy())
  return metrics_lib.rmse(np.concatenate(predictions), np.concatenate(ratings))
