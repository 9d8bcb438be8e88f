"""The prepared examples of a small in-memory `Dataset` as one pandas frame.

This is what RawExampleGen (`ingest.transforms.RawToExamples`) streams through Beam, computed
the simple way: tests use it as the reference for the Beam step and to build model inputs
without running a pipeline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from contract import features
from contract import split_rules
from ingest import history, tables
from ingest.tables import Dataset

SPLIT = 'split'  # column naming each example's split


def join_side_features(dataset: Dataset) -> pd.DataFrame:
  """Interactions with the user and item side features; missing ones are UNKNOWN or 0."""
  users = dataset.users if dataset.users is not None else tables.users_frame([], [], [], [], [])
  items = dataset.items if dataset.items is not None else tables.items_frame([], [], [], [])
  for table in (users, items):
    if not table.index.is_unique:  # a join would repeat interactions
      raise ValueError(f'side table keyed by {table.index.name} has duplicate keys')
  columns = [features.USER_ID, features.ITEM_ID, features.RATING, features.TIMESTAMP]
  frame = (dataset.interactions[columns].reset_index(drop=True).join(
      users, on=features.USER_ID).join(items, on=features.ITEM_ID))
  for name in features.USER_SIDE_FEATURES + features.ITEM_SIDE_FEATURES:
    if name in features.INT_FEATURES:
      frame[name] = frame[name].fillna(0).astype(np.int64)
    else:
      frame[name] = frame[name].fillna(features.UNKNOWN).astype(object)
  return frame


def examples_frame(dataset: Dataset, history_length: int, eval_fraction: float = 0.1,
                   test_fraction: float = 0.1) -> pd.DataFrame:
  """Every raw feature of every example in chronological order, plus the SPLIT column."""
  frame = join_side_features(dataset)
  frame = frame.iloc[split_rules.chronological_order(frame)].reset_index(drop=True)
  frame = history.add_history(frame, history_length)
  frame[SPLIT] = split_rules.assign_splits(frame, eval_fraction, test_fraction)
  return frame
