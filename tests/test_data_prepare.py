"""Tests of the Beam prepare step: same examples as the pandas reference, clear errors,
idempotence and atomic replacement."""

import json
from collections import Counter
from pathlib import Path

import pytest

from contract import features
from pipeline.data import loaders, prepare, synthetic
from pipeline.data.errors import DataError
import input_writers
import prepare_reference

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
MULTI_PROCESSING = ['--direct_running_mode=multi_processing', '--direct_num_workers=2']


def read_examples(paths):
  import tensorflow as tf

  records = tf.data.TFRecordDataset(list(paths), compression_type='GZIP')
  return [tf.train.Example.FromString(record.numpy()) for record in records]


def value_of(example, name):
  feature = example.features.feature[name]
  kind = feature.WhichOneof('kind')
  values = list(getattr(feature, kind).value)
  assert kind == LIST_KINDS[name] and len(values) == 1, name
  return values[0].decode('utf-8') if kind == 'bytes_list' else values[0]


def written_rows(output: Path) -> Counter:
  """(split, every raw feature value...) of every written example, as a multiset."""
  rows = Counter()
  for name in features.SPLITS:
    for example in read_examples(prepare.split_files(output, name)):
      assert set(example.features.feature) == set(features.RAW_FEATURES)
      rows[(name,) + tuple(value_of(example, f) for f in features.RAW_FEATURES)] += 1
  return rows


def reference_rows(dataset: loaders.Dataset, history_length: int) -> Counter:
  frame = prepare_reference.examples_frame(dataset, history_length)
  columns = [frame[prepare_reference.SPLIT].tolist()] + [frame[f].tolist()
                                                         for f in features.RAW_FEATURES]
  return Counter(zip(*columns))


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


@pytest.fixture(scope='module')
def csv_files(dataset, tmp_path_factory):
  return loaders.locate_inputs(input_writers.write_csv(dataset, tmp_path_factory.mktemp('csv')))


@pytest.mark.parametrize('writer', [input_writers.write_csv,
                                    input_writers.write_movielens_100k])
def test_examples_equal_the_pandas_reference(tmp_path, writer, synthetic_dataset):
  files = loaders.locate_inputs(writer(synthetic_dataset, tmp_path / 'input'))
  output = tmp_path / 'examples'
  manifest = prepare.prepare_examples(files, output, HISTORY_LENGTH)
  assert json.loads((output / prepare.MANIFEST).read_text()) == manifest
  expected = reference_rows(synthetic_dataset, HISTORY_LENGTH)
  assert written_rows(output) == expected
  assert manifest['counts'] == dict(Counter(row[0] for row in expected.elements()))
  interactions = synthetic_dataset.interactions
  assert manifest['num_users'] == interactions[features.USER_ID].nunique()
  assert manifest['num_items'] == interactions[features.ITEM_ID].nunique()


def test_multi_processing_runner_writes_the_same_examples(tmp_path, dataset, csv_files):
  output = tmp_path / 'examples'
  prepare.prepare_examples(csv_files, output, HISTORY_LENGTH, beam_pipeline_args=MULTI_PROCESSING)
  assert written_rows(output) == reference_rows(dataset, HISTORY_LENGTH)


def test_ties_history_and_missing_side_information(tmp_path):
  interactions = tmp_path / 'interactions.csv'
  interactions.write_text('user_id,item_id,timestamp\n'
                          'a,first,5\na,second,5\na,early,1\na,third,5\nb,x,3\n')
  (tmp_path / 'items.csv').write_text('item_id,title,year\nfirst,First,1999\n')
  output = tmp_path / 'examples'
  prepare.prepare_examples(loaders.locate_inputs(tmp_path), output, history_length=2)
  examples = {}
  for name in features.SPLITS:
    for example in read_examples(prepare.split_files(output, name)):
      examples[value_of(example, features.ITEM_ID)] = (name, example)
  assert {item: name for item, (name, _) in examples.items()} == {
      'early': features.TRAIN_SPLIT, 'first': features.TRAIN_SPLIT,
      'second': features.EVAL_SPLIT, 'third': features.TEST_SPLIT, 'x': features.TEST_SPLIT}
  histories = {item: value_of(example, features.HISTORY) for item, (_, example) in
               examples.items()}
  assert histories == {'early': '', 'first': 'early', 'second': 'early first',
                       'third': 'first second', 'x': ''}
  _, first = examples['first']
  assert value_of(first, features.TITLE) == 'First' and value_of(first, features.YEAR) == 1999
  assert value_of(first, features.GENRES) == features.UNKNOWN
  assert value_of(first, features.AGE) == 0
  assert value_of(first, features.OCCUPATION) == features.UNKNOWN
  _, other = examples['x']
  assert value_of(other, features.TITLE) == features.UNKNOWN
  assert value_of(other, features.RATING) == 1.0


