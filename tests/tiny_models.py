"""A tiny vocabulary, batch and catalogue for fast model tests (no Transform needed)."""
import dataclasses

import numpy as np
import tensorflow as tf

from contract import features
from models import hparams
from models import inputs
from models import towers
from pipeline import configs

VOCAB = towers.Vocabularies(items=12, users=5, genders=3, occupations=4, zips=4, genres=6,
                            title_tokens=9)
TRANSFORM = hparams.TransformHParams(
    history_length=4, item_oov_buckets=1, user_oov_buckets=1, max_genres=2, max_title_tokens=3,
    title_vocab_size=100, zip_prefix_length=2)
# The pipeline's training settings, sized down (a new setting reaches the tests as configured).
TRAINING = dataclasses.replace(
    configs.TRAINING, epochs=1, batch_size=4, shuffle_buffer_size=4, learning_rate=0.01,
    retrieval_weight=1.0, rating_weight=1.0, popularity_correction=0.0, seed=3,
    early_stopping_patience=0, catalogue_softmax_max_items=0, mixed_negatives=0)
NUM_CATALOGUE_ITEMS = VOCAB.items - 2  # without padding (0) and the OOV bucket
CATALOGUE = {
    features.ITEM_INDEX: np.arange(1, NUM_CATALOGUE_ITEMS + 1),
    features.GENRE_INDICES: (np.arange(NUM_CATALOGUE_ITEMS * 2).reshape(-1, 2) % 5 + 1),
    features.TITLE_INDICES: (np.arange(NUM_CATALOGUE_ITEMS * 3).reshape(-1, 3) % 8 + 1),
    features.YEAR_Z: np.linspace(-1, 1, NUM_CATALOGUE_ITEMS).astype(np.float32),
    features.ITEM_ID: np.array([f'item{i}' for i in range(NUM_CATALOGUE_ITEMS)]),
}
STATS = inputs.TrainStats(catalogue=CATALOGUE, item_counts=np.ones(VOCAB.items, np.int64),
                          mean_rating=3.5)
STUDENT_SIZE = hparams.TowerHParams(
    embedding_dim=8, hidden_units=0, rating_hidden_units=4, history_encoder='mean',
    attention_layers=0, attention_heads=0, dropout=0.0)


def teacher_size(encoder: str = 'transformer') -> hparams.TowerHParams:
  return hparams.TowerHParams(
      embedding_dim=8, hidden_units=16, rating_hidden_units=8, history_encoder=encoder,
      attention_layers=1 if encoder == 'transformer' else 0,
      attention_heads=2 if encoder == 'transformer' else 0, dropout=0.0)


def batch(history=((1, 2, 0, 0), (3, 0, 0, 0), (4, 5, 6, 7))) -> dict:
  size = len(history)
  history_array = np.array(history)
  # Ratings 1..5 of the history items, 0 on padding.
  history_ratings = np.where(history_array > 0, history_array % 5 + 1, 0).astype(np.float32)
  return {
      features.USER_INDEX: tf.constant([0, 1, 4][:size], tf.int64),
      features.HISTORY_INDICES: tf.constant(history, tf.int64),
      features.HISTORY_RATING_VALUES: tf.constant(history_ratings),
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
