"""Tests of the per-user chronological split (`contract.split_rules`) and the history feature."""

import numpy as np
import pandas as pd
import pytest

from contract import features
from contract import split_rules
from ingest import history as history_lib
from ingest import synthetic, tables


def expected_counts(n: int, eval_fraction: float, test_fraction: float):
  """The protocol, written out plainly: (train, eval, test) counts for a user with n rows."""
  n_test = max(1, round(test_fraction * n))
  n_eval = max(0, min(max(1, round(eval_fraction * n)), n - n_test - 1))
  return n - n_test - n_eval, n_eval, n_test


def frame_of(rows) -> pd.DataFrame:
  """Interactions from (user, item, timestamp) tuples."""
  users, items, timestamps = zip(*rows)
  return tables.interactions_frame(users, items, [1.0] * len(rows), timestamps)


@pytest.mark.parametrize('eval_fraction, test_fraction', [(0.1, 0.1), (0.2, 0.3), (0.0, 0.05)])
def test_split_counts_follow_the_protocol(eval_fraction, test_fraction):
  rng = np.random.RandomState(0)
  sizes = list(range(1, 41)) + [55, 100, 125]
  rows = [
      (f'u{n}', f'i{k}', int(t)) for n in sizes for k, t in enumerate(rng.randint(0, 50, size=n))
  ]
  frame = frame_of(rows).sample(frac=1.0, random_state=1)
  splits = split_rules.assign_splits(frame, eval_fraction, test_fraction)
  assert splits.index.equals(frame.index)
  for n in sizes:
    names = splits[frame[features.USER_ID] == f'u{n}']
    counts = tuple(int((names == name).sum()) for name in features.SPLITS)
    assert counts == expected_counts(n, eval_fraction, test_fraction), n


def test_default_split_sizes():
  assert expected_counts(1, 0.1, 0.1) == (0, 0, 1)
  assert expected_counts(2, 0.1, 0.1) == (1, 0, 1)
  assert expected_counts(3, 0.1, 0.1) == (1, 1, 1)
  assert expected_counts(25, 0.1, 0.1) == (21, 2, 2)  # round half to even
  frame = frame_of([('a', f'i{k}', k) for k in range(3)])
  assert split_rules.assign_splits(frame).tolist() == list(features.SPLITS)


def test_splits_are_chronological_per_user():
  frame = synthetic.generate(seed=1).interactions
  splits = split_rules.assign_splits(frame)
  by_split = frame.groupby([frame[features.USER_ID], splits])[features.TIMESTAMP]
  stamps = by_split.agg(['min', 'max']).unstack()
  assert (stamps['max'][features.TRAIN_SPLIT] <= stamps['min'][features.EVAL_SPLIT]).all()
  assert (stamps['max'][features.EVAL_SPLIT] <= stamps['min'][features.TEST_SPLIT]).all()


def test_timestamp_ties_keep_the_original_order():
  frame = frame_of([('a', 'first', 5), ('a', 'second', 5), ('a', 'early', 1), ('a', 'third', 5)])
  assert split_rules.assign_splits(frame).tolist() == [
      features.TRAIN_SPLIT, features.EVAL_SPLIT, features.TRAIN_SPLIT, features.TEST_SPLIT
  ]
  history = history_lib.add_history(frame, 10)[features.HISTORY].tolist()
  assert history == ['early', 'early first', '', 'early first second']


def test_fractions_are_checked():
  frame = frame_of([('a', 'x', 1)])
  with pytest.raises(ValueError, match='eval_fraction'):
    split_rules.assign_splits(frame, eval_fraction=1.0)
  with pytest.raises(ValueError, match='test_fraction'):
    split_rules.assign_splits(frame, test_fraction=-0.1)
  with pytest.raises(ValueError, match='history length'):
    history_lib.add_history(frame, -1)


def test_history_is_capped_oldest_first_and_per_user():
  frame = frame_of([
      ('a', 'a3', 30),
      ('b', 'b1', 15),
      ('a', 'a1', 10),
      ('a', 'a4', 40),
      ('a', 'a2', 20),
      ('b', 'b2', 25),
  ])
  frame.index = [10, 11, 12, 13, 14, 15]
  frame[features.RATING] = [3.0, 1.0, 5.0, 2.0, 4.0, 4.5]
  result = history_lib.add_history(frame, 2)
  assert result.index.equals(frame.index)
  assert result.drop(columns=[features.HISTORY, features.HISTORY_RATINGS]).equals(frame)
  assert result[features.HISTORY].tolist() == ['a1 a2', '', '', 'a2 a3', 'a1', 'b1']
  # The ratings of those items, in the same order.
  assert result[features.HISTORY_RATINGS].tolist() == ['5 4', '', '', '4 3', '5', '1']
  assert history_lib.add_history(frame, 0)[features.HISTORY].tolist() == [''] * 6
  assert history_lib.add_history(frame, 5)[features.HISTORY].tolist()[3] == 'a1 a2 a3'


def test_history_never_leaks_and_eval_test_see_train():
  length = 5
  frame = synthetic.generate(seed=2).interactions
  result = history_lib.add_history(frame, length)
  splits = split_rules.assign_splits(frame)
  for user, rows in result.groupby(features.USER_ID):
    rows = rows.sort_values(features.TIMESTAMP)  # synthetic timestamps are distinct per user
    items = rows[features.ITEM_ID].tolist()
    for position, history in enumerate(rows[features.HISTORY]):
      tokens = history.split(features.HISTORY_SEPARATOR) if history else []
      assert tokens == items[max(0, position - length):position]
      assert items[position] not in tokens
    user_splits = splits[rows.index].tolist()
    latest_train = items[user_splits.index(features.EVAL_SPLIT) - 1]
    for held_out in (features.EVAL_SPLIT, features.TEST_SPLIT):
      first = rows[features.HISTORY].iloc[user_splits.index(held_out)]
      assert latest_train in first.split(features.HISTORY_SEPARATOR)

