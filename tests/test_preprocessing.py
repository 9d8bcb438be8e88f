"""preprocessing_fn through TF Transform on a tiny batch."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from contract import features
from contract import signatures
from ingest import loaders
from models import hparams
from models import preprocessing
from models import towers
from pipeline import configs
import tft_helpers

CONFIG = hparams.TransformHParams(
    history_length=3, item_oov_buckets=1, user_oov_buckets=1, max_genres=2, max_title_tokens=3,
    title_vocab_size=100, zip_prefix_length=2)


def _row(user, item, history, rating=4.0, genres='Comedy|Drama', title='Toy Story (1995)',
         history_ratings=''):
  return {features.USER_ID: [user], features.ITEM_ID: [item], features.RATING: [rating],
          features.TIMESTAMP: [1], features.HISTORY: [history],
          features.HISTORY_RATINGS: [history_ratings], features.AGE: [30],
          features.GENDER: ['F'], features.OCCUPATION: ['writer'], features.ZIP_CODE: ['12345'],
          features.TITLE: [title], features.GENRES: [genres], features.YEAR: [1995]}


def _transform(rows, tmp_path):
  return tft_helpers.analyze_and_transform(rows, CONFIG, str(tmp_path / 'transform'))


def test_vocabularies_padding_and_oov(tmp_path):
  rows = [_row('u1', 'a', ''), _row('u1', 'b', 'a'), _row('u2', 'a', 'a b'),
          _row('u2', 'c', 'a b zzz x y', genres='Action', title='Heat')]
  transformed, output = _transform(rows, tmp_path)

  items = [i.decode() for i in output.vocabulary_by_name(features.ITEM_VOCAB)]
  assert sorted(items) == ['a', 'b', 'c']
  index_of = {item: position + 1 for position, item in enumerate(items)}
  oov = len(items) + 1
  assert [int(np.squeeze(r[features.ITEM_INDEX])) for r in transformed] == [
      index_of['a'], index_of['b'], index_of['a'], index_of['c']]
  histories = [list(r[features.HISTORY_INDICES]) for r in transformed]
  # Right-padded with 0, truncated to the latest `history_length`, unknown ids in the OOV bucket.
  assert histories[0] == [0, 0, 0]
  assert histories[1] == [index_of['a'], 0, 0]
  assert histories[2] == [index_of['a'], index_of['b'], 0]
  assert histories[3] == [oov, oov, oov]
  assert len(output.vocabulary_by_name(features.USER_VOCAB)) == 2
  genres = [list(r[features.GENRE_INDICES]) for r in transformed]
  assert all(g[0] > 0 and g[1] > 0 for g in genres[:3]) and genres[3][1] == 0
  assert [len(r[features.TITLE_INDICES]) for r in transformed] == [3] * 4
  assert all(float(np.squeeze(r[features.LABEL])) == 4.0 for r in transformed)
  # The raw item side features pass through for the exports' catalogue file.
  assert [(np.squeeze(r[features.TITLE]), np.squeeze(r[features.GENRES]),
           int(np.squeeze(r[features.YEAR]))) for r in transformed][2:] == [
               (b'Toy Story (1995)', b'Comedy|Drama', 1995), (b'Heat', b'Action', 1995)]


def test_history_ratings_align_with_history_indices(tmp_path):
  rows = [_row('u1', 'a', 'a b', history_ratings='5 3.5'),
          _row('u1', 'b', 'a b zzz x y', history_ratings='1 2 3 4 5'),
          _row('u2', 'c', 'a b'),  # no ratings sent: unrated
          _row('u2', 'a', 'a b', history_ratings='4')]  # not one per item: unrated
  transformed, _ = _transform(rows, tmp_path)
  ratings = [list(r[features.HISTORY_RATING_VALUES]) for r in transformed]
  # Right-padded with 0 like the indices, truncated to the latest `history_length`.
  assert ratings == [[5.0, 3.5, 0.0], [3.0, 4.0, 5.0], [0.0] * 3, [0.0] * 3]
  assert [int(r[features.HISTORY_INDICES][0] > 0) for r in transformed] == [1, 1, 1, 1]


def test_item_text_becomes_padded_word_indices_of_its_own_vocabulary(tmp_path):
  config = dataclasses.replace(CONFIG, item_text_columns=('description', 'tags'),
                               max_item_text_tokens=4, item_text_vocab_size=100)
  rows = [{**_row('u1', 'a', ''), features.ITEM_TEXT: ['A heist, in L.A. CRIME heist']},
          {**_row('u1', 'b', 'a'), features.ITEM_TEXT: ['Crème brûlée|cooking']},
          _row('u2', 'c', 'a')]  # an item without text: no such feature
  transformed, output = tft_helpers.analyze_and_transform(rows, config,
                                                          str(tmp_path / 'transform'))
  vocabulary = [token.decode() for token in output.vocabulary_by_name(features.ITEM_TEXT_VOCAB)]
  assert sorted(vocabulary) == sorted(['a', 'heist', 'in', 'l', 'crime', 'crème', 'brûlée',
                                       'cooking'])
  index_of = {token: position + 1 for position, token in enumerate(vocabulary)}
  indices = [list(r[features.ITEM_TEXT_INDICES]) for r in transformed]
  # Lower-cased words of any script, the first `max_item_text_tokens`, 0 pads.
  assert indices == [[index_of[t] for t in ('a', 'heist', 'in', 'l')],
                     [index_of[t] for t in ('crème', 'brûlée', 'cooking')] + [0],
                     [0, 0, 0, 0]]
  # The title tokens are as without item text.
  assert all(len(r[features.TITLE_INDICES]) == 3 for r in transformed)
  # Its embedding table: the vocabulary, an OOV bucket and the padding row.
  vocab = towers.Vocabularies.from_transform_output(output, 1, 1)
  assert vocab.item_text_tokens == len(vocabulary) + 2


def test_without_item_text_columns_there_is_no_item_text_feature(tmp_path):
  rows = [{**_row('u1', 'a', ''), features.ITEM_TEXT: ['A heist']}, _row('u2', 'b', 'a')]
  transformed, output = _transform(rows, tmp_path)
  assert all(features.ITEM_TEXT_INDICES not in r for r in transformed)
  assert output.vocabulary_file_by_name(features.ITEM_TEXT_VOCAB) is None
  vocab = towers.Vocabularies.from_transform_output(output, 1, 1)
  assert vocab.item_text_tokens == 0


def test_declared_item_text_columns_without_text_in_the_data_give_no_text_vocabulary(tmp_path):
  # As ML-100K and the generated data sets, whose items.csv has no such column.
  config = dataclasses.replace(CONFIG, item_text_columns=('description',))
  transformed, output = tft_helpers.analyze_and_transform(
      [_row('u1', 'a', ''), _row('u2', 'b', 'a')], config, str(tmp_path / 'transform'))
  assert [list(r[features.ITEM_TEXT_INDICES]) for r in transformed] == [[0] * 32] * 2
  assert towers.Vocabularies.from_transform_output(output, 1, 1).item_text_tokens == 0


def test_title_tokens_drop_year_and_punctuation():
  tokens = preprocessing.title_tokens(tf.constant(['Toy Story (1995)', "Schindler's List"]))
  assert tokens.to_list() == [[b'toy', b'story'], [b'schindler', b's', b'list']]


def test_configured_history_length_is_the_contracts():
  # RawExampleGen writes as many history items as Transform keeps (`pipeline.data_components`),
  # which is the history the models read, the exports exclude and clients pad requests to
  # (`contract.requests`).
  assert configs.TRANSFORM.history_length == signatures.HISTORY_LENGTH


def test_configured_max_genres_keeps_every_movielens_genre(shared_movielens):
  # The genre indices are cut at `max_genres` (`_padded_indices`): no ML-100K item may lose one.
  items = loaders.load_movielens_100k(shared_movielens).items
  widest = max(len(genres.split(features.GENRE_SEPARATOR)) for genres in items[features.GENRES])
  assert widest <= configs.TRANSFORM.max_genres


def test_preprocessing_fn_rejects_unknown_and_missing_settings():
  # A `custom_config` written for other settings stops the Transform with the record's name,
  # before any input is read.
  configured = hparams.to_dict(configs.TRANSFORM)
  with pytest.raises(ValueError, match=r"TransformHParams: unknown keys \['history_size'\]"):
    preprocessing.preprocessing_fn({}, {**configured, 'history_size': 5})
  del configured['max_genres']
  with pytest.raises(ValueError,
                     match=r"TransformHParams: unknown keys \[\], missing keys \['max_genres'\]"):
    preprocessing.preprocessing_fn({}, configured)
