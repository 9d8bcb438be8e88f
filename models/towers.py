"""Building blocks shared by the teacher and the student: inputs, pooling, side features, the
rating head, and the one functional graph ("core") both models are made of.

A core is a functional `tf.keras.Model` from transformed features to
`[query embedding, candidate embedding, rating]` (see `QUERY`, `CANDIDATE`, `RATING`). Being
one functional graph keeps the item table shared by history and candidates and lets TFMOT
quantize it whole; `query_tower`/`candidate_tower` cut the two towers out of it.
Item-like index features reserve 0 for padding (see `contract.features`); pooled sequences
ignore it.
"""
import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
from tensorflow_transform import analyzers as tft_analyzers

from contract import features

QUERY, CANDIDATE, RATING = 0, 1, 2  # positions of a core's outputs


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
  item_oov_buckets: int = 1  # the last rows of `items`
  user_oov_buckets: int = 1  # the last rows of `users`
  # The item text's tokens (`features.ITEM_TEXT_INDICES`), which only the content path reads;
  # 0 when the train items have no text (or Transform made no such feature).
  item_text_tokens: int = 0

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
               title_tokens=size(features.TITLE_VOCAB) + 2,
               item_oov_buckets=item_oov_buckets, user_oov_buckets=user_oov_buckets,
               item_text_tokens=_item_text_tokens(tf_transform_output))


def _item_text_tokens(tf_transform_output) -> int:
  """Rows of the item text's table: its vocabulary, +1 padding row and +1 OOV bucket, like the
  titles'; 0 without the vocabulary, or with an empty one (tft writes one dummy entry)."""
  if tf_transform_output.vocabulary_file_by_name(features.ITEM_TEXT_VOCAB) is None:
    return 0
  tokens = tf_transform_output.vocabulary_by_name(features.ITEM_TEXT_VOCAB)
  if tokens == [tft_analyzers.get_empy_vocabulary_dummy_value(tf.string)[1]]:
    return 0
  return len(tokens) + 2


def index_input(name: str, length: int = 0) -> tf.keras.Input:
  return tf.keras.Input(shape=(length,) if length else (), dtype=tf.int64, name=name)


def float_input(name: str) -> tf.keras.Input:
  return tf.keras.Input(shape=(), dtype=tf.float32, name=name)


class IdDropout(tf.keras.layers.Layer):
  """In training, replaces a `rate` share of the indices of a table of `num_ids` rows by one of
  the `oov_buckets` OOV indices that end it (the index Transform gives an unknown id), so that
  the towers learn to do without the id: an item without train interactions embedded from its
  content, a new user from their history and side features. With `padding`, index 0 is padding
  and stays. The identity at inference."""

  def __init__(self, rate: float, num_ids: int, oov_buckets: int, padding: bool = True,
               **kwargs):
    super().__init__(**kwargs)
    self.rate = rate
    self.num_ids = num_ids
    self.oov_buckets = oov_buckets
    self.padding = padding

  def call(self, indices: tf.Tensor, training=None) -> tf.Tensor:
    if not training or not self.rate:
      return indices
    dropped = tf.random.uniform(tf.shape(indices)) < self.rate
    if self.padding:
      dropped &= tf.not_equal(indices, features.PADDING_INDEX)
    oov = self.num_ids - self.oov_buckets + tf.random.uniform(
        tf.shape(indices), maxval=self.oov_buckets, dtype=indices.dtype)
    return tf.where(dropped, oov, indices)

  def get_config(self):
    return {**super().get_config(), 'rate': self.rate, 'num_ids': self.num_ids,
            'oov_buckets': self.oov_buckets, 'padding': self.padding}


def candidate_item(vocab: Vocabularies, item_id_dropout: float) -> Tuple[tf.Tensor, tf.Tensor]:
  """The candidate's item index input, and the index the candidate tower embeds (with
  `IdDropout`)."""
  item = index_input(features.ITEM_INDEX)
  return item, IdDropout(item_id_dropout, vocab.items, vocab.item_oov_buckets,
                         name='item_id_dropout')(item)


