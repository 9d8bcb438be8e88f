"""The export contract: signatures, top-k over the catalogue, history exclusion, unknown users."""
import numpy as np
import pytest
import tensorflow as tf

from models import export
from models import features
from models import hparams
from models import inputs
from models import towers
from models import two_tower
from pipeline.data import reference
from pipeline.data import split
import tft_helpers

TRANSFORM = hparams.TransformHParams(
    history_length=5, item_oov_buckets=1, user_oov_buckets=1, max_genres=3, max_title_tokens=4,
    title_vocab_size=100, zip_prefix_length=2)
SIZE = hparams.TowerHParams(
    embedding_dim=8, hidden_units=0, rating_hidden_units=8, history_encoder='transformer',
    attention_layers=1, attention_heads=2, dropout=0.0)
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
def exported(tmp_path_factory, synthetic_dataset):
  directory = tmp_path_factory.mktemp('export')
  frame = reference.join_side_features(synthetic_dataset)
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
  catalogue = stats.catalogue
  model = two_tower.TwoTowerModel(vocab, SIZE, TRAINING, TRANSFORM, stats)
  model.compile(optimizer=tf.keras.optimizers.Adam(TRAINING.learning_rate))
  model.fit(dataset, epochs=TRAINING.epochs, verbose=0)
  export.export_saved_model(model, tf_transform_output, catalogue, TOP_K,
                            TRANSFORM.history_length, str(directory / 'model'))
  return tf.saved_model.load(str(directory / 'model')), frame, catalogue


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
    return recommend(user_id=tf.constant(['new-user']), history=tf.constant(history),
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
      history=tf.constant([history, history[:2] + ['', '']]))
  item_ids = outputs['item_ids'].numpy().astype(str)
  assert item_ids.shape == (2, TOP_K)
  assert not set(item_ids[0]) & set(history)
  assert not set(item_ids[1]) & set(history[:2])
  # Padding changes nothing: the same history with and without '' gives the same answer.
  again = model.signatures[export.RECOMMEND_SIGNATURE](
      user_id=tf.constant(['no-such-user']), history=tf.constant([history[:2]]))
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
      user_id=tf.constant(['no-such-user']), history=tf.constant([['']]))['item_ids']
  np.testing.assert_array_equal(top.numpy().astype(str)[0], ranked[:TOP_K])
