"""A sparse, large-catalogue test bed: generated data shaped like real sparse interaction logs.

    python -m ingest.sparse_testbed --output data/sparse-testbed

writes `interactions.csv`, `users.csv` and `items.csv` in the generic CSV schema (README, Input data),
so the pipeline and the benchmarks read it like any user's data. Deterministic for a seed.

The generative model, with the defaults of `TestbedConfig`:
- **Catalogue**: 10,000 items in 100 topics. An item's latent vector (32 dimensions) is its
  topic's centre plus noise; its genres are its topic's one or two genres (a fifth of the items
  get one genre at random instead), so content tells the topic only roughly.
- **Popularity**: long-tailed, ∝ rank^-0.8 (Zipf) over a random order of the items.
- **Users**: 2,000, each with 1 to 4 interests (topics, drawn by topic popularity); a user's
  taste in one interest is that topic's centre plus noise.
- **Histories**: lengths log-normal (median 35, clipped to 10..300): long histories. A user
  moves between interests as a sticky chain (staying with the current interest with
  probability 0.8), and picks each next item, never the same twice, with probability
  ∝ popularity · exp(sharpness · taste · item): what comes next depends on what came just
  before (sequential), and one user's interests are several directions, not one (non-linear
  for a single pooled vector).
- **Ratings**: 1–5 stars from the item's quality, the user's leniency and noise. They do not
  depend on when an item is picked, so later splits keep the train split's rating distribution
  (the pipeline stops on rating drift).
- **Arriving items** (`arriving_share`, 0 by default; the 'arriving' shape): that share of the
  items, drawn at random, arrive late: a user's picks of them move to the end of their
  timeline, as many as the evaluation protocol puts in test (`contract.split_rules`), and the
  others are dropped, so they have no train or eval interaction: the cold items of the
  evaluation's slices, known from `items.csv` like the others.

With the defaults: about 2,000 users, 10,000 items, about 100,000 interactions, density about
0.5% or less, and the most popular 10% of the items holding over 40% of the interactions
(`properties` measures these on a generated data set). On its test split EASE reaches NDCG@10
0.093 (`make bench-distill`).
"""
import argparse
import dataclasses
import sys
from typing import Dict

import numpy as np
import pandas as pd

from contract import features
from contract import split_rules
from ingest import generic_csv
from ingest import movielens_100k
from ingest import tables

FIRST_TIMESTAMP = 1_300_000_000
STEP_S = (60, 2 * 86_400)  # seconds between one user's consecutive interactions


@dataclasses.dataclass(frozen=True)
class TestbedConfig:
  """The generator's parameters (see the module docstring)."""
  num_users: int = 2_000
  num_items: int = 10_000
  num_topics: int = 100
  latent_dim: int = 32
  item_noise: float = 0.6  # spread of items around their topic's centre
  taste_noise: float = 0.4  # spread of a user's taste around an interest's topic centre
  max_interests: int = 4
  median_history: int = 35
  history_sigma: float = 0.8  # of the log-normal history lengths
  history_range: tuple = (10, 300)
  stay_probability: float = 0.8  # of keeping the current interest for the next item
  sequential: bool = True  # False: every next item's interest is drawn afresh (no order)
  sharpness: float = 8.0  # how strongly taste beats popularity
  zipf_exponent: float = 0.8
  random_genre_share: float = 0.2
  arriving_share: float = 0.0  # of the items, which arrive after every train and eval pick
  seed: int = 0


# Other shapes, by name (`--shape`); 'default' is the test bed above.
SHAPES = {
    'default': TestbedConfig(),
    # A wider catalogue with short histories and no sequential structure: 30,000 items, 8,000
    # users of median 8 interactions (3..60), items picked in no particular order.
    'wide-short': TestbedConfig(num_users=8_000, num_items=30_000, num_topics=300,
                                median_history=8, history_sigma=0.6, history_range=(3, 60),
                                sequential=False),
    # The test bed with 1% of its items arriving late (cold in the evaluation): about 10% of
    # the test interactions are theirs.
    'arriving': TestbedConfig(arriving_share=0.01),
}


def _unit(vectors: np.ndarray) -> np.ndarray:
  return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def _items(config: TestbedConfig, rng: np.random.RandomState):
  """(latent vectors, topic, popularity, items table) of the catalogue."""
  centres = _unit(rng.normal(size=(config.num_topics, config.latent_dim)))
  topics = rng.randint(config.num_topics, size=config.num_items)
  vectors = _unit(centres[topics] + config.item_noise / np.sqrt(config.latent_dim)
                  * rng.normal(size=(config.num_items, config.latent_dim)))
  popularity = 1.0 / (rng.permutation(config.num_items) + 1.0)**config.zipf_exponent
  genres_of_topic = [rng.choice(len(movielens_100k.GENRES), size=rng.randint(1, 3),
                                replace=False) for _ in range(config.num_topics)]
  random_genre = rng.uniform(size=config.num_items) < config.random_genre_share
  genres = []
  for item in range(config.num_items):
    picked = ([rng.randint(len(movielens_100k.GENRES))] if random_genre[item]
              else genres_of_topic[topics[item]])
    genres.append(features.GENRE_SEPARATOR.join(
        movielens_100k.GENRES[i] for i in sorted(picked)))
  years = rng.randint(1950, 2020, size=config.num_items)
  ids = [str(i + 1) for i in range(config.num_items)]
  table = tables.items_frame(ids, [f'Item {i} ({y})' for i, y in zip(ids, years)], genres,
                             years)
  return centres, vectors, topics, popularity, table