@pytest.mark.parametrize('content, row, column, problem', [
    ('user_id,item_id,rating,timestamp\nu1,i1,4,100\nu1,i2,abc,200\n', 3, features.RATING,
     "'abc' is not a number"),
    ('user_id,item_id,rating\nu1,i1,4\n', 1, features.TIMESTAMP, 'missing required column'),
    ('user_id,item_id,rating,timestamp\n', 2, None, 'no data rows'),
    ('', 1, None, 'file is empty'),
])
def test_bad_interactions_raise_a_located_data_error_and_write_nothing(
    tmp_path, content, row, column, problem):
  path = tmp_path / 'interactions.csv'
  path.write_text(content)
  output = tmp_path / 'examples'
  with pytest.raises(DataError, match=problem) as caught:
    prepare.prepare_examples(loaders.locate_inputs(path), output, HISTORY_LENGTH)
  assert (caught.value.path, caught.value.row, caught.value.column) == (str(path), row, column)
  assert str(caught.value).startswith(f'{path}: ')
  assert sorted(p.name for p in tmp_path.iterdir()) == ['interactions.csv']


def test_bad_row_in_a_worker_process_is_reraised_in_the_driver(tmp_path, dataset):
  directory = input_writers.write_movielens_100k(dataset, tmp_path / 'input')
  ratings = directory / loaders.MOVIELENS_RATINGS
  lines = ratings.read_text(encoding='latin-1').splitlines()
  lines[41] = '1\t2\t4'
  ratings.write_text('\n'.join(lines) + '\n', encoding='latin-1')
  with pytest.raises(DataError, match='expected 4 fields, found 3') as caught:
    prepare.prepare_examples(loaders.locate_inputs(directory), tmp_path / 'examples',
                             HISTORY_LENGTH, beam_pipeline_args=MULTI_PROCESSING)
  assert (caught.value.path, caught.value.row) == (str(ratings), 42)


def test_bad_side_table_is_reported(tmp_path, dataset):
  directory = input_writers.write_csv(dataset, tmp_path / 'input')
  users = directory / loaders.USERS_CSV
  users.write_text(users.read_text() + '1,30,M,other,12345\n')
  with pytest.raises(DataError, match='duplicate id') as caught:
    prepare.prepare_examples(loaders.locate_inputs(directory), tmp_path / 'examples',
                             HISTORY_LENGTH)
  assert caught.value.path == str(users)


def test_rerun_with_same_inputs_touches_nothing(tmp_path, csv_files):
  output = tmp_path / 'examples'
  first = prepare.prepare_examples(csv_files, output, HISTORY_LENGTH)
  before = snapshot(output)
  assert len(before) == len(features.SPLITS) + 1
  assert prepare.prepare_examples(csv_files, output, HISTORY_LENGTH) == first
  assert snapshot(output) == before

  changed = prepare.prepare_examples(csv_files, output, HISTORY_LENGTH + 1)
  assert changed['fingerprint'] != first['fingerprint']
  assert json.loads((output / prepare.MANIFEST).read_text()) == changed
  assert sorted(p.name for p in tmp_path.iterdir()) == ['examples']


def test_changed_input_bytes_change_the_fingerprint(tmp_path, dataset):
  files = loaders.locate_inputs(input_writers.write_csv(dataset, tmp_path / 'input'))
  before = prepare.fingerprint(files, HISTORY_LENGTH, 0.1, 0.1)
  with open(files.items, 'a') as handle:
    handle.write('new,New item,Drama,2001\n')
  assert prepare.fingerprint(files, HISTORY_LENGTH, 0.1, 0.1) != before


def test_failed_run_keeps_previous_output(tmp_path, csv_files, monkeypatch):
  output = tmp_path / 'examples'
  prepare.prepare_examples(csv_files, output, HISTORY_LENGTH)
  before = snapshot(output)

  def failing_counters(result):
    raise RuntimeError('disk full')

  monkeypatch.setattr(prepare, '_counters', failing_counters)
  with pytest.raises(RuntimeError, match='disk full'):
    prepare.prepare_examples(csv_files, output, HISTORY_LENGTH + 1)
  assert snapshot(output) == before
  assert sorted(p.name for p in tmp_path.iterdir()) == ['examples']


def test_refuses_to_replace_a_foreign_directory(tmp_path, csv_files):
  output = tmp_path / 'examples'
  output.mkdir()
  (output / 'notes.txt').write_text('keep me')
  with pytest.raises(FileExistsError, match=prepare.MANIFEST):
    prepare.prepare_examples(csv_files, output, HISTORY_LENGTH)
  assert (output / 'notes.txt').read_text() == 'keep me'


def test_parameters_are_checked(tmp_path, csv_files):
  with pytest.raises(ValueError, match='history length'):
    prepare.prepare_examples(csv_files, tmp_path / 'examples', -1)
  with pytest.raises(ValueError, match='test_fraction'):
    prepare.prepare_examples(csv_files, tmp_path / 'examples', 2, test_fraction=1.0)
