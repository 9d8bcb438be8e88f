"""Reference baselines for the offline evaluation: popularity, EASE and the global mean rating.

Popularity and EASE learn from the train interactions only: a cold catalogue item (no train
interaction, an all-zero train matrix column) scores 0 for every user.
"""

from __future__ import annotations

from typing import Iterator, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import linalg
from scipy import sparse

from contract import features
from evaluation import metrics
from evaluation import protocol

EASE_L2 = 300.0  # without an eval split to tune it on
# The L2 weights that EASE is tuned over on the eval split (the baseline and the hybrid teacher).
EASE_L2_VALUES = (30.0, 100.0, 300.0, 1000.0)


def popularity_scores(train: pd.DataFrame, eval_data: protocol.EvalData) -> np.ndarray:
  """Every catalogue item's number of train interactions (0 for cold items), the same row for
  every user.

  Args:
    train: the train interactions.
    eval_data: the queries.

  Returns:
    float64 scores [len(eval_data.users), len(eval_data.items)].
  """
  counts = train[features.ITEM_ID].value_counts().reindex(eval_data.items, fill_value=0)
  return np.tile(counts.to_numpy(dtype=np.float64), (len(eval_data.users), 1))


def ease_weights(train_matrix: sparse.spmatrix, l2: float = EASE_L2,
                 dtype=np.float64) -> np.ndarray:
  """The item-item weights B of EASE (Steck, 2019) in closed form.

  B minimises ||X - XB||² + l2 ||B||² subject to diag(B) = 0: with P = (XᵀX + l2 I)⁻¹,
  B = -P / diag(P) column-wise, and a zero diagonal. An item without train interactions (an
  all-zero column of X) is decoupled from the others in XᵀX + l2 I, so its row and column of B
  are 0 and P is computed over the other items only. P comes from a Cholesky factorisation (a
  third of a general inverse's work); float32 halves it again. Memory: about two [items, items]
  arrays of `dtype`.

  Args:
    train_matrix: the binary [users, items] train matrix X.
    l2: the L2 regularisation weight.
    dtype: the precision of the computation.

  Returns:
    weights [items, items] of `dtype`.
  """
  (_, weights), = _ease_weights_by_l2(train_matrix, [l2], dtype)
  return weights


def _ease_weights_by_l2(train_matrix: sparse.spmatrix, l2_values: Sequence[float],
                        dtype) -> Iterator[Tuple[float, np.ndarray]]:
  """(l2, `ease_weights`) for each of `l2_values` in turn, from one XᵀX (the last in its
  memory)."""
  train_matrix = sparse.csc_matrix(train_matrix, dtype=dtype)
  active = np.flatnonzero(train_matrix.getnnz(axis=0))
  gram = (train_matrix[:, active].T @ train_matrix[:, active]).toarray()
  for position, l2 in enumerate(l2_values):
    last = position == len(l2_values) - 1
    weights = ease_weights_of(ease_precision(gram, l2, overwrite=last))
    if last:
      del gram
    if len(active) < train_matrix.shape[1]:
      active_weights = weights
      weights = np.zeros((train_matrix.shape[1],) * 2, dtype=dtype)
      weights[np.ix_(active, active)] = active_weights
      del active_weights
    yield l2, weights
    del weights  # before the next L2 weight's (the caller lets go of its own first)


def ease_weights_of(precision: np.ndarray) -> np.ndarray:
  """EASE's B from P = (XᵀX + l2 I)⁻¹ (`ease_precision`), in P's memory: -P / diag(P)
  column-wise, with a zero diagonal."""
  precision /= -np.diag(precision)
  np.fill_diagonal(precision, 0.0)
  return precision


def ease_precision(gram: np.ndarray, l2: float, overwrite: bool = False) -> np.ndarray:
  """P = (gram + l2 I)⁻¹ of a Gram matrix XᵀX without all-zero columns, by a Cholesky
  factorisation, in `gram`'s dtype (with `overwrite`, in `gram`'s memory)."""
  gram = gram if overwrite else gram.copy()
  gram[np.diag_indices_from(gram)] += l2
  factor, info = linalg.lapack.get_lapack_funcs('potrf', (gram,))(gram, lower=False,
                                                                  overwrite_a=True)
  if info:
    raise np.linalg.LinAlgError(f'EASE: the regularised Gram matrix is not positive ({info})')
  precision, info = linalg.lapack.get_lapack_funcs('potri', (factor,))(factor, lower=False,
                                                                       overwrite_c=True)
  del factor
  _symmetrise_upper(precision)
  return precision


def _symmetrise_upper(matrix: np.ndarray, block: int = 2048) -> None:
  """Copies the upper triangle of the square `matrix` into its lower one, in place, a block of
  rows at a time (no full-size temporary)."""
  for start in range(0, len(matrix), block):
    stop = min(start + block, len(matrix))
    matrix[start:stop, :start] = matrix[:start, start:stop].T
    diagonal = matrix[start:stop, start:stop]
    diagonal[:] = np.triu(diagonal) + np.triu(diagonal, 1).T


def tuned_ease(tuning: protocol.EvalData, evaluated: protocol.EvalData,
               l2_values: Sequence[float] = EASE_L2_VALUES,
               dtype=np.float32) -> Tuple[float, np.ndarray]:
  """The L2 weight of `l2_values` whose EASE ranks `tuning` (the eval split's queries) best by
  NDCG@10 (the first of equals), and that EASE's scores of `evaluated`'s queries (as
  `ease_scores`): the baseline is tuned on the eval split, as the models are. Both must have
  the same train matrix and catalogue (`protocol.build_eval_data` of the same interactions)."""
  train = protocol.train_matrix_of(tuning)
  if not tuning.items.equals(evaluated.items) or (
      train != protocol.train_matrix_of(evaluated)).nnz:
    raise ValueError('EASE is tuned and evaluated on different train matrices')
  best, best_ndcg, scores = None, None, None
  for l2, weights in _ease_weights_by_l2(train, l2_values, dtype):
    ndcg = metrics.ranking_metrics(np.asarray(tuning.seen @ weights), tuning)['ndcg@10']
    if best is None or ndcg > best_ndcg:
      best, best_ndcg = l2, ndcg
      scores = np.asarray(evaluated.seen @ weights, dtype=np.float64)
    del weights  # before the next L2 weight's: two [items, items] arrays at a time, not three
  return best, scores


def ease_scores(eval_data: protocol.EvalData, l2: float = EASE_L2,
                dtype=np.float32) -> np.ndarray:
  """EASE scores of every catalogue item: weights learnt on the train matrix (in `dtype`),
  applied to each user's seen items (train, plus eval when evaluating on test); 0 for cold
  items.

  Returns:
    float64 scores [len(eval_data.users), len(eval_data.items)].
  """
  return np.asarray(eval_data.seen @ ease_weights(protocol.train_matrix_of(eval_data), l2, dtype),
                    dtype=np.float64)


def mean_rating_rmse(train: pd.DataFrame, ratings: Sequence[float]) -> float:
  """RMSE of predicting the global mean train rating for each of `ratings` (the evaluated
  split's)."""
  ratings = np.asarray(ratings)
  mean = train[features.RATING].to_numpy(dtype=np.float64).mean()
  return metrics.rmse(np.full(len(ratings), mean), ratings)