def _history(tastes: np.ndarray, vectors: np.ndarray, popularity: np.ndarray, length: int,
             config: TestbedConfig, rng: np.random.RandomState) -> np.ndarray:
  """One user's items in time order: a sticky walk over its interests (`tastes`)."""
  length = min(length, len(vectors))
  # Each interest's items in the order it would pick them (without replacement).
  weights = popularity * np.exp(config.sharpness * (tastes @ vectors.T))
  queues = [rng.choice(len(vectors), size=length, replace=False, p=w / w.sum())
            for w in weights]
  positions = np.zeros(len(tastes), dtype=int)
  taken, chosen = set(), []
  interest = rng.randint(len(tastes))
  while len(chosen) < length:
    if not config.sequential:
      interest = rng.randint(len(tastes))
    elif len(tastes) > 1 and rng.uniform() > config.stay_probability:
      interest = (interest + 1 + rng.randint(len(tastes) - 1)) % len(tastes)
    queue = queues[interest]
    while positions[interest] < length and queue[positions[interest]] in taken:
      positions[interest] += 1
    if positions[interest] == length:  # this interest is exhausted: use another
      interest = int(np.argmin(positions))
      continue
    item = queue[positions[interest]]
    taken.add(item)
    chosen.append(item)
  return np.array(chosen)


def _arrived_last(chosen: np.ndarray, arriving: np.ndarray) -> np.ndarray:
  """`chosen` (one user's items in time order) with its arriving items moved to the end, as
  many as the protocol's test split of the result holds (the first of them), the others
  dropped."""
  is_arriving = arriving[chosen]
  kept = chosen[~is_arriving]
  late = chosen[is_arriving]
  count = len(late)
  while count and count > split_rules.split_sizes(len(kept) + count, split_rules.EVAL_FRACTION,
                                                  split_rules.TEST_FRACTION)[1]:
    count -= 1
  return np.concatenate([kept, late[:count]])


def generate(config: TestbedConfig = TestbedConfig()) -> tables.Dataset:
  """The test bed as a `tables.Dataset` (interactions, users and items tables)."""
  rng = np.random.RandomState(config.seed)
  centres, vectors, topics, popularity, items = _items(config, rng)
  quality = rng.normal(scale=0.7, size=config.num_items)
  # Drawn from a generator of their own: a test bed without arriving items is unchanged.
  arriving = (np.random.RandomState(config.seed + 1).uniform(size=config.num_items)
              < config.arriving_share)
  topic_popularity = np.bincount(topics, weights=popularity, minlength=config.num_topics)
  low, high = config.history_range
  lengths = np.clip(np.round(config.median_history * np.exp(
      config.history_sigma * rng.normal(size=config.num_users))), low, high).astype(int)
  columns = {name: [] for name in tables.INTERACTION_COLUMNS}
  for user in range(config.num_users):
    interests = rng.choice(config.num_topics, size=rng.randint(1, config.max_interests + 1),
                           replace=False, p=topic_popularity / topic_popularity.sum())
    tastes = _unit(centres[interests] + config.taste_noise / np.sqrt(config.latent_dim)
                   * rng.normal(size=(len(interests), config.latent_dim)))
    chosen = _arrived_last(_history(tastes, vectors, popularity, lengths[user], config, rng),
                           arriving)
    ratings = np.clip(np.round(3.5 + quality[chosen] + rng.normal(scale=0.4)
                               + rng.normal(scale=0.6, size=len(chosen))), 1, 5)
    stamps = (FIRST_TIMESTAMP + rng.randint(0, 365 * 86_400)
              + np.cumsum(rng.randint(*STEP_S, size=len(chosen))))
    columns[features.USER_ID].extend([str(user + 1)] * len(chosen))
    columns[features.ITEM_ID].extend(items.index[chosen])
    columns[features.RATING].extend(ratings)
    columns[features.TIMESTAMP].extend(stamps)
  interactions = tables.interactions_frame(*(columns[name]
                                             for name in tables.INTERACTION_COLUMNS))
  user_ids = [str(user + 1) for user in range(config.num_users)]
  users = tables.users_frame(
      user_ids, rng.randint(18, 70, size=config.num_users),
      rng.choice(('M', 'F'), size=config.num_users).tolist(),
      rng.choice(('student', 'engineer', 'educator', 'artist', 'other'),
                 size=config.num_users).tolist(),
      [f'{code:05d}' for code in rng.randint(0, 100_000, size=config.num_users)])
  return tables.Dataset(interactions=interactions, users=users, items=items)


def properties(interactions: pd.DataFrame, num_items: int) -> Dict[str, float]:
  """What the module docstring promises, measured: users, items, interactions, density, the
  median history length, and the share of interactions on the most popular 10% of items."""
  counts = interactions[features.ITEM_ID].value_counts().to_numpy()
  users = interactions[features.USER_ID].nunique()
  top = counts[:max(1, num_items // 10)].sum()
  return {'users': users, 'items': num_items, 'interactions': len(interactions),
          'density': len(interactions) / (users * num_items),
          'median_history': float(interactions.groupby(features.USER_ID).size().median()),
          'top_decile_share': float(top / len(interactions))}


def write(dataset: tables.Dataset, directory: str) -> None:
  """Writes `dataset` as the generic CSV files in `directory`."""
  generic_csv.write_dataset(dataset, directory)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--output', required=True, help='directory for the CSV files')
  parser.add_argument('--seed', type=int, default=TestbedConfig.seed)
  parser.add_argument('--shape', choices=sorted(SHAPES), default='default',
                      help='the generator\'s parameters (SHAPES; default: the test bed)')
  args = parser.parse_args(argv)
  dataset = generate(dataclasses.replace(SHAPES[args.shape], seed=args.seed))
  write(dataset, args.output)
  print(properties(dataset.interactions, len(dataset.items)))
  return 0


if __name__ == '__main__':
  sys.exit(main())
