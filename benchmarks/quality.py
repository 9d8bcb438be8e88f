"""Quality benchmark: baselines and the pipeline's models on one split, with one evaluation code.

    python -m benchmarks.quality --data DATA --output OUTPUT --bench-out results.json

Runs the pipeline (cached when its inputs are unchanged; with the student also trained without
the teacher) and reads what its RetrievalEvaluator measured on the test split with `evaluation`
(full-catalogue ranking, seen items excluded) for popularity, EASE, the teacher, the scratch
student, the distilled fp32 student and the distilled int8 student; parameters and training
seconds come from the Trainer's training summary. Trains the TFRS ID-only baseline here and
evaluates it with the same protocol, catalogue (the pipeline's items split, as the
RetrievalEvaluator reads it) and metrics. Prints one table. `fidelity@10` is the mean share
of the teacher's top 10 (seen items excluded) that a model also puts in its top 10; `train_s` of
student_int8 is distillation + QAT. The RetrievalEvaluator does not time popularity and EASE:
their `train_s` is empty.
"""
import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from tfx.types import standard_artifacts

from benchmarks import id_retrieval
from benchmarks import transformed_data
from components.retrieval_evaluator import executor as retrieval_executor
from contract import features
from contract import split_rules
from evaluation import evaluate
from evaluation import metrics
from evaluation import protocol
from models import layout
from pipeline import configs
from pipeline import local_runner
from pipeline import progress
from ingest import loaders

COLUMNS = metrics.METRIC_KEYS + ['rmse', 'fidelity@10', 'params', 'bytes', 'train_s']
ID_BASELINE = 'tfrs_id_baseline'
PIPELINE_MODELS = (layout.TEACHER, layout.STUDENT_SCRATCH, layout.STUDENT_FP32,
                   layout.STUDENT_INT8)


def row(model: str, values: Mapping[str, Any]) -> dict:
  """A table row: the model's name and its value of every column (None where it has none)."""
  return {'model': model, **{column: values.get(column) for column in COLUMNS}}


def id_baseline_row(data_source: str, catalogue_items: Optional[Sequence[str]]) -> dict:
  """Trains the TFRS ID-only baseline on the train split and evaluates it on the test split,
  over the train items and `catalogue_items` (`protocol.build_eval_data`)."""
  frame = loaders.load_dataset(data_source, cache_dir=configs.DOWNLOAD_CACHE_DIR).interactions
  splits = split_rules.assign_splits(frame, configs.RAW_DATA.eval_fraction,
                                     configs.RAW_DATA.test_fraction)
  eval_data = protocol.build_eval_data(frame, splits, features.TEST_SPLIT, catalogue_items)
  train = frame[(splits == features.TRAIN_SPLIT).to_numpy()]
  started = time.time()
  model, scores = id_retrieval.train_and_score(train, eval_data.users, eval_data.items)
  return row(ID_BASELINE, {
      **metrics.ranking_metrics(scores, eval_data),
      'params': model.user_model.count_params() + model.item_model.count_params(),
      'train_s': time.time() - started,
  })


def pipeline_outputs(data_source: str, output_dir: str) -> Tuple[dict, dict]:
  """Runs the pipeline; returns its RetrievalEvaluator's metrics and its Trainer's summary."""
  result = local_runner.run(data_source, output_dir, train_student_scratch=True)
  model_run = local_runner.latest_run_outputs(
      result['metadata'], [standard_artifacts.ModelRun.TYPE_NAME])[
          standard_artifacts.ModelRun.TYPE_NAME]
  with open(os.path.join(result['retrieval_evaluation'], retrieval_executor.METRICS_FILE)) as f:
    evaluated = json.load(f)
  with open(os.path.join(model_run, layout.SUMMARY_FILE)) as f:
    summary = json.load(f)
  return evaluated, summary


def pipeline_rows(evaluated: Mapping[str, Any],
                  summary: Mapping[str, Mapping[str, Any]]) -> Dict[str, dict]:
  """The rows of the baselines and the pipeline's models, by name, from the RetrievalEvaluator's
  metrics and the training summary."""
  models = evaluated['models']
  missing = [name for name in (evaluate.POPULARITY, evaluate.EASE) + PIPELINE_MODELS
             if name not in models]
  if missing:
    raise KeyError(f'the RetrievalEvaluator has no metrics of {missing}')
  catalogue_items = evaluated['catalogue_items']
  rows = {evaluate.POPULARITY: row(evaluate.POPULARITY,
                                   {**models[evaluate.POPULARITY], 'params': catalogue_items}),
          evaluate.EASE: row(evaluate.EASE,
                             {**models[evaluate.EASE], 'params': catalogue_items**2})}
  for name in PIPELINE_MODELS:
    train_s = summary[name]['train_s'] + (summary[layout.STUDENT_FP32]['train_s']
                                          if name == layout.STUDENT_INT8 else 0.0)
    rows[name] = row(name, {**models[name], 'params': summary[name]['params'],
                            'train_s': train_s})
  return rows


def benchmark(data_source: str, output_dir: str) -> List[dict]:
  """Every row of the table, baselines first."""
  rows = pipeline_rows(*pipeline_outputs(data_source, output_dir))
  id_baseline = id_baseline_row(data_source, retrieval_executor.read_catalogue_items(
      transformed_data.raw_examples(output_dir)))
  return ([rows[evaluate.POPULARITY], rows[evaluate.EASE], id_baseline] +
          [rows[name] for name in PIPELINE_MODELS])


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
