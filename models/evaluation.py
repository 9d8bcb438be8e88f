"""Offline evaluation under the project's fixed protocol.

For a split S ('test' by default) of the per-user chronological split (`split.assign_splits`):

* the evaluated users are those with at least one interaction in S;
* a user's query is their state before S: every interaction in an earlier split is "seen" (train
  for S = eval; train and eval for S = test);
* the targets are the distinct items of the user's S interactions;
* the catalogue is the items of the train split. Every catalogue item except the seen ones is
  ranked; targets outside the catalogue (and targets already seen) count in the denominators but
  can never be hit;
* Recall@K = |targets in the top K| / |targets|; NDCG@10 uses binary relevance and an ideal DCG
  over min(|targets|, 10) hits; both are averaged over users. Coverage@10 is the number of distinct
  items in any user's top 10 over the catalogue size;
* RMSE is taken over S's interactions for models that predict ratings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Union

import numpy as np
import pandas as pd
from scipy import sparse

from contract import features
from pipeline.data import split as split_lib
from pipeline.data.loaders import Dataset

RECALL_KS = (10, 50, 100)
CUTOFF = 10  # of NDCG and coverage
METRIC_KEYS = [f'recall@{k}' for k in RECALL_KS] + [f'ndcg@{CUTOFF}', f'coverage@{CUTOFF}']
NOT_IN_CATALOGUE = -1  # catalogue index of a recommended id outside the catalogue, or no item


@dataclass(frozen=True)
class EvalData:
  """The evaluation queries and targets of one split.

  Attributes:
    split: the evaluated split S, one of `features.SPLITS`.
    items: the catalogue (train item ids); an item's position is its column in every matrix.
    users: the evaluated users (with at least one interaction in S); a user's position is their
      row in `seen`, `targets`, `num_targets` and in score matrices.
    seen: binary [users, items] matrix of the catalogue items each user interacted with before S.
    targets: binary [users, items] matrix of each user's S items that are in the catalogue.
    num_targets: each user's number of distinct S items, in the catalogue or not.
    train_matrix: binary [train users, items] matrix of the train interactions.
    interactions: S's interactions (USER_ID, ITEM_ID, RATING), for RMSE.
  """

  split: str
  items: pd.Index
  users: pd.Index
  seen: sparse.csr_matrix
  targets: sparse.csr_matrix
  num_targets: np.ndarray
  train_matrix: sparse.csr_matrix
  interactions: pd.DataFrame


def _binary_matrix(rows: np.ndarray, columns: np.ndarray, shape) -> sparse.csr_matrix:
  """A 0/1 float64 matrix with ones at the (row, column) pairs whose indices are both >= 0."""
  known = (rows >= 0) & (columns >= 0)
  matrix = sparse.csr_matrix((np.ones(known.sum()), (rows[known], columns[known])), shape=shape)
  matrix.sum_duplicates()
  matrix.data[:] = 1.0
  return matrix


def _user_item_matrix(frame: pd.DataFrame, users: pd.Index, items: pd.Index) -> sparse.csr_matrix:
  """Binary matrix of `frame`'s (user, item) pairs over `users` x `items`; others are dropped."""
  rows = users.get_indexer(frame[features.USER_ID])
  columns = items.get_indexer(frame[features.ITEM_ID])
  return _binary_matrix(rows, columns, (len(users), len(items)))


def _sorted_ids(values: pd.Series) -> pd.Index:
  """The distinct ids of `values`, sorted."""
  return pd.Index(np.unique(values.to_numpy()), dtype=object)


