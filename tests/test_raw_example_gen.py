"""Tests of RawExampleGen's executor: the same examples as the pandas reference of the split,
history and join, read from local files and through another TensorFlow file system (`ram://`),
and located errors for bad input."""

import json
import os
import re
import shutil
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.components.util import examples_utils
from tfx.orchestration import metadata
from tfx.orchestration.beam import beam_dag_runner
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components import raw_example_gen
from contract import features
from ingest import generic_csv, loaders, movielens_100k, synthetic, tables
from ingest.errors import DataError
import input_writers
import prepare_reference

HISTORY_LENGTH = 4
LIST_KINDS = {
    **{name: 'int64_list' for name in features.INT_FEATURES},
    **{name: 'float_list' for name in features.FLOAT_FEATURES},
    **{name: 'bytes_list'
       for name in features.STRING_FEATURES + features.OPTIONAL_STRING_FEATURES},
}
IN_MEMORY = ['--direct_running_mode=in_memory', '--direct_num_workers=1']
MULTI_PROCESSING = ['--direct_running_mode=multi_processing', '--direct_num_workers=2']


def run_executor(source: str, output_uri: str, history_length: int = HISTORY_LENGTH,
                 beam_pipeline_args=None, eval_fraction: float = 0.1,
                 test_fraction: float = 0.1, span_window: int = 0, item_text_columns=()):
  """Runs the executor as the component configures it; returns the `Examples` artifact."""
  component = raw_example_gen.RawExampleGen(source, history_length, eval_fraction, test_fraction,
                                            span_window=span_window,
                                            item_text_columns=item_text_columns)
  exec_properties = dict(component.exec_properties)  # protos as JSON, as executors get them
  examples = standard_artifacts.Examples()
  examples.uri = output_uri
  executor = raw_example_gen.Executor(raw_example_gen.Executor.Context(
      beam_pipeline_args=beam_pipeline_args or IN_MEMORY))
  executor.Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
  return examples


def read_examples(examples, split: str):
  pattern = os.path.join(artifact_utils.get_split_uri([examples], split), '*')
  records = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)), compression_type='GZIP')
  return [tf.train.Example.FromString(record.numpy()) for record in records]


def value_of(example, name):
  feature = example.features.feature[name]
  kind = feature.WhichOneof('kind')
  values = list(getattr(feature, kind).value)
  assert kind == LIST_KINDS[name] and len(values) == 1, name
  return values[0].decode('utf-8') if kind == 'bytes_list' else values[0]


def written_rows(examples) -> Counter:
  """(split, every raw feature value...) of every written example, as a multiset."""
  rows = Counter()
  for name in features.SPLITS:
    for example in read_examples(examples, name):
      assert set(example.features.feature) == set(features.RAW_FEATURES)
      rows[(name,) + tuple(value_of(example, f) for f in features.RAW_FEATURES)] += 1
  return rows


def reference_rows(dataset: tables.Dataset, history_length: int) -> Counter:
  frame = prepare_reference.examples_frame(dataset, history_length)
  columns = [frame[prepare_reference.SPLIT].tolist()] + [frame[f].tolist()
                                                         for f in features.RAW_FEATURES]
  return Counter(zip(*columns))


@pytest.fixture(scope='module')
def dataset():
  return synthetic.generate(num_users=20, num_items=30, interactions_per_user=(5, 15))


@pytest.mark.parametrize('writer', [input_writers.write_csv,
                                    input_writers.write_movielens_100k])
def test_examples_equal_the_pandas_reference(tmp_path, writer, synthetic_dataset):
  source = str(writer(synthetic_dataset, tmp_path / 'input'))
  examples = run_executor(source, str(tmp_path / 'examples'))
  assert (artifact_utils.decode_split_names(examples.split_names)
          == list(features.EXAMPLE_SPLITS))
  assert written_rows(examples) == reference_rows(synthetic_dataset, HISTORY_LENGTH)
  assert examples_utils.get_payload_format(examples) == example_gen_pb2.FORMAT_TF_EXAMPLE
  assert examples_utils.get_file_format(examples) == 'tfrecords_gzip'
  assert raw_example_gen.examples_window(examples) is None  # no spans: the whole source
  assert sorted(os.listdir(tmp_path / 'examples')) == [
      f'Split-{name}' for name in sorted(features.EXAMPLE_SPLITS)]


