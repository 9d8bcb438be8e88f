"""Tests of the RetrievalEvaluator executor's pieces: reading examples, the models, the blessing.

The whole component runs in tests/test_pipeline_e2e.py."""
import os

import tensorflow as tf
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from components import baseline_resolver
from components.retrieval_evaluator import executor
from contract import features
from models import layout


def _example(user, item, rating, timestamp) -> bytes:
  feature = {
      features.USER_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[user.encode()])),
      features.ITEM_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[item.encode()])),
      features.RATING: tf.train.Feature(float_list=tf.train.FloatList(value=[rating])),
      features.TIMESTAMP: tf.train.Feature(int64_list=tf.train.Int64List(value=[timestamp])),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_read_split_parses_gzipped_examples(tmp_path):
  records = [_example('u1', 'a', 4.0, 10), _example('u2', 'b', 2.5, 11)]
  path = str(tmp_path / 'data_tfrecord-00000-of-00001.gz')
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for record in records:
      writer.write(record)
  frame, read = executor.read_split(str(tmp_path))
  assert read == records
  assert frame[features.USER_ID].tolist() == ['u1', 'u2']
  assert frame[features.ITEM_ID].tolist() == ['a', 'b']
  assert frame[features.RATING].tolist() == [4.0, 2.5]
  assert frame[features.TIMESTAMP].tolist() == [10, 11]


def test_catalogue_items_are_those_of_the_items_split_when_there_is_one(tmp_path):
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path)
  examples.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
  assert executor.read_catalogue_items(examples) is None
  split_dir = tmp_path / f'Split-{features.ITEMS_SPLIT}'
  split_dir.mkdir()
  with tf.io.TFRecordWriter(str(split_dir / 'data_tfrecord-00000-of-00001.gz'),
                            options='GZIP') as writer:
    for item, title in (('i2', 'Two'), ('i1', 'One')):  # an item example: no interaction
      feature = {
          features.ITEM_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[item.encode()])),
          features.TITLE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[title.encode()])),
      }
      writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                   .SerializeToString())
  examples.split_names = artifact_utils.encode_split_names(list(features.EXAMPLE_SPLITS))
  assert executor.read_catalogue_items(examples) == ['i2', 'i1']


def test_model_dirs_include_the_students_only_when_exported(tmp_path):
  model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
  model.uri, model_run.uri = str(tmp_path / 'model'), str(tmp_path / 'run')
  dirs = executor.model_dirs(model, model_run)
  assert list(dirs) == ['teacher', 'student_int8']
  assert dirs['teacher'] == os.path.join(model_run.uri, 'teacher')
  assert dirs['student_int8'] == os.path.join(model.uri, 'Format-Serving')
  os.makedirs(os.path.join(model_run.uri, 'student_fp32'))
  assert list(executor.model_dirs(model, model_run)) == ['teacher', 'student_fp32', 'student_int8']
  os.makedirs(os.path.join(model_run.uri, 'student_scratch'))
  dirs = executor.model_dirs(model, model_run)
  assert list(dirs) == ['teacher', 'student_scratch', 'student_fp32', 'student_int8']
  assert dirs[layout.STUDENT_SCRATCH] == os.path.join(model_run.uri, 'student_scratch')


def test_blessing_is_what_the_pusher_and_the_baseline_resolver_read(tmp_path):
  model = standard_artifacts.Model()
  model.id, model.uri = 7, str(tmp_path / 'model')
  for blessed in (True, False):
    blessing = standard_artifacts.ModelBlessing()
    blessing.id, blessing.uri = 8, str(tmp_path / f'blessing_{blessed}')
    executor.write_blessing(blessing, model, blessed)
    assert os.listdir(blessing.uri) == ['BLESSED' if blessed else 'NOT_BLESSED']
    assert blessing.get_int_custom_property('blessed') == int(blessed)
    assert blessing.get_string_custom_property('current_model') == model.uri
    candidate = standard_artifacts.Model()
    candidate.id = 9
    resolved = baseline_resolver.latest_blessed_before([candidate], [model], [blessing])
    assert resolved['model'] == ([model] if blessed else [])
