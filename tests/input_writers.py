"""Writers of a `Dataset` in both input formats, the native MovieLens 100k files and the generic
CSV schema (also cut into spans), so that tests go through the real loaders."""
from pathlib import Path
from typing import List, Union

import numpy as np

from contract import features
from ingest import generic_csv
from ingest import movielens_100k
from ingest.tables import Dataset


def _genre_flags(genres: str) -> str:
  names = set(genres.split(features.GENRE_SEPARATOR))
  unknown = names.difference(movielens_100k.GENRES)
  if unknown:
    raise ValueError(f'genres not in MovieLens: {sorted(unknown)}')
  return '|'.join('1' if genre in names else '0' for genre in movielens_100k.GENRES)


def write_movielens_100k(dataset: Dataset, directory: Union[str, Path]) -> Path:
  """Writes u.data, and u.item / u.user for the side tables present, in the native format."""
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  frame = dataset.interactions
  with open(directory / movielens_100k.RATINGS_FILE, 'w', encoding='latin-1', newline='') as out:
    for user, item, rating, timestamp in zip(
        frame[features.USER_ID],
        frame[features.ITEM_ID],
        frame[features.RATING],
        frame[features.TIMESTAMP],
    ):
      out.write(f'{user}\t{item}\t{float(rating):g}\t{timestamp}\n')
  if dataset.items is not None:
    with open(directory / movielens_100k.ITEMS_FILE, 'w', encoding='latin-1', newline='') as out:
      for item, row in dataset.items.iterrows():
        date = f'01-Jan-{row[features.YEAR]}' if row[features.YEAR] else ''
        flags = _genre_flags(row[features.GENRES])
        out.write(f'{item}|{row[features.TITLE]}|{date}|||{flags}\n')
  if dataset.users is not None:
    with open(directory / movielens_100k.USERS_FILE, 'w', encoding='latin-1', newline='') as out:
      for user, row in dataset.users.iterrows():
        fields = [user] + [str(row[name]) for name in features.USER_SIDE_FEATURES]
        out.write('|'.join(fields) + '\n')
  return directory


def write_csv(dataset: Dataset, directory: Union[str, Path]) -> Path:
  """Writes interactions.csv, and users.csv / items.csv for the side tables present."""
  return Path(generic_csv.write_dataset(dataset, str(directory)))


def write_spans(dataset: Dataset, directory: Union[str, Path], count: int) -> List[Dataset]:
  """`dataset`'s interactions cut by time into `count` drops, `directory`/span-1, ... in the
  documented schema, each with the side tables, except that the first drop's item titles are
  older ones ('Old title'); returns the drops' datasets, oldest first."""
  interactions = dataset.interactions.sort_values(features.TIMESTAMP, kind='stable')
  bounds = np.quantile(interactions[features.TIMESTAMP], np.linspace(0, 1, count + 1))[1:-1]
  drop_of = np.searchsorted(bounds, interactions[features.TIMESTAMP], side='right')
  drops = []
  for number in range(count):
    items = dataset.items
    if number == 0 and items is not None:
      items = items.assign(**{features.TITLE: 'Old title'})
    drop = Dataset(interactions[drop_of == number].reset_index(drop=True), dataset.users, items)
    write_csv(drop, Path(directory) / f'span-{number + 1}')
    drops.append(drop)
  return drops