def test_the_items_split_holds_every_known_item_once_with_its_side_features(tmp_path, dataset):
  items = dataset.items
  extra = items.iloc[:1].copy()
  extra.index = pd.Index(['side-table-only'], name=items.index.name)
  with_extra = tables.Dataset(interactions=dataset.interactions, users=dataset.users,
                              items=pd.concat([items, extra]))
  # One interacted item is missing from the side table: it gets the default side features.
  missing = dataset.interactions[features.ITEM_ID].iloc[0]
  with_extra = tables.Dataset(interactions=with_extra.interactions, users=with_extra.users,
                              items=with_extra.items.drop(index=missing))
  source = str(input_writers.write_csv(with_extra, tmp_path / 'input'))
  written = read_examples(run_executor(source, str(tmp_path / 'examples')),
                          features.ITEMS_SPLIT)

  rows = {value_of(example, features.ITEM_ID): example for example in written}
  assert len(rows) == len(written)
  assert set(rows) == (set(with_extra.items.index)
                       | set(dataset.interactions[features.ITEM_ID]))
  assert 'side-table-only' in rows
  for item_id, example in rows.items():
    assert set(example.features.feature) == set(features.RAW_FEATURES)
    assert value_of(example, features.USER_ID) == ''
    assert value_of(example, features.HISTORY) == ''
    expected = (with_extra.items.loc[item_id] if item_id in with_extra.items.index else
                {name: features.default_value(name) for name in features.ITEM_SIDE_FEATURES})
    for name in features.ITEM_SIDE_FEATURES:
      assert value_of(example, name) == expected[name], (item_id, name)


def test_reads_through_another_tensorflow_file_system(dataset, tmp_path):
  local = input_writers.write_csv(dataset, tmp_path / 'input')
  source = f'ram://raw-{uuid.uuid4().hex}'
  tf.io.gfile.makedirs(source)
  for name in os.listdir(local):
    tf.io.gfile.copy(str(local / name), f'{source}/{name}')
  # Only the input: Beam's file sinks (TFX's WriteSplit) write to Beam's file systems.
  examples = run_executor(source, str(tmp_path / 'examples'))
  assert written_rows(examples) == reference_rows(dataset, HISTORY_LENGTH)


def test_multi_processing_runner_writes_the_same_examples(tmp_path, dataset):
  source = str(input_writers.write_csv(dataset, tmp_path / 'input'))
  examples = run_executor(source, str(tmp_path / 'examples'),
                          beam_pipeline_args=MULTI_PROCESSING)
  assert written_rows(examples) == reference_rows(dataset, HISTORY_LENGTH)


def test_a_single_csv_file_and_history_length(tmp_path, dataset):
  directory = input_writers.write_csv(tables.Dataset(dataset.interactions), tmp_path / 'input')
  examples = run_executor(str(directory / generic_csv.INTERACTIONS_CSV), str(tmp_path / 'out'),
                          history_length=2)
  assert written_rows(examples) == reference_rows(tables.Dataset(dataset.interactions), 2)


def test_ties_history_and_missing_side_information(tmp_path):
  (tmp_path / 'interactions.csv').write_text(
      'user_id,item_id,timestamp\na,first,5\na,second,5\na,early,1\na,third,5\nb,x,3\n')
  (tmp_path / 'items.csv').write_text('item_id,title,year\nfirst,First,1999\n')
  examples = {}
  output = run_executor(str(tmp_path), str(tmp_path / 'examples'), history_length=2)
  for name in features.SPLITS:
    for example in read_examples(output, name):
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


