"""End to end: an item added to items.csv, without any interaction, is recommended by the pushed
model to users whose history matches its content (the content path), on generated data with two
tastes: half the users pick Action items only, the other half Comedy items only, and items of
their taste that arrived lately (only in the eval and test splits, so the eval split tells how
often users pick items without train interactions: the content path's level)."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from components import gates
from contract import signatures
from ingest import tables
from pipeline import configs
from pipeline import local_runner
import input_writers

LENIENT_GATES = dataclasses.replace(
    configs.GATES, rmse_upper_bound=10.0, rating_auc_lower_bound=0.0,
    retrieval=gates.RetrievalGates(min_ndcg_ratio=0.0, max_size_ratio=1.0,
                                   min_popularity_ratio=0.0))
GENRES = ('Action', 'Comedy')
ITEMS_PER_GENRE = 100  # the catalogue must exceed the excluded history (100 items)
USERS_PER_GENRE = 40
PICKS = 20  # old items per user; then two arrived ones, each followed by an old one
ARRIVED_PER_GENRE = 5
NEW_ITEMS = {'new-action': 'Action', 'new-comedy': 'Comedy'}


def _two_tastes() -> tables.Dataset:
  rng = np.random.default_rng(0)
  item_ids = [f'{genre.lower()}-{i}' for genre in GENRES for i in range(ITEMS_PER_GENRE)]
  arrived = {genre: [f'{genre.lower()}-arrived-{i}' for i in range(ARRIVED_PER_GENRE)]
             for genre in GENRES}
  users, items, stamps = [], [], []
  for g, genre in enumerate(GENRES):
    own = item_ids[g * ITEMS_PER_GENRE:(g + 1) * ITEMS_PER_GENRE]
    for u in range(USERS_PER_GENRE):
      old = rng.choice(own, size=PICKS + 2, replace=False)
      late = rng.choice(arrived[genre], size=2, replace=False)
      # 24 picks: the last 2 are test and the 2 before eval, each an arrived item, then an old one.
      picks = list(old[:PICKS]) + [late[0], old[PICKS], late[1], old[PICKS + 1]]
      users += [f'{genre.lower()}-fan-{u}'] * len(picks)
      items += list(picks)
      stamps += list(880_000_000 + u * 100_000 + np.arange(len(picks)) * 60)
  interactions = tables.interactions_frame(users, items, [1.0] * len(users), stamps)
  old_items = item_ids + [item for genre in GENRES for item in arrived[genre]]
  all_items = old_items + list(NEW_ITEMS)
  genres = [item.split('-')[0].capitalize() for item in old_items] + list(NEW_ITEMS.values())
  return tables.Dataset(interactions=interactions, items=tables.items_frame(
      all_items, [f'Film {i}' for i in range(len(all_items))], genres, [1990] * len(all_items)))


@pytest.fixture(scope='module')
def pushed_model(tmp_path_factory):
  data = input_writers.write_csv(_two_tastes(), tmp_path_factory.mktemp('two_tastes'))
  result = local_runner.run(str(data), str(tmp_path_factory.mktemp('run')), gates=LENIENT_GATES)
  assert result['pushed'], 'the run must push'
  return tf.saved_model.load(result['pushed'])


def _place(model, history, item: str) -> int:
  """The place of `item` in the model's answer to a new user with `history`."""
  answer = model.signatures[signatures.RECOMMEND](
      **{signatures.USER_ID: tf.constant(['someone-new']),
         signatures.HISTORY: tf.constant([history])})[signatures.ITEM_IDS].numpy()[0]
  answer = [item_id.decode() for item_id in answer]
  return answer.index(item) if item in answer else len(answer)


def test_a_new_item_reaches_users_whose_history_matches_its_content(pushed_model):
  for genre in GENRES:
    history = [f'{genre.lower()}-{i}' for i in range(10)]
    same, other = (item for item in NEW_ITEMS if NEW_ITEMS[item] == genre), (
        item for item in NEW_ITEMS if NEW_ITEMS[item] != genre)
    same, other = next(same), next(other)
    # Above the new item of the other taste, and above every old item of the other taste (the
    # answer's first places hold the 90 unseen items of this taste, its arrived ones and the
    # new one).
    place = _place(pushed_model, history, same)
    assert place < _place(pushed_model, history, other), genre
    assert place <= ITEMS_PER_GENRE - len(history) + ARRIVED_PER_GENRE, (genre, place)
