"""The sparse test bed generator: its documented properties, determinism and CSV round trip."""
import dataclasses

import numpy as np
import pandas as pd

from contract import features
from contract import split_rules
from ingest import loaders
from ingest import tables
from ingest import sparse_testbed


def test_the_default_test_bed_has_its_documented_shape():
  config = sparse_testbed.TestbedConfig()
  dataset = sparse_testbed.generate(config)
  measured = sparse_testbed.properties(dataset.interactions, len(dataset.items))
  assert measured['items'] >= 10_000 and len(dataset.items) == config.num_items
  assert measured['users'] == config.num_users
  assert measured['density'] <= 0.005
  assert measured['median_history'] >= 30  # long histories
  assert measured['top_decile_share'] >= 0.4  # long-tail popularity
  frame = dataset.interactions
  assert not frame.duplicated([features.USER_ID, features.ITEM_ID]).any()
  assert frame[features.RATING].between(1, 5).all()
  assert set(frame[features.ITEM_ID]) <= set(dataset.items.index)
  assert (frame.groupby(features.USER_ID)[features.TIMESTAMP].diff().dropna() > 0).all()


def test_the_test_bed_is_deterministic_for_a_seed_and_reads_back_through_the_loaders(tmp_path):
  small = dict(num_users=40, num_items=300, num_topics=8, median_history=15)
  first = sparse_testbed.generate(sparse_testbed.TestbedConfig(**small))
  again = sparse_testbed.generate(sparse_testbed.TestbedConfig(**small))
  other = sparse_testbed.generate(sparse_testbed.TestbedConfig(**small, seed=1))
  pd.testing.assert_frame_equal(first.interactions, again.interactions)
  assert not first.interactions.equals(other.interactions)
  sparse_testbed.write(first, str(tmp_path))
  loaded = loaders.load_dataset(str(tmp_path))
  np.testing.assert_array_equal(loaded.interactions[features.ITEM_ID],
                                first.interactions[features.ITEM_ID])
  assert len(loaded.items) == len(first.items) and len(loaded.users) == len(first.users)


def _consecutive_same_genres(dataset: tables.Dataset) -> float:
  """The share of a user's consecutive interactions whose items have the same genres."""
  frame = dataset.interactions.sort_values([features.USER_ID, features.TIMESTAMP])
  genres = dataset.items.loc[frame[features.ITEM_ID], features.GENRES].to_numpy()
  same_user = frame[features.USER_ID].to_numpy()[1:] == frame[features.USER_ID].to_numpy()[:-1]
  return float(np.mean((genres[1:] == genres[:-1])[same_user]))


def test_the_wide_short_shape_has_short_histories_in_no_particular_order():
  small = dict(num_users=1_000, num_items=3_000, num_topics=30)
  wide = sparse_testbed.SHAPES['wide-short']
  unordered = sparse_testbed.generate(dataclasses.replace(wide, **small))
  ordered = sparse_testbed.generate(dataclasses.replace(wide, **small, sequential=True))
  measured = sparse_testbed.properties(unordered.interactions, len(unordered.items))
  assert measured['median_history'] <= 10 and wide.num_items >= 30_000
  assert _consecutive_same_genres(unordered) < 0.8 * _consecutive_same_genres(ordered)


def test_arriving_items_have_test_interactions_only_and_the_default_is_unchanged():
  small = dict(num_users=300, num_items=1_000, num_topics=10, median_history=30)
  plain = sparse_testbed.generate(sparse_testbed.TestbedConfig(**small))
  pd.testing.assert_frame_equal(
      plain.interactions,
      sparse_testbed.generate(sparse_testbed.TestbedConfig(**small, arriving_share=0.0))
      .interactions)
  dataset = sparse_testbed.generate(dataclasses.replace(sparse_testbed.SHAPES['arriving'],
                                                        **small))
  frame = dataset.interactions
  splits = split_rules.assign_splits(frame)
  arriving = set(frame[features.ITEM_ID]) - set(frame[splits != features.TEST_SPLIT][
      features.ITEM_ID])
  test = frame[splits == features.TEST_SPLIT]
  # Items in test only (1% of 1,000 items arrive): about a tenth of the test interactions.
  assert test[features.ITEM_ID].isin(arriving).mean() >= 0.05 and len(arriving) >= 8
  assert set(frame[features.ITEM_ID]) <= set(dataset.items.index)
  assert (frame.groupby(features.USER_ID)[features.TIMESTAMP].diff().dropna() > 0).all()
