"""The project's fixed evaluation protocol: a per-user chronological split, and history features.

Each user's interactions are ordered by (timestamp, original row order). The latest
`test_fraction` of them (at least one) are 'test', the `eval_fraction` before those (at least one,
but never leaving 'train' empty) are 'eval', and the rest are 'train'. An interaction's history is
the user's items strictly before it in that order, so no example sees its own or later items.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import pandas as pd

from contract import features


def chronological_order(frame: pd.DataFrame) -> np.ndarray:
  """Row positions sorted by user (in order of first appearance), timestamp, original position."""
  user_codes, _ = pd.factorize(frame[features.USER_ID])
  positions = np.arange(len(frame))
  return np.lexsort((positions, frame[features.TIMESTAMP].to_numpy(), user_codes))


def _ranks(frame: pd.DataFrame) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Returns (order, rank, count): the chronological order of the rows and, for each row in
  that order, its 0-based position among its user's interactions and that user's count."""
  order = chronological_order(frame)
  users = pd.Series(frame[features.USER_ID].to_numpy()[order])
  grouped = users.groupby(users, sort=False)
  return order, grouped.cumcount().to_numpy(), grouped.transform('size').to_numpy()


def _check_fraction(name: str, value: float) -> None:
  if not 0.0 <= value < 1.0:
    raise ValueError(f'{name} must be in [0, 1), got {value}')


def split_sizes(count: int, eval_fraction: float, test_fraction: float) -> Tuple[int, int]:
  """(n_eval, n_test) for a user with `count` interactions.

  n_test = max(1, round(test_fraction * count)) latest ones are test; n_eval =
  max(1, round(eval_fraction * count)), reduced to at most count - n_test - 1 (and not below 0),
  are the eval ones before those; the rest are train. Rounding is Python's (half to even).
  """
  n_test = max(1, round(test_fraction * count))
  n_eval = max(0, min(max(1, round(eval_fraction * count)), count - n_test - 1))
  return n_eval, n_test


def split_name(from_end: int, n_eval: int, n_test: int) -> str:
  """The split of the interaction with `from_end` later ones of the same user."""
  if from_end < n_test:
    return features.TEST_SPLIT
  return features.EVAL_SPLIT if from_end < n_test + n_eval else features.TRAIN_SPLIT


def assign_splits(frame: pd.DataFrame,
                  eval_fraction: float = 0.1,
                  test_fraction: float = 0.1) -> pd.Series:
  """Names the split (from `features.SPLITS`) of every interaction, aligned with `frame`
  (sizes from `split_sizes`)."""
  check_fractions(eval_fraction, test_fraction)
  order, rank, count = _ranks(frame)
  user_counts, inverse = np.unique(count, return_inverse=True)
  sizes = np.array([split_sizes(int(n), eval_fraction, test_fraction) for n in user_counts],
                   dtype=np.int64).reshape(-1, 2)
  n_eval, n_test = sizes[inverse, 0], sizes[inverse, 1]
  from_end = count - 1 - rank
  in_order = np.where(
      from_end < n_test,
      features.TEST_SPLIT,
      np.where(from_end < n_test + n_eval, features.EVAL_SPLIT, features.TRAIN_SPLIT),
  )
  names = np.empty(len(frame), dtype=object)
  names[order] = in_order
  return pd.Series(names, index=frame.index)


def check_fractions(eval_fraction: float, test_fraction: float) -> None:
  """Raises ValueError unless both fractions are in [0, 1)."""
  _check_fraction('eval_fraction', eval_fraction)
  _check_fraction('test_fraction', test_fraction)


def add_history(frame: pd.DataFrame, length: int) -> pd.DataFrame:
  """Returns a copy of `frame` with HISTORY and HISTORY_RATINGS columns: the user's latest
  `length` item ids strictly before each interaction, oldest first, and their ratings, each
  joined by `features.HISTORY_SEPARATOR` ('' when there are none).

  The window bounds are computed with numpy over the chronologically sorted rows; only the
  final string join runs per row, as numpy has no variable-length string slicing.
  """
  if length < 0:
    raise ValueError(f'history length must be >= 0, got {length}')
  order, rank, _ = _ranks(frame)
  stops = np.arange(len(frame))
  starts = stops - np.minimum(rank, length)
  result = frame.copy()
  for name, values in ((features.HISTORY, frame[features.ITEM_ID].tolist()),
                       (features.HISTORY_RATINGS,
                        [features.rating_text(rating) for rating in frame[features.RATING]])):
    values = [values[position] for position in order.tolist()]
    joined = np.empty(len(frame), dtype=object)
    joined[order] = [features.HISTORY_SEPARATOR.join(values[start:stop])
                     for start, stop in zip(starts.tolist(), stops.tolist())]
    result[name] = joined
  return result
