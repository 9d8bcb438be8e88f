"""How well anything can rank the cold items of the generated data, from what the generator drew:
orders of each user's cold items side by side in one run.

    python -m benchmarks.cold_ceiling [--users 2000] [--items 4000] [--arriving 400] [--seed 0]

The data set is `ingest.synthetic`'s with arriving items (the one docs/results.md measures cold
start on, by default), split by the protocol. For the users with cold test items (the
RetrievalEvaluator's cold-items slice), the cold items (no train interactions: the arrivals and
any other item nobody picked in train) are ordered by

- `random`;
- `factors`: the item's true affinity to the user, what a perfect content model would know. The
  generator picks an arriving item with a weight of its popularity times exp(affinity), and its
  popularity is drawn apart from its factors (and from anything in items.csv), so no ranking
  from content and the user's factors does better in expectation: this is content's ceiling;
- `factors and popularity`: the generator's pick weight itself: what only the item's own
  interactions could tell.

It prints, for each order, Recall@K among the cold items alone (K = 50 is the RetrievalEvaluator's
`recall@50_among_cold_items`), which equals the cold-item Recall@100 with a quota of K fresh
places, also as a multiple of a random ranking's cold-item Recall@100 (100 / catalogue).
"""
import argparse
import sys
from typing import Dict, Optional, Sequence

import numpy as np

from contract import features
from contract import split_rules
from evaluation import metrics
from evaluation import protocol
from ingest import synthetic

KS = (10, 20, 50)  # places among the cold items (a quota of that many fresh places)
TOP = 100  # the depth of the cold-item recall that the quota is compared at


def ceiling(users: int = 2000, items: int = 4000, arriving: int = 400, seed: int = 0,
            interactions_per_user=(20, 80)) -> Dict[str, Dict[str, float]]:
  """Each order's (module docstring) recall@K among the cold items, for `KS`, on the generated
  data set of those arguments; plus the slice's size and a random ranking's cold-item recall."""
  dataset = synthetic.generate(num_users=users, num_items=items,
                               interactions_per_user=interactions_per_user, seed=seed,
                               arriving_items=arriving)
  factors = synthetic.latent_factors(users, items, seed, arriving)
  interactions = dataset.interactions.reset_index(drop=True)
  splits = split_rules.assign_splits(interactions).to_numpy()
  eval_data = protocol.build_eval_data(interactions, splits, features.TEST_SPLIT,
                                       catalogue_items=[str(item) for item in dataset.items.index])
  cold = protocol.build_slices(interactions, splits, eval_data)[protocol.COLD_ITEMS].eval_data
  cold_columns = ~eval_data.items.isin(interactions[splits == features.TRAIN_SPLIT][
      features.ITEM_ID].unique())
  # Ids are '1'..'N': factor rows in id order.
  user_rows = cold.users.astype(int).to_numpy() - 1
  item_rows = eval_data.items.astype(int).to_numpy()[cold_columns] - 1
  affinities = synthetic.affinity(factors.items[item_rows], factors.users[user_rows].T).T
  orders = {
      'random': np.random.RandomState(seed).uniform(size=affinities.shape),
      'factors': affinities,
      'factors and popularity': factors.popularity[item_rows] * np.exp(affinities),
  }
  results = {}
  for name, cold_scores in orders.items():
    scores = np.full((len(cold.users), len(eval_data.items)), -np.inf)
    scores[:, cold_columns] = cold_scores
    top = metrics.top_from_scores(scores, cold, max(KS))
    results[name] = {key: value for key, value in metrics.metrics_of_top(top, cold, KS).items()
                     if key.startswith('recall@')}
  results['data'] = {'users with cold test items': len(cold.users),
                     'cold items': int(cold_columns.sum()), 'catalogue': len(eval_data.items),
                     'random cold-item recall@100': TOP / len(eval_data.items)}
  return results


def table(results: Dict[str, Dict[str, float]]) -> str:
  """The orders' figures as a Markdown table."""
  random_top = results['data']['random cold-item recall@100']
  header = ['order'] + [f'among cold R@{k} (quota {k}: × random R@{TOP})' for k in KS]
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for name, row in results.items():
    if name != 'data':
      recalls = [row[f'recall@{k}'] for k in KS]
      lines.append(f'| {name} | ' + ' | '.join(
          f'{recall:.3f} ({recall / random_top:.1f} ×)' for recall in recalls) + ' |')
  return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--users', type=int, default=2000)
  parser.add_argument('--items', type=int, default=4000)
  parser.add_argument('--arriving', type=int, default=400)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  results = ceiling(args.users, args.items, args.arriving, args.seed)
  print(', '.join(f'{key} {value:.4g}' for key, value in results['data'].items()))
  print(table(results))
  return 0


if __name__ == '__main__':
  sys.exit(main())
