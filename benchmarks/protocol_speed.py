"""Speed of the evaluation protocol's data steps, side by side in one run:

    python -m benchmarks.protocol_speed [--rows 100000] [--repeats 3] \\
        [--movielens ../shared/data/movielens-100k]

- split + history: `ingest.history.add_history` (50 items) then `contract.split_rules.assign_splits`
  on `--rows` generated interactions (1,000 users, 2,000 items, random timestamps);
- popularity ranking metrics: `evaluation.metrics.ranking_metrics` of the popularity baseline's
  scores on MovieLens 100K's test split, when the MovieLens copy exists (the shared copy beside
  the checkout by default); reported as not run otherwise.

Prints the best and the median wall time of `--repeats` runs of each. For reference, the tests
used to bound them at 3 s and 1 s on a development machine; they are figures now, not tests,
as they depend on the machine and its load.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from contract import features
from contract import split_rules
from evaluation import baselines
from evaluation import metrics
from evaluation import protocol
from ingest import history
from ingest import loaders
from ingest import movielens_100k
from ingest import tables

HISTORY_LENGTH = 50
SHARED_MOVIELENS = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'movielens-100k'


def generated_interactions(rows: int, seed: int = 0):
  """`rows` interactions of 1,000 users with 2,000 items at random timestamps."""
  rng = np.random.RandomState(seed)
  return tables.interactions_frame(rng.randint(0, 1000, rows).astype(str),
                                   rng.randint(0, 2000, rows).astype(str), np.ones(rows),
                                   rng.randint(0, 10**9, rows))


def timings(step: Callable[[], object], repeats: int) -> List[float]:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return times


def split_and_history(rows: int, repeats: int) -> List[float]:
  frame = generated_interactions(rows)
  return timings(lambda: split_rules.assign_splits(history.add_history(frame, HISTORY_LENGTH)),
                 repeats)


def popularity_metrics(movielens: Path, repeats: int) -> Optional[List[float]]:
  """The ranking metrics' times on ML-100K's test split; None without the data set."""
  if not (movielens / movielens_100k.RATINGS_FILE).exists():
    return None
  frame = loaders.load_movielens_100k(movielens).interactions
  splits = split_rules.assign_splits(frame)
  data = protocol.build_eval_data(frame, splits)
  scores = baselines.popularity_scores(frame[splits == features.TRAIN_SPLIT], data)
  return timings(lambda: metrics.ranking_metrics(scores, data), repeats)


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--rows', type=int, default=100_000,
                      help='generated interactions for the split + history step')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--movielens', type=Path, default=SHARED_MOVIELENS,
                      help='MovieLens 100K directory (u.data) for the metrics step')
  args = parser.parse_args(argv)
  results = [
      (f'split + history ({args.rows:,} generated rows, {HISTORY_LENGTH} items)',
       split_and_history(args.rows, args.repeats)),
      ('popularity ranking metrics (ML-100K test split)',
       popularity_metrics(args.movielens, args.repeats)),
  ]
  width = max(len(name) for name, _ in results)
  print(f'{"step":<{width}}  {"best s":>8}  {"median s":>8}')
  for name, times in results:
    if times is None:
      print(f'{name:<{width}}  {"not run":>8}  (no {args.movielens / movielens_100k.RATINGS_FILE})')
    else:
      print(f'{name:<{width}}  {min(times):8.3f}  {statistics.median(times):8.3f}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
