"""A small deterministic synthetic dataset, and a large one streamed to CSV.

Users and items get latent factors; users pick items with a long-tail (Zipf-like) popularity
weighted by their affinity and rate them 1..5 from that affinity. (Tests write the small one in
both input formats with `tests/input_writers.py`, so that they go through the real loaders.)

Arriving items (`generate(arriving_items=N)`): N more items, listed in the item side table like
the others, arrive at one time, `ARRIVAL_TIMESTAMP`. Each user's timeline is shifted so that
the arrival falls between the interactions the evaluation protocol puts in their train and eval
splits and those it puts in test (`contract.split_rules.split_sizes` with the project's
fractions); after the arrival, each interaction is with an arriving item with probability
`arriving_share` (picked, like the others, by popularity and affinity). So the arriving items
have no train or eval interaction, and about `arriving_share` of the test interactions are with
items unseen in train: the cold items of the evaluation's slices.

Genres follow the items' latent factors (arriving items' too): each genre has a direction in the
latent space, and an item's genres are those whose directions best match its factors, so an
item's genres tell which users like it, and a model can recommend a cold item from its content.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Tuple, Union

import numpy as np
import pandas as pd

from contract import features
from contract import split_rules
from ingest import generic_csv
from ingest import movielens_100k
from ingest import tables
from ingest.tables import Dataset

LATENT_DIM = 4
ZIPF_EXPONENT = 1.1
FIRST_TIMESTAMP = 874_000_000  # around the start of MovieLens 100k (September 1997)
DAY_S = 86_400
OCCUPATIONS = ('student', 'engineer', 'educator', 'artist', 'librarian', 'other')
GENDERS = ('M', 'F')
GENRES = ('Action', 'Comedy', 'Drama', 'Romance', 'Thriller', 'Sci-Fi', "Children's")
MAX_GENRES_PER_ITEM = 3
UNKNOWN_YEAR_FRACTION = 0.1
ARRIVAL_TIMESTAMP = FIRST_TIMESTAMP + 365 * DAY_S  # after every user's timeline unshifted
ARRIVING_SHARE = 0.1  # default share of the interactions after the arrival with arriving items


@dataclasses.dataclass(frozen=True)
class LatentFactors:
  """What `generate` drew and no model sees (`latent_factors`): rows in id order ('1', '2', ...).

  Attributes:
    users: [users, LATENT_DIM] user factors.
    items: [items, LATENT_DIM] item factors, the arriving items' after the others'.
    popularity: [items] Zipf-like popularity, drawn apart for the arriving items (which replace
      picks among themselves: `_arrivals`) and for the others; an item's genres follow its
      factors, its popularity follows nothing.
  """

  users: np.ndarray
  items: np.ndarray
  popularity: np.ndarray


def affinity(item_factors: np.ndarray, user_factors: np.ndarray) -> np.ndarray:
  """A user's affinity to items (to a user's items: [..., LATENT_DIM] by [LATENT_DIM]); a pick's
  weight is the item's popularity times exp(affinity)."""
  return item_factors @ user_factors / np.sqrt(LATENT_DIM)