def build_eval_data(interactions: Union[Dataset, pd.DataFrame],
                    splits: Optional[Sequence[str]] = None,
                    split: str = features.TEST_SPLIT) -> EvalData:
  """Builds the queries and targets of `split` under the evaluation protocol.

  Args:
    interactions: a `Dataset` or its interactions table.
    splits: the split name of every interaction, aligned with the rows; by default the project's
      split, `split.assign_splits` with its default fractions.
    split: the evaluated split, 'eval' or 'test'.

  Returns:
    The `EvalData`; users and items are sorted by id.

  Raises:
    ValueError: for an unknown split, misaligned `splits`, or no train or no `split` rows.
  """
  if split not in features.SPLITS[1:]:
    raise ValueError(f'split must be one of {features.SPLITS[1:]}, got {split!r}')
  frame = interactions.interactions if isinstance(interactions, Dataset) else interactions
  names = np.asarray(split_lib.assign_splits(frame) if splits is None else splits, dtype=object)
  if names.shape != (len(frame),):
    raise ValueError(f'expected {len(frame)} split names, got shape {names.shape}')
  earlier = features.SPLITS[:features.SPLITS.index(split)]
  train = frame[names == features.TRAIN_SPLIT]
  evaluated = frame[names == split]
  if train.empty or evaluated.empty:
    raise ValueError(f'need train and {split} interactions, got {len(train)} and {len(evaluated)}')

  items = _sorted_ids(train[features.ITEM_ID])
  users = _sorted_ids(evaluated[features.USER_ID])
  distinct = evaluated.drop_duplicates([features.USER_ID, features.ITEM_ID])
  num_targets = distinct.groupby(features.USER_ID).size().reindex(users).to_numpy()
  return EvalData(
      split=split,
      items=items,
      users=users,
      seen=_user_item_matrix(frame[np.isin(names, earlier)], users, items),
      targets=_user_item_matrix(distinct, users, items),
      num_targets=num_targets,
      train_matrix=_user_item_matrix(train, _sorted_ids(train[features.USER_ID]), items),
      interactions=evaluated[[features.USER_ID, features.ITEM_ID, features.RATING]],
  )


def _top_items(scores: np.ndarray, seen: sparse.csr_matrix, k: int) -> np.ndarray:
  """Catalogue indices of each row's k best unseen items, best first; `NOT_IN_CATALOGUE` fills
  the places beyond the row's unseen items. Ties are broken arbitrarily (np.argpartition)."""
  masked = np.array(scores, dtype=np.float64)
  rows, columns = seen.nonzero()
  masked[rows, columns] = -np.inf
  k = min(k, masked.shape[1])
  candidates = np.argpartition(-masked, k - 1, axis=1)[:, :k]
  candidate_scores = np.take_along_axis(masked, candidates, axis=1)
  order = np.argsort(-candidate_scores, axis=1, kind='stable')
  top = np.take_along_axis(candidates, order, axis=1)
  top[np.take_along_axis(candidate_scores, order, axis=1) == -np.inf] = NOT_IN_CATALOGUE
  return top


def _hits(top: np.ndarray, eval_data: EvalData) -> np.ndarray:
  """Boolean [users, depth]: whether each place of `top` holds one of the user's targets."""
  valid = top != NOT_IN_CATALOGUE
  is_target = eval_data.targets.toarray().astype(bool)
  return valid & np.take_along_axis(is_target, np.where(valid, top, 0), axis=1)


def metrics_of_top(top: np.ndarray, eval_data: EvalData,
                   ks: Sequence[int] = RECALL_KS) -> Dict[str, float]:
  """The metrics of the per-user rankings `top` ([users, depth] catalogue indices, best first,
  `NOT_IN_CATALOGUE` for places that hold no catalogue item)."""
  valid = top != NOT_IN_CATALOGUE
  hits = _hits(top, eval_data)
  hits_within = np.cumsum(hits, axis=1)
  num_targets = eval_data.num_targets
  metrics = {
      f'recall@{k}': float(np.mean(hits_within[:, min(k, top.shape[1]) - 1] / num_targets))
      for k in ks
  }
  discounts = 1.0 / np.log2(np.arange(CUTOFF) + 2.0)
  dcg = hits[:, :CUTOFF] @ discounts[:min(CUTOFF, top.shape[1])]
  ideal = np.cumsum(discounts)[np.minimum(num_targets, CUTOFF) - 1]
  metrics[f'ndcg@{CUTOFF}'] = float(np.mean(dcg / ideal))
  recommended = np.unique(top[:, :CUTOFF][valid[:, :CUTOFF]])
  metrics[f'coverage@{CUTOFF}'] = len(recommended) / len(eval_data.items)
  return metrics


