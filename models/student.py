"""The student's architecture: small by design, and quantizable.

Query: the user's id embedding and a recency-weighted mean of its history's item embeddings,
plus small side-feature embeddings, through one Dense layer. Candidate: item id and mean genre
embeddings through one Dense layer. One item table serves history and candidates. The only
Dense layers are the two tower outputs and the rating head: those get quantization-aware
training; the embedding tables are quantized row-wise to int8 (`models.quantization`).
"""
import tensorflow as tf

from models import features
from models import hparams
from models import towers


class RecencyWeightedPooling(tf.keras.layers.Layer):
  """Weighted mean of right-padded sequence embeddings, with one learnt weight per recency
  (0 = the latest item): as cheap as a mean, but recent items can count more."""

  def __init__(self, length: int, **kwargs):
    super().__init__(**kwargs)
    self.length = length

  def build(self, input_shape):
    self.recency_logits = self.add_weight(name='recency_logits', shape=(self.length,),
                                          initializer='zeros')

  def call(self, embeddings: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    present = tf.not_equal(indices, features.PADDING_INDEX)
    count = tf.reduce_sum(tf.cast(present, tf.int32), axis=1, keepdims=True)
    recency = tf.maximum(count - 1 - tf.range(tf.shape(indices)[1])[None, :], 0)
    weights = tf.exp(tf.gather(self.recency_logits, recency)) * tf.cast(present, tf.float32)
    weights /= tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1e-9)
    return tf.reduce_sum(embeddings * weights[..., None], axis=1)

  def get_config(self):
    return {**super().get_config(), 'length': self.length}


def build_core(vocab: towers.Vocabularies, size: hparams.TowerHParams,
               transform: hparams.TransformHParams, mean_rating: float) -> tf.keras.Model:
  """The student's functional core (see `models.towers`)."""
  if size.history_encoder != 'mean' or size.hidden_units:
    raise ValueError('the student pools its history (history_encoder="mean") and has one Dense '
                     f'layer per tower (hidden_units=0); got {size}')
  dim = size.embedding_dim
  small = towers.side_dim(dim)
  item_embedding = tf.keras.layers.Embedding(vocab.items, dim, name='item_embedding')

  user = towers.index_input(features.USER_INDEX)
  history = towers.index_input(features.HISTORY_INDICES, transform.history_length)
  side_inputs, side_values = towers.user_side_features(vocab, small)
  pooled_history = RecencyWeightedPooling(transform.history_length, name='history_pooling')(
      item_embedding(history), history)
  query = tf.keras.layers.Dense(dim, name='query_output')(
      tf.keras.layers.Concatenate(name='query_features')([
          tf.keras.layers.Embedding(vocab.users, dim, name='user_embedding')(user),
          pooled_history, *side_values]))

  item = towers.index_input(features.ITEM_INDEX)
  genres, genre_values = towers.pooled_genres(vocab, small, transform.max_genres,
                                              towers.MaskedMeanPooling(name='masked_mean'))
  candidate = tf.keras.layers.Dense(dim, name='candidate_output')(
      tf.keras.layers.Concatenate(name='candidate_features')([item_embedding(item), genre_values]))

  rating = towers.rating_output(vocab, user, item, query, candidate, size.rating_hidden_units,
                                mean_rating)
  return towers.core_model([user, history, *side_inputs], [item, genres], query, candidate,
                           rating, name='student')


CUSTOM_OBJECTS = {'RecencyWeightedPooling': RecencyWeightedPooling,
                  'MaskedMeanPooling': towers.MaskedMeanPooling}
