"""The whole pipeline on data given as spans (BeamDagRunner, tiny generated data): the first
span trains cold and pushes; a new span is read with the previous ones, its Trainer starts from
the model blessed on the first (`models.warm_start`), writes no fp32 student SavedModel and
pushes a second version whose catalogue holds the new span's items and answers a user first
seen in it; a re-run without a new span hits the cache."""
import dataclasses
import glob
import json
import os
import re

import pytest
import tensorflow as tf

from components import gates
from contract import catalogue as catalogue_lib
from contract import features
from contract import signatures
from ingest import synthetic
from models import layout
from pipeline import configs
from pipeline import local_runner
import input_writers

LENIENT_GATES = configs.GATES.__class__(
    **{**configs.GATES.__dict__, 'rmse_upper_bound': 10.0, 'rating_auc_lower_bound': 0.0,
       'retrieval': gates.RetrievalGates(min_ndcg_ratio=0.0, max_size_ratio=1.0,
                                         min_popularity_ratio=0.0)})


# The two spans are of equal length: the second run's window holds about twice the first's
# examples, which the default growth (`warm_start_max_growth`) would retrain cold.
TRAINING = dataclasses.replace(configs.TRAINING, warm_start_max_growth=3.0)


def _run(source: str, output: str) -> dict:
  """A run, with its Trainer's `model` artifact, training summary and report page."""
  result = local_runner.run(source, output, gates=LENIENT_GATES, training=TRAINING)
  with open(result['report']) as f:
    result['report_html'] = f.read()
  result['model_run'] = local_runner.latest_run_outputs(result['metadata'],
                                                       ['ModelRun'])['ModelRun']
  with open(os.path.join(result['model_run'], layout.SUMMARY_FILE)) as f:
    result['summary'] = json.load(f)
  result['model'] = max(glob.glob(os.path.join(result['pipeline_root'], 'Trainer', 'model', '*')),
                        key=lambda path: int(os.path.basename(path)))
  return result


@pytest.fixture(scope='module')
def span_runs(tmp_path_factory):
  dataset = synthetic.generate(num_users=60, num_items=150, seed=1, arriving_items=15,
                               interactions_per_user=(5, 40))
  log = tmp_path_factory.mktemp('log')
  staged = tmp_path_factory.mktemp('staged')
  drops = input_writers.write_spans(dataset, staged, 2)
  output = str(tmp_path_factory.mktemp('spans_pipeline'))
  source = str(log / 'span-{SPAN}')
  os.rename(staged / 'span-1', log / 'span-1')
  first = _run(source, output)
  os.rename(staged / 'span-2', log / 'span-2')
  second = _run(source, output)
  again = _run(source, output)
  return drops, first, second, again


def test_each_span_pushes_a_version_the_second_warm_started(span_runs):
  drops, first, second, again = span_runs
  assert first['pushed'] and second['pushed'] and second['pushed'] != first['pushed']
  for name in (layout.TEACHER, layout.STUDENT_FP32):
    assert first['summary'][name]['warm_start'] is None
    warm = second['summary'][name]['warm_start']
    # Started from the first run's model: the rows of the ids it knew kept.
    assert warm['from'] == os.path.join(first['model'], layout.WARM_START_DIR)
    assert warm['rows_kept'] > 0 and warm['copied'] > 0
    assert warm['train_sample'] == configs.TRAINING.warm_start_sample
    assert second['summary'][name]['best_epoch'] <= configs.TRAINING.warm_start_epochs
  # The warm run writes no fp32 student SavedModel (its weights are in the warm start).
  fp32_dir = layout.SAVED_MODEL_DIRS[layout.STUDENT_FP32]
  assert os.path.isdir(os.path.join(first['model_run'], fp32_dir))
  assert not os.path.exists(os.path.join(second['model_run'], fp32_dir))
  assert second['summary'][layout.STUDENT_FP32]['bytes'] is None
  assert second['summary'][layout.STUDENT_INT8]['bytes'] > 0
  # The items of the newest span's items.csv are all served.
  served = set(catalogue_lib.read_catalogue(catalogue_lib.catalogue_path(second['pushed'])))
  assert set(drops[-1].items.index) <= served
  assert again['pushed'] is None and again['latest'] == second['pushed']
  assert again['model'] == second['model']  # cached: the same examples resolve the same base


def _history_rows(report_html: str) -> list:
  """The rows of the report's pushed versions table, as the text of their cells."""
  table = report_html[report_html.index('<table id="version-history">'):]
  table = table[:table.index('</table>')]
  return [re.findall(r'<td[^>]*>([^<]*)</td>', row) for row in table.split('<tr>')[2:]]


def test_the_report_shows_each_pushed_version_with_its_window(span_runs):
  _, first, second, again = span_runs
  (only,) = _history_rows(first['report_html'])
  assert only[0] == os.path.basename(first['pushed']) and only[2] == '1'
  rows = _history_rows(second['report_html'])
  assert [row[0] for row in rows] == [os.path.basename(first['pushed']),
                                      os.path.basename(second['pushed'])]
  assert [row[2] for row in rows] == ['1', '1-2']  # the window of each run's spans
  assert all(row[3] != '-' and row[4] != '-' and row[-1] == '' for row in rows)
  assert _history_rows(again['report_html']) == rows  # cached: the same report


def test_a_user_who_first_appears_in_the_newest_span_gets_answers(span_runs):
  drops, _, second, _ = span_runs
  older = set(drops[0].interactions[features.USER_ID])
  newest = drops[1].interactions[~drops[1].interactions[features.USER_ID].isin(older)]
  user = newest[features.USER_ID].iloc[0]
  history = list(newest[newest[features.USER_ID] == user][features.ITEM_ID].iloc[:3])
  model = tf.saved_model.load(second['pushed'])
  answers = model.signatures[signatures.RECOMMEND](
      user_id=tf.constant([user]), history=tf.constant([history]))['item_ids'].numpy()
  served = set(catalogue_lib.read_catalogue(catalogue_lib.catalogue_path(second['pushed'])))
  assert answers.shape[1] > 0 and set(answers[0].astype(str)) <= served - set(history)