def query_user(vocab: Vocabularies, user_id_dropout: float) -> Tuple[tf.Tensor, tf.Tensor]:
  """The query's user index input, and the index the query tower embeds (with `IdDropout`:
  users have no padding row)."""
  user = index_input(features.USER_INDEX)
  return user, IdDropout(user_id_dropout, vocab.users, vocab.user_oov_buckets, padding=False,
                         name='user_id_dropout')(user)


class MaskedMeanPooling(tf.keras.layers.Layer):
  """Mean of sequence embeddings over the positions whose index is not padding."""

  def call(self, embeddings: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    mask = tf.cast(tf.not_equal(indices, features.PADDING_INDEX), embeddings.dtype)[..., None]
    return tf.reduce_sum(embeddings * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


class LatestItems(tf.keras.layers.Layer):
  """The latest `length` indices of right-padded index sequences, right-padded."""

  def __init__(self, length: int, **kwargs):
    super().__init__(**kwargs)
    self.length = length

  def call(self, indices: tf.Tensor) -> tf.Tensor:
    count = tf.reduce_sum(tf.cast(tf.not_equal(indices, features.PADDING_INDEX), tf.int32),
                          axis=1, keepdims=True)
    positions = tf.maximum(count - self.length, 0) + tf.range(self.length)[None, :]
    latest = tf.gather(indices, tf.minimum(positions, tf.shape(indices)[1] - 1), batch_dims=1)
    return tf.where(positions < count, latest, tf.zeros_like(latest))

  def get_config(self):
    return {**super().get_config(), 'length': self.length}


class RecencyWeightedPooling(tf.keras.layers.Layer):
  """Weighted mean of right-padded sequence embeddings, with one learnt weight per recency
  (0 = the latest item): as cheap as a mean, but recent items can count more. With
  `normalize=False`, a weighted sum (the weights start at 1)."""

  def __init__(self, length: int, normalize: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.length = length
    self.normalize = normalize

  def build(self, input_shape):
    self.recency_logits = self.add_weight(name='recency_logits', shape=(self.length,),
                                          initializer='zeros')

  @staticmethod
  def positions(indices: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Of the right-padded sequences `indices` ([batch, length]): per position, 1.0 where an
    item is (0.0 on padding) and its recency (0 = the latest item), and per sequence ([batch,
    1]) its number of items."""
    present = tf.not_equal(indices, features.PADDING_INDEX)
    count = tf.reduce_sum(tf.cast(present, tf.int32), axis=1, keepdims=True)
    recency = tf.maximum(count - 1 - tf.range(tf.shape(indices)[1])[None, :], 0)
    return tf.cast(present, tf.float32), recency, count

  def position_weights(self, indices: tf.Tensor) -> tf.Tensor:
    """[batch, length] weight of each position of `indices` in the pooled sum (0 on padding)."""
    present, recency, _ = self.positions(indices)
    weights = tf.exp(tf.gather(self.recency_logits, recency)) * present
    if self.normalize:
      weights /= tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1e-9)
    return weights

  def call(self, embeddings: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(embeddings * self.position_weights(indices)[..., None], axis=1)

  def get_config(self):
    return {**super().get_config(), 'length': self.length, 'normalize': self.normalize}


class HybridMix(tf.keras.layers.Layer):
  """Concatenates the towers' query and the item-to-item component's query, weighted by two
  frozen mix weights: [1, 0] (the towers alone) while the towers train, then those chosen on
  the eval split (`training.choose_hybrid_mix`). The weights scale each part's score."""

  def build(self, input_shape):
    self.mix = self.add_weight(name='mix', shape=(2,), trainable=False,
                               initializer=tf.keras.initializers.Constant([1.0, 0.0]))

  def call(self, towers_query: tf.Tensor, item_item_query: tf.Tensor) -> tf.Tensor:
    return tf.concat([towers_query * self.mix[0], item_item_query * self.mix[1]], axis=-1)


def with_item_item(query: tf.Tensor, candidate: tf.Tensor, tables, history: tf.Tensor,
                   item_index: tf.Tensor, history_length: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """The towers' `query` and `candidate` with the item-to-item component's parts appended
  (`models.item_item.ItemItemTables` `tables`, frozen): its query part sums the history items'
  rows of the history table over the latest `tables.window` items, its candidate part is the
  item's row of the candidate table, so that their dot product is the component's score,
  weighted by the `HybridMix`."""
  # The tables' values are set once the layers are built, not given as `Constant`
  # initializers: Keras writes a layer's config (initializer values included) as JSON into every
  # SavedModel that holds it, which took half of a teacher's export time at 10,000 items.
  values = {}

  def frozen(table, name: str) -> tf.keras.layers.Embedding:
    layer = tf.keras.layers.Embedding(*table.shape, embeddings_initializer='zeros',
                                      trainable=False, name=name)
    values[layer] = table
    return layer

  candidate_table = frozen(tables.candidates, 'item_item_candidate')
  if tables.row_scales is None:
    history_rows = frozen(tables.history, 'item_item_history')(history)
  else:  # The history rows are the candidate rows, scaled (one table for both).
    scaled = ScaledRows(len(tables.row_scales), tables.rank, name='item_item_history')
    history_rows = scaled([candidate_table(history), history])
    scaled.set_weights([tables.row_scales[:, None], tables.column_weights])
  pooling = RecencyWeightedPooling(history_length, normalize=False, trainable=False,
                                   name='item_item_pooling')
  item_item_query = pooling(history_rows, history)
  # Weight 1 on the latest `tables.window` items, about 0 on older ones.
  pooling.recency_logits.assign(
      tf.where(tf.range(history_length) < tables.window, 0.0, -30.0))
  mixed = (HybridMix(name='hybrid_mix')(query, item_item_query),
           tf.keras.layers.Concatenate(name='hybrid_candidate')(
               [candidate, candidate_table(item_index)]))
  for layer, table in values.items():
    layer.set_weights([table])
  return mixed


def appended_candidate_table(core: tf.keras.Model) -> Optional[tf.keras.layers.Layer]:
  """The table whose rows a core built `with_item_item` appends to its candidate embeddings
  as they are (the component's candidate table); None for a core without the component."""
  names = {layer.name for layer in core.layers}
  return core.get_layer('item_item_candidate') if 'item_item_candidate' in names else None


def item_item_history_rows(core: tf.keras.Model, history: tf.Tensor) -> tf.Tensor:
  """[..., rank] the item-to-item component's history rows of `history`'s item indices in a
  core built with it (`with_item_item`): the history table's, or the scaled candidate rows."""
  layer = core.get_layer('item_item_history')
  if isinstance(layer, ScaledRows):
    return layer([core.get_layer('item_item_candidate')(history), history])
  return layer(history)


class ScaledRows(tf.keras.layers.Layer):
  """rows[..., :] · row_scales[indices] ⊙ column_weights: a table's rows scaled per row (item)
  and per column, both frozen; called on ([..., width] rows of the table, [...] their indices)."""

  def __init__(self, num_rows: int, width: int, **kwargs):
    super().__init__(**kwargs)
    self.num_rows = num_rows
    self.width = width

  def build(self, input_shape):
    self.row_scales = self.add_weight(name='row_scales', shape=(self.num_rows, 1),
                                      initializer='ones', trainable=False)
    self.column_weights = self.add_weight(name='column_weights', shape=(self.width,),
                                          initializer='ones', trainable=False)

  def call(self, inputs) -> tf.Tensor:
    rows, indices = inputs
    return rows * tf.gather(self.row_scales, indices) * self.column_weights

  def get_config(self):
    return {**super().get_config(), 'num_rows': self.num_rows, 'width': self.width}


def side_dim(embedding_dim: int) -> int:
  """Width of the small side-feature embeddings (gender, occupation, zip, genres, titles)."""
  return max(2, embedding_dim // 4)


def user_side_features(vocab: Vocabularies, dim: int) -> Tuple[List[tf.Tensor], List[tf.Tensor]]:
  """Inputs and embedded values of the user's side features (unknown users rely on them)."""
  gender = index_input(features.GENDER_INDEX)
  occupation = index_input(features.OCCUPATION_INDEX)
  zip_index = index_input(features.ZIP_INDEX)
  age = float_input(features.AGE_Z)
  embedded = [
      tf.keras.layers.Embedding(vocab.genders, dim, name='gender_embedding')(gender),
      tf.keras.layers.Embedding(vocab.occupations, dim, name='occupation_embedding')(occupation),
      tf.keras.layers.Embedding(vocab.zips, dim, name='zip_embedding')(zip_index),
      tf.keras.layers.Reshape((1,), name='age')(age),
  ]
  return [gender, occupation, zip_index, age], embedded


def item_content(vocab: Vocabularies, dim: int, max_genres: int, max_title_tokens: int,
                 pool: MaskedMeanPooling, title_filter: Optional[tf.keras.layers.Layer] = None
                 ) -> Tuple[List[tf.Tensor], List[tf.Tensor]]:
  """Inputs and embedded values of an item's content: its pooled genres and title tokens (those
  `title_filter` keeps, when given) and its release year (what embeds an item without train
  interactions)."""
  genres = index_input(features.GENRE_INDICES, max_genres)
  title = index_input(features.TITLE_INDICES, max_title_tokens)
  year = float_input(features.YEAR_Z)
  kept_title = title if title_filter is None else title_filter(title)
  embedded = [
      pool(tf.keras.layers.Embedding(vocab.genres, dim, name='genre_embedding')(genres), genres),
      pool(tf.keras.layers.Embedding(vocab.title_tokens, dim, name='title_embedding')(
          kept_title), kept_title),
      tf.keras.layers.Reshape((1,), name='year')(year),
  ]
  return [genres, title, year], embedded


class RatingDrift(tf.keras.layers.Layer):
  """How the user's recent ratings deviate from what their items usually get: `units`
  recency-weighted means of the residuals (rating - mean - item bias) of the rated history
  items, each shrunk towards 0 by a learnt prior weight, so that one rating moves it less than
  ten. Unrated positions (rating 0: padding, or a request without ratings) are ignored.
  Ratings move with time; these follow them where a user bias learnt on older data cannot."""

  def __init__(self, length: int, units: int, mean_rating: float, **kwargs):
    super().__init__(**kwargs)
    self.length = length
    self.units = units
    self.mean_rating = mean_rating

  def build(self, input_shape):
    self.recency_logits = self.add_weight(
        name='recency_logits', shape=(self.units, self.length),
        initializer=tf.keras.initializers.RandomNormal(stddev=0.5))
    self.prior_logits = self.add_weight(name='prior_logits', shape=(self.units,),
                                        initializer='zeros')

  def call(self, ratings: tf.Tensor, item_biases: tf.Tensor) -> tf.Tensor:
    """ratings [batch, length] (0 = unrated), the rated items' biases [batch, length, 1]."""
    residuals = ratings - self.mean_rating - tf.squeeze(item_biases, -1)
    rated = tf.cast(ratings > 0, tf.float32)
    count = tf.cast(tf.reduce_sum(rated, axis=1, keepdims=True), tf.int32)
    recency = tf.maximum(count - 1 - tf.range(tf.shape(ratings)[1])[None, :], 0)
    weights = tf.exp(tf.gather(self.recency_logits, recency, axis=1)) * rated  # [units, B, L]
    return tf.transpose(tf.reduce_sum(weights * residuals * rated, axis=2) /
                        (tf.reduce_sum(weights, axis=2) + tf.exp(self.prior_logits)[:, None]))

  def get_config(self):
    return {**super().get_config(), 'length': self.length, 'units': self.units,
            'mean_rating': self.mean_rating}


def history_ratings_input(history_length: int) -> tf.keras.Input:
  return tf.keras.Input(shape=(history_length,), dtype=tf.float32,
                        name=features.HISTORY_RATING_VALUES)


def rating_output(vocab: Vocabularies, user: tf.Tensor, item: tf.Tensor, history: tf.Tensor,
                  history_ratings: tf.Tensor, query: tf.Tensor, candidate: tf.Tensor,
                  hidden_units: int, mean_rating: float, drift_units: int = 4) -> tf.Tensor:
  """Rating = MLP(query, candidate, drift) + linear(drift) + user bias + item bias: biased
  factorisation plus the user's recent rating drift (`RatingDrift`)."""
  item_bias = tf.keras.layers.Embedding(vocab.items, 1, embeddings_initializer='zeros',
                                        name='item_bias')
  drift = RatingDrift(history_ratings.shape[1], drift_units, mean_rating, name='rating_drift')(
      history_ratings, item_bias(history))
  hidden = tf.keras.layers.Dense(hidden_units, activation='relu', name='rating_hidden')(
      tf.keras.layers.Concatenate(name='rating_features')([query, candidate, drift]))
  rating = tf.keras.layers.Dense(
      1, bias_initializer=tf.keras.initializers.Constant(mean_rating), name='rating_output')(hidden)
  rating = tf.keras.layers.Add(name='biased_rating')([
      rating,
      tf.keras.layers.Dense(1, use_bias=False, kernel_initializer='zeros',
                            name='drift_rating')(drift),
      tf.keras.layers.Embedding(vocab.users, 1, embeddings_initializer='zeros',
                                name='user_bias')(user),
      item_bias(item)])
  return tf.keras.layers.Reshape((), name='rating')(rating)


def core_model(query_inputs: Sequence[tf.Tensor], candidate_inputs: Sequence[tf.Tensor],
               rating_inputs: Sequence[tf.Tensor], query: tf.Tensor, candidate: tf.Tensor,
               rating: tf.Tensor, name: str) -> tf.keras.Model:
  return tf.keras.Model(list(query_inputs) + list(candidate_inputs) + list(rating_inputs),
                        [query, candidate, rating], name=name)


QUERY_FEATURES = frozenset({features.USER_INDEX, features.HISTORY_INDICES, features.GENDER_INDEX,
                            features.OCCUPATION_INDEX, features.ZIP_INDEX, features.AGE_Z})
CANDIDATE_FEATURES = frozenset({features.ITEM_INDEX, features.GENRE_INDICES,
                                features.TITLE_INDICES, features.YEAR_Z})
# Item content that only the content path that embeds cold items reads (`models.content_path`),
# when the data has it; no tower does.
CONTENT_PATH_FEATURES = frozenset({features.ITEM_TEXT_INDICES})


def item_features(catalogue: Dict[str, Any]) -> Dict[str, tf.Tensor]:
  """The columns of `catalogue` (name → array) that embed its items
  (`TwoTowerModel.embed_candidates`): the candidate tower's, and the content path's it has."""
  return {**{name: tf.constant(catalogue[name]) for name in CANDIDATE_FEATURES},
          **{name: tf.constant(catalogue[name]) for name in CONTENT_PATH_FEATURES
             if name in catalogue}}


def _tower(core: tf.keras.Model, output: int, names: frozenset, name: str,
           extra_outputs: Sequence[tf.Tensor] = ()) -> tf.keras.Model:
  """The part of `core` that computes its `output` from its inputs named in `names` (and
  `extra_outputs` after it, computed in the same pass)."""
  inputs = [tensor for tensor, input_name in zip(core.inputs, core.input_names)
            if input_name in names]
  outputs = core.outputs[output]
  return tf.keras.Model(inputs, [outputs, *extra_outputs] if extra_outputs else outputs,
                        name=name)


def query_tower(core: tf.keras.Model, *extra_outputs: tf.Tensor) -> tf.keras.Model:
  """The query tower of `core`; with `extra_outputs` (symbolic tensors of `core` that its query
  depends on), one that outputs [query, *extra_outputs]."""
  return _tower(core, QUERY, QUERY_FEATURES,
                'query_tower_and_more' if extra_outputs else 'query_tower', extra_outputs)


def candidate_tower(core: tf.keras.Model) -> tf.keras.Model:
  return _tower(core, CANDIDATE, CANDIDATE_FEATURES, 'candidate_tower')


def select(inputs: Dict[str, tf.Tensor], model: tf.keras.Model) -> List[tf.Tensor]:
  """The tensors of `inputs` that a functional `model` takes, in its input order."""
  return [inputs[name] for name in model.input_names]
