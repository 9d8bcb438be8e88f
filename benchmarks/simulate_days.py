"""Continuous training, simulated: a log cut into spans by time, the pipeline run span after span
(each run warm-started from the last blessed one), and beside each a cold retrain on the same
window.

    make simulate-days DATA=... OUTPUT=... BENCH_OUT=... [SPANS=10 SPAN_DAYS=7]
    python -m benchmarks.simulate_days --data DATA --output OUTPUT --bench-out rows.json
        --spans 10 --span-days 7

Any `DATA` the pipeline reads is cut (`cut`) into `--spans` spans: the log's last K−1 periods of
`--span-days` days, one span each, and everything before them the first span; a period without
interactions is skipped. Every span gets the whole side tables. The spans are revealed one at a
time under OUTPUT/log/span-{SPAN}, and after each the pipeline runs twice with the `configs`
values: into OUTPUT/warm, where it starts from the model blessed on the previous window
(`models.warm_start`), and into OUTPUT/cold with `warm_start_epochs` 0, a cold retrain on the
same window (the latest `SPAN_WINDOW` spans, `configs.RAW_DATA`). Each run has a process of its
own, as each day's `make run` has, so that none inherits what TensorFlow keeps of the earlier
runs (their graphs and functions). A row per span: `span`,
`examples` (the window's interactions), `trainer_s` and
`pipeline_s` (the Trainer's execution and the whole run, wall seconds), `ndcg@10` and
`recall@100` of the pushed candidate (the int8 student) on the window's test split, `pushed`,
`warm_started` (whether the warm run's Trainer started from the blessed model: not on the first
span, nor where the window outgrew the last cold training, `TrainingHParams.warm_start_max_growth`),
and the same `cold_*` figures; printed as a table and written as a JSON list to `--bench-out`.
Last, one line (`summary`) over the incremental days: every span after the first, whose warm run
had a blessed model to start from (the first span's has none: it is a cold run too).
"""
import argparse
from concurrent import futures
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np

from components.retrieval_evaluator import executor as retrieval_executor
from contract import features
from ingest import generic_csv
from ingest import loaders
from ingest import tables
from models import layout
from pipeline import configs
from pipeline import local_runner
from pipeline import progress

DAY_S = 86_400
SPAN_DIR = 'span-{}'
COLUMNS = ('span', 'examples', 'trainer_s', 'pipeline_s', 'ndcg@10', 'recall@100', 'pushed',
           'warm_started', 'cold_trainer_s', 'cold_pipeline_s', 'cold_ndcg@10', 'cold_recall@100')


def cut(dataset: tables.Dataset, spans: int, span_days: int) -> List[tables.Dataset]:
  """`dataset` as at most `spans` spans, oldest first: the interactions of each of the last
  `spans` − 1 periods of `span_days` days (ending at the latest interaction), and the ones
  before as the first span; empty periods skipped. Each keeps the whole side tables."""
  if spans < 1 or span_days < 1:
    raise ValueError(f'spans {spans} and span days {span_days}: both at least 1')
  timestamps = dataset.interactions[features.TIMESTAMP].to_numpy()
  # Period p (1 = the latest) holds (end − p·span, end − (p−1)·span]; the first span the
  # rest.
  periods = np.ceil((timestamps.max() - timestamps + 1) / (span_days * DAY_S)).astype(int)
  span_of = (spans - np.minimum(periods, spans)).astype(int)  # 0 = the first span
  return [tables.Dataset(dataset.interactions[span_of == number].reset_index(drop=True),
                         dataset.users, dataset.items)
          for number in range(spans) if (span_of == number).any()]


def _run(source: str, output: str, training) -> Dict[str, object]:
  """One pipeline run, in a process of its own (module docstring): its seconds, the Trainer's,
  the pushed candidate's test metrics and whether its Trainer started warm."""
  with futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')) as pool:
    return pool.submit(_run_here, source, output, training).result()


def _run_here(source: str, output: str, training) -> Dict[str, object]:
  """`_run` in this process."""
  progress.install()
  started = time.time()
  result = local_runner.run(source, output, training=training)
  seconds = time.time() - started
  with open(os.path.join(result['retrieval_evaluation'], retrieval_executor.METRICS_FILE)) as f:
    candidate = json.load(f)['models'][layout.CANDIDATE]
  model_run = local_runner.latest_run_outputs(result['metadata'], ['ModelRun'])['ModelRun']
  with open(os.path.join(model_run, layout.SUMMARY_FILE)) as f:
    warm_started = json.load(f)[layout.TEACHER]['warm_start'] is not None
  return {'trainer_s': local_runner.component_seconds(result['metadata']).get('Trainer'),
          'pipeline_s': seconds, 'ndcg@10': candidate['ndcg@10'],
          'recall@100': candidate['recall@100'], 'pushed': result['pushed'] is not None,
          'warm_started': warm_started}


