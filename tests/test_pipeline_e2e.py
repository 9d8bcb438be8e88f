"""The whole pipeline with BeamDagRunner on tiny generated data (with items that arrive late, so
that every evaluation slice has users), then the pushed SavedModel; and anomalous data, which
stops before the Trainer and pushes nothing."""
import dataclasses
import glob
import html
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import scale
from components import gates
from components.retrieval_evaluator import executor as retrieval_executor
from contract import catalogue as catalogue_lib
from contract import features
from contract import signatures
from evaluation import metrics as metrics_lib
from ingest import generic_csv
from ingest import synthetic
from ingest import tables
from pipeline import configs
from pipeline import local_runner
from pipeline import progress
import input_writers

ARRIVING_ITEMS = 15
# Tiny data trains for a few steps: the gates only ask for a student no bigger than the teacher
# and its rating RMSE below 10. The degraded run asks for a student of 0 bytes, which no model
# can be; the unblessed run for an RMSE of 0.
LENIENT_GATES = dataclasses.replace(
    configs.GATES, rmse_upper_bound=10.0, rating_auc_lower_bound=0.0,
    retrieval=gates.RetrievalGates(min_ndcg_ratio=0.0, max_size_ratio=1.0,
                                   min_popularity_ratio=0.0))
UNBLESSED_GATES = dataclasses.replace(LENIENT_GATES, rmse_upper_bound=0.0)
IMPOSSIBLE_GATES = dataclasses.replace(
    LENIENT_GATES, retrieval=dataclasses.replace(LENIENT_GATES.retrieval, max_size_ratio=0.0))


class _Records(logging.Handler):
  """Keeps the messages of warnings logged while it is attached, and apart the libraries' that a
  default run's log would show (`progress.is_shown_warning`)."""

  def __init__(self):
    super().__init__(level=logging.WARNING)
    self.messages = []
    self.unlisted = []

  def emit(self, record):
    message = record.getMessage()
    self.messages.append(message)
    if progress.is_shown_warning(record) and 'site-packages' in record.pathname:
      self.unlisted.append(f'{record.name}: {message[:150]}')


def _newest_blessing(result) -> str:
  blessings = glob.glob(os.path.join(result['pipeline_root'], 'RetrievalEvaluator', 'blessing',
                                     '*'))
  return max(blessings, key=lambda path: int(os.path.basename(path)))


def _metrics(result) -> dict:
  with open(os.path.join(result['retrieval_evaluation'], retrieval_executor.METRICS_FILE)) as f:
    return json.load(f)


def _report(result) -> str:
  with open(result['report']) as f:
    return f.read()


def _example(**values) -> bytes:
  feature = {name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
             for name, value in values.items()}
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope='module')
def arriving_dataset():
  """The generated data with items that arrive late: about 10% of the test interactions are
  with items unseen in train (the cold-item slice); users with as few as 5 interactions make
  the short-history slice."""
  return synthetic.generate(num_users=60, num_items=150, seed=0, arriving_items=ARRIVING_ITEMS,
                            interactions_per_user=(5, 40))


@pytest.fixture(scope='module')
def arriving_csv_dir(tmp_path_factory, arriving_dataset):
  """The data in CSV, its items.csv with a free-text `description` (a declared item text
  column: `configs.ITEM_TEXT_COLUMNS`) for all but a few items, and an undeclared column."""
  items = arriving_dataset.items
  descriptions = [f'A {genres.replace(features.GENRE_SEPARATOR, " and ")} film, number {n % 7}'
                  if n % 10 else '' for n, genres in enumerate(items[features.GENRES])]
  with_text = tables.Dataset(arriving_dataset.interactions, arriving_dataset.users,
                             items.assign(description=descriptions, notes='internal'))
  return str(input_writers.write_csv(with_text, tmp_path_factory.mktemp('arriving_csv')))


