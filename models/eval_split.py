"""Eval-split quality of the models in memory, for the Trainer's training summary.

Same protocol and metrics as `evaluation` (full catalogue, items seen in train excluded), in index
space, on up to `max_users` eval users: the first `max_users` users of the eval split in its
order. A user's query is their first eval example (history = their latest items before the eval
split), their targets every eval item. Both splits are streamed batch by batch; memory grows with
the sampled users' interactions, not with the data set.
"""
import dataclasses
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd
from scipy import sparse
import tensorflow as tf

from contract import features
from evaluation import metrics as metrics_lib
from evaluation import protocol
from models import inputs
from models import quantization
from models import towers


@dataclasses.dataclass(frozen=True)
class EvalQueries:
  queries: Dict[str, np.ndarray]  # query-tower features, one row per user
  eval_data: protocol.EvalData  # in index space: item i is catalogue index i + 1

  def first(self, count: int) -> 'EvalQueries':
    """The queries of the first `count` users (`collect` of `count` users gives the same)."""
    data = self.eval_data
    return EvalQueries({name: values[:count] for name, values in self.queries.items()},
                       dataclasses.replace(data, users=data.users[:count], seen=data.seen[:count],
                                           targets=data.targets[:count],
                                           num_targets=data.num_targets[:count]))


def first_rows(users: np.ndarray, known: np.ndarray, room: int) -> np.ndarray:
  """Positions in `users` of the first row of each user not in `known`, in row order, at most
  `room` of them."""
  _, first = np.unique(users, return_index=True)
  first = np.sort(first)
  return first[~np.isin(users[first], known)][:room]


def known_pairs(batch: Dict[str, tf.Tensor], users: pd.Index) -> np.ndarray:
  """int64 [n, 2] (row in `users`, item index) pairs of the batch's rows whose user is in
  `users`, in row order."""
  rows = users.get_indexer(batch[features.USER_INDEX].numpy())
  known = rows >= 0
  return np.stack([rows[known], batch[features.ITEM_INDEX].numpy()[known].astype(np.int64)],
                  axis=1)


def user_item_matrix(pairs: List[np.ndarray], num_users: int,
                     num_catalogue_items: int) -> Tuple[sparse.csr_matrix, np.ndarray]:
  """(matrix, counts) of (row, item index) pairs (`known_pairs`' arrays): the binary
  [num_users, num_catalogue_items] matrix, item i in column i - 1 (items outside
  1..num_catalogue_items are left out), and each row's number of distinct items, left-out ones
  included."""
  pairs = np.unique(np.concatenate([np.empty((0, 2), np.int64)] + pairs), axis=0)
  columns = pairs[:, 1] - 1
  columns[columns >= num_catalogue_items] = -1
  matrix = protocol.binary_matrix(pairs[:, 0], columns, (num_users, num_catalogue_items))
  return matrix, np.bincount(pairs[:, 0], minlength=num_users)


def collect(train: tf.data.Dataset, eval_split: tf.data.Dataset, num_catalogue_items: int,
            max_users: int) -> EvalQueries:
  """The first `max_users` users of the eval split, their queries, targets and seen items."""
  users = pd.Index(np.empty(0, np.int64))
  queries: Dict[str, List[np.ndarray]] = {name: [] for name in towers.QUERY_FEATURES}
  target_pairs = []
  for batch in eval_split:
    if len(users) < max_users:
      batch_users = batch[features.USER_INDEX].numpy()
      new = first_rows(batch_users, users.to_numpy(), max_users - len(users))
      users = users.append(pd.Index(batch_users[new]))
      for name in towers.QUERY_FEATURES:
        queries[name].append(batch[name].numpy()[new])
    target_pairs.append(known_pairs(batch, users))  # no user has eval rows before their first
  seen_pairs = [known_pairs(batch, users) for batch in train]
  targets, num_targets = user_item_matrix(target_pairs, len(users), num_catalogue_items)
  seen, _ = user_item_matrix(seen_pairs, len(users), num_catalogue_items)
  eval_data = protocol.EvalData(
      split=features.EVAL_SPLIT, items=pd.Index(np.arange(1, num_catalogue_items + 1)),
      users=users, seen=seen, targets=targets, num_targets=num_targets)
  return EvalQueries({name: np.concatenate(values) for name, values in queries.items()},
                     eval_data)


def items_targets(eval_split: tf.data.Dataset, users: pd.Index,
                  item_ids: np.ndarray) -> sparse.csr_matrix:
  """The binary [users, items] matrix of the eval targets of `users` (user indices) among the
  items of raw ids `item_ids`: cold items, which the index space cannot tell apart (they share
  OOV buckets), by their raw ids."""
  items = pd.Index(item_ids)
  rows, columns = [], []
  for batch in eval_split:
    rows.append(users.get_indexer(batch[features.USER_INDEX].numpy()))
    columns.append(items.get_indexer(inputs.id_strings(batch[features.ITEM_ID].numpy())))
  return protocol.binary_matrix(np.concatenate(rows + [np.empty(0, np.int64)]),
                                np.concatenate(columns + [np.empty(0, np.int64)]),
                                (len(users), len(items)))


def query_embeddings(model, eval_queries: EvalQueries) -> np.ndarray:
  """[users, dim] the model's queries of the eval users."""
  return model.embed_queries(
      {name: tf.constant(values) for name, values in eval_queries.queries.items()}).numpy()


def catalogue_scores(model, eval_queries: EvalQueries, catalogue: Dict[str, np.ndarray],
                     int8_index: bool) -> np.ndarray:
  """[users, catalogue] scores as the exported index computes them."""
  candidates = model.embed_candidates(towers.item_features(catalogue)).numpy()
  if int8_index:
    candidates = quantization.dequantize_rows(*quantization.quantize_rows(candidates))
  return query_embeddings(model, eval_queries) @ candidates.T


def ranking(model, eval_queries: EvalQueries, catalogue: Dict[str, np.ndarray],
            int8_index: bool = False) -> Tuple[Dict[str, float], np.ndarray]:
  """The ranking metrics and each user's top-10 catalogue indices."""
  scores = catalogue_scores(model, eval_queries, catalogue, int8_index)
  eval_data = eval_queries.eval_data
  top = metrics_lib.top_from_scores(scores, eval_data, metrics_lib.CUTOFF)
  return metrics_lib.ranking_metrics(scores, eval_data), top


# Examples per eager call of `rmse`: an eager call costs about the same for 512 examples as for
# 4,096 (a large model's ops are dispatched one by one), so fewer, larger batches.
RMSE_BATCH = 4096


def rmse(model, eval_split: tf.data.Dataset) -> float:
  """RMSE of the model's predicted ratings over the eval split (batched, in `RMSE_BATCH`
  batches)."""
  predictions, ratings = [], []
  for batch in eval_split.rebatch(RMSE_BATCH):
    predictions.append(model(batch)['rating'].numpy())
    ratings.append(batch[features.LABEL].numpy())
  return metrics_lib.rmse(np.concatenate(predictions), np.concatenate(ratings))
