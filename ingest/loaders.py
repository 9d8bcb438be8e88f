"""Finds a data source's files, streams its validated interactions, and loads side tables.

`locate_inputs` resolves a source to its `InputFiles`; `read_interactions` streams the
interactions row by row (what RawExampleGen's Beam job uses, whatever the file size);
`load_users` / `load_items` load the small side tables; `load_dataset` loads everything into an
in-memory `Dataset` (`ingest.tables`) for small data (baselines, tests).

Two input formats are understood: the documented generic CSV schema (`ingest.generic_csv`) and
the native MovieLens 100k files (`ingest.movielens_100k`). Both are read one row at a time
(`ingest.delimited`, `ingest.cells`), so that every problem is reported as a `DataError` naming
the file, its 1-based line number and the column. Nothing is written here. Files are opened with
`tf.io.gfile`, so a source can be on any file system TensorFlow reads (local paths, gs://, s3://,
hdfs://, ram://); paths are strings.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, replace
from typing import Iterator, List, Optional, Sequence

import pandas as pd
import tensorflow as tf

from contract import features
from ingest import download
from ingest import generic_csv
from ingest import movielens_100k
from ingest import tables
from ingest.delimited import Source
from ingest.errors import DataError
from ingest.tables import Dataset, Interaction

AUTO_FEEDBACK = 'auto'  # the feedback setting that lets the data tell (`resolve_feedback`)


def join(directory: Source, name: str) -> str:
  """`directory`/`name` for local paths and URLs (gs://bucket/dir) alike."""
  directory = os.fspath(directory)
  return (posixpath.join(directory, name) if '://' in directory
          else os.path.join(directory, name))


def is_file(path: Source) -> bool:
  """Whether `path` exists and is not a directory, on any file system TensorFlow reads."""
  path = os.fspath(path)
  return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def read_interactions(path: Source, movielens: bool = False) -> Iterator[Interaction]:
  """Streams the validated rows of `interactions.csv` (generic schema: header row, user_id,
  item_id, timestamp, optional rating defaulting to 1.0) or of MovieLens `u.data`.

  Memory stays constant whatever the file size; the first bad row raises a `DataError`.
  """
  if movielens:
    return movielens_100k.read_ratings(path)
  return generic_csv.read_interactions(path)


def detect_feedback(files: 'InputFiles') -> str:
  """The kind of feedback of the interactions: `features.IMPLICIT` when they have no rating
  column (generic schema) or one rating value in every row, else `features.EXPLICIT`.

  Reads the header, then streams the rows only until a second rating value shows, so explicit
  data stops at its first rows; a constant column is read to the end (and validated)."""
  if not files.movielens:
    if features.RATING not in generic_csv.interaction_columns(files.interactions):
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


def csv_files(directory: Source) -> 'InputFiles':
  """The generic schema's files in `directory`: interactions.csv and the side tables present."""
  users = join(directory, generic_csv.USERS_CSV)
  items = join(directory, generic_csv.ITEMS_CSV)
  return InputFiles(join(directory, generic_csv.INTERACTIONS_CSV), movielens=False,
                    users=users if is_file(users) else None,
                    items=items if is_file(items) else None)


def load_movielens_100k(directory: Source) -> Dataset:
  """Loads the native MovieLens 100k files: u.data and, when present, u.item and u.user.

  Genres are the names of the set u.item flags; the year comes from the release date (0 when
  the date is missing).
  """
  return load_input_files(movielens_files(directory))


def movielens_files(directory: Source) -> 'InputFiles':
  """The native MovieLens 100k files in `directory`: u.data and u.user / u.item when present."""
  users = join(directory, movielens_100k.USERS_FILE)
  items = join(directory, movielens_100k.ITEMS_FILE)
  return InputFiles(join(directory, movielens_100k.RATINGS_FILE), movielens=True,
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
  if files.movielens:
    return movielens_100k.load_users(files.users)
  return generic_csv.load_users_csv(files.users)


def load_items(files: InputFiles, text_columns: Sequence[str] = ()) -> Optional[pd.DataFrame]:
  """The items side table of `files`, or None when there is none; a generic items.csv read
  with the free-text `text_columns` it may have (`generic_csv.load_items_csv`)."""
  if files.items is None:
    return None
  if files.movielens:
    return movielens_100k.load_items(files.items)
  return generic_csv.load_items_csv(files.items, text_columns)


def load_input_files(files: InputFiles, item_text_columns: Sequence[str] = ()) -> Dataset:
  """Loads every table of `files` into memory (for small data; RawExampleGen streams instead)."""
  return Dataset(
      interactions=tables.interactions_table(
          read_interactions(files.interactions, files.movielens)),
      users=load_users(files),
      items=load_items(files, item_text_columns),
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
    if is_file(join(path, movielens_100k.RATINGS_FILE)):
      return replace(movielens_files(path), source=found)
    if is_file(join(path, generic_csv.INTERACTIONS_CSV)):
      return replace(csv_files(path), source=found)
    raise DataError(path, f'directory holds neither {movielens_100k.RATINGS_FILE} nor '
                    f'{generic_csv.INTERACTIONS_CSV}')
  if path.lower().endswith('.csv') and is_file(path):
    return InputFiles(path, movielens=False, source=found)
  if not tf.io.gfile.exists(path):
    problem = f'no such file or directory, nor the dataset name {download.MOVIELENS_100K!r}'
    raise DataError(path, problem)
  raise DataError(path, 'not a .csv file or a dataset directory')


def load_dataset(source: Source, cache_dir: Optional[Source] = None) -> Dataset:
  """Loads a data source (see `locate_inputs`) into memory."""
  return load_input_files(locate_inputs(source, cache_dir))
