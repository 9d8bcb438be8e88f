"""The split rules: the per-user chronological cut of the interactions into the train, eval and
test splits (`features.SPLITS`), the one definition that ingestion (RawExampleGen writes one
output split per split) and evaluation (the queries and targets of a split) both read.

Each user's interactions are ordered by (timestamp, original row order). The latest
`test_fraction` of them (at least one) are 'test', the `eval_fraction` before those (at least one,
but never leaving 'train' empty) are 'eval', and the rest are 'train'. The project's fractions
are `EVAL_FRACTION` and `TEST_FRACTION`.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import pandas as pd

from contract import features

EVAL_FRACTION = 0.1  # the project's share of each user's interactions in eval
TEST_FRACTION = 0.1  # the project's share of each user's interactions in test


def chronological_order(frame: pd.DataFrame) -> np.ndarray:
  """Row positions sorted by user (in order of first appearance), timestamp, original position."""
  user_codes, _ = pd.factorize(frame[features.USER_ID])
  positions = np.arange(len(frame))
  return np.lexsort((positions, frame[features.TIMESTAMP].to_numpy(), user_codes))


def user_ranks(frame: pd.DataFrame) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Returns (order, rank, count): the chronological order of the rows and, for each row in
  that order, its 0-based position among its user's interactions and that user's count."""
  order = chronological_order(frame)
  users = pd.Series(frame[features.USER_ID].to_numpy()[order])
  grouped = users.groupby(users, sort=False)
  return order, grouped.cumcount().to_numpy(), grouped.transform('size').to_numpy()


def _check_fraction(name: str, value: float) -> None:
  if not 0.0 <= value < 1.0:
    raise ValueError(f'{name} must be in [0, 1), got {value}')


def check_fractions(eval_fraction: float, test_fraction: float) -> None:
  """Raises ValueError unless both fractions are in [0, 1)."""
  _check_fraction('eval_fraction', eval_fraction)
  _check_fraction('test_fraction', test_fraction)


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
                  eval_fraction: float = EVAL_FRACTION,
                  test_fraction: float = TEST_FRACTION) -> pd.Series:
  """Names the split (from `features.SPLITS`) of every interaction, aligned with `frame`
  (sizes from `split_sizes`)."""
  check_fractions(eval_fraction, test_fraction)
  order, rank, count = user_ranks(frame)
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
