"""The Transform `preprocessing_fn`: vocabularies for ids and side features, padded sequences.

Referenced by dotted path (`pipeline.configs.PREPROCESSING_FN`); its knobs arrive as
`custom_config` (a `hparams.TransformHParams` dict) so that changing them invalidates the cache.
"""
from typing import Any, Dict

import tensorflow as tf
import tensorflow_transform as tft

from contract import features
from models import hparams


def _dense_strings(x: tf.Tensor) -> tf.Tensor:
  """Rank-1 string tensor from a [batch, 1] dense or sparse raw feature (missing → '')."""
  if isinstance(x, tf.sparse.SparseTensor):
    x = tf.sparse.to_dense(x, default_value='')
  return tf.reshape(x, [-1])


def _optional_strings(x, like: tf.Tensor) -> tf.Tensor:
  """Rank-1 string tensor from an optional raw feature (`x`: [batch, 0 or 1] dense or sparse,
  or None when the raw data has no such feature; rows without a value → ''), batched as
  `like`."""
  if x is None:
    return tf.fill(tf.shape(like), '')
  if isinstance(x, tf.sparse.SparseTensor):
    x = tf.sparse.to_dense(x, default_value='')
  return tf.strings.reduce_join(x, axis=1, separator=' ')


def _dense_numbers(x: tf.Tensor) -> tf.Tensor:
  if isinstance(x, tf.sparse.SparseTensor):
    x = tf.sparse.to_dense(x, default_value=0)
  return tf.cast(tf.reshape(x, [-1]), tf.float32)


def _z_score_of_known(x: tf.Tensor) -> tf.Tensor:
  """z-score over the known (positive) values; 0, the mean, where the value is unknown (0, as
  requests that leave out age or data without a release year give)."""
  known = x > 0
  values = tf.boolean_mask(x, known)
  mean, variance = tft.mean(values), tft.var(values)
  return tf.where(known, (x - mean) / tf.sqrt(tf.maximum(variance, 1e-6)), 0.0)


def tokens(x: tf.Tensor, separator: str) -> tf.RaggedTensor:
  """Non-empty tokens of each string ('' has none)."""
  parts = tf.strings.split(x, separator)
  return tf.ragged.boolean_mask(parts, tf.strings.length(parts) > 0)


def _padded_indices(tokens: tf.RaggedTensor, vocab_name: str, length: int,
                    oov_buckets: int, keep_last: bool = False) -> tf.Tensor:
  """Applies a vocabulary to ragged tokens: index = vocabulary index + 1, 0 pads to `length`."""
  indices = tft.apply_vocabulary(tokens, vocab_name, num_oov_buckets=oov_buckets) + 1
  indices = indices[:, -length:] if keep_last else indices[:, :length]
  return indices.to_tensor(default_value=features.PADDING_INDEX, shape=[None, length])


def _padded_ratings(ratings: tf.RaggedTensor, history: tf.RaggedTensor,
                    length: int) -> tf.Tensor:
  """The latest `length` history ratings aligned with `_padded_indices(history, keep_last=True)`,
  0 where unrated; ratings that do not match the history one to one are all treated as unrated
  (a request may send the history alone)."""
  values = tf.ragged.map_flat_values(tf.strings.to_number, ratings, tf.float32)
  padded = values[:, -length:].to_tensor(default_value=0.0, shape=[None, length])
  matches = tf.equal(ratings.row_lengths(), history.row_lengths())
  return tf.where(matches[:, None], padded, 0.0)


def _vocab_index(x: tf.Tensor, name: str, oov_buckets: int = 1) -> tf.Tensor:
  return tft.compute_and_apply_vocabulary(x, num_oov_buckets=oov_buckets, vocab_filename=name)


def title_tokens(titles: tf.Tensor) -> tf.RaggedTensor:
  """Lower-cased word tokens of titles, with the '(1995)'-style year removed."""
  cleaned = tf.strings.regex_replace(tf.strings.lower(titles), r'\(\d{4}\)|[^a-z0-9 ]', ' ')
  return tf.strings.split(cleaned)