def ranking_metrics(scores: np.ndarray,
                    eval_data: EvalData,
                    ks: Sequence[int] = RECALL_KS) -> Dict[str, float]:
  """Recall@k for each k in `ks`, NDCG@10 and coverage@10 of full-catalogue scores.

  Args:
    scores: [len(eval_data.users), len(eval_data.items)] scores, higher is better.
    eval_data: the queries and targets.
    ks: the recall cutoffs.

  Returns:
    The metrics, keyed `METRIC_KEYS` for the default `ks`.
  """
  return metrics_of_top(top_from_scores(scores, eval_data, max(max(ks), CUTOFF)), eval_data, ks)


def ranking_metrics_from_topk(topk_item_ids: Sequence[Sequence[str]],
                              eval_data: EvalData,
                              ks: Sequence[int] = RECALL_KS) -> Dict[str, float]:
  """The metrics of `ranking_metrics` for models that return their top items themselves.

  Seen items and repeated ids are dropped from each list before cutting it at max(ks), so a
  model that cannot exclude every seen item should return max(ks) + (number of seen items) ids.
  Ids outside the catalogue keep their place but are never hits nor counted in coverage.

  Args:
    topk_item_ids: for each of `eval_data.users` in order, item id strings (decoded `str`, not
      bytes), best first.
    eval_data: the queries and targets.
    ks: the recall cutoffs.

  Returns:
    The metrics, keyed `METRIC_KEYS` for the default `ks`.
  """
  return metrics_of_top(top_from_ids(topk_item_ids, eval_data, max(max(ks), CUTOFF)), eval_data,
                        ks)


def top_from_scores(scores: np.ndarray, eval_data: EvalData, depth: int) -> np.ndarray:
  """Each user's `depth` best unseen catalogue items of full-catalogue `scores`.

  Args:
    scores: [len(eval_data.users), len(eval_data.items)] scores, higher is better.
    eval_data: the queries.
    depth: how many places to keep.

  Returns:
    int [users, depth] catalogue indices, best first; `NOT_IN_CATALOGUE` where a user has fewer
    unseen items.
  """
  expected = (len(eval_data.users), len(eval_data.items))
  if np.shape(scores) != expected:
    raise ValueError(f'scores must have shape {expected}, got {np.shape(scores)}')
  top = _top_items(scores, eval_data.seen, depth)
  if top.shape[1] < depth:
    top = np.pad(top, ((0, 0), (0, depth - top.shape[1])), constant_values=NOT_IN_CATALOGUE)
  return top


def top_from_ids(topk_item_ids: Sequence[Sequence[str]], eval_data: EvalData,
                 depth: int) -> np.ndarray:
  """Each user's first `depth` item ids as catalogue indices, after dropping seen items and
  repeated ids (the rule of `ranking_metrics_from_topk`).

  Args:
    topk_item_ids: for each of `eval_data.users` in order, item id strings, best first.
    eval_data: the queries.
    depth: how many places to keep.

  Returns:
    int [users, depth] catalogue indices, best first; `NOT_IN_CATALOGUE` for ids outside the
    catalogue and places beyond a user's list.
  """
  if len(topk_item_ids) != len(eval_data.users):
    raise ValueError(f'expected {len(eval_data.users)} lists, got {len(topk_item_ids)}')
  lengths = [len(ids) for ids in topk_item_ids]
  ids = np.concatenate([np.asarray(ids, dtype=object) for ids in topk_item_ids])
  rows = np.repeat(np.arange(len(lengths)), lengths)
  columns = eval_data.items.get_indexer(ids)
  known = columns != NOT_IN_CATALOGUE
  seen = np.zeros(len(ids), dtype=bool)
  seen[known] = eval_data.seen[rows[known], columns[known]].A1 > 0
  kept = ~seen & ~pd.DataFrame({'row': rows, 'id': ids}).duplicated().to_numpy()
  rows, columns = rows[kept], columns[kept]
  places = pd.Series(rows).groupby(rows).cumcount().to_numpy()
  top = np.full((len(lengths), depth), NOT_IN_CATALOGUE)
  within = places < depth
  top[rows[within], places[within]] = columns[within]
  return top


