"""Tests of writing split tf.Examples: content, dtypes, idempotence and atomic replacement."""

import json
from pathlib import Path

import pytest

from models import features
from pipeline.data import loaders, prepare, split, synthetic

HISTORY_LENGTH = 4
LIST_KINDS = {
    **{
        name: 'int64_list' for name in features.INT_FEATURES
    },
    **{
        name: 'float_list' for name in features.FLOAT_FEATURES
    },
    **{
        name: 'bytes_list' for name in features.STRING_FEATURES
    },
}


def read_examples(path: Path):
  import tensorflow as tf

  records = tf.data.TFRecordDataset(str(path), compression_type='GZIP')
  return [tf.train.Example.FromString(record.numpy()) for record in records]


def value_of(example, name):
  feature = example.features.feature[name]
  kind = feature.WhichOneof('kind')
  values = list(getattr(feature, kind).value)
  assert kind == LIST_KINDS[name] and len(values) == 1, name
  return values[0].decode('utf-8') if kind == 'bytes_list' else values[0]


def snapshot(directory: Path):
  """Relative path -> (mtime in ns, content) of every file under `directory`."""
  return {
      str(path.relative_to(directory)): (path.stat().st_mtime_ns, path.read_bytes())
      for path in sorted(directory.rglob('*'))
      if path.is_file()
  }


@pytest.fixture(scope='module')
def dataset():
  return synthetic.generate(num_users=20, num_items=30, interactions_per_user=(5, 15))


def test_writes_three_splits_of_typed_examples(tmp_path, dataset):
  output = tmp_path / 'examples'
  manifest = prepare.prepare_examples(dataset, output, HISTORY_LENGTH)
  assert json.loads((output / prepare.MANIFEST).read_text()) == manifest
  assert sum(manifest['counts'].values()) == len(dataset.interactions)
  assert manifest['num_users'] == 20
  assert manifest['num_items'] == dataset.interactions[features.ITEM_ID].nunique()

  expected = split.assign_splits(dataset.interactions).value_counts().to_dict()
  seen = set()
  for name in features.SPLITS:
    examples = read_examples(output / name / prepare.DATA_FILE)
    assert len(examples) == manifest['counts'][name] == expected[name]
    for example in examples:
      assert set(example.features.feature) == set(features.RAW_FEATURES)
      values = {feature: value_of(example, feature) for feature in features.RAW_FEATURES}
      user, item = values[features.USER_ID], values[features.ITEM_ID]
      assert values[features.AGE] == dataset.users.loc[user, features.AGE]
      assert values[features.ZIP_CODE] == dataset.users.loc[user, features.ZIP_CODE]
      assert values[features.GENRES] == dataset.items.loc[item, features.GENRES]
      assert values[features.YEAR] == dataset.items.loc[item, features.YEAR]
      history = values[features.HISTORY].split(features.HISTORY_SEPARATOR)
      assert item not in history and len(history) <= HISTORY_LENGTH
      seen.add((user, item, values[features.TIMESTAMP], values[features.RATING]))
  original = dataset.interactions
  assert seen == set(
      zip(original[features.USER_ID], original[features.ITEM_ID], original[features.TIMESTAMP],
          original[features.RATING]))


def test_missing_side_information_becomes_unknown(tmp_path, dataset):
  partial_items = dataset.items.iloc[:5]
  bare = loaders.Dataset(interactions=dataset.interactions, users=None, items=partial_items)
  output = tmp_path / 'examples'
  prepare.prepare_examples(bare, output, HISTORY_LENGTH)
  for example in read_examples(output / features.TRAIN_SPLIT / prepare.DATA_FILE):
    assert value_of(example, features.AGE) == 0
    assert value_of(example, features.OCCUPATION) == features.UNKNOWN
    if value_of(example, features.ITEM_ID) not in partial_items.index:
      assert value_of(example, features.TITLE) == features.UNKNOWN
      assert value_of(example, features.YEAR) == 0


def test_rerun_with_same_inputs_touches_nothing(tmp_path, dataset):
  output = tmp_path / 'examples'
  first = prepare.prepare_examples(dataset, output, HISTORY_LENGTH)
  before = snapshot(output)
  assert len(before) == len(features.SPLITS) + 1
  assert prepare.prepare_examples(dataset, output, HISTORY_LENGTH) == first
  assert snapshot(output) == before

  changed = prepare.prepare_examples(dataset, output, HISTORY_LENGTH + 1)
  assert changed['fingerprint'] != first['fingerprint']
  assert json.loads((output / prepare.MANIFEST).read_text()) == changed
  assert sorted(p.name for p in tmp_path.iterdir()) == ['examples']


def test_failed_run_keeps_previous_output(tmp_path, dataset, monkeypatch):
  output = tmp_path / 'examples'
  prepare.prepare_examples(dataset, output, HISTORY_LENGTH)
  before = snapshot(output)
  written = []

  def failing_writer(path, frame):
    written.append(path)
    path.write_bytes(b'partial')
    if len(written) == 2:
      raise RuntimeError('disk full')

  monkeypatch.setattr(prepare, '_write_tfrecord', failing_writer)
  with pytest.raises(RuntimeError, match='disk full'):
    prepare.prepare_examples(dataset, output, HISTORY_LENGTH + 1)
  assert snapshot(output) == before
  assert sorted(p.name for p in tmp_path.iterdir()) == ['examples']


def test_refuses_to_replace_a_foreign_directory(tmp_path, dataset):
  output = tmp_path / 'examples'
  output.mkdir()
  (output / 'notes.txt').write_text('keep me')
  with pytest.raises(FileExistsError, match=prepare.MANIFEST):
    prepare.prepare_examples(dataset, output, HISTORY_LENGTH)
  assert (output / 'notes.txt').read_text() == 'keep me'