def test_declared_item_text_columns_travel_joined_in_the_examples_of_items_with_text(tmp_path):
  (tmp_path / 'interactions.csv').write_text(
      'user_id,item_id,timestamp\na,first,1\na,second,2\na,third,3\nb,first,4\n')
  (tmp_path / 'items.csv').write_text(
      'item_id,title,description,notes,tags\n'
      'first,First,"A slow, quiet film",internal,drama|slow\n'
      'second,Second,,internal,\n'
      'cold,Cold,Never watched,internal,\n')
  output = run_executor(str(tmp_path), str(tmp_path / 'examples'),
                        item_text_columns=('description', 'tags'))
  texts = {}
  for split in features.EXAMPLE_SPLITS:
    for example in read_examples(output, split):
      text = (value_of(example, features.ITEM_TEXT)
              if features.ITEM_TEXT in example.features.feature else None)
      texts.setdefault(value_of(example, features.ITEM_ID), set()).add(text)
  # Interactions and the items split alike; items without text have no such feature.
  assert texts == {'first': {'A slow, quiet film drama|slow'}, 'second': {None},
                   'third': {None}, 'cold': {'Never watched'}}
  # Undeclared, the columns are ignored: the examples are those of items.csv without them.
  plain = run_executor(str(tmp_path), str(tmp_path / 'plain'))
  assert all(set(example.features.feature) == set(features.RAW_FEATURES)
             for split in features.EXAMPLE_SPLITS for example in read_examples(plain, split))


@pytest.mark.parametrize('content, row, column, problem', [
    ('user_id,item_id,rating,timestamp\nu1,i1,4,100\nu1,i2,abc,200\n', 3, features.RATING,
     "'abc' is not a number"),
    ('user_id,item_id,rating\nu1,i1,4\n', 1, features.TIMESTAMP, 'missing required column'),
    ('user_id,item_id,rating,timestamp\n', 2, None, 'no data rows'),
    ('', 1, None, 'file is empty'),
])
def test_bad_interactions_raise_a_located_data_error(tmp_path, content, row, column, problem):
  path = tmp_path / 'input' / 'interactions.csv'
  path.parent.mkdir()
  path.write_text(content)
  with pytest.raises(DataError, match=problem) as caught:
    run_executor(str(path.parent), str(tmp_path / 'examples'))
  assert (caught.value.path, caught.value.row, caught.value.column) == (str(path), row, column)
  assert str(caught.value).startswith(f'{path}: ')


def test_bad_row_in_a_worker_process_is_reraised_in_the_executor(tmp_path, dataset):
  directory = input_writers.write_movielens_100k(dataset, tmp_path / 'input')
  ratings = directory / movielens_100k.RATINGS_FILE
  lines = ratings.read_text(encoding='latin-1').splitlines()
  lines[41] = '1\t2\t4'
  ratings.write_text('\n'.join(lines) + '\n', encoding='latin-1')
  with pytest.raises(DataError, match='expected 4 fields, found 3') as caught:
    run_executor(str(directory), str(tmp_path / 'examples'), beam_pipeline_args=MULTI_PROCESSING)
  assert (caught.value.path, caught.value.row) == (str(ratings), 42)
  assert not list(Path(tmp_path / 'examples').rglob('*.jsonl'))


def test_bad_side_table_is_reported(tmp_path, dataset):
  directory = input_writers.write_csv(dataset, tmp_path / 'input')
  users = directory / generic_csv.USERS_CSV
  users.write_text(users.read_text() + '1,30,M,other,12345\n')
  with pytest.raises(DataError, match='duplicate id') as caught:
    run_executor(str(directory), str(tmp_path / 'examples'))
  assert caught.value.path == str(users)


def test_parameters_are_checked(tmp_path, dataset):
  source = str(input_writers.write_csv(dataset, tmp_path / 'input'))
  with pytest.raises(ValueError, match='history length'):
    run_executor(source, str(tmp_path / 'examples'), history_length=-1)
  with pytest.raises(ValueError, match='test_fraction'):
    run_executor(source, str(tmp_path / 'examples'), test_fraction=1.0)


