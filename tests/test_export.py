"""The export contract: signatures, top-k over the catalogue, history exclusion, unknown users."""
import os

import numpy as np
import pytest
import tensorflow as tf

from models import export
from models import features
from models import hparams
from models import inputs
from models import distiller
from models import quantization
from models import student
from models import teacher
from models import towers
from models import two_tower
from pipeline.data import prepare
from pipeline.data import split
import tft_helpers

TRANSFORM = hparams.TransformHParams(
    history_length=5, item_oov_buckets=1, user_oov_buckets=1, max_genres=3, max_title_tokens=4,
    title_vocab_size=100, zip_prefix_length=2)
SIZE = hparams.TowerHParams(
    embedding_dim=8, hidden_units=0, rating_hidden_units=8, history_encoder='transformer',
    attention_layers=1, attention_heads=2, dropout=0.0)
STUDENT_SIZE = hparams.TowerHParams(
    embedding_dim=8, hidden_units=0, rating_hidden_units=8, history_encoder='mean',
    attention_layers=0, attention_heads=0, dropout=0.0)
TRAINING = hparams.TrainingHParams(epochs=1, batch_size=64, shuffle_buffer_size=100,
                                   learning_rate=0.01,
                                   retrieval_weight=1.0, rating_weight=0.5,
                                   popularity_correction=True, seed=1)
TOP_K = 10


def _serialized(row: dict) -> bytes:
  def feature(name, value):
    if name in features.INT_FEATURES:
      return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    if name in features.FLOAT_FEATURES:
      return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(value).encode()]))
  return tf.train.Example(features=tf.train.Features(
      feature={name: feature(name, value) for name, value in row.items()})).SerializeToString()


@pytest.fixture(scope='module')
def trained(tmp_path_factory, synthetic_dataset):
  """A teacher trained on the synthetic data set, and what exporting needs."""
  directory = tmp_path_factory.mktemp('export')
  frame = prepare.join_side_features(synthetic_dataset)
  frame = split.add_history(frame.iloc[split.chronological_order(frame)].reset_index(drop=True),
                            TRANSFORM.history_length)
  transformed, tf_transform_output = tft_helpers.analyze_and_transform(
      tft_helpers.rows_from_frame(frame), TRANSFORM, str(directory / 'transform'))
  columns = {name: np.stack([np.squeeze(np.asarray(row[name])) for row in transformed])
             for name in transformed[0]}
  dataset = tf.data.Dataset.from_tensor_slices(columns).batch(TRAINING.batch_size)
  vocab = towers.Vocabularies.from_transform_output(
      tf_transform_output, TRANSFORM.item_oov_buckets, TRANSFORM.user_oov_buckets)
  stats = inputs.scan_train_data(
      dataset, tf_transform_output.vocabulary_by_name(features.ITEM_VOCAB), vocab.items)
  model = two_tower.TwoTowerModel(
      teacher.build_core(vocab, SIZE, TRANSFORM, stats.mean_rating), TRAINING, stats)
  model.compile(optimizer=tf.keras.optimizers.Adam(TRAINING.learning_rate))
  model.fit(dataset, epochs=TRAINING.epochs, verbose=0)
  return {'directory': directory, 'frame': frame, 'columns': columns, 'dataset': dataset,
          'vocab': vocab, 'stats': stats, 'teacher': model,
          'tf_transform_output': tf_transform_output}


def _int8_student(trained) -> two_tower.TwoTowerModel:
  """The teacher distilled into a student for one epoch, with QAT wrappers and int8 tables."""
  fp32 = two_tower.TwoTowerModel(
      student.build_core(trained['vocab'], STUDENT_SIZE, TRANSFORM, trained['stats'].mean_rating),
      TRAINING, trained['stats'])
  model = distiller.Distiller(trained['teacher'], fp32, trained['stats'].catalogue, 16)
  model.compile(optimizer=tf.keras.optimizers.Adam(TRAINING.learning_rate))
  model.fit(trained['dataset'], epochs=1, verbose=0)
  qat = quantization.quantize_dense_layers(fp32.core, student.CUSTOM_OBJECTS)
  return two_tower.TwoTowerModel(quantization.int8_embeddings(qat, student.CUSTOM_OBJECTS),
                                 TRAINING, trained['stats'])


@pytest.fixture(scope='module')
def export_dirs(trained):
  """The teacher and the int8 student exported with the same contract."""
  dirs = {}
  for name, model, int8 in (('teacher', trained['teacher'], False),
                            ('student_int8', _int8_student(trained), True)):
    dirs[name] = str(trained['directory'] / name)
    export.export_saved_model(model, trained['tf_transform_output'], trained['stats'].catalogue,
                              TOP_K, TRANSFORM.history_length, dirs[name], int8_index=int8)
  return dirs


@pytest.fixture(scope='module', params=['teacher', 'student_int8'])
def exported(request, trained, export_dirs):
  """Each exported model, loaded."""
  return (tf.saved_model.load(export_dirs[request.param]), trained['frame'],
          trained['stats'].catalogue)


def test_signatures_are_exported(exported):
  model, _, _ = exported
  assert set(model.signatures) == {
      export.SERVING_SIGNATURE, export.RECOMMEND_SIGNATURE,
      export.RECOMMEND_WITH_FEATURES_SIGNATURE, export.SCORE_SIGNATURE}


