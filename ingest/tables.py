"""The tables of a data set, whatever its input format: their columns, how each column's cells
parse, and the frames they are loaded into (`Dataset`); interactions are also streamed one
validated row at a time (`Interaction`, `interactions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd

from contract import features
from ingest import cells
from ingest import delimited
from ingest.cells import Parser
from ingest.errors import DataError

# Column order of the tables: also the field order of u.data and u.user.
INTERACTION_COLUMNS = (features.USER_ID, features.ITEM_ID, features.RATING, features.TIMESTAMP)
USER_COLUMNS = (features.USER_ID,) + features.USER_SIDE_FEATURES
ITEM_COLUMNS = (features.ITEM_ID,) + features.ITEM_SIDE_FEATURES

IMPLICIT_RATING = 1.0  # the rating of an interaction without one (implicit feedback)

INTERACTION_PARSERS: Mapping[str, Parser] = {
    features.USER_ID: cells.identifier,
    features.ITEM_ID: cells.identifier,
    features.RATING: cells.number,
    features.TIMESTAMP: cells.timestamp,
}
USER_PARSERS: Mapping[str, Parser] = {
    features.USER_ID: cells.identifier,
    features.AGE: cells.optional_integer,
    features.GENDER: cells.optional_text,
    features.OCCUPATION: cells.optional_text,
    features.ZIP_CODE: cells.optional_text,
}
ITEM_PARSERS: Mapping[str, Parser] = {
    features.ITEM_ID: cells.identifier,
    features.TITLE: cells.optional_text,
    features.GENRES: cells.optional_text,
    features.YEAR: cells.optional_integer,
}


@dataclass(frozen=True)
class Dataset:
  """Interactions plus optional side tables.

  `interactions` has columns USER_ID (str), ITEM_ID (str), RATING (float32) and
  TIMESTAMP (int64). `users` is indexed by USER_ID with AGE (int64), GENDER, OCCUPATION and
  ZIP_CODE (str); `items` is indexed by ITEM_ID with TITLE (str), GENRES (str joined by
  `features.GENRE_SEPARATOR`) and YEAR (int64, 0 when unknown), and ITEM_TEXT (str, '' when
  none) when items.csv was read with declared text columns.
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
    texts: Optional[Sequence[str]] = None,
) -> pd.DataFrame:
  """Builds an items table indexed by ITEM_ID with the `Dataset` column types, and an ITEM_TEXT
  column (str, '' when an item has none) when `texts` are given."""
  columns = {
      features.TITLE: pd.Series(titles, dtype=object).to_numpy(),
      features.GENRES: pd.Series(genres, dtype=object).to_numpy(),
      features.YEAR: np.asarray(years, dtype=np.int64),
  }
  if texts is not None:
    columns[features.ITEM_TEXT] = pd.Series(texts, dtype=object).to_numpy()
  return pd.DataFrame(columns, index=pd.Index(item_ids, dtype=object, name=features.ITEM_ID))


class Interaction(NamedTuple):
  """One validated interaction and the 1-based line of the file where its row starts."""
  line: int
  user_id: str
  item_id: str
  rating: float
  timestamp: int


def interactions(path: str, rows: Iterable[delimited.Row],
                 names: Sequence[str]) -> Iterator[Interaction]:
  """Streams the validated interactions of the data `rows` of the file at `path`, whose columns
  are `names` (a missing rating column gives `IMPLICIT_RATING`); a file without data rows
  raises a `DataError`."""
  empty = True
  for number, values in delimited.parsed_rows(path, rows, names, INTERACTION_PARSERS):
    empty = False
    yield Interaction(number, values[features.USER_ID], values[features.ITEM_ID],
                      values.get(features.RATING, IMPLICIT_RATING), values[features.TIMESTAMP])
  if empty:
    raise DataError(path, 'no data rows after the header', row=2)


def interactions_table(rows: Iterable[Interaction]) -> pd.DataFrame:
  """The interactions frame of streamed `rows`."""
  user_ids, item_ids, ratings, timestamps = [], [], [], []
  for row in rows:
    user_ids.append(row.user_id)
    item_ids.append(row.item_id)
    ratings.append(row.rating)
    timestamps.append(row.timestamp)
  return interactions_frame(user_ids, item_ids, ratings, timestamps)
