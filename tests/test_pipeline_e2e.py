"""The whole pipeline with BeamDagRunner on tiny generated data, then the pushed SavedModel."""
import os

import pytest
import tensorflow as tf

from models import export
from models import features
from pipeline import local_runner

LENIENT_RMSE = 10.0


def _example(**values) -> bytes:
  feature = {name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
             for name, value in values.items()}
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope='module')
def pipeline_run(tmp_path_factory, synthetic_csv_dir):
  output = str(tmp_path_factory.mktemp('pipeline'))
  # Tiny data trains for a few steps only: a lenient gate here, an impossible one below.
  first = local_runner.run(synthetic_csv_dir, output, rmse_upper_bound=LENIENT_RMSE)
  second = local_runner.run(synthetic_csv_dir, output, rmse_upper_bound=LENIENT_RMSE)
  # The Evaluator re-runs (new config) on the cached model, which the gate now rejects.
  unblessed = local_runner.run(synthetic_csv_dir, output, rmse_upper_bound=0.0)
  return first, second, unblessed


def test_pipeline_pushes_a_versioned_model(pipeline_run):
  first = pipeline_run[0]
  assert first['pushed'], 'the first run must push a blessed model'
  assert os.path.basename(first['pushed']).isdigit()
  assert os.path.dirname(first['pushed']) == os.path.join(first['serving'], 'student')
  assert tf.saved_model.contains_saved_model(first['pushed'])


def test_rerun_with_unchanged_inputs_hits_the_cache(pipeline_run):
  first, second, _ = pipeline_run
  assert second['pushed'] is None
  assert second['latest'] == first['pushed']


def test_unblessed_model_is_not_pushed(pipeline_run):
  first, _, unblessed = pipeline_run
  assert unblessed['pushed'] is None
  assert unblessed['latest'] == first['pushed']


def test_bad_data_stops_with_one_line_and_writes_nothing(tmp_path, capsys):
  output = tmp_path / 'out'
  assert local_runner.main(['--data', str(tmp_path / 'missing.csv'), '--output', str(output)]) == 2
  error = capsys.readouterr().err.strip()
  assert error.startswith('error: ') and 'missing.csv' in error and '\n' not in error
  assert not output.exists()


def test_pushed_model_recommends_for_known_and_unknown_users(pipeline_run, synthetic_dataset):
  first = pipeline_run[0]
  model = tf.saved_model.load(first['pushed'])
  catalogue = set(synthetic_dataset.interactions[features.ITEM_ID])
  known = synthetic_dataset.interactions[features.USER_ID].iloc[0]
  history = list(synthetic_dataset.interactions[features.ITEM_ID].iloc[:3])

  outputs = model.signatures[export.SERVING_SIGNATURE](examples=tf.constant([
      _example(user_id=known, history=' '.join(history)),
      _example(user_id='never-seen-user')]))
  item_ids = outputs['item_ids'].numpy().astype(str)
  scores = outputs['scores'].numpy()
  assert item_ids.shape[0] == 2 and item_ids.shape[1] > 0
  for row in range(2):
    assert set(item_ids[row]) <= catalogue
    assert len(set(item_ids[row])) == item_ids.shape[1]
    assert (scores[row][:-1] >= scores[row][1:]).all()
  assert not set(history) & set(item_ids[0])

  raw = model.signatures[export.RECOMMEND_SIGNATURE](
      user_id=tf.constant(['never-seen-user']), history=tf.constant([history]))
  assert set(raw['item_ids'].numpy().astype(str)[0]) <= catalogue - set(history)
