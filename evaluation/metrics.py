"""Ranking and rating metrics of the evaluation protocol (`evaluation.protocol`).

Recall@K = |targets in the top K| / |targets|; NDCG@10 uses binary relevance and an ideal DCG over
min(|targets|, 10) hits; both are averaged over users. Coverage@10 is the number of distinct items
in any user's top 10 over the catalogue size (cold items included). Novelty is the mean
self-information of the recommended items, from their train popularity (`novelty`). RMSE is
taken over the evaluated split's interactions for models that predict ratings. Rankings are
[users, depth] catalogue indices, best first (`top_from_scores`, `top_from_ids`).

Slice metrics (`slice_metrics`, keys `SLICE_METRIC_KEYS`) are these metrics over the slices of
`evaluation.protocol` (for the new-users slice, over the rankings of the queries asked with an
unknown user id). A slice without users has the value None.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from evaluation import protocol

RECALL_KS = (10, 50, 100)
CUTOFF = 10  # of NDCG and coverage
METRIC_KEYS = [f'recall@{k}' for k in RECALL_KS] + [f'ndcg@{CUTOFF}', f'coverage@{CUTOFF}']
NOT_IN_CATALOGUE = -1  # catalogue index of a recommended id outside the catalogue, or no item

# The metrics of the slices (`protocol.SLICES`): key f'{metric}_{slice}' (module docstring).
SLICE_METRICS = (
    (f'recall@{max(RECALL_KS)}', protocol.COLD_ITEMS),
    (f'recall@{max(RECALL_KS)}', protocol.WARM_ITEMS),
    (f'ndcg@{CUTOFF}', protocol.NEW_USERS),
    (f'recall@{max(RECALL_KS)}', protocol.NEW_USERS),
    (f'ndcg@{CUTOFF}', protocol.SHORT_HISTORY),
    (f'recall@{max(RECALL_KS)}', protocol.LONG_TAIL),
)


def slice_key(metric: str, slice_name: str) -> str:
  """The key of `metric` over the slice `slice_name`: 'recall@100_cold_items'."""
  return f'{metric}_{slice_name}'


SLICE_METRIC_KEYS = [slice_key(metric, name) for metric, name in SLICE_METRICS]


# Users ranked at a time: the copy of their scores (float32, or float64 for float64 scores) and
# its argpartition take at most 16 bytes an item each, so a block of 1,024 users over 50,000
# items takes at most 0.8 GB, whatever the users.
USER_BLOCK = 1024


def _top_items(scores: np.ndarray, seen: sparse.csr_matrix, k: int) -> np.ndarray:
  """Catalogue indices of each row's k best unseen items, best first; `NOT_IN_CATALOGUE` fills
  the places beyond the row's unseen items. Ties are broken arbitrarily (np.argpartition).
  Ranks `USER_BLOCK` rows at a time."""
  scores = np.asarray(scores)
  k = min(k, scores.shape[1])
  top = np.empty((scores.shape[0], k), dtype=np.int64)
  for start in range(0, scores.shape[0], USER_BLOCK):
    stop = min(start + USER_BLOCK, scores.shape[0])
    masked = np.array(scores[start:stop], dtype=np.promote_types(scores.dtype, np.float32))
    rows, columns = seen[start:stop].nonzero()
    masked[rows, columns] = -np.inf
    masked *= -1.0  # in place: argpartition's smallest are the best
    candidates = np.argpartition(masked, k - 1, axis=1)[:, :k]
    candidate_scores = np.take_along_axis(masked, candidates, axis=1)
    order = np.argsort(candidate_scores, axis=1, kind='stable')
    block = np.take_along_axis(candidates, order, axis=1)
    block[np.take_along_axis(candidate_scores, order, axis=1) == np.inf] = NOT_IN_CATALOGUE
    top[start:stop] = block
  return top


def _hits(top: np.ndarray, eval_data: protocol.EvalData) -> np.ndarray:
  """Boolean [users, depth]: whether each place of `top` holds one of the user's targets."""
  valid = top != NOT_IN_CATALOGUE
  is_target = eval_data.targets.toarray().astype(bool)
  return valid & np.take_along_axis(is_target, np.where(valid, top, 0), axis=1)


def metrics_of_top(top: np.ndarray, eval_data: protocol.EvalData,
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
                    eval_data: protocol.EvalData,
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
                              eval_data: protocol.EvalData,
                              ks: Sequence[int] = RECALL_KS) -> Dict[str, float]:
  """The metrics of `ranking_metrics` for models that return their top items themselves.

  Seen items and repeated ids are dropped from each list before cutting it at max(ks), so a
  model that cannot exclude every seen item should return max(ks) + (number of seen items) ids.
  Ids outside the catalogue keep their place but are never hits nor counted in coverage.

  Args:
    topk_item_ids: for each of `eval_data.users` in order, item ids (`str`, or UTF-8 `bytes`
      as exported models return them), best first.
    eval_data: the queries and targets.
    ks: the recall cutoffs.

  Returns:
    The metrics, keyed `METRIC_KEYS` for the default `ks`.
  """
  return metrics_of_top(top_from_ids(topk_item_ids, eval_data, max(max(ks), CUTOFF)), eval_data,
                        ks)


def top_from_scores(scores: np.ndarray, eval_data: protocol.EvalData, depth: int) -> np.ndarray:
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