def test_side_features_reach_the_query_tower(exported):
  model, frame, _ = exported
  history = [frame[features.ITEM_ID].iloc[:2].tolist()]
  recommend = model.signatures[export.RECOMMEND_WITH_FEATURES_SIGNATURE]
  def scores(age, gender):
    return recommend(user_id=tf.constant(['new-user']), history=tf.constant(history), k=TOP_K,
                     age=tf.constant([age], tf.int64), gender=tf.constant([gender]),
                     occupation=tf.constant(['artist']),
                     zip_code=tf.constant(['12345']))['scores'].numpy()
  assert scores(25, 'F').shape == (1, TOP_K)
  assert not np.allclose(scores(25, 'F'), scores(60, 'M'))


def test_serving_default_returns_top_k_without_history(exported):
  model, frame, catalogue = exported
  row = frame.iloc[-1]
  outputs = model.signatures[export.SERVING_SIGNATURE](examples=tf.constant([
      _serialized({features.USER_ID: row[features.USER_ID],
                   features.HISTORY: row[features.HISTORY]})]))
  item_ids = outputs['item_ids'].numpy().astype(str)[0]
  scores = outputs['scores'].numpy()[0]
  assert len(item_ids) == TOP_K == len(set(item_ids))
  assert set(item_ids) <= set(catalogue[features.ITEM_ID])
  assert not set(item_ids) & set(row[features.HISTORY].split())
  assert np.all(np.diff(scores) <= 0)


def test_recommend_handles_unknown_users_and_padding(exported):
  model, frame, catalogue = exported
  history = frame[features.ITEM_ID].iloc[:4].tolist()
  outputs = model.signatures[export.RECOMMEND_SIGNATURE](
      user_id=tf.constant(['no-such-user', 'no-such-user']),
      history=tf.constant([history, history[:2] + ['', '']]), k=TOP_K)
  item_ids = outputs['item_ids'].numpy().astype(str)
  assert item_ids.shape == (2, TOP_K)
  assert not set(item_ids[0]) & set(history)
  assert not set(item_ids[1]) & set(history[:2])
  # Padding changes nothing: the same history with and without '' gives the same answer.
  again = model.signatures[export.RECOMMEND_SIGNATURE](
      user_id=tf.constant(['no-such-user']), history=tf.constant([history[:2]]), k=TOP_K)
  np.testing.assert_array_equal(again['item_ids'].numpy()[0], outputs['item_ids'].numpy()[1])


def test_score_predicts_a_rating_per_example(exported):
  model, frame, _ = exported
  examples = [_serialized({name: row[name] for name in features.RAW_FEATURES})
              for row in frame.iloc[:3].to_dict('records')]
  rating = model.signatures[export.SCORE_SIGNATURE](examples=tf.constant(examples))['rating']
  assert rating.shape == (3,) and np.all(np.isfinite(rating.numpy()))


def test_rank_catalogue_ranks_every_item_consistently_with_recommend(exported):
  model, _, catalogue = exported
  ranked = model.rank_catalogue(user_id=tf.constant(['no-such-user']),
                                history=tf.constant([['']]))['item_ids'].numpy().astype(str)[0]
  assert sorted(ranked) == sorted(catalogue[features.ITEM_ID])
  top = model.signatures[export.RECOMMEND_SIGNATURE](
      user_id=tf.constant(['no-such-user']), history=tf.constant([['']]), k=TOP_K)['item_ids']
  np.testing.assert_array_equal(top.numpy().astype(str)[0], ranked[:TOP_K])


def test_recommend_returns_k_items_and_rejects_k_out_of_range(exported):
  model, _, _ = exported
  recommend = model.signatures[export.RECOMMEND_SIGNATURE]
  query = {'user_id': tf.constant(['u1']), 'history': tf.constant([['']])}
  full = recommend(**query, k=TOP_K)['item_ids'].numpy()
  np.testing.assert_array_equal(recommend(**query, k=3)['item_ids'].numpy(), full[:, :3])
  for k in (0, TOP_K + 1):
    with pytest.raises(tf.errors.InvalidArgumentError, match='k must be between'):
      recommend(**query, k=k)


def _variable_dtypes(export_dir: str) -> dict:
  reader = tf.train.load_checkpoint(os.path.join(export_dir, 'variables', 'variables'))
  return reader.get_variable_to_dtype_map()


def test_exports_hold_the_inference_graph_only_and_the_student_is_int8(export_dirs):
  teacher_dtypes = _variable_dtypes(export_dirs['teacher'])
  student_dtypes = _variable_dtypes(export_dirs['student_int8'])
  for dtypes in (teacher_dtypes, student_dtypes):
    # No optimizer state (QAT wrappers' own `optimizer_step` counters are part of the graph).
    assert not [name for name in dtypes if 'optimizer/' in name]
  assert tf.int8 not in teacher_dtypes.values()
  int8_names = [name for name, dtype in student_dtypes.items() if dtype == tf.int8]
  # Checkpoint keys name object paths: the user, item and side-feature tables, and the index.
  assert sum('int8_embeddings' in name for name in int8_names) >= 4
  assert sum('int8_candidates' in name for name in int8_names) == 1