def simulate(data_source: str, output_dir: str, spans: int, span_days: int) -> List[dict]:
  """Runs the simulation (module docstring); returns its rows."""
  drops = cut(loaders.load_dataset(data_source, configs.DOWNLOAD_CACHE_DIR), spans, span_days)
  log = os.path.join(output_dir, 'log')
  source = os.path.join(log, SPAN_DIR.format('{SPAN}'))
  cold_training = dataclasses.replace(configs.TRAINING, warm_start_epochs=0)
  window = configs.RAW_DATA.span_window
  rows = []
  for number, drop in enumerate(drops, start=1):
    generic_csv.write_dataset(drop, os.path.join(log, SPAN_DIR.format(number)))
    read = drops[:number][-window:] if window else drops[:number]
    examples = sum(len(span.interactions) for span in read)
    warm = _run(source, os.path.join(output_dir, 'warm'), configs.TRAINING)
    cold = _run(source, os.path.join(output_dir, 'cold'), cold_training)
    rows.append({'span': number, 'examples': examples, **warm,
                 **{f'cold_{key}': value for key, value in cold.items()
                    if key not in ('pushed', 'warm_started')}})
    print(format_row(rows[-1]), flush=True)
  return rows


def summary(rows: List[dict]) -> Optional[Dict[str, float]]:
  """Over the incremental days (`rows` after the first): the number of `days` and of
  `refreshes` (days retrained cold: not `warm_started`), the warm runs' Trainer and pipeline
  seconds as shares of the cold retrains' (`trainer_share`, `pipeline_share`: sums over the
  days; `warm_trainer_share`, `warm_pipeline_share`: over the warm-started days, None without
  one), the means over the days of the warm and the cold
  NDCG@10 and Recall@100, the warm means relative to the cold ones (`ndcg@10_change`,
  `recall@100_change`: 0.01 is 1 % higher), and the standard deviation of the days' own
  relative changes (`ndcg@10_change_std`, ...: how much one day says); None without such a
  day."""
  days = rows[1:]
  if not days:
    return None
  def total(key, among=days):
    return float(sum(row[key] for row in among))
  started = [row for row in days if row.get('warm_started', True)]
  result = {'days': len(days), 'refreshes': len(days) - len(started),
            'trainer_share': total('trainer_s') / total('cold_trainer_s'),
            'pipeline_share': total('pipeline_s') / total('cold_pipeline_s')}
  for share in ('trainer', 'pipeline'):
    result[f'warm_{share}_share'] = (total(f'{share}_s', started)
                                     / total(f'cold_{share}_s', started) if started else None)
  for metric in ('ndcg@10', 'recall@100'):
    warm, cold = total(metric) / len(days), total(f'cold_{metric}') / len(days)
    changes = [row[metric] / row[f'cold_{metric}'] - 1 for row in days]
    result.update({metric: warm, f'cold_{metric}': cold, f'{metric}_change': warm / cold - 1,
                   f'{metric}_change_std': float(np.std(changes))})
  return result


def format_summary(figures: Dict[str, float]) -> str:
  refreshes = ''
  if figures['refreshes']:
    started = ('none' if figures['warm_trainer_share'] is None else
               f"{figures['warm_trainer_share']:.2f}x and {figures['warm_pipeline_share']:.2f}x")
    refreshes = f" ({figures['refreshes']} retrained cold; the warm-started days {started})"
  return (f"{figures['days']} incremental days: Trainer {figures['trainer_share']:.2f}x and "
          f"pipeline {figures['pipeline_share']:.2f}x the cold retrain's seconds{refreshes}; "
          + '; '.join(f"{metric} {figures[metric]:.4f} against {figures[f'cold_{metric}']:.4f} "
                      f"({figures[f'{metric}_change']:+.1%}; a day's change ± "
                      f"{figures[f'{metric}_change_std']:.1%})"
                      for metric in ('ndcg@10', 'recall@100')))


def format_row(row: Dict[str, object]) -> str:
  def cell(value: Optional[object]) -> str:
    if isinstance(value, float):
      return f'{value:.4f}' if value < 1 else f'{value:.0f}'
    return '' if value is None else str(value)
  return ' '.join(f'{cell(row.get(name)):>15}' for name in COLUMNS)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data', default=configs.DATA_SOURCE)
  parser.add_argument('--output', required=True, help='directory for the spans and the runs')
  parser.add_argument('--bench-out', required=True, help='JSON file for the rows')
  parser.add_argument('--spans', type=int, default=10)
  parser.add_argument('--span-days', type=int, default=7)
  args = parser.parse_args(argv)
  progress.install()
  print(' '.join(f'{name:>15}' for name in COLUMNS), flush=True)
  rows = simulate(args.data, os.path.abspath(args.output), args.spans, args.span_days)
  with open(args.bench_out, 'w') as f:
    json.dump(rows, f, indent=2)
  figures = summary(rows)
  if figures is not None:
    print(format_summary(figures), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
