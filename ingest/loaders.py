"""Finds a data source's files, streams its validated interactions, and loads side tables.

`locate_inputs` resolves a source to its `InputFiles`; `read_interactions` streams the
interactions row by row (what RawExampleGen's Beam job uses, whatever the file size);
`load_users` / `load_items` load the small side tables; `load_dataset` loads everything into an
in-memory `Dataset` for small data (baselines, tests).

Two input formats are understood:

* the documented generic schema, CSV files with a header row:
 `interactions.csv` (user_id, item_id, timestamp and optional rating; a missing rating column
 means implicit feedback, rating 1.0), optional `users.csv` (user_id, age, gender, occupation,
 zip_code) and optional `items.csv` (item_id, title, genres, year); extra columns are ignored
 and missing optional columns or empty optional values become `features.UNKNOWN` or 0;
* the native MovieLens 100k files `u.data`, `u.item` and `u.user`.

Files are parsed with the `csv` module one row at a time so that every problem is reported as a
`DataError` naming the file, its 1-based line number and the column. Nothing is written here.
Files are opened with `tf.io.gfile`, so a source can be on any file system TensorFlow reads
(local paths, gs://, s3://, hdfs://, ram://); paths are strings.
"""

from __future__ import annotations

import csv
import datetime
import math
import os
import posixpath
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import (
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np
import pandas as pd
import tensorflow as tf

from contract import features
from ingest import download
from ingest.errors import DataError

# Column order of the tables: also the field order of u.data and u.user.
INTERACTION_COLUMNS = (features.USER_ID, features.ITEM_ID, features.RATING, features.TIMESTAMP)
USER_COLUMNS = (features.USER_ID,) + features.USER_SIDE_FEATURES
ITEM_COLUMNS = (features.ITEM_ID,) + features.ITEM_SIDE_FEATURES

INTERACTIONS_CSV = 'interactions.csv'
USERS_CSV = 'users.csv'
ITEMS_CSV = 'items.csv'

MOVIELENS_RATINGS = 'u.data'
MOVIELENS_ITEMS = 'u.item'
MOVIELENS_USERS = 'u.user'
# The 19 genre flags of u.item, in column order (as listed in u.genre).
MOVIELENS_GENRES = (
    'unknown',
    'Action',
    'Adventure',
    'Animation',
    "Children's",
    'Comedy',
    'Crime',
    'Documentary',
    'Drama',
    'Fantasy',
    'Film-Noir',
    'Horror',
    'Musical',
    'Mystery',
    'Romance',
    'Sci-Fi',
    'Thriller',
    'War',
    'Western',
)
MOVIELENS_RELEASE_DATE = 'release date'
RELEASE_DATE_PATTERN = re.compile(r'\d{1,2}-[A-Za-z]{3}-(\d{4})')
MOVIELENS_ITEM_COLUMNS = (
    (features.ITEM_ID, features.TITLE, MOVIELENS_RELEASE_DATE, 'video release date', 'IMDb URL') +
    MOVIELENS_GENRES)

IMPLICIT_RATING = 1.0  # the rating of an interaction without one (implicit feedback)
AUTO_FEEDBACK = 'auto'  # the feedback setting that lets the data tell (`resolve_feedback`)

Source = Union[str, Path]
Parser = Callable[[str], object]
Columns = Tuple[List[int], Dict[str, list]]  # (line numbers, column name -> parsed values)


@dataclass(frozen=True)
class Dataset:
  """Interactions plus optional side tables.

  `interactions` has columns USER_ID (str), ITEM_ID (str), RATING (float32) and
  TIMESTAMP (int64). `users` is indexed by USER_ID with AGE (int64), GENDER, OCCUPATION and
  ZIP_CODE (str); `items` is indexed by ITEM_ID with TITLE (str), GENRES (str joined by
  `features.GENRE_SEPARATOR`) and YEAR (int64, 0 when unknown).
  """

  interactions: pd.DataFrame
  users: Optional[pd.DataFrame] = None
  items: Optional[pd.DataFrame] = None


def interactions_frame(
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    ratings: Sequence[float],
    timestamps: Sequence[int],
) -> pd.DataFrame:
  """Builds an interactions table with the `Dataset` column types."""
  return pd.DataFrame({
      features.USER_ID: pd.Series(user_ids, dtype=object),
      features.ITEM_ID: pd.Series(item_ids, dtype=object),
      features.RATING: np.asarray(ratings, dtype=np.float32),
      features.TIMESTAMP: np.asarray(timestamps, dtype=np.int64),
  })


def users_frame(
    user_ids: Sequence[str],
    ages: Sequence[int],
    genders: Sequence[str],
    occupations: Sequence[str],
    zip_codes: Sequence[str],
) -> pd.DataFrame:
  """Builds a users table indexed by USER_ID with the `Dataset` column types."""
  return pd.DataFrame(
      {
          features.AGE: np.asarray(ages, dtype=np.int64),
          features.GENDER: pd.Series(genders, dtype=object).to_numpy(),
          features.OCCUPATION: pd.Series(occupations, dtype=object).to_numpy(),
          features.ZIP_CODE: pd.Series(zip_codes, dtype=object).to_numpy(),
      },
      index=pd.Index(user_ids, dtype=object, name=features.USER_ID),
  )


def items_frame(
    item_ids: Sequence[str],
    titles: Sequence[str],
    genres: Sequence[str],
    years: Sequence[int],
) -> pd.DataFrame:
  """Builds an items table indexed by ITEM_ID with the `Dataset` column types."""
  return pd.DataFrame(
      {
          features.TITLE: pd.Series(titles, dtype=object).to_numpy(),
          features.GENRES: pd.Series(genres, dtype=object).to_numpy(),
          features.YEAR: np.asarray(years, dtype=np.int64),
      },
      index=pd.Index(item_ids, dtype=object, name=features.ITEM_ID),
  )


# --- Value parsers: each raises ValueError with the problem; callers add the location. ---


def _identifier(text: str) -> str:
  value = text.strip()
  if not value:
    raise ValueError('empty id')
  if any(character.isspace() for character in value):
    # Ids are joined by whitespace into history features, so they must not contain any.
    raise ValueError(f'id {value!r} contains whitespace')
  return value


def _number(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise ValueError(f'{text!r} is not a number') from None
  if not math.isfinite(value):
    raise ValueError(f'{text!r} is not a finite number')
  return value


def _integer(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise ValueError(f'{text!r} is not an integer') from None
  if not -2**63 <= value < 2**63:
    raise ValueError(f'{text!r} is out of the int64 range')
  return value


MILLISECONDS_FROM = 100_000_000_000  # an integer timestamp this large is in milliseconds


def _timestamp(text: str) -> int:
  """Seconds since the epoch: an integer in seconds, or in milliseconds when it is at least
  `MILLISECONDS_FROM` (as seconds that would be after the year 5000), or an ISO-8601 date or
  date-time such as '1997-12-04T15:55:49', '1997-12-04 15:55:49+01:00' or
  '1997-12-04T15:55:49Z' (UTC when it names no zone)."""
  try:
    value = _integer(text)
  except ValueError:
    pass
  else:
    return value // 1000 if value >= MILLISECONDS_FROM else value
  try:
    moment = datetime.datetime.fromisoformat(re.sub(r'[zZ]$', '+00:00', text.strip()))
  except ValueError:
    raise ValueError(f'{text!r} is neither an integer nor an ISO-8601 date-time') from None
  if moment.tzinfo is None:
    moment = moment.replace(tzinfo=datetime.timezone.utc)
  return int(moment.timestamp())


def _optional_integer(text: str) -> int:
  return _integer(text) if text.strip() else 0


def _optional_text(text: str) -> str:
  return text.strip() or features.UNKNOWN


def _release_year(text: str) -> int:
  """Year of a MovieLens release date such as '01-Jan-1995'; 0 when the date is empty."""
  if not text.strip():
    return 0
  match = RELEASE_DATE_PATTERN.fullmatch(text.strip())
  if match is None:
    raise ValueError(f'{text!r} is not a date like 01-Jan-1995')
  return int(match.group(1))


def _genre_flag(text: str) -> bool:
  if text.strip() not in ('0', '1'):
    raise ValueError(f'{text!r} is not a genre flag (0 or 1)')
  return text.strip() == '1'


INTERACTION_PARSERS: Mapping[str, Parser] = {
    features.USER_ID: _identifier,
    features.ITEM_ID: _identifier,
    features.RATING: _number,
    features.TIMESTAMP: _timestamp,
}
USER_PARSERS: Mapping[str, Parser] = {
    features.USER_ID: _identifier,
    features.AGE: _optional_integer,
    features.GENDER: _optional_text,
    features.OCCUPATION: _optional_text,
    features.ZIP_CODE: _optional_text,
}
ITEM_PARSERS: Mapping[str, Parser] = {
    features.ITEM_ID: _identifier,
    features.TITLE: _optional_text,
    features.GENRES: _optional_text,
    features.YEAR: _optional_integer,
}
MOVIELENS_ITEM_PARSERS: Mapping[str, Parser] = {
    features.ITEM_ID: _identifier,
    features.TITLE: _optional_text,
    MOVIELENS_RELEASE_DATE: _release_year,
    **{
        genre: _genre_flag for genre in MOVIELENS_GENRES
    },
}

# --- Reading rows with exact line numbers. ---

Row = Tuple[int, List[str]]  # (line number, fields)


def join(directory: Source, name: str) -> str:
  """`directory`/`name` for local paths and URLs (gs://bucket/dir) alike."""
  directory = os.fspath(directory)
  return (posixpath.join(directory, name) if '://' in directory
          else os.path.join(directory, name))


def is_file(path: Source) -> bool:
  """Whether `path` exists and is not a directory, on any file system TensorFlow reads."""
  path = os.fspath(path)
  return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def _decoded_lines(path: str, encoding: str) -> Iterator[str]:
  """Yields the file's lines as text, reporting undecodable bytes on their own line."""
  try:
    if tf.io.gfile.isdir(path):
      raise DataError(path, 'cannot read: is a directory')
    handle = tf.io.gfile.GFile(path, 'rb')
    lines = iter(handle)
    first = next(lines, None)
  except tf.errors.OpError as error:
    raise DataError(path, f'cannot read: {error.message}') from None
  with handle:
    number = 0
    while first is not None:
      number += 1
      try:
        yield first.decode(encoding)
      except UnicodeDecodeError as error:
        problem = f'invalid {encoding} text: {error.reason}'
        raise DataError(path, problem, row=number) from None
      first = next(lines, None)


def _rows(path: str, delimiter: str, encoding: str, quoting: int) -> Iterator[Row]:
  """Yields (1-based line number where the row starts, fields) for every non-blank row."""
  reader = csv.reader(_decoded_lines(path, encoding), delimiter=delimiter, quoting=quoting)
  empty = True
  while True:
    start = reader.line_num + 1
    try:
      fields = next(reader)
    except StopIteration:
      break
    except csv.Error as error:
      raise DataError(path, f'malformed CSV: {error}', row=start) from None
    if fields:
      empty = False
      yield start, fields
  if empty:
    raise DataError(path, 'file is empty', row=1)


def _header(path: str, rows: Iterator[Row], required: Sequence[str]) -> List[str]:
  """Reads the header row and returns its column names, checking them."""
  header_row, header = next(rows)
  names = [name.strip() for name in header]
  seen = set()
  for name in names:
    if name and name in seen:
      raise DataError(path, 'duplicate column name in the header', header_row, name)
    seen.add(name)
  for name in required:
    if name not in seen:
      problem = f"missing required column (header has: {', '.join(names)})"
      raise DataError(path, problem, header_row, name)
  return names


def _parsed_rows(path: str, rows: Iterable[Row], names: Sequence[str],
                 parsers: Mapping[str, Parser]) -> Iterator[Tuple[int, Dict[str, object]]]:
  """Checks that every row has one field per name and parses the named columns that have a
  parser; yields (line number, column name -> parsed value) one row at a time."""
  wanted = [(index, name, parsers[name]) for index, name in enumerate(names) if name in parsers]
  for number, fields in rows:
    if len(fields) != len(names):
      raise DataError(path, f'expected {len(names)} fields, found {len(fields)}', number)
    values = {}
    for index, name, parse in wanted:
      try:
        values[name] = parse(fields[index])
      except ValueError as error:
        raise DataError(path, str(error), number, name) from None
    yield number, values


def _parse(path: str, rows: Iterable[Row], names: Sequence[str],
           parsers: Mapping[str, Parser]) -> Columns:
  """All of `_parsed_rows` as columns: the line numbers and the parsed columns."""
  numbers: List[int] = []
  columns: Dict[str, list] = {name: [] for name in names if name in parsers}
  for number, values in _parsed_rows(path, rows, names, parsers):
    numbers.append(number)
    for name, value in values.items():
      columns[name].append(value)
  return numbers, columns


def _check_unique(path: str, numbers: Sequence[int], ids: Sequence[str], column: str) -> None:
  first_rows: Dict[str, int] = {}
  for number, key in zip(numbers, ids):
    if key in first_rows:
      problem = f'duplicate id {key!r} (first on row {first_rows[key]})'
      raise DataError(path, problem, number, column)
    first_rows[key] = number


# --- Interactions, streamed one row at a time. ---


class Interaction(NamedTuple):
  """One validated interaction and the 1-based line of the file where its row starts."""
  line: int
  user_id: str
  item_id: str
  rating: float
  timestamp: int


def read_interactions(path: Source, movielens: bool = False) -> Iterator[Interaction]:
  """Streams the validated rows of `interactions.csv` (generic schema: header row, user_id,
  item_id, timestamp, optional rating defaulting to 1.0) or of MovieLens `u.data`.

  Memory stays constant whatever the file size; the first bad row raises a `DataError`.
  """
  path = os.fspath(path)
  if movielens:
    names = INTERACTION_COLUMNS
    rows = _rows(path, '\t', 'latin-1', csv.QUOTE_NONE)
  else:
    rows = _rows(path, ',', 'utf-8-sig', csv.QUOTE_MINIMAL)
    names = _header(path, rows, (features.USER_ID, features.ITEM_ID, features.TIMESTAMP))
  empty = True
  for number, values in _parsed_rows(path, rows, names, INTERACTION_PARSERS):
    empty = False
    yield Interaction(number, values[features.USER_ID], values[features.ITEM_ID],
                      values.get(features.RATING, IMPLICIT_RATING), values[features.TIMESTAMP])
  if empty:
    raise DataError(path, 'no data rows after the header', row=2)


def detect_feedback(files: 'InputFiles') -> str:
  """The kind of feedback of the interactions: `features.IMPLICIT` when they have no rating
  column (generic schema) or one rating value in every row, else `features.EXPLICIT`.

  Reads the header, then streams the rows only until a second rating value shows, so explicit
  data stops at its first rows; a constant column is read to the end (and validated)."""
  if not files.movielens:
    rows = _rows(files.interactions, ',', 'utf-8-sig', csv.QUOTE_MINIMAL)
    names = _header(files.interactions, rows,
                    (features.USER_ID, features.ITEM_ID, features.TIMESTAMP))
    if features.RATING not in names:
      return features.IMPLICIT
  first = None
  for row in read_interactions(files.interactions, files.movielens):
    if first is None:
      first = row.rating
    elif row.rating != first:
      return features.EXPLICIT
  return features.IMPLICIT


def resolve_feedback(feedback: str, files: 'InputFiles') -> str:
  """`feedback` as set (`features.EXPLICIT` or `features.IMPLICIT`), or, for 'auto', the kind
  the data shows (`detect_feedback`)."""
  if feedback == AUTO_FEEDBACK:
    return detect_feedback(files)
  if feedback not in features.FEEDBACK_KINDS:
    raise ValueError(f'feedback {feedback!r}: use one of '
                     f'{", ".join((AUTO_FEEDBACK,) + features.FEEDBACK_KINDS)}')
  return feedback


def _interactions_table(rows: Iterable[Interaction]) -> pd.DataFrame:
  user_ids, item_ids, ratings, timestamps = [], [], [], []
  for row in rows:
    user_ids.append(row.user_id)
    item_ids.append(row.item_id)
    ratings.append(row.rating)
    timestamps.append(row.timestamp)
  return interactions_frame(user_ids, item_ids, ratings, timestamps)


# --- Generic CSV schema. ---


def _read_csv(path: str, required: Sequence[str], parsers: Mapping[str, Parser]) -> Columns:
  rows = _rows(path, ',', 'utf-8-sig', csv.QUOTE_MINIMAL)
  names = _header(path, rows, required)
  return _parse(path, rows, names, parsers)


def load_interactions_csv(path: Source) -> pd.DataFrame:
  """Loads `interactions.csv`: user_id, item_id, timestamp and optional rating (default 1.0)."""
  return _interactions_table(read_interactions(path))


def _load_side_csv(path: str, names: Sequence[str], parsers: Mapping[str, Parser]) -> List[list]:
  """Parses a side table keyed by `names[0]`; returns its columns in `names` order. A missing
  optional column is parsed as empty text, giving `features.UNKNOWN` or 0."""
  numbers, columns = _read_csv(path, names[:1], parsers)
  _check_unique(path, numbers, columns[names[0]], names[0])
  return [
      columns[name] if name in columns else [parsers[name]('')] * len(numbers) for name in names
  ]


def load_users_csv(path: Source) -> pd.DataFrame:
  """Loads `users.csv`: user_id and optional age, gender, occupation, zip_code."""
  return users_frame(*_load_side_csv(os.fspath(path), USER_COLUMNS, USER_PARSERS))


def load_items_csv(path: Source) -> pd.DataFrame:
  """Loads `items.csv`: item_id and optional title, genres ('|'-separated), year."""
  return items_frame(*_load_side_csv(os.fspath(path), ITEM_COLUMNS, ITEM_PARSERS))


def csv_files(directory: Source) -> 'InputFiles':
  """The generic schema's files in `directory`: interactions.csv and the side tables present."""
  users, items = join(directory, USERS_CSV), join(directory, ITEMS_CSV)
  return InputFiles(join(directory, INTERACTIONS_CSV), movielens=False,
                    users=users if is_file(users) else None,
                    items=items if is_file(items) else None)


# --- Native MovieLens 100k files. ---


def _read_movielens(path: str, delimiter: str, names: Sequence[str],
                    parsers: Mapping[str, Parser]) -> Columns:
  return _parse(path, _rows(path, delimiter, 'latin-1', csv.QUOTE_NONE), names, parsers)


def _load_movielens_items(path: str) -> pd.DataFrame:
  numbers, columns = _read_movielens(path, '|', MOVIELENS_ITEM_COLUMNS, MOVIELENS_ITEM_PARSERS)
  _check_unique(path, numbers, columns[features.ITEM_ID], features.ITEM_ID)
  genres = [
      features.GENRE_SEPARATOR.join(genre for genre, on in zip(MOVIELENS_GENRES, flags) if on) or
      features.UNKNOWN for flags in zip(*(columns[genre] for genre in MOVIELENS_GENRES))
  ]
  return items_frame(columns[features.ITEM_ID], columns[features.TITLE], genres,
                     columns[MOVIELENS_RELEASE_DATE])


def _load_movielens_users(path: str) -> pd.DataFrame:
  numbers, columns = _read_movielens(path, '|', USER_COLUMNS, USER_PARSERS)
  _check_unique(path, numbers, columns[features.USER_ID], features.USER_ID)
  return users_frame(*(columns[name] for name in USER_COLUMNS))


def load_movielens_100k(directory: Source) -> Dataset:
  """Loads the native MovieLens 100k files: u.data and, when present, u.item and u.user.

  Genres are the names of the set u.item flags; the year comes from the release date (0 when
  the date is missing).
  """
  return load_input_files(movielens_files(directory))


def movielens_files(directory: Source) -> 'InputFiles':
  """The native MovieLens 100k files in `directory`: u.data and u.user / u.item when present."""
  users, items = join(directory, MOVIELENS_USERS), join(directory, MOVIELENS_ITEMS)
  return InputFiles(join(directory, MOVIELENS_RATINGS), movielens=True,
                    users=users if is_file(users) else None,
                    items=items if is_file(items) else None)


# --- Data sources. ---


@dataclass(frozen=True)
class InputFiles:
  """The files of one data source: the interactions and the optional side tables, in the
  generic CSV schema or (`movielens`) the native MovieLens 100k format."""

  interactions: str
  movielens: bool
  users: Optional[str] = None
  items: Optional[str] = None
  # Where `locate_inputs` found them, as the pipeline reads them: the directory, or the single
  # .csv file (a local path made absolute); '' when not located.
  source: str = ''

  def existing(self) -> List[str]:
    """The interactions file and the side tables present, in that order."""
    return [path for path in (self.interactions, self.users, self.items) if path is not None]


def load_users(files: InputFiles) -> Optional[pd.DataFrame]:
  """The users side table of `files`, or None when there is none."""
  if files.users is None:
    return None
  return _load_movielens_users(files.users) if files.movielens else load_users_csv(files.users)


def load_items(files: InputFiles) -> Optional[pd.DataFrame]:
  """The items side table of `files`, or None when there is none."""
  if files.items is None:
    return None
  return _load_movielens_items(files.items) if files.movielens else load_items_csv(files.items)


def load_input_files(files: InputFiles) -> Dataset:
  """Loads every table of `files` into memory (for small data; RawExampleGen streams instead)."""
  return Dataset(
      interactions=_interactions_table(read_interactions(files.interactions, files.movielens)),
      users=load_users(files),
      items=load_items(files),
  )


def locate_inputs(source: Source, cache_dir: Optional[Source] = None) -> InputFiles:
  """Finds the files of a data source, given as a name, a directory or a CSV file.

  * `movielens-100k`: downloaded (or taken from `cache_dir`);
  * a directory holding u.data: native MovieLens 100k files;
  * a directory holding interactions.csv (with optional users.csv and items.csv): generic schema;
  * a path to a .csv file: generic interactions, no side tables.

  The one resolution of a data source: the local runner's, before the pipeline starts, and
  RawExampleGen's executor's, of the `source` the files were found in. It opens no file
  (`transforms.check_inputs` reads the first row and the side tables).
  """
  if str(source) == download.MOVIELENS_100K:
    path = os.fspath(download.fetch_movielens_100k(cache_dir))
  else:
    path = os.fspath(source)
  found = path if '://' in path else os.path.abspath(path)
  if tf.io.gfile.isdir(path):
    if is_file(join(path, MOVIELENS_RATINGS)):
      return replace(movielens_files(path), source=found)
    if is_file(join(path, INTERACTIONS_CSV)):
      return replace(csv_files(path), source=found)
    raise DataError(path, f'directory holds neither {MOVIELENS_RATINGS} nor {INTERACTIONS_CSV}')
  if path.lower().endswith('.csv') and is_file(path):
    return InputFiles(path, movielens=False, source=found)
  if not tf.io.gfile.exists(path):
    problem = f'no such file or directory, nor the dataset name {download.MOVIELENS_100K!r}'
    raise DataError(path, problem)
  raise DataError(path, 'not a .csv file or a dataset directory')


def load_dataset(source: Source, cache_dir: Optional[Source] = None) -> Dataset:
  """Loads a data source (see `locate_inputs`) into memory."""
  return load_input_files(locate_inputs(source, cache_dir))