def _in_matrix(matrix: sparse.spmatrix, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
  """bool per (row, column) pair: whether `matrix` holds a nonzero there (a hashed look-up of
  its entries: indexing a sparse matrix with millions of pairs is several times slower)."""
  matrix = sparse.coo_matrix(matrix)
  nonzero = matrix.data != 0
  entries = matrix.row[nonzero].astype(np.int64) * matrix.shape[1] + matrix.col[nonzero]
  return pd.Index(rows.astype(np.int64) * matrix.shape[1] + columns).isin(entries)


def top_from_ids(topk_item_ids: Sequence[Sequence[str]], eval_data: protocol.EvalData,
                 depth: int) -> np.ndarray:
  """Each user's first `depth` item ids as catalogue indices, after dropping seen items and
  repeated ids (the rule of `ranking_metrics_from_topk`).

  Args:
    topk_item_ids: for each of `eval_data.users` in order, item ids (`str`, or UTF-8 `bytes`
      as `saved_models.catalogue_rankings` gives them), best first.
    eval_data: the queries.
    depth: how many places to keep.

  Returns:
    int [users, depth] catalogue indices, best first; `NOT_IN_CATALOGUE` for ids outside the
    catalogue and places beyond a user's list.
  """
  if len(topk_item_ids) != len(eval_data.users):
    raise ValueError(f'expected {len(eval_data.users)} lists, got {len(topk_item_ids)}')
  lengths = [len(ids) for ids in topk_item_ids]
  ids = np.concatenate([np.empty(0, object)]
                       + [np.asarray(ids, dtype=object) for ids in topk_item_ids])
  rows = np.repeat(np.arange(len(lengths)), lengths)
  catalogue = eval_data.items
  if len(ids) and isinstance(ids[0], bytes):
    catalogue = pd.Index(catalogue.astype(str).str.encode('utf-8'))
  columns = catalogue.get_indexer(ids)
  known = columns != NOT_IN_CATALOGUE
  seen = np.zeros(len(ids), dtype=bool)
  seen[known] = _in_matrix(eval_data.seen, rows[known], columns[known])
  # Repeated ids: by catalogue column, and ids outside the catalogue by a code of their own.
  unknown_codes, _ = pd.factorize(ids[~known])
  codes = columns.astype(np.int64)
  codes[~known] = len(catalogue) + unknown_codes
  kept = ~seen & ~pd.Series(rows * (len(catalogue) + len(ids)) + codes).duplicated().to_numpy()
  rows, columns = rows[kept], columns[kept]
  # Each kept id's place in its user's list (rows are in order).
  places = np.arange(len(rows)) - np.searchsorted(rows, np.arange(len(lengths)))[rows]
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


def recall_curve(top: np.ndarray, eval_data: protocol.EvalData) -> np.ndarray:
  """Recall@k for every k from 1 to the depth of `top` (top[:, :k] as in `metrics_of_top`).

  Returns:
    float64 [depth]: entry k - 1 is Recall@k averaged over users.
  """
  hits = _hits(top, eval_data)
  return np.mean(np.cumsum(hits, axis=1) / eval_data.num_targets[:, None], axis=0)


def novelty(top: np.ndarray, eval_data: protocol.EvalData, cutoff: int = CUTOFF) -> float:
  """Mean self-information -log2(p) of the recommended items in each user's top `cutoff`, where
  p is the fraction of train users who interacted with the item. A cold item (no train user) has
  p = 0: it counts as an item of one train user, the most novel a warm item can be, so that
  novelty stays finite and warm items keep their value. Places without a catalogue item are left
  out."""
  train_matrix = protocol.train_matrix_of(eval_data)
  users_per_item = np.maximum(np.asarray(train_matrix.sum(axis=0)).ravel(), 1.0)
  information = -np.log2(users_per_item / train_matrix.shape[0])
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


def metrics_of_slice(top: np.ndarray, eval_slice: protocol.Slice) -> Optional[Dict[str, float]]:
  """`metrics_of_top` over a slice; `top` holds the rankings of every user of the full
  `EvalData` (the slice keeps its rows). None when the slice has no users."""
  if not len(eval_slice.rows):
    return None
  return metrics_of_top(top[eval_slice.rows], eval_slice.eval_data)


def slice_metrics(top: np.ndarray, new_user_top: np.ndarray,
                  slices: Mapping[str, protocol.Slice]) -> Dict[str, Optional[float]]:
  """The slice metrics of one model, keyed `SLICE_METRIC_KEYS`.

  Args:
    top: [users, depth] rankings of every evaluated user (catalogue indices, best first).
    new_user_top: the same queries' rankings with the user id replaced by an unknown one (for a
      model that reads no user id, `top` itself).
    slices: the slices of the evaluated split, keyed `protocol.SLICES` (`protocol.build_slices`).

  Returns:
    {key: value}, None for a slice without users.
  """
  if top.shape[0] != new_user_top.shape[0]:
    raise ValueError(f'need the same users, got {top.shape[0]} and {new_user_top.shape[0]} rows')
  per_slice = {name: metrics_of_slice(new_user_top if name == protocol.NEW_USERS else top, part)
               for name, part in slices.items()}
  return {slice_key(metric, name): None if per_slice[name] is None else per_slice[name][metric]
          for metric, name in SLICE_METRICS}