def text_tokens(texts: tf.Tensor) -> tf.RaggedTensor:
  """Lower-cased word tokens of free text: its runs of letters and digits, in any script."""
  cleaned = tf.strings.regex_replace(tf.strings.lower(texts, encoding='utf-8'),
                                     r'[^\p{L}\p{N}]+', ' ')
  return tf.strings.split(cleaned)


def preprocessing_fn(inputs: Dict[str, Any], custom_config: Dict[str, Any]) -> Dict[str, tf.Tensor]:
  """Maps raw interaction features to model inputs (see `contract.features`); the item text's
  indices only when the settings declare item text columns."""
  config = hparams.from_dict(hparams.TransformHParams, custom_config)
  user_id = _dense_strings(inputs[features.USER_ID])
  item_id = _dense_strings(inputs[features.ITEM_ID])

  # One item vocabulary serves the target item and the history, so they share embeddings.
  item_vocab = tft.vocabulary(item_id, vocab_filename=features.ITEM_VOCAB)
  history = tokens(_dense_strings(inputs[features.HISTORY]), features.HISTORY_SEPARATOR)
  genres = tokens(_dense_strings(inputs[features.GENRES]), features.GENRE_SEPARATOR)
  titles = title_tokens(_dense_strings(inputs[features.TITLE]))
  genre_vocab = tft.vocabulary(genres, vocab_filename=features.GENRE_VOCAB)
  title_vocab = tft.vocabulary(
      titles, top_k=config.title_vocab_size, vocab_filename=features.TITLE_VOCAB)
  zip_prefix = tf.strings.substr(_dense_strings(inputs[features.ZIP_CODE]), 0,
                                 config.zip_prefix_length)

  outputs = {
      features.USER_INDEX: _vocab_index(user_id, features.USER_VOCAB, config.user_oov_buckets),
      features.ITEM_INDEX: tft.apply_vocabulary(
          item_id, item_vocab, num_oov_buckets=config.item_oov_buckets) + 1,
      features.HISTORY_INDICES: _padded_indices(
          history, item_vocab, config.history_length, config.item_oov_buckets, keep_last=True),
      features.HISTORY_RATING_VALUES: _padded_ratings(
          tokens(_dense_strings(inputs[features.HISTORY_RATINGS]), features.HISTORY_SEPARATOR),
          history, config.history_length),
      features.GENDER_INDEX: _vocab_index(
          _dense_strings(inputs[features.GENDER]), features.GENDER_VOCAB),
      features.OCCUPATION_INDEX: _vocab_index(
          _dense_strings(inputs[features.OCCUPATION]), features.OCCUPATION_VOCAB),
      features.ZIP_INDEX: _vocab_index(zip_prefix, features.ZIP_VOCAB),
      features.AGE_Z: _z_score_of_known(_dense_numbers(inputs[features.AGE])),
      features.YEAR_Z: _z_score_of_known(_dense_numbers(inputs[features.YEAR])),
      features.GENRE_INDICES: _padded_indices(genres, genre_vocab, config.max_genres, 1),
      features.TITLE_INDICES: _padded_indices(
          titles, title_vocab, config.max_title_tokens, 1),
      features.LABEL: _dense_numbers(inputs[features.RATING]),
      # The raw id, which the catalogue returns (cold items share the OOV index).
      features.ITEM_ID: item_id,
      # The raw item side features, which no model reads: the exports' catalogue file shows
      # them beside the ids (`models.inputs.ITEM_METADATA`, `contract.catalogue`).
      features.TITLE: _dense_strings(inputs[features.TITLE]),
      features.GENRES: _dense_strings(inputs[features.GENRES]),
      features.YEAR: tf.cast(_dense_numbers(inputs[features.YEAR]), tf.int64),
  }
  if config.item_text_columns:
    # Its own vocabulary, of the train items' text (an empty one, tft's single dummy entry,
    # when they have none: `towers.Vocabularies.item_text_tokens` is then 0).
    text = text_tokens(_optional_strings(inputs.get(features.ITEM_TEXT), item_id))
    text_vocab = tft.vocabulary(text, top_k=config.item_text_vocab_size,
                                vocab_filename=features.ITEM_TEXT_VOCAB)
    outputs[features.ITEM_TEXT_INDICES] = _padded_indices(
        text, text_vocab, config.max_item_text_tokens, 1)
  return outputs
