"""The teacher's architecture: the "large model" the student learns from.

Query tower: user id, the history encoded by self-attention blocks over item embeddings with
recency embeddings, and the user's side features, through an MLP. Candidate tower: item id,
genres, title tokens and release year, through an MLP (the item id dropped out for a share of
training candidates, `towers.IdDropout`). Both share one item table.
"""
from typing import Optional

import tensorflow as tf

from contract import features
from models import hparams
from models import item_item
from models import towers


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


def build_core(vocab: towers.Vocabularies, size: hparams.TowerHParams,
               transform: hparams.TransformHParams, mean_rating: float,
               item_item_tables: Optional[item_item.ItemItemTables] = None) -> tf.keras.Model:
  """The teacher's functional core (see `models.towers`); with `item_item_tables` (which
  `size.item_item` asks for), the hybrid teacher: the item-to-item component's parts are
  appended to the towers' query and candidate embeddings."""
  if size.item_item != (item_item_tables is not None):
    raise ValueError(f'item_item={size.item_item} needs item-to-item tables exactly when set')
  dim = size.embedding_dim
  small = towers.side_dim(dim)
  item_embedding = tf.keras.layers.Embedding(vocab.items, dim, name='item_embedding')
  pool = towers.MaskedMeanPooling(name='masked_mean')

  user, user_index = towers.query_user(vocab, size.user_id_dropout)
  history = towers.index_input(features.HISTORY_INDICES, transform.history_length)
  side_inputs, side_values = towers.user_side_features(vocab, small)
  # The towers read the latest `attention_window` items (attention costs their square); the
  # item-to-item component reads them all.
  window = min(size.attention_window or transform.history_length, transform.history_length)
  latest = (history if window == transform.history_length
            else towers.LatestItems(window, name='latest_items')(history))
  history_items = item_embedding(latest)
  if size.history_encoder == 'transformer':
    history_items = _transformer(history_items, latest, size, window)
  elif size.history_encoder != 'mean':
    raise ValueError(f'unknown history_encoder {size.history_encoder!r}')
  history_pooling = towers.RecencyWeightedPooling(window, name='history_pooling')
  query = _project(tf.keras.layers.Concatenate(name='query_features')([
      tf.keras.layers.Embedding(vocab.users, dim, name='user_embedding')(user_index),
      history_pooling(history_items, latest), *side_values]), size, 'query')

  item, item_index = towers.candidate_item(vocab, size.item_id_dropout)
  content_inputs, content_values = towers.item_content(
      vocab, small, transform.max_genres, transform.max_title_tokens, pool)
  candidate = _project(tf.keras.layers.Concatenate(name='candidate_features')(
      [item_embedding(item_index), *content_values]), size, 'candidate')

  history_ratings = towers.history_ratings_input(transform.history_length)
  rating = towers.rating_output(vocab, user_index, item_index, history, history_ratings, query,
                                candidate, size.rating_hidden_units, mean_rating)
  if item_item_tables is not None:
    query, candidate = towers.with_item_item(query, candidate, item_item_tables, history,
                                             item_index, transform.history_length)
  return towers.core_model([user, history, *side_inputs], [item, *content_inputs],
                           [history_ratings], query, candidate, rating, name='teacher')
