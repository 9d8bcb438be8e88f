"""The native MovieLens 100k files: `u.data` (the ratings), `u.item` and `u.user`.

Genres are the names of the set u.item flags; the year comes from the release date (0 when the
date is missing).
"""

from __future__ import annotations

import csv
import os
import re
from typing import Iterator, Mapping, Sequence

import pandas as pd

from contract import features
from ingest import cells
from ingest import delimited
from ingest import tables
from ingest.cells import Parser
from ingest.delimited import Columns
from ingest.tables import Interaction

RATINGS_FILE = 'u.data'
ITEMS_FILE = 'u.item'
USERS_FILE = 'u.user'
# The 19 genre flags of u.item, in column order (as listed in u.genre).
GENRES = (
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
RELEASE_DATE = 'release date'
RELEASE_DATE_PATTERN = re.compile(r'\d{1,2}-[A-Za-z]{3}-(\d{4})')
ITEM_COLUMNS = (
    (features.ITEM_ID, features.TITLE, RELEASE_DATE, 'video release date', 'IMDb URL') +
    GENRES)


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


ITEM_PARSERS: Mapping[str, Parser] = {
    features.ITEM_ID: cells.identifier,
    features.TITLE: cells.optional_text,
    RELEASE_DATE: _release_year,
    **{
        genre: _genre_flag for genre in GENRES
    },
}


def read_ratings(path: delimited.Source) -> Iterator[Interaction]:
  """Streams the validated rows of `u.data` (user id, item id, rating, timestamp; no header)."""
  path = os.fspath(path)
  yield from tables.interactions(path, delimited.rows(path, '\t', 'latin-1', csv.QUOTE_NONE),
                                 tables.INTERACTION_COLUMNS)


def _read_movielens(path: str, delimiter: str, names: Sequence[str],
                    parsers: Mapping[str, Parser]) -> Columns:
  return delimited.parse(path, delimited.rows(path, delimiter, 'latin-1', csv.QUOTE_NONE), names,
                         parsers)


def load_items(path: str) -> pd.DataFrame:
  """Loads `u.item` as the items table."""
  numbers, columns = _read_movielens(path, '|', ITEM_COLUMNS, ITEM_PARSERS)
  delimited.check_unique(path, numbers, columns[features.ITEM_ID], features.ITEM_ID)
  genres = [
      features.GENRE_SEPARATOR.join(genre for genre, on in zip(GENRES, flags) if on) or
      features.UNKNOWN for flags in zip(*(columns[genre] for genre in GENRES))
  ]
  return tables.items_frame(columns[features.ITEM_ID], columns[features.TITLE], genres,
                            columns[RELEASE_DATE])


def load_users(path: str) -> pd.DataFrame:
  """Loads `u.user` as the users table."""
  numbers, columns = _read_movielens(path, '|', tables.USER_COLUMNS, tables.USER_PARSERS)
  delimited.check_unique(path, numbers, columns[features.USER_ID], features.USER_ID)
  return tables.users_frame(*(columns[name] for name in tables.USER_COLUMNS))