def test_the_component_names_the_protocol_splits_and_its_parameters():
  component = raw_example_gen.RawExampleGen('gs://bucket/raw/log.csv', 20, 0.1, 0.2)
  properties = component.exec_properties
  input_config = proto_utils.json_to_proto(
      properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
  output_config = proto_utils.json_to_proto(
      properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output())
  assert properties[raw_example_gen.SOURCE_KEY] == 'gs://bucket/raw/log.csv'
  assert properties[standard_component_specs.INPUT_BASE_KEY] == 'gs://bucket/raw'
  assert input_config.splits[0].pattern == 'log.csv'
  assert ([split.name for split in output_config.split_config.splits]
          == list(features.EXAMPLE_SPLITS))
  assert (properties['history_length'], properties['eval_fraction'],
          properties['test_fraction']) == (20, 0.1, 0.2)
  directory = raw_example_gen.RawExampleGen('gs://bucket/raw/', 20, 0.1, 0.1)
  assert directory.exec_properties[standard_component_specs.INPUT_BASE_KEY] == 'gs://bucket/raw'
  assert '"pattern": "*"' in directory.exec_properties[standard_component_specs.INPUT_CONFIG_KEY]


def test_the_executor_reads_the_source_the_runner_located(tmp_path, monkeypatch):
  input_writers.write_csv(synthetic.generate(num_users=5, num_items=10), tmp_path / 'input')
  monkeypatch.chdir(tmp_path)
  for given in ('input', os.path.join('input', generic_csv.INTERACTIONS_CSV)):
    files = loaders.locate_inputs(given)
    assert files.source == str(tmp_path / given)
    component = raw_example_gen.RawExampleGen(files.source, HISTORY_LENGTH, 0.1, 0.1)
    located = loaders.locate_inputs(component.exec_properties[raw_example_gen.SOURCE_KEY])
    assert located.source == files.source
    assert (located.users is None, located.items is None) == (
        files.users is None, files.items is None)


def window_dataset(drops: list) -> tables.Dataset:
  """The drops as one log, with the latest drop's side tables."""
  return tables.Dataset(pd.concat([drop.interactions for drop in drops], ignore_index=True),
                        drops[-1].users, drops[-1].items)


def test_a_span_source_is_read_as_one_log_over_its_window(tmp_path, dataset):
  drops = input_writers.write_spans(dataset, tmp_path / 'log', 3)
  source = str(tmp_path / 'log' / 'span-{SPAN}')
  for span_window, read in ((0, drops), (2, drops[1:])):
    examples = run_executor(source, str(tmp_path / f'examples-{span_window}'),
                            span_window=span_window)
    # Split per user over the window, side tables from its latest drop.
    assert written_rows(examples) == reference_rows(window_dataset(read), HISTORY_LENGTH)
    assert raw_example_gen.examples_window(examples) == [1, 2, 3][-len(read):]
  assert written_rows(examples) != reference_rows(window_dataset(drops), HISTORY_LENGTH)


def test_span_sources_their_spans_and_windows(tmp_path):
  assert raw_example_gen.input_base_and_pattern('gs://b/log/span-{SPAN}/') == (
      'gs://b/log', 'span-{SPAN}/*')
  assert raw_example_gen.input_base_and_pattern('/data/day-{SPAN:3}.csv') == (
      '/data', 'day-{SPAN:3}.csv')
  for source, problem in (('/d/span-{SPAN}/{VERSION}', 'not {VERSION}'),
                          ('/d/{YYYY}-{MM}-{DD}', 'not {YYYY}'),
                          ('/d/{SPAN}/x-{SPAN}', 'one {SPAN}')):
    with pytest.raises(ValueError, match=re.escape(problem)):
      raw_example_gen.input_base_and_pattern(source)
  for name in ('span-02', 'span-07', 'span-10', 'span-x', 'other-03'):
    (tmp_path / name).mkdir()
    (tmp_path / name / generic_csv.INTERACTIONS_CSV).write_text('user_id,item_id,timestamp\n')
  (tmp_path / 'span-04').mkdir()  # no files: no span
  padded = str(tmp_path / 'span-{SPAN:2}')
  assert raw_example_gen.present_spans(padded) == [2, 7, 10]
  assert raw_example_gen.span_source(padded, 7) == str(tmp_path / 'span-07')
  with pytest.raises(ValueError, match=re.escape('{SPAN:2}')):
    raw_example_gen.present_spans(str(tmp_path / 'span-{SPAN}'))
  assert raw_example_gen.window([2, 7, 10], 0) == [2, 7, 10]
  assert raw_example_gen.window([2, 7, 10], 2) == [7, 10]
  assert raw_example_gen.window([2, 7, 10], 2, last=7) == [2, 7]
  with pytest.raises(ValueError, match='span window -1'):
    raw_example_gen.window([2], -1)


def test_the_driver_resolves_and_fingerprints_the_window(tmp_path, dataset):
  input_writers.write_spans(dataset, tmp_path / 'log', 3)
  component = raw_example_gen.RawExampleGen(str(tmp_path / 'log' / 'span-{SPAN}'),
                                            HISTORY_LENGTH, 0.1, 0.1, span_window=2)

  def resolve():
    return raw_example_gen.Driver(None).resolve_exec_properties(
        dict(component.exec_properties), None, None)

  resolved = resolve()
  assert json.loads(resolved[raw_example_gen.WINDOW_SPANS_KEY]) == [2, 3]
  assert resolved['span'] == 3
  # A change to an older span of the window, not only to the latest, changes the fingerprint.
  interactions = tmp_path / 'log' / 'span-2' / generic_csv.INTERACTIONS_CSV
  interactions.write_text(interactions.read_text() + 'u1,i1,1\n')
  changed = resolve()
  assert changed['input_fingerprint'] != resolved['input_fingerprint']
  input_writers.write_csv(dataset, tmp_path / 'log' / 'span-4')
  assert json.loads(resolve()[raw_example_gen.WINDOW_SPANS_KEY]) == [3, 4]


def test_a_pipeline_run_reads_the_window_its_driver_resolved(tmp_path, dataset):
  """RawExampleGen in a BeamDagRunner pipeline: TFX runs its driver, which resolves the window;
  a new span re-runs it on the new window, an unchanged input is cached."""
  input_writers.write_spans(dataset, tmp_path / 'log', 2)
  store = str(tmp_path / 'metadata.sqlite')

  def run():
    component = raw_example_gen.RawExampleGen(str(tmp_path / 'log' / 'span-{SPAN}'),
                                              HISTORY_LENGTH, 0.1, 0.1, span_window=2)
    beam_dag_runner.BeamDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name='spans', pipeline_root=str(tmp_path / 'root'), components=[component],
        enable_cache=True, beam_pipeline_args=IN_MEMORY,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            store)))
    with metadata.Metadata(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        store)) as handle:
      return [(artifact.custom_properties['span'].int_value, artifact.uri)
              for artifact in handle.store.get_artifacts_by_type('Examples')]

  first = run()
  assert [span for span, _ in first] == [2]
  assert run() == first  # cached
  drops = input_writers.write_spans(dataset, tmp_path / 'new', 3)
  shutil.copytree(tmp_path / 'new' / 'span-3', tmp_path / 'log' / 'span-3')
  second = run()
  assert [span for span, _ in second] == [2, 3]
  examples = standard_artifacts.Examples()
  examples.uri = second[-1][1]
  examples.split_names = artifact_utils.encode_split_names(list(features.EXAMPLE_SPLITS))
  read = tables.Dataset(pd.concat([pd.read_csv(tmp_path / 'log' / f'span-{span}' /
                                               generic_csv.INTERACTIONS_CSV, dtype={
                                                   features.USER_ID: str, features.ITEM_ID: str})
                                   for span in (2, 3)], ignore_index=True),
                        drops[-1].users, drops[-1].items)
  assert written_rows(examples) == reference_rows(read, HISTORY_LENGTH)