@pytest.fixture(scope='module')
def pipeline_run(tmp_path_factory, arriving_csv_dir):
  output = str(tmp_path_factory.mktemp('pipeline'))
  records = _Records()
  logging.getLogger().addHandler(records)

  def run(gates_record):
    result = local_runner.run(arriving_csv_dir, output, gates=gates_record)
    result['blessing'] = _newest_blessing(result)
    result['report_text'] = _report(result)
    return result

  try:
    # Tiny data trains for a few steps only: lenient gates here, impossible ones below.
    first = run(LENIENT_GATES)
    second = run(LENIENT_GATES)
    # The Evaluator re-runs (new config) on the cached model, which its RMSE bound now rejects.
    unblessed = run(UNBLESSED_GATES)
    # The Evaluator blesses again (cached), the retrieval gates reject the model.
    degraded = run(IMPOSSIBLE_GATES)
  finally:
    logging.getLogger().removeHandler(records)
  return first, second, unblessed, degraded, records.messages, records.unlisted


def test_pipeline_pushes_a_versioned_model(pipeline_run):
  first = pipeline_run[0]
  assert first['pushed'], 'the first run must push a blessed model'
  assert os.path.basename(first['pushed']).isdigit()
  assert os.path.dirname(first['pushed']) == os.path.join(first['serving'], 'student')
  assert tf.saved_model.contains_saved_model(first['pushed'])


def test_the_item_descriptions_reach_the_content_path_vocabulary(pipeline_run):
  assert 'description' in configs.ITEM_TEXT_COLUMNS
  root = os.path.dirname(pipeline_run[0]['serving'])
  [vocabulary] = glob.glob(os.path.join(root, 'pipeline_root', 'Transform', 'transform_graph',
                                        '*', 'transform_fn', 'assets', features.ITEM_TEXT_VOCAB))
  with open(vocabulary, encoding='utf-8') as handle:
    tokens = set(handle.read().split())
  assert {'film', 'number', 'and'} <= tokens and 'internal' not in tokens


def test_rerun_with_unchanged_inputs_hits_the_cache(pipeline_run):
  first, second, *_ = pipeline_run
  assert second['pushed'] is None
  assert second['latest'] == first['pushed']
  assert second['retrieval_evaluation'] == first['retrieval_evaluation']
  assert second['gate_failures'] == []


def test_retrieval_evaluation_of_every_model(pipeline_run, arriving_dataset):
  first = pipeline_run[0]
  metrics = _metrics(first)
  assert metrics['split'] == features.TEST_SPLIT and metrics['users'] > 0
  models = metrics['models']
  assert list(models) == ['teacher', 'student_fp32', 'student_int8', 'popularity', 'ease']
  for name, values in models.items():
    for key in metrics_lib.METRIC_KEYS + ['novelty@10', 'fidelity@10']:
      assert 0 <= values[key] <= (1 if key != 'novelty@10' else 64), (name, key)
    assert len(metrics['recall_curves'][name]) == max(metrics_lib.RECALL_KS)
    for metric, slice_name in metrics_lib.SLICE_METRICS:  # None only for a slice without users
      key = metrics_lib.slice_key(metric, slice_name)
      if metrics['slice_users'][slice_name]:
        assert 0 <= values[key] <= 1, (name, key)
      else:
        assert values[key] is None, (name, key)
  assert models['teacher']['fidelity@10'] == 1.0
  # Every slice has users on this data. The catalogue is every known item, so the models can
  # hit the arriving items, which have no train interaction.
  assert all(metrics['slice_users'][name] > 0 for name in metrics['slice_users'])
  assert metrics['catalogue_items'] == len(set(arriving_dataset.items.index)
                                           | set(arriving_dataset.interactions[features.ITEM_ID]))
  # Whether a model ranks them into a top 100 is a matter of quality (new items' content against
  # warm items' history), not pinned on tiny data; that the served index holds them is.
  arriving = set(arriving_dataset.items.index[-ARRIVING_ITEMS:])  # ids after the others'
  served = catalogue_lib.read_catalogue(catalogue_lib.catalogue_path(first['pushed']))
  assert arriving <= set(served)
  for name in ('teacher', 'student_fp32', 'student_int8'):
    assert models[name]['bytes'] > 0 and models[name]['rmse'] > 0
    assert 0 < models[name]['latency_mean_ms'] <= models[name]['latency_p99_ms']
  assert models['student_int8']['bytes'] < models['student_fp32']['bytes'] < models['teacher'][
      'bytes']
  sample = metrics['score_sample']
  assert len(sample['reference']) == len(sample['candidate']) > 0
  assert metrics['candidate'] == 'student_int8'
  assert metrics['gates']['blessed']
  assert [d['gate'] for d in metrics['gates']['decisions']] == [
      'ndcg_vs_teacher', 'size_vs_teacher', 'ndcg_vs_popularity', 'evaluator_blessing']
  assert os.listdir(first['blessing']) == ['BLESSED']