def rmse(predictions: np.ndarray, ratings: np.ndarray) -> float:
  """Root mean squared error of predicted ratings."""
  predictions = np.asarray(predictions, dtype=np.float64)
  ratings = np.asarray(ratings, dtype=np.float64)
  if predictions.shape != ratings.shape or not ratings.size:
    raise ValueError(f'need equal non-empty shapes, got {predictions.shape} and {ratings.shape}')
  return float(np.sqrt(np.mean((predictions - ratings)**2)))


def recall_curve(top: np.ndarray, eval_data: EvalData) -> np.ndarray:
  """Recall@k for every k from 1 to the depth of `top` (top[:, :k] as in `metrics_of_top`).

  Returns:
    float64 [depth]: entry k - 1 is Recall@k averaged over users.
  """
  hits = _hits(top, eval_data)
  return np.mean(np.cumsum(hits, axis=1) / eval_data.num_targets[:, None], axis=0)


def novelty(top: np.ndarray, eval_data: EvalData, cutoff: int = CUTOFF) -> float:
  """Mean self-information -log2(p) of the recommended items in each user's top `cutoff`, where
  p is the fraction of train users who interacted with the item (catalogue items have p > 0).
  Places without a catalogue item are left out."""
  users_per_item = np.asarray(eval_data.train_matrix.sum(axis=0)).ravel()
  information = -np.log2(users_per_item / eval_data.train_matrix.shape[0])
  recommended = top[:, :cutoff]
  recommended = recommended[recommended != NOT_IN_CATALOGUE]
  if not recommended.size:
    raise ValueError('no catalogue item recommended')
  return float(np.mean(information[recommended]))


def fidelity(top: np.ndarray, reference_top: np.ndarray, cutoff: int = CUTOFF) -> float:
  """Mean over users of |top `cutoff` ∩ reference top `cutoff`| / `cutoff`: how much of a
  reference model's (the teacher's) top items a model (the student) reproduces.

  Args:
    top: [users, depth] catalogue indices of the model, best first.
    reference_top: [users, depth'] catalogue indices of the reference model, same users.
    cutoff: how many places of each list to compare.
  """
  if top.shape[0] != reference_top.shape[0]:
    raise ValueError(f'need the same users, got {top.shape[0]} and {reference_top.shape[0]} rows')
  overlaps = [
      len(np.intersect1d(mine[mine != NOT_IN_CATALOGUE], theirs[theirs != NOT_IN_CATALOGUE]))
      for mine, theirs in zip(top[:, :cutoff], reference_top[:, :cutoff])
  ]
  return float(np.mean(overlaps)) / cutoff


USER_SIDE_FEATURES = (features.AGE, features.GENDER, features.OCCUPATION, features.ZIP_CODE)


def user_side_features(table: pd.DataFrame, users: Sequence[str]) -> Dict[str, np.ndarray]:
  """Each user's side features (a query's age, gender, occupation, zip code) from `table`, rows
  with USER_ID and any of those columns (the first row of a user counts); the serving default
  where a user or a column is missing."""
  present = [name for name in USER_SIDE_FEATURES if name in table.columns]
  rows = (table.drop_duplicates(features.USER_ID).set_index(features.USER_ID)[present]
          .reindex(pd.Index(users, name=features.USER_ID)))
  side = {}
  for name in USER_SIDE_FEATURES:
    default = features.default_value(name)
    values = rows[name].fillna(default) if name in present else pd.Series(
        [default] * len(users))
    side[name] = values.to_numpy().astype(np.int64 if name in features.INT_FEATURES else str)
  return side
