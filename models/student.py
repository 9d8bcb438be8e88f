"""The student's architecture: small by design, and quantizable.

Query: the user's id embedding and a recency-weighted mean of its history's item embeddings,
plus small side-feature embeddings, through one Dense layer. Candidate: item id and the item's
content (mean genre and title-token embeddings, release year) through one Dense layer (the item
id dropped out for a share of training candidates, `towers.IdDropout`). One item table
serves history and candidates. The only Dense layers are the two tower outputs and the rating
head: those get quantization-aware training; the embedding tables are quantized row-wise to
int8 (`models.quantization`).

With `size.item_item`, the student inherits its hybrid teacher's item-to-item component
(`models.item_item`), truncated to `size.item_item_rank`: frozen, appended to its query and
candidate embeddings as the teacher's is, and stored as int8 like its other tables. Like the
teacher's towers, its towers train alone (the component weighted 0), then the mix of both
scores is chosen on the eval split (`training.choose_hybrid_mix`).
"""
from typing import Optional

import tensorflow as tf

from contract import features
from models import hparams
from models import item_item
from models import towers


def build_core(vocab: towers.Vocabularies, size: hparams.TowerHParams,
               transform: hparams.TransformHParams, mean_rating: float,
               inherited: Optional[item_item.ItemItemTables] = None) -> tf.keras.Model:
  """The student's functional core (see `models.towers`); with `size.item_item`, the
  `inherited` tables of the teacher's component (`inherit`), weighted 0 until the mix is set."""
  if size.history_encoder != 'mean' or size.hidden_units:
    raise ValueError('the student pools its history (history_encoder="mean") and has one Dense '
                     f'layer per tower (hidden_units=0); got {size}')
  if size.item_item != (inherited is not None):
    raise ValueError(f'item_item={size.item_item} needs inherited tables exactly when set')
  dim = size.embedding_dim
  small = towers.side_dim(dim)
  item_embedding = tf.keras.layers.Embedding(vocab.items, dim, name='item_embedding')

  user, user_index = towers.query_user(vocab, size.user_id_dropout)
  history = towers.index_input(features.HISTORY_INDICES, transform.history_length)
  side_inputs, side_values = towers.user_side_features(vocab, small)
  pooled_history = towers.RecencyWeightedPooling(transform.history_length, name='history_pooling')(
      item_embedding(history), history)
  query = tf.keras.layers.Dense(dim, name='query_output')(
      tf.keras.layers.Concatenate(name='query_features')([
          tf.keras.layers.Embedding(vocab.users, dim, name='user_embedding')(user_index),
          pooled_history, *side_values]))

  item, item_index = towers.candidate_item(vocab, size.item_id_dropout)
  content_inputs, content_values = towers.item_content(
      vocab, small, transform.max_genres, transform.max_title_tokens,
      towers.MaskedMeanPooling(name='masked_mean'))
  candidate = tf.keras.layers.Dense(dim, name='candidate_output')(
      tf.keras.layers.Concatenate(name='candidate_features')(
          [item_embedding(item_index), *content_values]))

  history_ratings = towers.history_ratings_input(transform.history_length)
  rating = towers.rating_output(vocab, user_index, item_index, history, history_ratings, query,
                                candidate, size.rating_hidden_units, mean_rating)
  if inherited is not None:
    query, candidate = towers.with_item_item(
        query, candidate, inherited.truncated(size.item_item_rank or inherited.rank), history,
        item_index, transform.history_length)
  return towers.core_model([user, history, *side_inputs], [item, *content_inputs],
                           [history_ratings], query, candidate, rating, name='student')


def inherit(size: hparams.TowerHParams,
            teacher_core: tf.keras.Model) -> Optional[item_item.ItemItemTables]:
  """What a student of `size` inherits from its teacher (`build_core`'s `inherited`): the
  hybrid teacher's item-to-item tables; None for a student without `item_item`."""
  if not size.item_item:
    return None
  if 'hybrid_mix' not in {layer.name for layer in teacher_core.layers}:
    raise ValueError('a student with item_item inherits the component of a hybrid teacher '
                     '(TowerHParams.item_item); this teacher has none')
  return item_item.ItemItemTables.from_core(teacher_core)


CUSTOM_OBJECTS = {'RecencyWeightedPooling': towers.RecencyWeightedPooling,
                  'HybridMix': towers.HybridMix,
                  'IdDropout': towers.IdDropout,
                  'RatingDrift': towers.RatingDrift,
                  'MaskedMeanPooling': towers.MaskedMeanPooling,
                  'ScaledRows': towers.ScaledRows}