def test_report_shows_metrics_charts_gates_and_the_push(pipeline_run):
  first = pipeline_run[0]
  report = first['report_text']
  assert first['report'].endswith(os.path.join('report', 'report.html'))
  assert 'id="metrics-table"' in report and 'id="data-statistics"' in report
  assert 'id="slices-table"' in report
  for key in metrics_lib.SLICE_METRIC_KEYS:
    assert f'<td class="text">{key}</td>' in report, key
  for name in ('teacher', 'student_fp32', 'student_int8 (pushed candidate)', 'popularity', 'ease',
               'root_mean_squared_error', 'liked_auc', 'ndcg_vs_teacher'):
    assert name in report, name
  assert f'Pushed version {os.path.basename(first["pushed"])}' in report
  for chart in ('recall_curves.png', 'score_scatter.png', 'size_latency.png',
                'training_loss.png'):
    assert f'src="{chart}"' in report
    assert os.path.getsize(os.path.join(os.path.dirname(first['report']), chart)) > 0


def test_runs_warn_of_nothing_but_the_product_and_the_listed_harmless_library_warnings(
    pipeline_run):
  unlisted = pipeline_run[-1]
  assert not unlisted, '\n'.join(unlisted)


def test_unblessed_model_is_not_pushed(pipeline_run):
  first, _, unblessed, _, messages, _ = pipeline_run
  assert unblessed['pushed'] is None
  assert unblessed['latest'] == first['pushed']
  assert os.listdir(unblessed['blessing']) == ['NOT_BLESSED']
  reason = 'the Evaluator did not bless the model'
  assert any(reason in failure for failure in unblessed['gate_failures'])
  assert any('Gate evaluator_blessing FAILED' in message and reason in message
             for message in messages)
  assert 'Not pushed: ' + reason in unblessed['report_text']
  assert 'TFMA thresholds failed' in unblessed['report_text']


def test_model_failing_the_retrieval_gates_is_not_pushed(pipeline_run):
  first, _, _, degraded, messages, _ = pipeline_run
  assert degraded['pushed'] is None
  assert degraded['latest'] == first['pushed']
  assert os.listdir(degraded['blessing']) == ['NOT_BLESSED']
  assert not _metrics(degraded)['gates']['blessed']
  (failure,) = degraded['gate_failures']
  assert failure.startswith('student bytes ') and '> 0 x teacher bytes = 0' in failure
  assert degraded['gate_settings'] == ['size_vs_teacher: ' + gates.SETTINGS['size_vs_teacher']]
  assert any('Gate size_vs_teacher FAILED' in message and failure in message
             for message in messages)
  assert any('NOT blessed' in message for message in messages)
  assert 'Not pushed: ' + html.escape(failure) in degraded['report_text']
  assert ('class="text fail">FAIL</td><td class="text">' + html.escape(failure)
          in degraded['report_text'])


def test_bad_data_stops_with_one_line_and_writes_nothing(tmp_path, capsys):
  output = tmp_path / 'out'
  assert local_runner.main(['--data', str(tmp_path / 'missing.csv'), '--output', str(output)]) == 2
  error = capsys.readouterr().err.strip()
  assert error.startswith('error: ') and 'missing.csv' in error and '\n' not in error
  assert not output.exists()


def test_outputs_without_their_metadata_stop_the_run_and_stay(tmp_path, synthetic_dataset,
                                                             capsys):
  data = input_writers.write_csv(synthetic_dataset, tmp_path / 'data')
  earlier = tmp_path / 'out' / 'pipeline_root' / 'Transform' / 'transform_graph' / '6'
  earlier.mkdir(parents=True)
  (earlier / 'kept').write_text('an earlier run')
  assert local_runner.main(['--data', str(data), '--output', str(tmp_path / 'out')]) == 2
  error = capsys.readouterr().err.strip()
  assert error.startswith('error: ') and 'metadata' in error and '\n' not in error
  assert (earlier / 'kept').read_text() == 'an earlier run'
  assert not (tmp_path / 'out' / 'metadata.sqlite').exists()


