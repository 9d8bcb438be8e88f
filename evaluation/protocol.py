"""The project's fixed evaluation protocol: the queries and targets of an evaluated split. The
split itself (the per-user chronological cut) is `contract.split_rules`.

For an evaluated split S ('test' by default):

* the evaluated users are those with at least one interaction in S;
* a user's query is their state before S: every interaction in an earlier split is "seen" (train
  for S = eval; train and eval for S = test);
* the targets are the distinct items of the user's S interactions;
* the catalogue is the items of the train split and, when given, the other items known at
  export time (`build_eval_data`'s `catalogue_items`: those of the ExampleGen items split,
  `features.ITEMS_SPLIT`), the items the exported models rank. Every catalogue item except the
  seen ones is ranked, cold ones (without train interactions) included; targets outside the
  catalogue (and targets already seen) count in the denominators but can never be hit
  (`evaluation.metrics`).

Slices (`build_slices`) restrict the queries and targets of an evaluated split:

* cold items: each user's targets whose item has no train interaction (a user counts when they
  have at least one); warm items: the other targets. Every cold target counts in the slice's
  denominators: those in the catalogue can be hit, those outside it (all of them with a catalogue
  of the train items only) never, so a model that cannot rank them scores 0 on the slice;
* short history: the users with at most `SHORT_HISTORY_MAX_TRAIN` train interactions (rows, a
  repeated item counts each time), with all their targets;
* new users: every query and target; the model is asked with the user id replaced by one it does
  not know (`evaluation.evaluate`), history and side features kept;
* long tail: each user's targets whose item is not among the `HEAD_SHARE` most popular train
  items (by train interactions; cold items are in the tail), counted as the cold items' are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from contract import features
from contract import split_rules

SHORT_HISTORY_MAX_TRAIN = 5  # train interactions of a user in the short-history slice
# The slices' names (module docstring), in report order.
COLD_ITEMS = 'cold_items'
WARM_ITEMS = 'warm_items'
NEW_USERS = 'new_users'
SHORT_HISTORY = 'short_history'
LONG_TAIL = 'long_tail'
SLICES = (COLD_ITEMS, WARM_ITEMS, NEW_USERS, SHORT_HISTORY, LONG_TAIL)
HEAD_SHARE = 0.2  # of the train items: the most popular, outside the long tail


@dataclass(frozen=True)
class EvalData:
  """The evaluation queries and targets of one split.

  Attributes:
    split: the evaluated split S, one of `features.SPLITS`.
    items: the catalogue (the train item ids and the other known ones, `build_eval_data`); an
      item's position is its column in every matrix.
    users: the evaluated users (with at least one interaction in S); a user's position is their
      row in `seen`, `targets`, `num_targets` and in score matrices.
    seen: binary [users, items] matrix of the catalogue items each user interacted with before S.
    targets: binary [users, items] matrix of each user's S items that are in the catalogue.
    num_targets: each user's number of distinct S items, in the catalogue or not.
    train_matrix: binary [train users, items] matrix of the train interactions (all zero in the
      columns of cold items), which novelty and EASE read; None where nobody reads them
      (`train_matrix_of` then raises).
  """

  split: str
  items: pd.Index
  users: pd.Index
  seen: sparse.csr_matrix
  targets: sparse.csr_matrix
  num_targets: np.ndarray
  train_matrix: Optional[sparse.csr_matrix] = None


def train_matrix_of(eval_data: EvalData) -> sparse.csr_matrix:
  """`eval_data.train_matrix`; ValueError when the `EvalData` was built without it."""
  if eval_data.train_matrix is None:
    raise ValueError('this EvalData has no train matrix')
  return eval_data.train_matrix


def binary_matrix(rows: np.ndarray, columns: np.ndarray, shape) -> sparse.csr_matrix:
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
  return binary_matrix(rows, columns, (len(users), len(items)))


def _sorted_ids(*values: Sequence[str]) -> pd.Index:
  """The distinct ids of all of `values`, sorted."""
  return pd.Index(np.unique(np.concatenate([np.asarray(ids, dtype=object) for ids in values])),
                  dtype=object)


def build_eval_data(interactions: pd.DataFrame,
                    splits: Optional[Sequence[str]] = None,
                    split: str = features.TEST_SPLIT,
                    catalogue_items: Optional[Sequence[str]] = None) -> EvalData:
  """Builds the queries and targets of `split` under the evaluation protocol.

  Args:
    interactions: the interactions (USER_ID, ITEM_ID, TIMESTAMP) of every split.
    splits: the split name of every interaction, aligned with the rows; by default the project's
      split, `split_rules.assign_splits` with its default fractions.
    split: the evaluated split, 'eval' or 'test'.
    catalogue_items: the item ids known besides the train ones (those of the items split,
      `features.ITEMS_SPLIT`); the catalogue is their union with the train items, so that cold
      targets among them can be hit. None: the train items only.

  Returns:
    The `EvalData`, with its train matrix; users and items are sorted by id.

  Raises:
    ValueError: for an unknown split, misaligned `splits`, or no train or no `split` rows.
  """
  if split not in features.SPLITS[1:]:
    raise ValueError(f'split must be one of {features.SPLITS[1:]}, got {split!r}')
  frame = interactions
  names = np.asarray(split_rules.assign_splits(frame) if splits is None else splits,
                     dtype=object)
  if names.shape != (len(frame),):
    raise ValueError(f'expected {len(frame)} split names, got shape {names.shape}')
  earlier = features.SPLITS[:features.SPLITS.index(split)]
  train = frame[names == features.TRAIN_SPLIT]
  evaluated = frame[names == split]
  if train.empty or evaluated.empty:
    raise ValueError(f'need train and {split} interactions, got {len(train)} and {len(evaluated)}')

  items = _sorted_ids(train[features.ITEM_ID], [] if catalogue_items is None else catalogue_items)
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
  )


def query_histories(interactions: pd.DataFrame, splits: Sequence[str],
                    eval_data: EvalData) -> List[List[str]]:
  """Each evaluated user's items before the evaluated split, oldest first.

  Args:
    interactions: the interactions of every split, as given to `build_eval_data`.
    splits: the split name of every interaction, aligned with the rows.
    eval_data: the queries.
  """
  earlier = features.SPLITS[:features.SPLITS.index(eval_data.split)]
  before = interactions[np.isin(np.asarray(splits, dtype=object), earlier)]
  before = before.iloc[split_rules.chronological_order(before)]
  items = before.groupby(features.USER_ID)[features.ITEM_ID].apply(list)
  return [items.get(user, []) for user in eval_data.users]


def user_side_features(table: pd.DataFrame, users: Sequence[str]) -> Dict[str, np.ndarray]:
  """Each user's side features (a query's age, gender, occupation, zip code) from `table`, rows
  with USER_ID and any of those columns (the first row of a user counts); the serving default
  where a user or a column is missing."""
  present = [name for name in features.USER_SIDE_FEATURES if name in table.columns]
  rows = (table.drop_duplicates(features.USER_ID).set_index(features.USER_ID)[present]
          .reindex(pd.Index(users, name=features.USER_ID)))
  side = {}
  for name in features.USER_SIDE_FEATURES:
    default = features.default_value(name)
    values = rows[name].fillna(default) if name in present else pd.Series(
        [default] * len(users))
    side[name] = values.to_numpy().astype(np.int64 if name in features.INT_FEATURES else str)
  return side


@dataclass(frozen=True)
class Slice:
  """A slice of an `EvalData`: some of its users, and some of their targets.

  Attributes:
    rows: int positions in the full `EvalData.users` of the slice's users (the rows of the full
      data's score matrices and rankings to keep).
    eval_data: the queries and targets of the slice: the same split, catalogue and train
      matrix, the slice's users, and each user's slice targets (`num_targets` counts only those).
  """

  rows: np.ndarray
  eval_data: EvalData


def restrict(eval_data: EvalData, keep_user: np.ndarray,
             keep_column: Optional[np.ndarray] = None,
             num_targets: Optional[np.ndarray] = None) -> Slice:
  """The slice of `eval_data` with the users where `keep_user` holds.

  Args:
    eval_data: the full queries and targets.
    keep_user: bool [users].
    keep_column: bool [items], the catalogue columns whose targets stay targets; all by default.
    num_targets: int [users], each user's number of slice targets (in the catalogue or not);
      `eval_data.num_targets` by default.
  """
  rows = np.flatnonzero(np.asarray(keep_user, dtype=bool))
  targets = eval_data.targets
  if keep_column is not None:
    targets = sparse.csr_matrix(targets.multiply(
        np.asarray(keep_column, dtype=np.float64)[np.newaxis, :]))
    targets.eliminate_zeros()
  counts = eval_data.num_targets if num_targets is None else np.asarray(num_targets)
  data = EvalData(
      split=eval_data.split,
      items=eval_data.items,
      users=eval_data.users[rows],
      seen=eval_data.seen[rows],
      targets=sparse.csr_matrix(targets[rows]),
      num_targets=counts[rows],
      train_matrix=eval_data.train_matrix,
  )
  return Slice(rows=rows, eval_data=data)


def build_slices(interactions: pd.DataFrame, splits: Sequence[str],
                 eval_data: EvalData) -> Dict[str, Slice]:
  """The slices of `eval_data` (module docstring), keyed `SLICES`.

  Args:
    interactions: the interactions of every split, as given to `build_eval_data`.
    splits: the split name of every interaction, aligned with the rows.
    eval_data: the queries and targets of the evaluated split.
  """
  names = np.asarray(splits, dtype=object)
  train = interactions[names == features.TRAIN_SPLIT]
  train_items = pd.Index(train[features.ITEM_ID].unique())
  distinct = interactions[names == eval_data.split].drop_duplicates(
      [features.USER_ID, features.ITEM_ID])

  def counts(is_slice_target: np.ndarray) -> np.ndarray:
    """Each evaluated user's number of distinct targets where `is_slice_target` holds."""
    return (pd.Series(is_slice_target.astype(np.int64)).groupby(
        distinct[features.USER_ID].to_numpy()).sum().reindex(eval_data.users, fill_value=0)
            .to_numpy())

  cold_counts = counts(~distinct[features.ITEM_ID].isin(train_items).to_numpy())
  warm_counts = eval_data.num_targets - cold_counts
  popularity = train[features.ITEM_ID].value_counts(sort=True)
  head = popularity.index[:int(np.ceil(HEAD_SHARE * len(popularity)))]
  tail_counts = counts(~distinct[features.ITEM_ID].isin(head).to_numpy())
  warm_column = eval_data.items.isin(train_items)
  train_counts = (train[features.USER_ID].value_counts()
                  .reindex(eval_data.users, fill_value=0).to_numpy())
  return {
      COLD_ITEMS: restrict(eval_data, cold_counts > 0, ~warm_column, cold_counts),
      WARM_ITEMS: restrict(eval_data, warm_counts > 0, warm_column, warm_counts),
      NEW_USERS: restrict(eval_data, np.ones(len(eval_data.users), dtype=bool)),
      SHORT_HISTORY: restrict(eval_data, train_counts <= SHORT_HISTORY_MAX_TRAIN),
      LONG_TAIL: restrict(eval_data, tail_counts > 0, ~eval_data.items.isin(head), tail_counts),
  }
