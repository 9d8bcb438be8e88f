"""The whole pipeline with BeamDagRunner on implicit feedback: tiny generated data written without
a rating column (a log of interactions), with the rating thresholds as configured. The runner
sees the feedback is implicit, the Trainer trains retrieval only, there is no Evaluator, the
retrieval gates bless alone and the student is pushed; run as explicit, the same data stops at
the DataGate."""
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from components import data_gate
from components import gates
from components.retrieval_evaluator import executor as retrieval_executor
from contract import features
from contract import signatures
from ingest import generic_csv
from ingest import loaders
from ingest import synthetic
from ingest import tables
from models import layout
from pipeline import configs
from pipeline import local_runner
import input_writers

# Tiny data trains for a few steps: the retrieval gates only ask for a student no bigger than
# the teacher. The rating thresholds stay as configured: an implicit run has no Evaluator.
LENIENT_GATES = dataclasses.replace(configs.GATES, retrieval=gates.RetrievalGates(
    min_ndcg_ratio=0.0, max_size_ratio=1.0, min_popularity_ratio=0.0))
RETRIEVAL_GATE_NAMES = ['ndcg_vs_teacher', 'size_vs_teacher', 'ndcg_vs_popularity']


@pytest.fixture(scope='module')
def implicit_dataset():
  """Generated data with late items (so every slice has users), without its ratings."""
  dataset = synthetic.generate(num_users=60, num_items=150, seed=1, arriving_items=15,
                               interactions_per_user=(5, 40))
  return tables.Dataset(dataset.interactions.drop(columns=[features.RATING]), dataset.users,
                        dataset.items)


@pytest.fixture(scope='module')
def implicit_csv_dir(tmp_path_factory, implicit_dataset):
  directory = input_writers.write_csv(implicit_dataset, tmp_path_factory.mktemp('implicit_csv'))
  with open(directory / generic_csv.INTERACTIONS_CSV) as f:
    assert f.readline().strip() == 'user_id,item_id,timestamp'
  return str(directory)


@pytest.fixture(scope='module')
def implicit_run(tmp_path_factory, implicit_csv_dir):
  return local_runner.run(implicit_csv_dir, str(tmp_path_factory.mktemp('implicit_pipeline')),
                          gates=LENIENT_GATES, feedback=loaders.AUTO_FEEDBACK)


def _metrics(result) -> dict:
  with open(os.path.join(result['retrieval_evaluation'], retrieval_executor.METRICS_FILE)) as f:
    return json.load(f)


def _model_run(result) -> str:
  (run,) = tf.io.gfile.glob(os.path.join(result['pipeline_root'], 'Trainer', 'model_run', '*'))
  return run


def test_an_implicit_log_is_detected_and_its_student_pushed(implicit_run):
  assert implicit_run['feedback'] == features.IMPLICIT
  assert implicit_run['pushed'], 'the implicit run must push a blessed model'
  assert tf.saved_model.contains_saved_model(implicit_run['pushed'])
  assert local_runner.latest_version(os.path.join(implicit_run['serving'], 'teacher'))


def test_the_retrieval_gates_bless_alone_and_no_rmse_is_reported(implicit_run):
  assert not os.path.exists(os.path.join(implicit_run['pipeline_root'], 'Evaluator'))
  metrics = _metrics(implicit_run)
  assert metrics['feedback'] == features.IMPLICIT
  assert [d['gate'] for d in metrics['gates']['decisions']] == RETRIEVAL_GATE_NAMES
  assert metrics['gates']['blessed']
  for name, model_metrics in metrics['models'].items():
    assert model_metrics.get('rmse') is None, name
  assert metrics['models'][layout.CANDIDATE]['ndcg@10'] > 0
  with open(implicit_run['report']) as f:
    report = f.read()
  assert 'Feedback: implicit' in report
  assert 'No Evaluator: implicit feedback has no ratings to gate.' in report


def test_the_trainer_learns_retrieval_only(implicit_run):
  with open(os.path.join(_model_run(implicit_run), layout.SUMMARY_FILE)) as f:
    summary = json.load(f)
  assert list(summary) == [layout.TEACHER, layout.STUDENT_FP32, layout.STUDENT_INT8]
  for name, record in summary.items():
    assert record['feedback'] == features.IMPLICIT, name
    assert record['eval']['rmse'] is None, name
    assert record['eval']['recall@100'] > 0, name
  for name in (layout.STUDENT_FP32, layout.STUDENT_INT8):
    history = summary[name]['history']
    assert set(history['rating_loss']) == {0.0}
    assert set(history['rating_distillation_loss']) == {0.0}
    assert all(value > 0 for value in history['retrieval_loss'] + history['kd_loss'])


def _score_example(implicit_dataset, user: str, history, item: str) -> bytes:
  content = implicit_dataset.items.loc[item]
  feature = {
      features.USER_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[user.encode()])),
      features.HISTORY: tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[' '.join(history).encode()])),
      features.ITEM_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[item.encode()])),
      features.TITLE: tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[content[features.TITLE].encode()])),
      features.GENRES: tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[content[features.GENRES].encode()])),
      features.YEAR: tf.train.Feature(
          int64_list=tf.train.Int64List(value=[int(content[features.YEAR])])),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_score_returns_the_retrieval_score_recommend_ranks_by(implicit_run, implicit_dataset):
  """The contract for implicit exports: `score` is query · candidate (no rating head)."""
  teacher = tf.saved_model.load(os.path.join(_model_run(implicit_run),
                                             layout.SAVED_MODEL_DIRS[layout.TEACHER]))
  interactions = implicit_dataset.interactions
  user = interactions[features.USER_ID].iloc[0]
  history = list(interactions[interactions[features.USER_ID] == user][features.ITEM_ID][:5])
  recommended = teacher.signatures[signatures.RECOMMEND](
      user_id=tf.constant([user]), history=tf.constant([history]))
  items = recommended[signatures.ITEM_IDS].numpy().astype(str)[0][[0, 1, 10, -1]]
  expected = recommended[signatures.SCORES].numpy()[0][[0, 1, 10, -1]]
  scored = teacher.signatures[signatures.SCORE](examples=tf.constant(
      [_score_example(implicit_dataset, user, history, item) for item in items]))
  np.testing.assert_allclose(scored[signatures.RATING].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_an_implicit_log_run_as_explicit_stops_at_the_data_gate(implicit_csv_dir, tmp_path):
  with pytest.raises(data_gate.DataAnomaliesError,
                     match="feature 'rating': every rating is 1: .*FEEDBACK=implicit"):
    local_runner.run(implicit_csv_dir, str(tmp_path / 'explicit'),
                     gates=LENIENT_GATES, feedback=features.EXPLICIT)
  assert not os.path.exists(tmp_path / 'explicit' / 'pipeline_root' / 'Trainer')
