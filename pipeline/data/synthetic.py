"""A small deterministic synthetic dataset, and writers for both input formats.

Users and items get latent factors; users pick items with a long-tail (Zipf-like) popularity
weighted by their affinity and rate them 1..5 from that affinity. The writers produce the native
MovieLens 100k files and the generic CSV schema so that tests go through the real loaders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple, Union

import numpy as np

from models import features
from pipeline.data import loaders
from pipeline.data.loaders import Dataset

LATENT_DIM = 4
ZIPF_EXPONENT = 1.1
FIRST_TIMESTAMP = 874_000_000  # around the start of MovieLens 100k (September 1997)
DAY_S = 86_400
OCCUPATIONS = ('student', 'engineer', 'educator', 'artist', 'librarian', 'other')
GENDERS = ('M', 'F')
GENRES = ('Action', 'Comedy', 'Drama', 'Romance', 'Thriller', 'Sci-Fi', "Children's")
UNKNOWN_YEAR_FRACTION = 0.1


def _ratings(affinity: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
  """Maps affinities to integer ratings 1..5, higher affinity giving higher ratings."""
  noisy = affinity + rng.normal(scale=0.3, size=affinity.shape)
  return np.clip(np.round(3.0 + 1.5 * noisy), 1, 5)


def _interactions(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    interactions_per_user: Tuple[int, int],
    rng: np.random.RandomState,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Returns (user index, item index, rating, timestamp) arrays, grouped by user in time order."""
  num_items = len(item_factors)
  popularity = 1.0 / (rng.permutation(num_items) + 1.0)**ZIPF_EXPONENT
  low, high = interactions_per_user
  users, items, ratings, timestamps = [], [], [], []
  for user, factors in enumerate(user_factors):
    affinity = item_factors @ factors / np.sqrt(LATENT_DIM)
    weights = popularity * np.exp(affinity)
    count = min(rng.randint(low, high + 1), num_items)
    chosen = rng.choice(num_items, size=count, replace=False, p=weights / weights.sum())
    start = FIRST_TIMESTAMP + rng.randint(0, 180 * DAY_S)
    users.append(np.full(count, user))
    items.append(chosen)
    ratings.append(_ratings(affinity[chosen], rng))
    timestamps.append(start + np.cumsum(rng.randint(60, 3 * DAY_S, size=count)))
  return tuple(np.concatenate(column) for column in (users, items, ratings, timestamps))


def generate(
    num_users: int = 60,
    num_items: int = 80,
    interactions_per_user: Tuple[int, int] = (15, 40),
    seed: int = 0,
) -> Dataset:
  """Generates a deterministic dataset with users and items side tables.

  Ids are '1'..'N'. Each user has between `interactions_per_user` interactions (inclusive, at
  most `num_items`) on distinct items, with strictly increasing timestamps; the rows are
  shuffled. About 10% of items have an unknown year (0).
  """
  rng = np.random.RandomState(seed)
  user_ids = np.array([str(i + 1) for i in range(num_users)], dtype=object)
  item_ids = np.array([str(i + 1) for i in range(num_items)], dtype=object)
  user_factors = rng.normal(size=(num_users, LATENT_DIM))
  item_factors = rng.normal(size=(num_items, LATENT_DIM))
  users, items, ratings, timestamps = _interactions(user_factors, item_factors,
                                                    interactions_per_user, rng)
  order = rng.permutation(len(users))
  interactions = loaders.interactions_frame(user_ids[users[order]], item_ids[items[order]],
                                            ratings[order], timestamps[order])

  user_table = loaders.users_frame(
      user_ids,
      rng.randint(18, 70, size=num_users),
      rng.choice(GENDERS, size=num_users).tolist(),
      rng.choice(OCCUPATIONS, size=num_users).tolist(),
      [f'{code:05d}' for code in rng.randint(0, 100_000, size=num_users)],
  )

  unknown_year = rng.uniform(size=num_items) < UNKNOWN_YEAR_FRACTION
  years = np.where(unknown_year, 0, rng.randint(1950, 1999, size=num_items))
  titles = [f'Item {i} ({y})' if y else f'Item {i}' for i, y in zip(item_ids, years)]
  genres = []
  for _ in range(num_items):
    picked = rng.choice(len(GENRES), size=rng.randint(1, 4), replace=False)
    # In MovieLens flag order, so that a u.item round trip gives back the same string.
    names = sorted((GENRES[i] for i in picked), key=loaders.MOVIELENS_GENRES.index)
    genres.append(features.GENRE_SEPARATOR.join(names))
  item_table = loaders.items_frame(item_ids, titles, genres, years)
  return Dataset(interactions=interactions, users=user_table, items=item_table)


def _genre_flags(genres: str) -> str:
  names = set(genres.split(features.GENRE_SEPARATOR))
  unknown = names.difference(loaders.MOVIELENS_GENRES)
  if unknown:
    raise ValueError(f'genres not in MovieLens: {sorted(unknown)}')
  return '|'.join('1' if genre in names else '0' for genre in loaders.MOVIELENS_GENRES)


def write_movielens_100k(dataset: Dataset, directory: Union[str, Path]) -> Path:
  """Writes u.data, and u.item / u.user for the side tables present, in the native format."""
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  frame = dataset.interactions
  with open(directory / loaders.MOVIELENS_RATINGS, 'w', encoding='latin-1', newline='') as out:
    for user, item, rating, timestamp in zip(
        frame[features.USER_ID],
        frame[features.ITEM_ID],
        frame[features.RATING],
        frame[features.TIMESTAMP],
    ):
      out.write(f'{user}\t{item}\t{float(rating):g}\t{timestamp}\n')
  if dataset.items is not None:
    with open(directory / loaders.MOVIELENS_ITEMS, 'w', encoding='latin-1', newline='') as out:
      for item, row in dataset.items.iterrows():
        date = f'01-Jan-{row[features.YEAR]}' if row[features.YEAR] else ''
        flags = _genre_flags(row[features.GENRES])
        out.write(f'{item}|{row[features.TITLE]}|{date}|||{flags}\n')
  if dataset.users is not None:
    with open(directory / loaders.MOVIELENS_USERS, 'w', encoding='latin-1', newline='') as out:
      for user, row in dataset.users.iterrows():
        fields = [user] + [str(row[name]) for name in features.USER_SIDE_FEATURES]
        out.write('|'.join(fields) + '\n')
  return directory


def write_csv(dataset: Dataset, directory: Union[str, Path]) -> Path:
  """Writes interactions.csv, and users.csv / items.csv for the side tables present."""
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  dataset.interactions.to_csv(directory / loaders.INTERACTIONS_CSV, index=False)
  if dataset.users is not None:
    dataset.users.to_csv(directory / loaders.USERS_CSV)
  if dataset.items is not None:
    dataset.items.to_csv(directory / loaders.ITEMS_CSV)
  return directory
