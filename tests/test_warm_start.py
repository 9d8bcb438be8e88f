"""Warm start (`models.warm_start`): weights copied by layer name, vocabulary-indexed table rows
mapped by raw id (a known item keeps its row, a new one its fresh row, a removed one is gone),
refitted item-to-item tables never carried over, the hybrid mix never carried over; what a warm
run exports."""
import dataclasses
import types

import numpy as np
import pytest
import tensorflow as tf

from contract import features
from models import layout
from models import run_fn
from models import towers
from models import training
from models import warm_start
from pipeline import configs

DIM = 3


class _TransformOutput:
  """The vocabularies of a transform output, by name."""

  def __init__(self, items, users):
    self._vocabularies = {features.ITEM_VOCAB: items, features.USER_VOCAB: users}

  def vocabulary_by_name(self, name):
    return [token.encode() for token in self._vocabularies.get(name, [])]


def _core(num_items: int, num_users: int, item_item_rows: int = 4, hidden: int = 2):
  """A core with an item table (padding row, then the vocabulary, then one OOV row), a user
  table (vocabulary, one OOV row), a Dense layer, an item-to-item table and a hybrid mix."""
  item = tf.keras.Input(shape=(), dtype=tf.int64, name='item')
  user = tf.keras.Input(shape=(), dtype=tf.int64, name='user')
  items = tf.keras.layers.Embedding(num_items + 2, DIM, name='item_embedding')(item)
  users = tf.keras.layers.Embedding(num_users + 1, DIM, name='user_embedding')(user)
  component = tf.keras.layers.Embedding(item_item_rows, DIM, name='item_item_candidate')(item)
  output = tf.keras.layers.Dense(hidden, name='query_output')(
      tf.keras.layers.Concatenate()([items, users, component]))
  mix = towers.HybridMix(name='hybrid_mix')
  return tf.keras.Model([item, user], mix(output, output))


def test_rows_follow_their_raw_ids_and_other_weights_their_layer(tmp_path):
  old = _core(num_items=3, num_users=2)
  old.get_layer('hybrid_mix').mix.assign([0.5, 2.0])  # as chosen after training
  old_output = _TransformOutput(['a', 'b', 'c'], ['u1', 'u2'])
  warm_start.save({'teacher': old}, old_output, str(tmp_path), {'item_item': {'rank': 2}})
  # Item 'b' left, 'd' arrived; user 'u3' arrived; the vocabularies' order changed too.
  new = _core(num_items=3, num_users=3)
  fresh = {layer.name: [w.copy() for w in layer.get_weights()] for layer in new.layers}
  new_output = _TransformOutput(['c', 'd', 'a'], ['u2', 'u3', 'u1'])
  warm = warm_start.load(str(tmp_path))
  assert warm.settings == {'item_item': {'rank': 2}}
  counts = warm.apply('teacher', new, new_output)

  old_items = old.get_layer('item_embedding').get_weights()[0]  # rows: pad a b c oov
  new_items = new.get_layer('item_embedding').get_weights()[0]  # rows: pad c d a oov
  np.testing.assert_array_equal(new_items[[0, 1, 3, 4]], old_items[[0, 3, 1, 4]])
  np.testing.assert_array_equal(new_items[2], fresh['item_embedding'][0][2])  # 'd' is new
  old_users = old.get_layer('user_embedding').get_weights()[0]  # rows: u1 u2 oov
  new_users = new.get_layer('user_embedding').get_weights()[0]  # rows: u2 u3 u1 oov
  np.testing.assert_array_equal(new_users[[0, 2, 3]], old_users[[1, 0, 2]])
  np.testing.assert_array_equal(new_users[1], fresh['user_embedding'][0][1])
  for old_weight, new_weight in zip(old.get_layer('query_output').get_weights(),
                                    new.get_layer('query_output').get_weights()):
    np.testing.assert_array_equal(new_weight, old_weight)
  # The item-to-item table is fitted by every run, the mix chosen: never carried over.
  np.testing.assert_array_equal(new.get_layer('item_item_candidate').get_weights()[0],
                                fresh['item_item_candidate'][0])
  np.testing.assert_array_equal(new.get_layer('hybrid_mix').get_weights()[0],
                                fresh['hybrid_mix'][0])
  assert counts == dict(copied=4, rows_kept=4 + 3, rows_new=1 + 1, fresh=0)


def test_a_changed_shape_starts_fresh_and_a_missing_directory_is_no_warm_start(tmp_path):
  warm_start.save({'teacher': _core(3, 2, hidden=2)}, _TransformOutput(['a', 'b', 'c'],
                                                                        ['u1', 'u2']),
                  str(tmp_path))
  new = _core(3, 2, hidden=5)
  before = [w.copy() for w in new.get_layer('query_output').get_weights()]
  warm = warm_start.load(str(tmp_path))
  assert warm.has('teacher') and not warm.has('student_fp32')
  counts = warm.apply('teacher', new, _TransformOutput(['a', 'b', 'c'], ['u1', 'u2']))
  for kept, weight in zip(before, new.get_layer('query_output').get_weights()):
    np.testing.assert_array_equal(weight, kept)
  assert counts['fresh'] == 2 and counts['rows_new'] == 0
  assert warm_start.load(str(tmp_path / 'none')) is None


