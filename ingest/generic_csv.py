"""The documented generic input schema: CSV files with a header row.

`write_dataset` writes a `tables.Dataset` in it. `interactions.csv` (user_id, item_id, timestamp
and optional rating; a missing rating column
means implicit feedback, rating 1.0), optional `users.csv` (user_id, age, gender, occupation,
zip_code) and optional `items.csv` (item_id, title, genres, year, and the free-text columns a
run declares: `TransformHParams.item_text_columns`); other columns are ignored and missing
optional columns or empty optional values become `features.UNKNOWN` or 0 ('' for free text).
"""

from __future__ import annotations

import csv
import os
from typing import Iterator, List, Mapping, Sequence

import pandas as pd

from contract import features
from ingest import cells
from ingest import delimited
from ingest import tables
from ingest.cells import Parser
from ingest.delimited import Columns, Row
from ingest.tables import Interaction

INTERACTIONS_CSV = 'interactions.csv'
USERS_CSV = 'users.csv'
ITEMS_CSV = 'items.csv'

# The columns interactions.csv must have.
REQUIRED_INTERACTION_COLUMNS = (features.USER_ID, features.ITEM_ID, features.TIMESTAMP)


def _rows(path: str) -> Iterator[Row]:
  return delimited.rows(path, ',', 'utf-8-sig', csv.QUOTE_MINIMAL)


def interaction_columns(path: str) -> List[str]:
  """The column names of the header of an interactions.csv, checked."""
  return delimited.header(path, _rows(path), REQUIRED_INTERACTION_COLUMNS)


def read_interactions(path: delimited.Source) -> Iterator[Interaction]:
  """Streams the validated rows of an interactions.csv: header row, user_id, item_id,
  timestamp, optional rating defaulting to 1.0."""
  path = os.fspath(path)
  rows = _rows(path)
  names = delimited.header(path, rows, REQUIRED_INTERACTION_COLUMNS)
  yield from tables.interactions(path, rows, names)


def _read_csv(path: str, required: Sequence[str], parsers: Mapping[str, Parser]) -> Columns:
  rows = _rows(path)
  names = delimited.header(path, rows, required)
  return delimited.parse(path, rows, names, parsers)


def load_interactions_csv(path: delimited.Source) -> pd.DataFrame:
  """Loads `interactions.csv`: user_id, item_id, timestamp and optional rating (default 1.0)."""
  return tables.interactions_table(read_interactions(path))


def _load_side_csv(path: str, names: Sequence[str], parsers: Mapping[str, Parser]) -> List[list]:
  """Parses a side table keyed by `names[0]`; returns its columns in `names` order. A missing
  optional column is parsed as empty text, giving `features.UNKNOWN` or 0."""
  numbers, columns = _read_csv(path, names[:1], parsers)
  delimited.check_unique(path, numbers, columns[names[0]], names[0])
  return [
      columns[name] if name in columns else [parsers[name]('')] * len(numbers) for name in names
  ]


def load_users_csv(path: delimited.Source) -> pd.DataFrame:
  """Loads `users.csv`: user_id and optional age, gender, occupation, zip_code."""
  return tables.users_frame(
      *_load_side_csv(os.fspath(path), tables.USER_COLUMNS, tables.USER_PARSERS))


def load_items_csv(path: delimited.Source, text_columns: Sequence[str] = ()) -> pd.DataFrame:
  """Loads `items.csv`: item_id and optional title, genres ('|'-separated), year; with
  `text_columns` (free-text columns such as a description and tags, each optional: a missing
  one is empty), also `features.ITEM_TEXT`, their non-empty values joined by spaces."""
  text_columns = tuple(text_columns)
  clashes = [name for name in text_columns if name in tables.ITEM_COLUMNS]
  if clashes:
    raise ValueError(f'item text columns {clashes} are items.csv\'s own columns')
  columns = _load_side_csv(os.fspath(path), tables.ITEM_COLUMNS + text_columns,
                           {**tables.ITEM_PARSERS, **dict.fromkeys(text_columns, cells.free_text)})
  known = len(tables.ITEM_COLUMNS)
  if not text_columns:
    return tables.items_frame(*columns)
  texts = [' '.join(part for part in parts if part) for parts in zip(*columns[known:])]
  return tables.items_frame(*columns[:known], texts=texts)


def write_dataset(dataset: tables.Dataset, directory: str) -> str:
  """Writes `dataset` as interactions.csv, and users.csv / items.csv for the side tables it
  has, into `directory` (made if missing; a local path); returns `directory`."""
  os.makedirs(directory, exist_ok=True)
  dataset.interactions.to_csv(os.path.join(directory, INTERACTIONS_CSV), index=False)
  for table, name in ((dataset.users, USERS_CSV), (dataset.items, ITEMS_CSV)):
    if table is not None:
      table.to_csv(os.path.join(directory, name))
  return directory
