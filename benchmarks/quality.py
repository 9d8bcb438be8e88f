"""Quality benchmark: baselines and the pipeline's models on one split, with one evaluation code.

    python -m benchmarks.quality --data DATA --output OUTPUT --bench-out results.json

Trains popularity, EASE and the TFRS ID-only baseline here; runs the pipeline (cached when its
inputs are unchanged) for the teacher and the student; evaluates every model on the test split
with `models.evaluation` (full-catalogue ranking, seen items excluded) and prints one table.
"""
import argparse
import glob
import json
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from models import baselines
from models import evaluation
from models import export
from models import features
from models import id_retrieval
from models import run_fn
from pipeline import configs
from pipeline import local_runner
from pipeline import progress
from pipeline.data import loaders
from pipeline.data import prepare
from pipeline.data import split

COLUMNS = evaluation.METRIC_KEYS + ['rmse', 'params', 'bytes', 'train_s']
BATCH = 256


def saved_model_bytes(path: str) -> int:
  """Bytes of a SavedModel's variables (what serving keeps in memory)."""
  return sum(os.path.getsize(f) for f in glob.glob(os.path.join(path, 'variables', '*')))


def row(model: str, metrics: Dict[str, float], rmse: Optional[float], params: Optional[int],
        size: Optional[int], train_s: Optional[float]) -> dict:
  return {'model': model, **metrics, 'rmse': rmse, 'params': params, 'bytes': size,
          'train_s': train_s}


def query_histories(frame: pd.DataFrame, splits: pd.Series, eval_data) -> List[List[str]]:
  """Each evaluated user's items before the test split, oldest first."""
  before = frame[(splits != features.TEST_SPLIT).to_numpy()]
  before = before.iloc[split.chronological_order(before)]
  items = before.groupby(features.USER_ID)[features.ITEM_ID].apply(list)
  return [items.get(user, []) for user in eval_data.users]


def saved_model_rankings(model, eval_data, histories: List[List[str]]) -> List[List[str]]:
  """Every evaluated user's full catalogue ranking from the SavedModel."""
  rank = model.rank_catalogue
  rankings = []
  for start in range(0, len(histories), BATCH):
    users = list(eval_data.users[start:start + BATCH])
    batch = histories[start:start + BATCH]
    width = max(1, max(len(h) for h in batch))
    padded = [h + [''] * (width - len(h)) for h in batch]
    item_ids = rank(user_id=tf.constant(users), history=tf.constant(padded))['item_ids']
    rankings.extend(list(ids) for ids in item_ids.numpy().astype(str))
  return rankings


def saved_model_rmse(model, test_files: List[str]) -> float:
  """RMSE of the `score` signature over the prepared test examples."""
  score = model.signatures[export.SCORE_SIGNATURE]
  predictions, ratings = [], []
  spec = {features.RATING: tf.io.FixedLenFeature([], tf.float32)}
  for batch in tf.data.TFRecordDataset(test_files, compression_type='GZIP').batch(4096):
    predictions.append(score(examples=batch)['rating'].numpy())
    ratings.append(tf.io.parse_example(batch, spec)[features.RATING].numpy())
  return evaluation.rmse(np.concatenate(predictions), np.concatenate(ratings))


def latest_trainer_run(pipeline_root: str) -> Dict[str, str]:
  """Teacher, student and training summary of the newest Trainer execution."""
  runs = glob.glob(os.path.join(pipeline_root, 'Trainer', 'model_run', '*'))
  if not runs:
    raise FileNotFoundError(f'no Trainer output under {pipeline_root}')
  run_id = max((os.path.basename(r) for r in runs), key=int)
  model_run = os.path.join(pipeline_root, 'Trainer', 'model_run', run_id)
  return {'teacher': os.path.join(model_run, run_fn.TEACHER_DIR),
          'student': os.path.join(pipeline_root, 'Trainer', 'model', run_id, 'Format-Serving'),
          'summary': os.path.join(model_run, run_fn.SUMMARY_FILE)}


def benchmark(data_source: str, output_dir: str) -> List[dict]:
  dataset = loaders.load_dataset(data_source, cache_dir=configs.DOWNLOAD_CACHE_DIR)
  frame = dataset.interactions
  splits = split.assign_splits(frame, configs.EVAL_FRACTION, configs.TEST_FRACTION)
  eval_data = evaluation.build_eval_data(frame, splits, features.TEST_SPLIT)
  train = frame[(splits == features.TRAIN_SPLIT).to_numpy()]
  rows = []

  started = time.time()
  scores = baselines.popularity_scores(train, eval_data)
  rows.append(row('popularity', evaluation.ranking_metrics(scores, eval_data),
                  baselines.mean_rating_rmse(train, eval_data), len(eval_data.items), None,
                  time.time() - started))

  started = time.time()
  scores = baselines.ease_scores(eval_data)
  rows.append(row('ease', evaluation.ranking_metrics(scores, eval_data), None,
                  len(eval_data.items)**2, None, time.time() - started))

  started = time.time()
  model, scores = id_retrieval.train_and_score(train, eval_data.users, eval_data.items)
  rows.append(row('tfrs_id_baseline', evaluation.ranking_metrics(scores, eval_data), None,
                  model.user_model.count_params() + model.item_model.count_params(), None,
                  time.time() - started))

  result = local_runner.run(data_source, output_dir)
  trained = latest_trainer_run(result['pipeline_root'])
  with open(trained['summary']) as f:
    summary = json.load(f)
  histories = query_histories(frame, splits, eval_data)
  test_files = prepare.split_files(result['examples'], features.TEST_SPLIT)
  for name in ('teacher', 'student'):
    model = tf.saved_model.load(trained[name])
    metrics = evaluation.ranking_metrics_from_topk(
        saved_model_rankings(model, eval_data, histories), eval_data)
    rows.append(row(name, metrics, saved_model_rmse(model, test_files), summary[name]['params'],
                    saved_model_bytes(trained[name]), summary[name]['train_s']))
  return rows


def format_table(rows: List[dict]) -> str:
  def cell(value):
    if value is None:
      return '-'
    if isinstance(value, float):
      return f'{value:.1f}' if value >= 10 else f'{value:.4f}'
    return str(value)
  lines = [['model'] + COLUMNS] + [[r['model']] + [cell(r[c]) for c in COLUMNS] for r in rows]
  widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
  return '\n'.join('  '.join(v.rjust(w) for v, w in zip(line, widths)) for line in lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data', default=configs.DATA_SOURCE)
  parser.add_argument('--output', default=configs.OUTPUT_DIR)
  parser.add_argument('--bench-out', default='results.json', help='JSON file for the table')
  args = parser.parse_args(argv)
  progress.install()
  rows = benchmark(args.data, args.output)
  print(format_table(rows))
  with open(args.bench_out, 'w') as f:
    json.dump(rows, f, indent=2)
  print(f'Wrote {args.bench_out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