def test_row_keys_name_padding_tokens_and_oov_buckets():
  assert warm_start.row_keys(['x', 'y'], 5, leading=1) == ['#pad0', 'x', 'y', '#oov0', '#oov1']
  assert warm_start.row_keys(['x'], 2, leading=0) == ['x', '#oov0']


def _examples(users, items):
  """One pass over examples of (user index, item index), in batches of 4."""
  return tf.data.Dataset.from_tensor_slices({
      features.USER_INDEX: np.array(users, np.int64),
      features.ITEM_INDEX: np.array(items, np.int64)}).batch(4)


def _pairs(batches):
  return [(int(user), int(item)) for batch in batches
          for user, item in zip(batch[features.USER_INDEX].numpy(),
                                batch[features.ITEM_INDEX].numpy())]


def test_a_warm_sample_holds_every_example_of_a_new_user_or_item_and_a_share_of_the_rest(
    tmp_path):
  warm_start.save({'teacher': _core(3, 2)}, _TransformOutput(['a', 'b', 'c'], ['u1', 'u2']),
                  str(tmp_path))
  warm = warm_start.load(str(tmp_path))
  # This run's vocabularies: items pad c d a (index 2: 'd' is new), users u2 u3 u1 (1: 'u3').
  new_output = _TransformOutput(['c', 'd', 'a'], ['u2', 'u3', 'u1'])
  np.testing.assert_array_equal(warm.new_rows('item_embedding', new_output),
                                [False, False, True, False])
  np.testing.assert_array_equal(warm.new_rows('user_embedding', new_output),
                                [False, True, False])
  users = [0, 2] * 200 + [1, 0, 2]
  items = [1, 3] * 200 + [1, 2, 4]  # 4: an OOV item, not new
  batches = _examples(users, items)
  nothing_else = warm.sample(0.0, seed=7, tf_transform_output=new_output)
  assert _pairs(nothing_else.apply(batches)) == [(1, 1), (0, 2)]
  quarter = warm.sample(0.25, seed=7, tf_transform_output=new_output)
  drawn = _pairs(quarter.apply(batches))
  assert {(1, 1), (0, 2)} <= set(drawn)
  assert 60 < len(drawn) < 140  # a quarter of 403, give or take
  assert _pairs(quarter.apply(batches)) == drawn  # the same examples on every pass
  assert _pairs(warm.sample(1.0, seed=7, tf_transform_output=new_output).apply(
      batches)) == list(zip(users, items))


@pytest.mark.parametrize('share', [0.0, 1.5])
def test_a_warm_sample_share_outside_0_to_1_is_refused(tmp_path, share):
  fn_args = types.SimpleNamespace(base_model=str(tmp_path / 'Format-Serving'))
  with pytest.raises(ValueError, match='warm_start_sample'):
    run_fn.base_warm_start(fn_args, dataclasses.replace(configs.TRAINING,
                                                        warm_start_sample=share))


def test_a_run_retrains_cold_once_the_window_outgrows_its_last_cold_training(tmp_path):
  # A cold run of 1,000 train examples, then a warm run of 1,400 from it: both record 1,000.
  cold = warm_start.lineage_settings(None, 1000)
  assert cold == {warm_start.COLD_EXAMPLES: 1000}
  base = warm_start.WarmStart(str(tmp_path), {}, cold)
  assert warm_start.lineage_settings(base, 1400) == cold
  assert not warm_start.refresh_due(base, 1500, max_growth=1.5)
  assert warm_start.refresh_due(base, 1501, max_growth=1.5)
  assert not warm_start.refresh_due(base, 10**6, max_growth=0)  # 0: never
  # Saved before runs recorded their last cold training: retrained cold, unless never.
  unrecorded = warm_start.WarmStart(str(tmp_path), {}, {})
  assert warm_start.refresh_due(unrecorded, 1, max_growth=1.5)
  assert not warm_start.refresh_due(unrecorded, 1, max_growth=0)


def test_a_warm_run_exports_the_fp32_student_only_when_asked(tmp_path):
  models = {layout.TEACHER: 'teacher', layout.STUDENT_FP32: 'fp32', layout.STUDENT_INT8: 'int8'}
  cold = types.SimpleNamespace(warm=None)
  warm = types.SimpleNamespace(warm=warm_start.WarmStart(str(tmp_path), {}, {}))
  everything = [layout.TEACHER, layout.STUDENT_FP32, layout.STUDENT_INT8]
  assert list(training.exported(models, cold, configs.EXPORT)) == everything
  assert list(training.exported(models, warm, configs.EXPORT)) == [layout.TEACHER,
                                                                   layout.STUDENT_INT8]
  asked = dataclasses.replace(configs.EXPORT, warm_fp32_student=True)
  assert list(training.exported(models, warm, asked)) == everything
