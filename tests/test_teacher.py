"""The multi-task teacher on a tiny batch: forward pass, both losses, history encoders."""
import numpy as np
import pytest
import tensorflow as tf

from models import features
from models import hparams
from models import inputs
from models import towers
from models import two_tower

VOCAB = towers.Vocabularies(items=12, users=5, genders=3, occupations=4, zips=4, genres=6,
                            title_tokens=9)
TRANSFORM = hparams.TransformHParams(
    history_length=4, item_oov_buckets=1, user_oov_buckets=1, max_genres=2, max_title_tokens=3,
    title_vocab_size=100, zip_prefix_length=2)
TRAINING = hparams.TrainingHParams(
    epochs=1, batch_size=4, shuffle_buffer_size=4, learning_rate=0.01, retrieval_weight=1.0,
    rating_weight=1.0,
    popularity_correction=False, seed=3)
STATS = inputs.TrainStats(catalogue={}, item_counts=np.ones(VOCAB.items, np.int64),
                          mean_rating=3.5)


def _size(encoder: str) -> hparams.TowerHParams:
  return hparams.TowerHParams(
      embedding_dim=8, hidden_units=16, rating_hidden_units=8, history_encoder=encoder,
      attention_layers=1 if encoder == 'transformer' else 0,
      attention_heads=2 if encoder == 'transformer' else 0, dropout=0.0)


def _model(encoder='transformer', **training) -> two_tower.TwoTowerModel:
  tf.keras.utils.set_random_seed(0)
  config = hparams.from_dict(hparams.TrainingHParams, {**hparams.to_dict(TRAINING), **training})
  return two_tower.TwoTowerModel(VOCAB, _size(encoder), config, TRANSFORM, STATS)


def _batch(history=((1, 2, 0, 0), (3, 0, 0, 0), (4, 5, 6, 7))) -> dict:
  size = len(history)
  return {
      features.USER_INDEX: tf.constant([0, 1, 4][:size], tf.int64),
      features.HISTORY_INDICES: tf.constant(history, tf.int64),
      features.GENDER_INDEX: tf.constant([0, 1, 2][:size], tf.int64),
      features.OCCUPATION_INDEX: tf.constant([0, 1, 3][:size], tf.int64),
      features.ZIP_INDEX: tf.constant([1, 2, 3][:size], tf.int64),
      features.AGE_Z: tf.constant([0.1, -0.3, 1.2][:size]),
      features.ITEM_INDEX: tf.constant([8, 9, 10][:size], tf.int64),
      features.GENRE_INDICES: tf.constant([[1, 2], [3, 0], [4, 5]][:size], tf.int64),
      features.TITLE_INDICES: tf.constant([[1, 2, 3], [4, 0, 0], [5, 6, 7]][:size], tf.int64),
      features.YEAR_Z: tf.constant([0.0, 0.5, -1.0][:size]),
      features.LABEL: tf.constant([4.0, 2.0, 5.0][:size]),
  }


def test_forward_pass_shapes_and_rating_starts_at_the_mean():
  outputs = _model()(_batch())
  assert outputs['queries'].shape == (3, 8) and outputs['candidates'].shape == (3, 8)
  assert outputs['rating'].shape == (3,)
  assert np.all(np.abs(outputs['rating'].numpy() - STATS.mean_rating) < 2.0)


def test_retrieval_loss_is_in_batch_softmax():
  model = _model(rating_weight=0.0)
  batch = _batch()
  outputs = model(batch)
  logits = tf.matmul(outputs['queries'], outputs['candidates'], transpose_b=True).numpy()
  expected = -np.sum(np.diag(logits) - np.log(np.exp(logits).sum(axis=1)))
  assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-4)


def test_rating_loss_is_mean_squared_error():
  model = _model(retrieval_weight=0.0)
  batch = _batch()
  rating = model(batch)['rating'].numpy()
  expected = np.mean((rating - batch[features.LABEL].numpy())**2)
  assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-4)


def test_popularity_correction_changes_the_retrieval_loss():
  counts = np.arange(1, VOCAB.items + 1)
  stats = inputs.TrainStats(catalogue={}, item_counts=counts, mean_rating=3.5)
  config = hparams.from_dict(hparams.TrainingHParams, {
      **hparams.to_dict(TRAINING), 'rating_weight': 0.0, 'popularity_correction': True})
  tf.keras.utils.set_random_seed(0)
  corrected = two_tower.TwoTowerModel(VOCAB, _size('transformer'), config, TRANSFORM, stats)
  assert float(corrected.compute_loss(_batch())) != pytest.approx(
      float(_model(rating_weight=0.0).compute_loss(_batch())))


def test_transformer_sees_order_and_mean_pooling_does_not():
  forward = _batch(history=((1, 2, 3, 0),))
  backward = _batch(history=((3, 2, 1, 0),))
  for encoder, order_matters in (('transformer', True), ('mean', False)):
    model = _model(encoder)
    same = np.allclose(model.embed_queries(forward), model.embed_queries(backward), atol=1e-6)
    assert same != order_matters, encoder


def test_a_train_step_lowers_the_loss():
  model = _model()
  model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
  batch = _batch()
  before = float(model.compute_loss(batch))
  for _ in range(20):
    model.train_step(batch)
  assert float(model.compute_loss(batch)) < before