def test_pushed_model_recommends_for_known_and_unknown_users(pipeline_run, arriving_dataset):
  first = pipeline_run[0]
  model = tf.saved_model.load(first['pushed'])
  catalogue = (set(arriving_dataset.interactions[features.ITEM_ID])
               | set(arriving_dataset.items.index))  # every known item
  known = arriving_dataset.interactions[features.USER_ID].iloc[0]
  history = list(arriving_dataset.interactions[features.ITEM_ID].iloc[:3])

  outputs = model.signatures[signatures.SERVING_DEFAULT](examples=tf.constant([
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

  raw = model.signatures[signatures.RECOMMEND](
      user_id=tf.constant(['never-seen-user']), history=tf.constant([history]))
  assert raw['item_ids'].shape == (1, item_ids.shape[1])
  assert set(raw['item_ids'].numpy().astype(str)[0]) <= catalogue - set(history)


def test_scale_benchmark_trains_a_teacher_epoch_on_the_pipeline_outputs(pipeline_run):
  """`make bench-scale`'s training stages (the trainer's statistics pass, one teacher epoch), on
  this run's Transform outputs: they must keep up with how `run_fn` builds the teacher."""
  first = pipeline_run[0]
  with scale.ProcessTreeMonitor() as monitor:
    stages = scale.Stages(monitor)
    training = scale.train_teacher_epoch(os.path.dirname(first['pipeline_root']), 64, stages)
  assert [stage.name for stage in stages.stages] == ['train_statistics_pass', 'item_item_fit',
                                                   'teacher_epoch']
  assert training['train_examples'] > 0 and training['teacher_params'] > 0
  assert np.isfinite(training['teacher_loss'])


def _ratings_on_a_0_to_100_scale(dataset):
  interactions = dataset.interactions.copy()
  interactions[features.RATING] = interactions[features.RATING] * 20
  return tables.Dataset(interactions, dataset.users, dataset.items)


def _empty_user_ids(dataset):
  interactions = dataset.interactions.copy()
  rows = np.random.default_rng(0).permutation(len(interactions))[:int(0.4 * len(interactions))]
  interactions.loc[interactions.index[rows[rows > 0]], features.USER_ID] = ''
  return tables.Dataset(interactions, dataset.users, dataset.items)


def _age_as_text(dataset):
  users = dataset.users.copy()
  users[features.AGE] = users[features.AGE].map(lambda age: f'{age} years')
  return tables.Dataset(dataset.interactions, users, dataset.items)


@pytest.mark.parametrize('make_anomalous, named', [
    (_ratings_on_a_0_to_100_scale,
     ["feature 'rating': Out-of-range values (FLOAT_TYPE_BIG_FLOAT)", '100>5']),
    (_empty_user_ids, [generic_csv.INTERACTIONS_CSV, "column 'user_id': empty id"]),
    (_age_as_text, [generic_csv.USERS_CSV, "column 'age'", 'is not an integer']),
])
def test_anomalous_data_stops_before_the_trainer_and_pushes_nothing(
    pipeline_run, synthetic_dataset, tmp_path, capsys, make_anomalous, named):
  """After the pushed runs above, on the same installation: nothing trains, the pushed model
  stays, and the one-line error names the anomaly."""
  first = pipeline_run[0]
  output = os.path.dirname(first['pipeline_root'])
  trainer_runs = set(glob.glob(os.path.join(first['pipeline_root'], 'Trainer', 'model', '*')))
  transform_runs = set(glob.glob(os.path.join(first['pipeline_root'], 'Transform', '*', '*')))
  data = input_writers.write_csv(make_anomalous(synthetic_dataset), tmp_path / 'data')

  assert local_runner.main(['--data', str(data), '--output', output]) == 2
  error = capsys.readouterr().err.strip().splitlines()[-1]
  assert error.startswith('error: ')
  for part in named:
    assert part in error
  assert set(glob.glob(os.path.join(first['pipeline_root'], 'Trainer', 'model', '*'))) == (
      trainer_runs)
  assert set(glob.glob(os.path.join(first['pipeline_root'], 'Transform', '*', '*'))) == (
      transform_runs)
  assert local_runner.latest_version(os.path.join(first['serving'], 'student')) == (
      first['pushed'])
