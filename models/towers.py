"""Functional query and candidate towers over transformed features, shared by teacher and student.

A tower is a plain functional `tf.keras.Model` (so TFMOT can annotate its Dense layers later).
Item-like index features reserve 0 for padding (see `models.features`); pooled sequences ignore it.
"""
import dataclasses
from typing import Dict

import tensorflow as tf

from models import features
from models import hparams


@dataclasses.dataclass(frozen=True)
class Vocabularies:
  """Sizes of the embedding tables."""
  items: int  # vocabulary + OOV buckets + the padding row 0
  users: int
  genders: int
  occupations: int
  zips: int
  genres: int
  title_tokens: int

  @classmethod
  def from_transform_output(cls, tf_transform_output, item_oov_buckets: int,
                            user_oov_buckets: int) -> 'Vocabularies':
    size = tf_transform_output.vocabulary_size_by_name
    # Item-like tables: +1 padding row and their OOV buckets; the others: +1 OOV bucket.
    return cls(items=size(features.ITEM_VOCAB) + item_oov_buckets + 1,
               users=size(features.USER_VOCAB) + user_oov_buckets,
               genders=size(features.GENDER_VOCAB) + 1,
               occupations=size(features.OCCUPATION_VOCAB) + 1,
               zips=size(features.ZIP_VOCAB) + 1,
               genres=size(features.GENRE_VOCAB) + 2,
               title_tokens=size(features.TITLE_VOCAB) + 2)


QUERY_FEATURES = (features.USER_INDEX, features.HISTORY_INDICES, features.GENDER_INDEX,
                  features.OCCUPATION_INDEX, features.ZIP_INDEX, features.AGE_Z)
CANDIDATE_FEATURES = (features.ITEM_INDEX, features.GENRE_INDICES, features.TITLE_INDICES,
                      features.YEAR_Z)


def _index_input(name: str, length: int = 0) -> tf.keras.Input:
  return tf.keras.Input(shape=(length,) if length else (), dtype=tf.int64, name=name)


class MaskedMeanPooling(tf.keras.layers.Layer):
  """Mean of sequence embeddings over the positions whose index is not padding."""

  def call(self, embeddings: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    mask = tf.cast(tf.not_equal(indices, features.PADDING_INDEX), embeddings.dtype)[..., None]
    return tf.reduce_sum(embeddings * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


class RecencyEmbedding(tf.keras.layers.Layer):
  """Adds a learnt embedding of each position's recency (0 = latest item) to right-padded
  sequences, so that attention knows order whatever the history's length."""

  def __init__(self, length: int, dim: int, **kwargs):
    super().__init__(**kwargs)
    self.embedding = tf.keras.layers.Embedding(length, dim)

  def call(self, embeddings: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    length = tf.reduce_sum(tf.cast(tf.not_equal(indices, features.PADDING_INDEX), tf.int32),
                           axis=1, keepdims=True)
    recency = tf.maximum(length - 1 - tf.range(tf.shape(indices)[1])[None, :], 0)
    return embeddings + self.embedding(recency)


def _transformer(sequence: tf.Tensor, indices: tf.Tensor, size: hparams.TowerHParams,
                 history_length: int) -> tf.Tensor:
  """Self-attention blocks over the history (padding masked out)."""
  dim = size.embedding_dim
  x = RecencyEmbedding(history_length, dim, name='recency_embedding')(sequence, indices)
  mask = tf.keras.layers.Lambda(
      lambda i: tf.not_equal(i, features.PADDING_INDEX)[:, None, :], name='attention_mask')(indices)
  for layer in range(size.attention_layers):
    attention = tf.keras.layers.MultiHeadAttention(
        size.attention_heads, dim // size.attention_heads, dropout=size.dropout,
        name=f'attention_{layer}')(x, x, attention_mask=mask)
    x = tf.keras.layers.LayerNormalization(name=f'attention_norm_{layer}')(
        x + tf.keras.layers.Dropout(size.dropout)(attention))
    feed_forward = tf.keras.layers.Dense(dim, name=f'feed_forward_{layer}')(
        tf.keras.layers.Dense(2 * dim, activation='relu', name=f'feed_forward_hidden_{layer}')(x))
    x = tf.keras.layers.LayerNormalization(name=f'feed_forward_norm_{layer}')(
        x + tf.keras.layers.Dropout(size.dropout)(feed_forward))
  return x


def _project(x: tf.Tensor, size: hparams.TowerHParams, name: str) -> tf.Tensor:
  if size.hidden_units:
    x = tf.keras.layers.Dense(size.hidden_units, activation='relu', name=f'{name}_hidden')(x)
  return tf.keras.layers.Dense(size.embedding_dim, name=f'{name}_output')(x)


def build_towers(vocab: Vocabularies, size: hparams.TowerHParams, history_length: int,
                 max_genres: int, max_title_tokens: int) -> Dict[str, tf.keras.Model]:
  """Returns the `query` and `candidate` towers; both embed items with one shared table."""
  dim = size.embedding_dim
  item_embedding = tf.keras.layers.Embedding(vocab.items, dim, name='item_embedding')
  pool = MaskedMeanPooling(name='masked_mean')

  user = _index_input(features.USER_INDEX)
  history = _index_input(features.HISTORY_INDICES, history_length)
  gender = _index_input(features.GENDER_INDEX)
  occupation = _index_input(features.OCCUPATION_INDEX)
  zip_index = _index_input(features.ZIP_INDEX)
  age = tf.keras.Input(shape=(), dtype=tf.float32, name=features.AGE_Z)
  small = max(2, dim // 4)
  history_items = item_embedding(history)
  if size.history_encoder == 'transformer':
    history_items = _transformer(history_items, history, size, history_length)
  elif size.history_encoder != 'mean':
    raise ValueError(f'unknown history_encoder {size.history_encoder!r}')
  query = tf.keras.layers.Concatenate(name='query_features')([
      tf.keras.layers.Embedding(vocab.users, dim, name='user_embedding')(user),
      pool(history_items, history),
      tf.keras.layers.Embedding(vocab.genders, small, name='gender_embedding')(gender),
      tf.keras.layers.Embedding(vocab.occupations, small, name='occupation_embedding')(occupation),
      tf.keras.layers.Embedding(vocab.zips, small, name='zip_embedding')(zip_index),
      tf.keras.layers.Reshape((1,))(age),
  ])
  query_tower = tf.keras.Model(
      [user, history, gender, occupation, zip_index, age], _project(query, size, 'query'),
      name='query_tower')

  item = _index_input(features.ITEM_INDEX)
  genres = _index_input(features.GENRE_INDICES, max_genres)
  title = _index_input(features.TITLE_INDICES, max_title_tokens)
  year = tf.keras.Input(shape=(), dtype=tf.float32, name=features.YEAR_Z)
  candidate = tf.keras.layers.Concatenate(name='candidate_features')([
      item_embedding(item),
      pool(tf.keras.layers.Embedding(vocab.genres, small, name='genre_embedding')(genres), genres),
      pool(tf.keras.layers.Embedding(vocab.title_tokens, small, name='title_embedding')(title),
           title),
      tf.keras.layers.Reshape((1,))(year),
  ])
  candidate_tower = tf.keras.Model(
      [item, genres, title, year], _project(candidate, size, 'candidate'),
      name='candidate_tower')
  return {'query': query_tower, 'candidate': candidate_tower}


def select(inputs: Dict[str, tf.Tensor], names) -> list:
  """The tensors of `inputs` a tower takes, in its input order."""
  return [inputs[name] for name in names]