def _ratings(affinities: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
  """Maps affinities to integer ratings 1..5, higher affinity giving higher ratings."""
  noisy = affinities + rng.normal(scale=0.3, size=affinities.shape)
  return np.clip(np.round(3.0 + 1.5 * noisy), 1, 5)


def _popularity(num_items: int, rng: np.random.RandomState) -> np.ndarray:
  """Long-tail (Zipf-like) popularity of the items, in a random order."""
  return 1.0 / (rng.permutation(num_items) + 1.0)**ZIPF_EXPONENT


def _user_interactions(
    factors: np.ndarray,
    item_factors: np.ndarray,
    popularity: np.ndarray,
    interactions_per_user: Tuple[int, int],
    rng: np.random.RandomState,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One user's (item index, rating, timestamp) arrays in time order, on distinct items."""
  num_items = len(item_factors)
  affinities = affinity(item_factors, factors)
  weights = popularity * np.exp(affinities)
  low, high = interactions_per_user
  count = min(rng.randint(low, high + 1), num_items)
  chosen = rng.choice(num_items, size=count, replace=False, p=weights / weights.sum())
  start = FIRST_TIMESTAMP + rng.randint(0, 180 * DAY_S)
  ratings = _ratings(affinities[chosen], rng)
  return chosen, ratings, start + np.cumsum(rng.randint(60, 3 * DAY_S, size=count))


def _interactions(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    popularity: np.ndarray,
    interactions_per_user: Tuple[int, int],
    rng: np.random.RandomState,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Returns (user index, item index, rating, timestamp) arrays, grouped by user in time order."""
  users, items, ratings, timestamps = [], [], [], []
  for user, factors in enumerate(user_factors):
    chosen, rated, stamps = _user_interactions(factors, item_factors, popularity,
                                               interactions_per_user, rng)
    users.append(np.full(len(chosen), user))
    items.append(chosen)
    ratings.append(rated)
    timestamps.append(stamps)
  return tuple(np.concatenate(column) for column in (users, items, ratings, timestamps))


def _ids(count: int) -> np.ndarray:
  return np.array([str(i + 1) for i in range(count)], dtype=object)


def _users_table(user_ids: np.ndarray, rng: np.random.RandomState):
  num_users = len(user_ids)
  return tables.users_frame(
      user_ids,
      rng.randint(18, 70, size=num_users),
      rng.choice(GENDERS, size=num_users).tolist(),
      rng.choice(OCCUPATIONS, size=num_users).tolist(),
      [f'{code:05d}' for code in rng.randint(0, 100_000, size=num_users)],
  )


def _genre_directions(seed: int) -> np.ndarray:
  """Unit directions of the `GENRES` in the latent space, one a row, from their own random
  stream (so that the other draws of a seed stay the same)."""
  directions = np.random.RandomState([seed, 2]).normal(size=(len(GENRES), LATENT_DIM))
  return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def _items_table(item_ids: np.ndarray, item_factors: np.ndarray, genre_directions: np.ndarray,
                 rng: np.random.RandomState):
  """The items side table: random years and titles; each item's genres are the 1 to
  `MAX_GENRES_PER_ITEM` (a random count) whose directions best match its factors."""
  num_items = len(item_ids)
  unknown_year = rng.uniform(size=num_items) < UNKNOWN_YEAR_FRACTION
  years = np.where(unknown_year, 0, rng.randint(1950, 1999, size=num_items))
  titles = [f'Item {i} ({y})' if y else f'Item {i}' for i, y in zip(item_ids, years)]
  counts = rng.randint(1, MAX_GENRES_PER_ITEM + 1, size=num_items)
  # Best match first; a stable sort, so that ties (none in practice) are deterministic.
  ranked = np.argsort(-(item_factors @ genre_directions.T), axis=1, kind='stable')
  genres = []
  for count, order in zip(counts, ranked):
    # In MovieLens flag order, so that a u.item round trip gives back the same string.
    names = sorted((GENRES[i] for i in order[:count]), key=movielens_100k.GENRES.index)
    genres.append(features.GENRE_SEPARATOR.join(names))
  return tables.items_frame(item_ids, titles, genres, years)


def _arrivals(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, timestamps: np.ndarray,
              user_factors: np.ndarray, arriving_factors: np.ndarray, popularity: np.ndarray,
              num_items: int, share: float, rng: np.random.RandomState
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """The interactions of `_interactions` (grouped by user, in time order) with the arriving
  items (indices num_items.. of the item ids) added: each user's timeline shifted so that
  `ARRIVAL_TIMESTAMP` falls just before their first test interaction under the protocol, and
  each interaction from then on, with probability `share`, changed to an arriving item the user
  has not picked yet."""
  items, ratings, timestamps = items.copy(), ratings.copy(), timestamps.copy()
  starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
  for start, end in zip(starts, np.r_[starts[1:], len(users)]):
    _, n_test = split_rules.split_sizes(end - start, split_rules.EVAL_FRACTION,
                                        split_rules.TEST_FRACTION)
    first_test = end - n_test
    if first_test == start:
      shift = ARRIVAL_TIMESTAMP - timestamps[start]
    else:
      gap = timestamps[first_test] - timestamps[first_test - 1]
      shift = ARRIVAL_TIMESTAMP - timestamps[first_test - 1] - rng.randint(1, gap + 1)
    timestamps[start:end] += shift
    changed = np.flatnonzero(rng.uniform(size=n_test) < share) + first_test
    if not len(changed):
      continue
    affinities = affinity(arriving_factors, user_factors[users[start]])
    weights = popularity * np.exp(affinities)
    picked = rng.choice(len(arriving_factors), size=min(len(changed), len(arriving_factors)),
                        replace=False, p=weights / weights.sum())
    changed = changed[:len(picked)]
    items[changed] = num_items + picked
    ratings[changed] = _ratings(affinities[picked], rng)
  return users, items, ratings, timestamps


def _factors(num_users: int, num_items: int, arriving_items: int, rng: np.random.RandomState,
             arrivals_rng: np.random.RandomState) -> LatentFactors:
  """The first draws of `generate`: the users', the items' and the arriving items' factors and
  popularity."""
  user_factors = rng.normal(size=(num_users, LATENT_DIM))
  item_factors = rng.normal(size=(num_items, LATENT_DIM))
  popularity = _popularity(num_items, rng)
  arriving_factors = arrivals_rng.normal(size=(arriving_items, LATENT_DIM))
  arriving_popularity = _popularity(arriving_items, arrivals_rng) if arriving_items else []
  return LatentFactors(users=user_factors, items=np.concatenate([item_factors, arriving_factors]),
                       popularity=np.concatenate([popularity, arriving_popularity]))


def latent_factors(num_users: int, num_items: int, seed: int = 0,
                   arriving_items: int = 0) -> LatentFactors:
  """The latent factors of `generate`'s data set for those arguments (whatever the others)."""
  return _factors(num_users, num_items, arriving_items, np.random.RandomState(seed),
                  np.random.RandomState([seed, 1]))


def generate(
    num_users: int = 60,
    num_items: int = 80,
    interactions_per_user: Tuple[int, int] = (15, 40),
    seed: int = 0,
    arriving_items: int = 0,
    arriving_share: float = ARRIVING_SHARE,
) -> Dataset:
  """Generates a deterministic dataset with users and items side tables.

  Ids are '1'..'N'. Each user has between `interactions_per_user` interactions (inclusive, at
  most `num_items`) on distinct items, with strictly increasing timestamps; the rows are
  shuffled. About 10% of items have an unknown year (0).

  With `arriving_items` > 0, that many more items (ids after the `num_items` others) arrive
  late (module docstring): about `arriving_share` of the test interactions of the project's
  split are with them, and none of the train or eval ones. Without them (the default) the data
  set is the same as before the option existed. Its latent factors: `latent_factors`.
  """
  if arriving_items < 0 or not 0.0 <= arriving_share <= 1.0:
    raise ValueError(f'need arriving_items >= 0 and arriving_share in [0, 1], got '
                     f'{arriving_items} and {arriving_share}')
  rng = np.random.RandomState(seed)
  arrivals_rng = np.random.RandomState([seed, 1])  # the default data set's draws stay the same
  user_ids, item_ids = _ids(num_users), _ids(num_items + arriving_items)
  factors = _factors(num_users, num_items, arriving_items, rng, arrivals_rng)
  item_factors, arriving_factors = factors.items[:num_items], factors.items[num_items:]
  users, items, ratings, timestamps = _interactions(
      factors.users, item_factors, factors.popularity[:num_items], interactions_per_user, rng)
  if arriving_items:
    users, items, ratings, timestamps = _arrivals(users, items, ratings, timestamps,
                                                  factors.users, arriving_factors,
                                                  factors.popularity[num_items:], num_items,
                                                  arriving_share, arrivals_rng)
  order = rng.permutation(len(users))
  interactions = tables.interactions_frame(user_ids[users[order]], item_ids[items[order]],
                                           ratings[order], timestamps[order])
  users_table = _users_table(user_ids, rng)
  genre_directions = _genre_directions(seed)
  items_table = _items_table(item_ids[:num_items], item_factors, genre_directions, rng)
  if arriving_items:
    items_table = pd.concat([
        items_table,
        _items_table(item_ids[num_items:], arriving_factors, genre_directions, arrivals_rng)
    ])
  return Dataset(interactions=interactions, users=users_table, items=items_table)


def write_large_csv(directory: Union[str, Path],
                    num_users: int,
                    num_items: int,
                    num_interactions: int,
                    seed: int = 0,
                    users_per_chunk: int = 1000) -> int:
  """Writes a data set of about `num_interactions` rows in the generic CSV schema, streaming.

  Same generative model as `generate`; each user gets between 0.2 and 1.8 times the mean
  number of interactions (at most `num_items`). Rows are written `users_per_chunk` users at a
  time, shuffled within the chunk, so memory is bounded by one chunk whatever the size. The
  side tables (small) are written whole, the items' genres following their factors as in
  `generate`. Deterministic for a seed. Returns the rows written.
  """
  if min(num_users, num_items, num_interactions) < 1:
    raise ValueError('num_users, num_items and num_interactions must be positive')
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  rng = np.random.RandomState(seed)
  user_ids, item_ids = _ids(num_users), _ids(num_items)
  _users_table(user_ids, rng).to_csv(directory / generic_csv.USERS_CSV)
  item_factors = rng.normal(size=(num_items, LATENT_DIM))
  _items_table(item_ids, item_factors, _genre_directions(seed), rng).to_csv(
      directory / generic_csv.ITEMS_CSV)
  popularity = _popularity(num_items, rng)
  mean = num_interactions / num_users
  per_user = (max(1, round(0.2 * mean)), max(1, round(1.8 * mean)))
  header = ','.join((features.USER_ID, features.ITEM_ID, features.RATING, features.TIMESTAMP))
  written = 0
  with open(directory / generic_csv.INTERACTIONS_CSV, 'w', encoding='utf-8', newline='') as out:
    out.write(header + '\n')
    for first in range(0, num_users, users_per_chunk):
      lines = []
      for user in range(first, min(first + users_per_chunk, num_users)):
        factors = rng.normal(size=LATENT_DIM)
        chosen, ratings, stamps = _user_interactions(factors, item_factors, popularity,
                                                     per_user, rng)
        lines.extend(f'{user_ids[user]},{item_ids[item]},{rating:g},{stamp}\n'
                     for item, rating, stamp in zip(chosen, ratings, stamps))
      out.writelines(lines[i] for i in rng.permutation(len(lines)))
      written += len(lines)
  return written
