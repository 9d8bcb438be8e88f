"""Tests of the loaders, the synthetic dataset and its writers, and the MovieLens download cache."""

import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contract import features
from contract import split_rules
from ingest import download, generic_csv, loaders, movielens_100k, synthetic, tables
from ingest.errors import DataError
import input_writers

HEADER = (features.USER_ID, features.ITEM_ID, features.RATING, features.TIMESTAMP)


def write_lines(path: Path, *lines: str) -> Path:
  path.write_text(''.join(line + '\n' for line in lines), encoding='utf-8')
  return path


def assert_located(error: DataError, path: Path, row, column) -> None:
  message = str(error)
  assert '\n' not in message
  assert message.startswith(f'{path}: ')
  assert (error.row, error.column) == (row, column)
  if row is not None:
    assert f'row {row}' in message
  if column is not None:
    assert f'column {column!r}' in message


def assert_datasets_equal(actual: tables.Dataset, expected: tables.Dataset) -> None:
  pd.testing.assert_frame_equal(actual.interactions, expected.interactions)
  pd.testing.assert_frame_equal(actual.users, expected.users)
  pd.testing.assert_frame_equal(actual.items, expected.items)


# --- Synthetic data ---


def test_generate_is_deterministic_and_plausible():
  dataset = synthetic.generate(seed=3)
  assert_datasets_equal(synthetic.generate(seed=3), dataset)
  assert not synthetic.generate(seed=4).interactions.equals(dataset.interactions)

  frame = dataset.interactions
  counts = frame.groupby(features.USER_ID).size()
  assert len(counts) == 60 and counts.between(15, 40).all()
  assert set(frame[features.RATING].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
  assert not frame.duplicated([features.USER_ID, features.ITEM_ID]).any()
  ordered = frame.sort_values([features.USER_ID, features.TIMESTAMP])
  assert (ordered.groupby(features.USER_ID)[features.TIMESTAMP].diff().dropna() > 0).all()
  popularity = frame[features.ITEM_ID].value_counts()
  top_tenth = popularity.iloc[:len(popularity) // 10].sum() / popularity.sum()
  assert top_tenth > 0.2 and popularity.iloc[0] > 3 * popularity.median()  # long tail
  assert set(dataset.users[features.GENDER]) == set(synthetic.GENDERS)
  assert (dataset.items[features.YEAR] == 0).any() and (dataset.items[features.YEAR] > 0).any()


def test_the_default_data_set_is_unchanged_by_the_arriving_items_option():
  # Fingerprints of `generate()` as it was before `arriving_items` existed (the items' since
  # their genres follow their factors; their titles and years are the same as before).
  dataset = synthetic.generate()
  assert [int(pd.util.hash_pandas_object(frame).sum() % 2**61)
          for frame in (dataset.interactions, dataset.users, dataset.items)] == [
              39186717879090855, 1920956205783486908, 726438530832138645]
  assert_datasets_equal(synthetic.generate(arriving_items=0), dataset)


def test_arriving_items_are_cold_in_about_a_tenth_of_the_test_interactions():
  dataset = synthetic.generate(num_users=300, num_items=200, seed=1, arriving_items=20)
  assert_datasets_equal(
      synthetic.generate(num_users=300, num_items=200, seed=1, arriving_items=20), dataset)
  frame = dataset.interactions
  splits = split_rules.assign_splits(frame)  # the project's split
  arriving = [str(i) for i in range(201, 221)]
  # Listed in the item side table, with genres, like the others.
  assert dataset.items.index.tolist() == [str(i) for i in range(1, 221)]
  assert (dataset.items.loc[arriving, features.GENRES].str.len() > 0).all()
  # Never in train or eval; about 10% of the test interactions are with items unseen in train.
  assert not frame[splits != features.TEST_SPLIT][features.ITEM_ID].isin(arriving).any()
  train_items = set(frame[splits == features.TRAIN_SPLIT][features.ITEM_ID])
  test = frame[splits == features.TEST_SPLIT]
  cold_share = (~test[features.ITEM_ID].isin(train_items)).mean()
  assert 0.07 <= cold_share <= 0.13, cold_share
  assert test[features.ITEM_ID].isin(arriving).sum() >= 0.07 * len(test)
  assert len(set(test[features.ITEM_ID]) & set(arriving)) >= 10  # many of them, not one
  # Still distinct items per user, strictly increasing timestamps; the arrival is late.
  assert not frame.duplicated([features.USER_ID, features.ITEM_ID]).any()
  ordered = frame.sort_values([features.USER_ID, features.TIMESTAMP])
  assert (ordered.groupby(features.USER_ID)[features.TIMESTAMP].diff().dropna() > 0).all()
  first_arriving = frame[frame[features.ITEM_ID].isin(arriving)][features.TIMESTAMP].min()
  assert first_arriving >= synthetic.ARRIVAL_TIMESTAMP
  assert (frame[splits != features.TEST_SPLIT][features.TIMESTAMP] <
          synthetic.ARRIVAL_TIMESTAMP).all()
  assert set(frame[features.RATING].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
  with pytest.raises(ValueError, match='arriving'):
    synthetic.generate(arriving_items=-1)


def genre_signal(dataset: tables.Dataset, held: list) -> float:
  """How well the genres alone predict the ratings of the `held` items: the correlation, over
  the interactions with them, of each rating (less the user's mean on the other items) with
  the match of the item's genres to a profile of the user's taste in genres, the sum of the
  genre flags of the other items they rated weighted by the same deviations. About 0 where
  genres are noise."""
  names = dataset.items[features.GENRES].str.split(features.GENRE_SEPARATOR)
  flags = pd.DataFrame({genre: names.apply(lambda item: genre in item)
                        for genre in synthetic.GENRES}).astype(float)
  frame = dataset.interactions
  is_held = frame[features.ITEM_ID].isin(held)
  known, test = frame[~is_held], frame[is_held]
  means = known.groupby(features.USER_ID)[features.RATING].mean()

  def deviations(rows: pd.DataFrame) -> np.ndarray:
    return (rows[features.RATING] - rows[features.USER_ID].map(means)).to_numpy()

  profiles = flags.loc[known[features.ITEM_ID]].mul(deviations(known), axis=0).set_axis(
      known[features.USER_ID], axis=0).groupby(level=0).sum()
  scores = (profiles.loc[test[features.USER_ID]].to_numpy() *
            flags.loc[test[features.ITEM_ID]].to_numpy()).sum(axis=1)
  return np.corrcoef(scores, deviations(test))[0, 1]


def test_genres_tell_who_likes_an_item():
  # Taste in genres learnt on the even items predicts the ratings of the odd ones (random
  # genres give about 0 here, from -0.05 to 0.05 over seeds; genres that follow the factors
  # 0.3 to 0.45).
  dataset = synthetic.generate(num_users=200, num_items=300, seed=0)
  assert genre_signal(dataset, [str(i) for i in range(1, 301, 2)]) > 0.2
  # And that of the arriving items, from the ratings of the others alone: cold items can be
  # recommended from their content.
  dataset = synthetic.generate(num_users=300, num_items=200, seed=0, arriving_items=40,
                               arriving_share=0.5)
  assert genre_signal(dataset, [str(i) for i in range(201, 241)]) > 0.2


def test_large_csv_writer_is_deterministic_and_loads(tmp_path):
  rows = synthetic.write_large_csv(tmp_path / 'a', 50, 40, 1000, seed=5, users_per_chunk=7)
  synthetic.write_large_csv(tmp_path / 'b', 50, 40, 1000, seed=5, users_per_chunk=7)
  synthetic.write_large_csv(tmp_path / 'c', 50, 40, 1000, seed=6, users_per_chunk=7)
  names = (generic_csv.INTERACTIONS_CSV, generic_csv.USERS_CSV, generic_csv.ITEMS_CSV)
  for name in names:
    assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes()
  assert (tmp_path / 'a' / names[0]).read_bytes() != (tmp_path / 'c' / names[0]).read_bytes()

  dataset = loaders.load_dataset(tmp_path / 'a')
  frame = dataset.interactions
  assert len(frame) == rows and 800 <= rows <= 1200
  counts = frame.groupby(features.USER_ID).size()
  assert len(counts) == 50 and counts.between(4, 36).all()
  assert not frame.duplicated([features.USER_ID, features.ITEM_ID]).any()
  assert set(frame[features.RATING].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
  assert set(frame[features.ITEM_ID]) <= set(dataset.items.index)
  assert len(dataset.users) == 50 and len(dataset.items) == 40
  # Rows are shuffled within chunks of users: the first chunk's users come first.
  first_chunk = {str(user) for user in range(1, 8)}
  assert set(frame[features.USER_ID].iloc[:counts[list(first_chunk)].sum()]) == first_chunk


def test_movielens_writer_round_trips_through_the_loader(tmp_path):
  dataset = synthetic.generate()
  input_writers.write_movielens_100k(dataset, tmp_path)
  assert_datasets_equal(loaders.load_dataset(tmp_path), dataset)


def test_csv_writer_round_trips_through_the_loader(tmp_path):
  dataset = synthetic.generate()
  input_writers.write_csv(dataset, tmp_path)
  assert_datasets_equal(loaders.load_dataset(tmp_path), dataset)
  only_interactions = loaders.load_dataset(tmp_path / generic_csv.INTERACTIONS_CSV)
  pd.testing.assert_frame_equal(only_interactions.interactions, dataset.interactions)
  assert only_interactions.users is None and only_interactions.items is None


def test_real_movielens_100k(shared_movielens):
  dataset = loaders.load_dataset(shared_movielens)
  assert len(dataset.interactions) == 100_000
  assert dataset.interactions[features.USER_ID].nunique() == len(dataset.users) == 943
  assert dataset.interactions[features.ITEM_ID].nunique() == len(dataset.items) == 1682
  assert dataset.interactions[features.RATING].dtype == np.float32
  assert dataset.interactions[features.TIMESTAMP].dtype == np.int64
  toy_story = dataset.items.loc['1']
  assert toy_story[features.YEAR] == 1995
  genres = toy_story[features.GENRES].split(features.GENRE_SEPARATOR)
  assert genres == ['Animation', "Children's", 'Comedy']
  assert dataset.items.loc['267', features.YEAR] == 0  # the item with no release date


# --- Generic CSV schema ---


def test_interactions_without_rating_are_implicit_and_extra_columns_ignored(tmp_path):
  path = write_lines(
      tmp_path / 'events.csv',
      f'extra,{features.TIMESTAMP},{features.ITEM_ID},{features.USER_ID}',
      'x,100,i1,u1',
      'y,200,i2,u1',
  )
  frame = generic_csv.load_interactions_csv(path)
  assert list(frame.columns) == list(HEADER)
  assert frame[features.RATING].tolist() == [1.0, 1.0]
  assert frame[features.ITEM_ID].tolist() == ['i1', 'i2']
  assert frame[features.TIMESTAMP].tolist() == [100, 200]


def test_side_tables_fill_missing_columns_and_values(tmp_path):
  users = generic_csv.load_users_csv(
      write_lines(tmp_path / generic_csv.USERS_CSV, f'{features.USER_ID},{features.AGE}', 'u1,31',
                  'u2,'))
  assert users.index.name == features.USER_ID
  assert users[features.AGE].tolist() == [31, 0]
  assert users[features.ZIP_CODE].tolist() == [features.UNKNOWN] * 2
  items = generic_csv.load_items_csv(
      write_lines(
          tmp_path / generic_csv.ITEMS_CSV,
          f'{features.ITEM_ID},{features.TITLE}',
          'i1,"Heat, (1995)"',
          'i2,',
      ))
  assert items[features.TITLE].tolist() == ['Heat, (1995)', features.UNKNOWN]
  assert items[features.YEAR].tolist() == [0, 0]
  assert items[features.GENRES].tolist() == [features.UNKNOWN] * 2
  header_only = write_lines(tmp_path / 'none.csv', f'{features.USER_ID},extra')
  no_users = generic_csv.load_users_csv(header_only)
  assert no_users.empty and list(no_users.columns) == list(features.USER_SIDE_FEATURES)


def test_items_keep_the_declared_text_columns_joined_and_ignore_undeclared_ones(tmp_path):
  path = write_lines(
      tmp_path / generic_csv.ITEMS_CSV,
      f'{features.ITEM_ID},notes,tags,{features.TITLE},description',
      'i1,internal,"space, heist","Heat (1995)","A crew of thieves.\nLos  Angeles."',
      'i2,x,,Toy Story,A toy cowboy',
      'i3,y,,,',
  )
  items = generic_csv.load_items_csv(path, ('description', 'tags'))
  assert items[features.ITEM_TEXT].tolist() == [
      'A crew of thieves. Los Angeles. space, heist', 'A toy cowboy', '']
  assert items[features.TITLE].tolist() == ['Heat (1995)', 'Toy Story', features.UNKNOWN]
  # Declared columns are optional; undeclared ones are ignored, as without declared columns.
  only_tags = generic_csv.load_items_csv(path, ('tags', 'synopsis'))
  assert only_tags[features.ITEM_TEXT].tolist() == ['space, heist', '', '']
  undeclared = generic_csv.load_items_csv(path)
  assert features.ITEM_TEXT not in undeclared
  assert list(undeclared.columns) == list(features.ITEM_SIDE_FEATURES)
  with pytest.raises(ValueError, match='own columns'):
    generic_csv.load_items_csv(path, (features.TITLE,))
  # A malformed row is still reported with its file, row and column.
  bad = write_lines(tmp_path / 'bad.csv', f'{features.ITEM_ID},description,{features.YEAR}',
                    'i1,fine,1999', 'i2,"unfinished,abc')
  with pytest.raises(DataError) as error:
    generic_csv.load_items_csv(bad, ('description',))
  assert_located(error.value, bad, 3, None)
  wrong_year = write_lines(tmp_path / 'year.csv', f'{features.ITEM_ID},description,{features.YEAR}',
                           'i1,fine,1999', 'i2,text,abc')
  with pytest.raises(DataError) as error:
    generic_csv.load_items_csv(wrong_year, ('description',))
  assert_located(error.value, wrong_year, 3, features.YEAR)


GOOD_HEADER = ','.join(HEADER)


def test_timestamps_may_be_milliseconds_or_iso_8601_date_times(tmp_path):
  path = write_lines(tmp_path / 'interactions.csv', GOOD_HEADER, 'u1,i1,4,881250949',
                     'u1,i2,4,1997-12-04T15:55:49', 'u1,i3,4,1997-12-04 16:55:49+01:00',
                     'u1,i4,4,1997-12-04T15:55:49Z', 'u1,i5,4,881250949123',
                     'u1,i6,4,1997-12-04')
  assert generic_csv.load_interactions_csv(path)[features.TIMESTAMP].tolist() == [
      881250949] * 5 + [881193600]


@pytest.mark.parametrize(
    'lines, row, column, problem',
    [
        ([GOOD_HEADER, 'u1,i1,4,100', 'u1,i2,abc,200'
         ], 3, features.RATING, "'abc' is not a number"),
        ([GOOD_HEADER, 'u1,i1,4,1.5e9'], 2, features.TIMESTAMP,
         "'1.5e9' is neither an integer nor an ISO-8601 date-time"),
        ([GOOD_HEADER, 'u1,i1,nan,100'], 2, features.RATING, 'not a finite number'),
        ([GOOD_HEADER, 'u1, ,4,100'], 2, features.ITEM_ID, 'empty id'),
        ([GOOD_HEADER, 'u 1,i1,4,100'], 2, features.USER_ID, 'whitespace'),
        ([f'{features.USER_ID},{features.ITEM_ID},{features.RATING}', 'u1,i1,4'
         ], 1, features.TIMESTAMP, 'missing required column'),
        ([GOOD_HEADER + f',{features.ITEM_ID}', 'u1,i1,4,100,i1'
         ], 1, features.ITEM_ID, 'duplicate column'),
        ([GOOD_HEADER, 'u1,i1,4'], 2, None, 'expected 4 fields, found 3'),
        ([GOOD_HEADER], 2, None, 'no data rows'),
        # Line numbers count physical lines: blank lines and a quoted line break included.
        ([GOOD_HEADER + ',note', 'u1,i1,4,100,"two', 'lines"', '', 'u1,i2,4,x,ok'
         ], 5, features.TIMESTAMP, "'x' is neither an integer"),
    ])
def test_bad_interactions_name_file_row_and_column(tmp_path, lines, row, column, problem):
  path = write_lines(tmp_path / 'ratings.csv', *lines)
  with pytest.raises(DataError, match=problem) as caught:
    generic_csv.load_interactions_csv(path)
  assert_located(caught.value, path, row, column)


def test_empty_and_undecodable_files(tmp_path):
  empty = tmp_path / 'empty.csv'
  empty.write_text('')
  with pytest.raises(DataError, match='file is empty') as caught:
    loaders.load_dataset(empty)
  assert_located(caught.value, empty, 1, None)

  latin = tmp_path / 'latin.csv'
  latin.write_bytes(f'{GOOD_HEADER}\nu1,i1,4,100\nu\xe9,i1,4,100\n'.encode('latin-1'))
  with pytest.raises(DataError, match='invalid utf-8') as caught:
    generic_csv.load_interactions_csv(latin)
  assert_located(caught.value, latin, 3, None)


def test_unknown_sources(tmp_path):
  missing = tmp_path / 'nowhere'
  with pytest.raises(DataError, match='no such file') as caught:
    loaders.load_dataset(missing)
  assert_located(caught.value, missing, None, None)
  with pytest.raises(DataError, match='neither'):
    loaders.load_dataset(tmp_path)
  text = write_lines(tmp_path / 'notes.txt', 'hello')
  with pytest.raises(DataError, match='not a .csv file'):
    loaders.load_dataset(text)


def test_duplicate_side_ids(tmp_path):
  path = write_lines(tmp_path / generic_csv.USERS_CSV, features.USER_ID, 'u1', 'u2', 'u1')
  with pytest.raises(DataError, match='duplicate id') as caught:
    generic_csv.load_users_csv(path)
  assert_located(caught.value, path, 4, features.USER_ID)


# --- Native MovieLens files ---


@pytest.mark.parametrize('file_name, line, content, column, problem', [
    (movielens_100k.RATINGS_FILE, 2, '1\t2\tfour\t100', features.RATING, 'not a number'),
    (movielens_100k.RATINGS_FILE, 3, '1\t2\t4', None, 'expected 4 fields'),
    (movielens_100k.ITEMS_FILE, 2, '2|Item 2|01-Jan-1990|||' + '|'.join('2' * 19),
     movielens_100k.GENRES[0], 'genre flag'),
    (movielens_100k.ITEMS_FILE, 1, '1|Item 1|1995-01-01|||' + '|'.join('0' * 19),
     movielens_100k.RELEASE_DATE, 'not a date'),
    (movielens_100k.USERS_FILE, 2, '1|30|M|other|12345', features.USER_ID, 'duplicate id'),
    (movielens_100k.USERS_FILE, 1, '1|thirty|M|other|12345', features.AGE, 'not an integer'),
])
def test_bad_movielens_files(tmp_path, file_name, line, content, column, problem):
  dataset = synthetic.generate(num_users=3, num_items=4, interactions_per_user=(2, 3))
  input_writers.write_movielens_100k(dataset, tmp_path)
  path = tmp_path / file_name
  lines = path.read_text(encoding='latin-1').splitlines()
  lines[line - 1] = content
  path.write_text('\n'.join(lines) + '\n', encoding='latin-1')
  with pytest.raises(DataError, match=problem) as caught:
    loaders.load_dataset(tmp_path)
  assert_located(caught.value, path, line, column)


def test_data_error_pickles():
  error = DataError('ratings.csv', "'abc' is not a number", row=17, column=features.RATING)
  assert str(error) == "ratings.csv: row 17, column 'rating': 'abc' is not a number"
  copy = pickle.loads(pickle.dumps(error))
  assert (str(copy), copy.row, copy.column) == (str(error), 17, features.RATING)


# --- Download cache ---


@pytest.fixture
def fake_archive(tmp_path, monkeypatch):
  """A small ml-100k.zip of synthetic data served by a fake URL opener that counts calls."""
  dataset = synthetic.generate(num_users=5, num_items=8, interactions_per_user=(3, 5))
  source = input_writers.write_movielens_100k(dataset,
                                             tmp_path / 'source' / download.EXTRACTED_NAME)
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w') as bundle:
    for file in sorted(source.iterdir()):
      bundle.write(file, f'{download.EXTRACTED_NAME}/{file.name}')
  payload = buffer.getvalue()
  calls = []

  def fake_urlopen(url, timeout):
    calls.append(url)
    return io.BytesIO(payload)

  monkeypatch.setattr(download, 'urlopen', fake_urlopen)
  digest = hashlib.new(download.CHECKSUM_ALGORITHM, payload).hexdigest()
  monkeypatch.setattr(download, 'EXPECTED_DIGEST', digest)
  return dataset, calls


def test_fetch_downloads_once_then_uses_the_cache(tmp_path, fake_archive):
  dataset, calls = fake_archive
  cache = tmp_path / 'cache'
  directory = download.fetch_movielens_100k(cache)
  assert directory == cache / download.EXTRACTED_NAME and calls == [download.URL]
  cached = sorted(path.name for path in cache.iterdir())
  assert cached == [download.EXTRACTED_NAME, download.ARCHIVE_NAME]
  assert_datasets_equal(loaders.load_movielens_100k(directory), dataset)

  assert download.fetch_movielens_100k(cache) == directory and len(calls) == 1
  # A verified archive whose extraction was lost is extracted again without the network.
  for file in directory.iterdir():
    file.unlink()
  directory.rmdir()
  assert_datasets_equal(loaders.load_dataset(download.MOVIELENS_100K, cache_dir=cache), dataset)
  assert len(calls) == 1


def test_fetch_rejects_a_bad_checksum_and_leaves_nothing(tmp_path, fake_archive, monkeypatch):
  monkeypatch.setattr(download, 'EXPECTED_DIGEST', '0' * 32)
  cache = tmp_path / 'cache'
  with pytest.raises(DataError, match='mismatch'):
    download.fetch_movielens_100k(cache)
  assert list(cache.iterdir()) == []


def test_fetch_interrupted_download_leaves_nothing(tmp_path, monkeypatch):

  class BrokenStream(io.BytesIO):

    def read(self, *args):
      raise ConnectionResetError('connection lost')

  monkeypatch.setattr(download, 'urlopen', lambda url, timeout: BrokenStream())
  cache = tmp_path / 'cache'
  with pytest.raises(ConnectionResetError):
    download.fetch_movielens_100k(cache)
  assert list(cache.iterdir()) == []


@pytest.mark.parametrize('lines, kind', [
    ((f'{features.USER_ID},{features.ITEM_ID},{features.TIMESTAMP}', 'u1,i1,100', 'u1,i2,200'),
     features.IMPLICIT),
    ((f'{features.USER_ID},{features.ITEM_ID},{features.TIMESTAMP},{features.RATING}',
      'u1,i1,100,1', 'u1,i2,200,1', 'u2,i1,300,1'), features.IMPLICIT),
    ((f'{features.USER_ID},{features.ITEM_ID},{features.TIMESTAMP},{features.RATING}',
      'u1,i1,100,0', 'u1,i2,200,1', 'u2,i1,300,1'), features.EXPLICIT),
])
def test_the_feedback_kind_is_told_by_the_rating_column(tmp_path, lines, kind):
  files = loaders.locate_inputs(write_lines(tmp_path / 'interactions.csv', *lines))
  assert loaders.detect_feedback(files) == kind
  assert loaders.resolve_feedback(loaders.AUTO_FEEDBACK, files) == kind
  assert loaders.resolve_feedback(features.EXPLICIT, files) == features.EXPLICIT
  with pytest.raises(ValueError, match="feedback 'ratings': use one of auto, explicit"):
    loaders.resolve_feedback('ratings', files)


def test_the_latent_factors_are_those_the_data_was_drawn_from():
  dataset = synthetic.generate(num_users=300, num_items=200, seed=1, arriving_items=20)
  factors = synthetic.latent_factors(300, 200, seed=1, arriving_items=20)
  assert factors.users.shape == (300, synthetic.LATENT_DIM)
  assert factors.items.shape == (220, synthetic.LATENT_DIM) and factors.popularity.shape == (220,)
  # Each group's most popular item has popularity 1 (Zipf ranks drawn apart for the arrivals).
  assert factors.popularity[:200].max() == factors.popularity[200:].max() == 1.0
  # Users pick the items they have an affinity for, and the popular ones.
  frame = dataset.interactions
  users = frame[features.USER_ID].astype(int).to_numpy() - 1
  items = frame[features.ITEM_ID].astype(int).to_numpy() - 1
  picked = np.einsum('ij,ij->i', factors.users[users], factors.items[items])
  everything = factors.users @ factors.items.T
  assert picked.mean() > everything.mean() + 0.5
  assert np.median(factors.popularity[items[items < 200]]) > 3 * np.median(factors.popularity[:200])
