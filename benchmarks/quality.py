"""Quality benchmark: baselines and the pipeline's models on one split, with one evaluation code.

    python -m benchmarks.quality --data DATA --output OUTPUT --bench-out results.json

Trains popularity, EASE and the TFRS ID-only baseline here; runs the pipeline (cached when its
inputs are unchanged; with the student also trained without the teacher) for the teacher, the
scratch student, the distilled fp32 student and the distilled int8 student; evaluates every model
on the test split with `models.evaluation` (full-catalogue ranking, seen items excluded) and
prints one table. `fidelity@10` is the mean share of the teacher's top 10 (seen items excluded)
that a model also puts in its top 10; `train_s` of student_int8 is distillation + QAT.
"""
import argparse
import glob
import json
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from components.retrieval_evaluator import evaluate as retrieval_evaluation
from models import baselines
from models import evaluation
from models import export
from contract import features
from models import id_retrieval
from models import run_fn
from pipeline import configs
from pipeline import local_runner
from pipeline import progress
from pipeline.data import loaders
from pipeline.data import prepare
from pipeline.data import split

COLUMNS = evaluation.METRIC_KEYS + ['rmse', 'fidelity@10', 'params', 'bytes', 'train_s']
PIPELINE_MODELS = ('teacher', 'student_scratch', 'student_fp32', 'student_int8')
BATCH = 256


def row(model: str, metrics: Dict[str, float], rmse: Optional[float], params: Optional[int],
        size: Optional[int], train_s: Optional[float], fidelity: Optional[float] = None) -> dict:
  return {'model': model, **metrics, 'rmse': rmse, 'fidelity@10': fidelity, 'params': params,
          'bytes': size, 'train_s': train_s}


def saved_model_rankings(model, eval_data, histories: List[List[str]],
                         side_features: Dict[str, np.ndarray]) -> List[List[str]]:
  """Every evaluated user's full catalogue ranking from the SavedModel."""
  rank = model.rank_catalogue
  rankings = []
  for start in range(0, len(histories), BATCH):
    users = list(eval_data.users[start:start + BATCH])
    batch = histories[start:start + BATCH]
    width = max(1, max(len(h) for h in batch))
    padded = [h + [''] * (width - len(h)) for h in batch]
    item_ids = rank(user_id=tf.constant(users), history=tf.constant(padded),
                    **{name: tf.constant(values[start:start + BATCH])
                       for name, values in side_features.items()})['item_ids']
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
          'student_scratch': os.path.join(model_run, run_fn.STUDENT_SCRATCH_DIR),
          'student_fp32': os.path.join(model_run, run_fn.STUDENT_FP32_DIR),
          'student_int8': os.path.join(pipeline_root, 'Trainer', 'model', run_id,
                                       'Format-Serving'),
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

  result = local_runner.run(data_source, output_dir, train_student_scratch=True)
  trained = latest_trainer_run(result['pipeline_root'])
  with open(trained['summary']) as f:
    summary = json.load(f)
  histories = retrieval_evaluation.query_histories(frame, splits.to_numpy(), eval_data)
  side_features = evaluation.user_side_features(
      dataset.users.reset_index() if dataset.users is not None else frame, eval_data.users)
  test_files = prepare.split_files(result['examples'], features.TEST_SPLIT)
  teacher_top = None
  for name in PIPELINE_MODELS:
    model = tf.saved_model.load(trained[name])
    rankings = saved_model_rankings(model, eval_data, histories, side_features)
    top = evaluation.top_from_ids(rankings, eval_data, evaluation.CUTOFF)
    teacher_top = top if teacher_top is None else teacher_top
    fidelity = evaluation.fidelity(top, teacher_top)
    train_s = summary[name]['train_s'] + (summary['student_fp32']['train_s']
                                          if name == 'student_int8' else 0.0)
    rows.append(row(name, evaluation.ranking_metrics_from_topk(rankings, eval_data),
                    saved_model_rmse(model, test_files), summary[name]['params'],
                    run_fn.saved_model_bytes(trained[name]), train_s, fidelity))
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
