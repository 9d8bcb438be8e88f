"""Distillation benchmark: the size–quality frontier of the student, with and without the teacher.

    python -m benchmarks.distill --data DATA --output OUTPUT --bench-out distill.json

Runs the pipeline's data components on DATA (cached when unchanged; its kind of feedback resolved
as the pipeline does, `FEEDBACK`: implicit logs train retrieval only), then for every seed trains
the teacher and, for every student size (embedding dimension), the student without the teacher
(`student_scratch`), the distilled student (`student_distilled`) and the distilled student after
quantization-aware training with int8 tables (`student_int8`), all with the training API of the
Trainer (`models.training`) and the `pipeline.configs` values; the scratch student gets the
distilled one's epochs and learning rate. Every model is exported with the serving signatures
and evaluated on the test split with the RetrievalEvaluator's code (`evaluation.evaluate`:
full-catalogue ranking, seen items excluded), beside EASE.

Prints a table and writes JSON: a list of rows, one per model and size, with `model`,
`embedding_dim`, `seeds`, NDCG@10 and Recall@100 as mean and std over the seeds (and per seed),
`bytes` (SavedModel variables), `latency_p50_ms` (in-process single-request recommendation of
the top 100), and on distilled and int8 rows `gap_recovered` = (row − scratch) / (teacher −
scratch) of the mean NDCG@10; the cold-start slices (`metrics.SLICE_METRIC_KEYS`: Recall@100 on
cold and warm items, NDCG@10 of new users) likewise, with a second table. The int8 student at
the pipeline's size carries `"default": true`. Also draws NDCG@10 against bytes (PNG, `--plot`). Teachers are kept under OUTPUT (by seed
and configuration), so a re-run with other distillation settings trains only the students (into
a directory of their own): `--set temperature=2` overrides one `DistillationHParams` or
`TrainingHParams` field (`--set mixed_negatives=1024`: teacher and students trained again).
`--item-id-dropout RATE` and `--user-id-dropout RATE` set both models' `item_id_dropout` and
`user_id_dropout` (teachers trained again); `--set temperature_scale=2` or
`--set fresh_slots=10` overrides a `ContentPathHParams` or `ExportHParams` field likewise.
"""
import argparse
import dataclasses
import hashlib
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from absl import logging
import numpy as np

from benchmarks import transformed_data
from components.run_report import charts
from evaluation import evaluate
from evaluation import metrics as metrics_lib
from ingest import loaders
from models import hparams
from models import item_item
from models import layout
from models import run_fn
from models import training
from pipeline import configs
from pipeline import progress

BENCH_PIPELINE_NAME = 'recsys-distill-frontier'
SIZES = (4, 8, 16, 32)
SEEDS = 3
SCRATCH, DISTILLED, INT8 = 'student_scratch', 'student_distilled', 'student_int8'
STUDENT_KINDS = (SCRATCH, DISTILLED, INT8)
# The teacher and the int8 students are also exported without their content path (cold items
# embedded by the candidate tower), as these kinds, when the catalogue has cold items and the
# content path is on (kept or not).
WITHOUT_CONTENT_PATH = {layout.TEACHER: 'teacher_no_content_path',
                        INT8: 'student_int8_no_content_path'}
# And, without a quota of fresh items configured, with `FRESH_SLOTS` of them (`ExportHParams`).
WITH_FRESH_QUOTA = {layout.TEACHER: 'teacher_fresh_quota', INT8: 'student_int8_fresh_quota'}
FRESH_SLOTS = 10
NEEDS_TEACHER_RATIO = 0.92  # scratch NDCG@10 at most this share of the teacher's
KEEPS_QUALITY_RATIO = 0.95  # the default student keeps this share of NDCG@10 and Recall@100
METRICS = ('ndcg@10', 'recall@100')
SLICE_METRICS = tuple(metrics_lib.SLICE_METRIC_KEYS) + (evaluate.AMONG_COLD_ITEMS,)


TABLES_DIR = 'item_item'  # the item-to-item tables' cache, in the teachers' cache directory


def model_name(kind: str, dim: int, seed: int) -> str:
  return f'{kind}/d{dim}/seed{seed}'


@dataclasses.dataclass(frozen=True)
class Sizes:
  """The teacher's size and the students' (whose embedding dimension the benchmark varies)."""
  teacher: hparams.TowerHParams = configs.TEACHER
  student: hparams.TowerHParams = configs.STUDENT


def _teacher_key(data: training.TrainingData, teacher_size: hparams.TowerHParams,
                 training_hparams: hparams.TrainingHParams) -> str:
  """What a cached teacher depends on: its size, its training and the data it was trained on."""
  text = json.dumps([hparams.to_dict(teacher_size), hparams.to_dict(training_hparams),
                     hparams.to_dict(configs.TRANSFORM), _tables_key(data)], sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _tables_key(data: training.TrainingData) -> str:
  """What the item-to-item tables depend on: their settings, the code that fits and factorises
  them, and the data."""
  return hashlib.sha256(json.dumps(
      [hparams.to_dict(configs.ITEM_ITEM), inspect.getsource(item_item),
       data.tf_transform_output.transform_savedmodel_dir], sort_keys=True).encode()).hexdigest()[:16]


def _publish(cache_dir: str, directory: str, write) -> None:
  """Calls `write(path)` on a fresh directory in `cache_dir`, then renames it `directory`:
  another benchmark sharing `cache_dir` never sees it half done."""
  os.makedirs(cache_dir, exist_ok=True)
  written = tempfile.mkdtemp(dir=cache_dir)
  write(written)
  open(os.path.join(written, 'done'), 'w').close()
  try:
    os.rename(written, directory)
  except OSError:  # already written by another run
    shutil.rmtree(written, ignore_errors=True)


def item_item_tables(data: training.TrainingData, teacher_size: hparams.TowerHParams,
                     cache_dir: str):
  """The hybrid teacher's item-to-item tables (`training.fit_item_item`), the same for every
  seed: fitted once per data and setting, then read from `cache_dir`."""
  if not teacher_size.item_item:
    return None
  directory = os.path.join(cache_dir, _tables_key(data))
  if not os.path.exists(os.path.join(directory, 'done')):
    tables = training.fit_item_item(data, teacher_size, configs.ITEM_ITEM)
    _publish(cache_dir, directory, tables.save)
  return item_item.ItemItemTables.load(directory)


def teacher_model(data: training.TrainingData, teacher_size: hparams.TowerHParams,
                  training_hparams: hparams.TrainingHParams, cache_dir: str,
                  log: training.TrainingLog):
  """The teacher of this seed: trained, or loaded from `cache_dir` when trained before with the
  same configuration on the same data."""
  tables = item_item_tables(data, teacher_size, os.path.join(cache_dir, TABLES_DIR))
  directory = os.path.join(cache_dir, _teacher_key(data, teacher_size, training_hparams))
  weights = 'weights'
  if os.path.exists(os.path.join(directory, 'done')):
    logging.info('Teacher of seed %d: reused from %s', training_hparams.seed, directory)
    return training.load_teacher(data, teacher_size, training_hparams,
                                 os.path.join(directory, weights), tables)
  model = training.train_teacher(data, teacher_size, training_hparams, log, tables,
                                 configs.ITEM_ITEM.eval_users)
  _publish(cache_dir, directory, lambda path: model.core.save_weights(os.path.join(path, weights)))
  return model


def train_seed(output_dir: str, seed: int, sizes: Sequence[int],
               distillation: hparams.DistillationHParams, towers: Sizes,
               training_settings: hparams.TrainingHParams,
               content_path_settings: hparams.ContentPathHParams = configs.CONTENT_PATH,
               export_settings: hparams.ExportHParams = configs.EXPORT
               ) -> Tuple[Dict[str, str], int]:
  """Trains and exports the teacher and every student of one seed, of `sizes` and the
  pipeline's default size (`training.student_size`; no student when `sizes` is empty);
  returns SavedModel directories by model name, and the default size's embedding dimension."""
  training_hparams = dataclasses.replace(training_settings, seed=seed)
  data = transformed_data.training_data(output_dir, configs.TRANSFORM, training_hparams)
  settings = hashlib.sha256(json.dumps(
      [hparams.to_dict(distillation), hparams.to_dict(towers.student),
       hparams.to_dict(training_settings)], sort_keys=True).encode())
  models_dir = os.path.join(output_dir, 'models', settings.hexdigest()[:12], f'seed{seed}')
  dirs = {}

  def export_to(name: str, model, int8_index: bool,
                settings: hparams.ExportHParams = export_settings) -> None:
    dirs[name] = os.path.join(models_dir, name.replace('/', '_'))
    training.export_model(model, data, settings, dirs[name], int8_index)

  def write(name: str, model, int8_index: bool = False) -> None:
    training.attach_content_path(name, model, data, content_path_settings, seed)
    export_to(name, model, int8_index)
    kind = name.split('/')[0]
    if kind in WITH_FRESH_QUOTA and not export_settings.fresh_slots:
      export_to(name.replace(kind, WITH_FRESH_QUOTA[kind], 1), model, int8_index,
                dataclasses.replace(export_settings, fresh_slots=FRESH_SLOTS))
    if kind in WITHOUT_CONTENT_PATH and content_path_settings.epochs and data.has_cold_items:
      # The reference: the same model, its cold items embedded by its candidate tower (the
      # same export where the content path was not kept).
      model.content_candidates, fitted = None, model.content_candidates
      export_to(name.replace(kind, WITHOUT_CONTENT_PATH[kind], 1), model, int8_index)
      model.content_candidates = fitted

  with tempfile.TemporaryDirectory() as tensorboard_dir:
    log = training.TrainingLog(tensorboard_dir)
    teachers_dir = os.path.join(output_dir, 'teachers')
    tables_dir = os.path.join(teachers_dir, TABLES_DIR)
    teacher = teacher_model(data, towers.teacher, training_hparams, teachers_dir, log)
    write(model_name(layout.TEACHER, towers.teacher.embedding_dim, seed), teacher)
    default_dim = training.student_size(data, teacher, towers.student,
                                        distillation).embedding_dim
    with training.teacher_outputs(data, teacher, training_hparams) as distillation_data:
      for dim in sorted(set(sizes) | {default_dim}) if sizes else []:
        # At a given width, the rest of the student as the pipeline's default size is chosen.
        size = training.student_size(data, teacher, dataclasses.replace(
            towers.student, embedding_dim=dim), distillation)
        write(model_name(SCRATCH, dim, seed),
              training.train_student(data, size, training_hparams, distillation, log,
                                     item_item_tables(data, towers.teacher, tables_dir)
                                     if size.item_item else None,
                                     configs.ITEM_ITEM.eval_users))
        distilled = training.distil(distillation_data, teacher, size, training_hparams,
                                    distillation, log, configs.ITEM_ITEM.eval_users)
        write(model_name(DISTILLED, dim, seed), distilled)
        write(model_name(INT8, dim, seed),
              training.quantize(distillation_data, teacher, distilled, training_hparams,
                                distillation, log, configs.ITEM_ITEM.eval_users),
              int8_index=True)
  return dirs, default_dim


def _stats(values: Sequence[float]) -> Dict[str, float]:
  return {'mean': float(np.mean(values)), 'std': float(np.std(values))}


def frontier_rows(models: Mapping[str, Mapping[str, float]], sizes: Sequence[int],
                  seeds: Sequence[int], default_dim: int) -> List[dict]:
  """The benchmark's rows from the evaluated metrics of every model (by `model_name`, plus
  `evaluate.EASE`); `default_dim` marks the pipeline's student."""
  def row(model: str, dim, names: Sequence[str]) -> dict:
    measured = [models[name] for name in names]
    values = {'model': model, 'embedding_dim': dim, 'seeds': len(names)}
    for metric in METRICS + SLICE_METRICS:
      per_seed = [m.get(metric) for m in measured]
      stats = (_stats(per_seed) if None not in per_seed
               else {'mean': None, 'std': None})  # a slice without users
      values.update({f'{metric}_mean': stats['mean'], f'{metric}_std': stats['std'],
                     f'{metric}_per_seed': per_seed})
    exported = measured[0].get('bytes') is not None
    values['bytes'] = int(np.mean([m['bytes'] for m in measured])) if exported else None
    values['latency_p50_ms'] = (float(np.median([m['latency_p50_ms'] for m in measured]))
                                if exported else None)
    values['gap_recovered'] = None
    return values

  teacher = row(layout.TEACHER, configs.TEACHER.embedding_dim,
                [model_name(layout.TEACHER, configs.TEACHER.embedding_dim, s) for s in seeds])
  rows = [teacher]

  def reference(kind: str, dim: int) -> List[dict]:
    """The rows of `kind` with a fresh quota and without its content path, those exported."""
    rows = []
    for variant in (WITH_FRESH_QUOTA[kind], WITHOUT_CONTENT_PATH[kind]):
      names = [model_name(variant, dim, s) for s in seeds]
      rows += [row(variant, dim, names)] if all(n in models for n in names) else []
    return rows

  rows += reference(layout.TEACHER, configs.TEACHER.embedding_dim)
  rows.append(row(evaluate.EASE, None, [evaluate.EASE]))
  for dim in sizes:
    by_kind = {kind: row(kind, dim, [model_name(kind, dim, s) for s in seeds])
               for kind in STUDENT_KINDS}
    scratch = by_kind[SCRATCH]['ndcg@10_mean']
    gap = teacher['ndcg@10_mean'] - scratch
    for kind in (DISTILLED, INT8):
      by_kind[kind]['gap_recovered'] = ((by_kind[kind]['ndcg@10_mean'] - scratch) / gap
                                        if gap > 0 else None)
    by_kind[INT8]['default'] = dim == default_dim
    rows.extend(by_kind.values())
    rows += reference(INT8, dim)
  return rows


def findings(rows: Sequence[dict]) -> List[str]:
  """What the rows say against the targets: the teacher against EASE; then, when there are
  students, the cheapest student that needs the teacher and how much of its gap distillation
  recovers, and the smallest int8 student that keeps `KEEPS_QUALITY_RATIO` of the teacher's
  quality."""
  teacher = next(row for row in rows if row['model'] == layout.TEACHER)
  by = {(row['model'], row['embedding_dim']): row for row in rows}
  sizes = sorted(dim for model, dim in by if model == SCRATCH)
  lines = [f"Teacher against EASE: NDCG@10 {teacher['ndcg@10_mean'] / row['ndcg@10_mean']:.2f}x, "
           f"Recall@100 {teacher['recall@100_mean'] / row['recall@100_mean']:.2f}x."
           for row in rows if row['model'] == evaluate.EASE and row['ndcg@10_mean'] > 0
           and row['recall@100_mean'] > 0]
  if not sizes:
    return lines
  needing = [dim for dim in sizes
             if by[SCRATCH, dim]['ndcg@10_mean'] <= NEEDS_TEACHER_RATIO * teacher['ndcg@10_mean']]
  if needing:
    dim = max(needing)
    distilled, scratch = by[DISTILLED, dim], by[SCRATCH, dim]
    wins = sum(d > s for d, s in zip(distilled['ndcg@10_per_seed'], scratch['ndcg@10_per_seed']))
    lines.append(f'Largest student whose scratch NDCG@10 is <= {NEEDS_TEACHER_RATIO} x the '
                 f"teacher's: d={dim}; distillation recovers {distilled['gap_recovered']:.0%} of "
                 f'the gap (int8: {by[INT8, dim]["gap_recovered"]:.0%}), distilled above scratch '
                 f'on {wins} of {distilled["seeds"]} seeds.')
  else:
    lines.append(f'Every scratch student reaches more than {NEEDS_TEACHER_RATIO} x the '
                 "teacher's NDCG@10: no size needs the teacher.")
  keeping = [dim for dim in sizes if all(
      by[INT8, dim][f'{metric}_mean'] >= KEEPS_QUALITY_RATIO * teacher[f'{metric}_mean']
      for metric in METRICS)]
  if keeping:
    dim = min(keeping)
    lines.append(f"Smallest int8 student keeping >= {KEEPS_QUALITY_RATIO:.0%} of the teacher's "
                 f'NDCG@10 and Recall@100: d={dim}, {by[INT8, dim]["bytes"] / teacher["bytes"]:.1%}'
                 f" of the teacher's bytes, p50 {by[INT8, dim]['latency_p50_ms']:.2f} ms vs "
                 f"{teacher['latency_p50_ms']:.2f} ms.")
  else:
    lines.append(f"No int8 student keeps {KEEPS_QUALITY_RATIO:.0%} of the teacher's NDCG@10 and "
                 'Recall@100.')
  not_hurting = [dim for dim in sizes if by[DISTILLED, dim]['ndcg@10_mean']
                 >= by[SCRATCH, dim]['ndcg@10_mean'] - by[SCRATCH, dim]['ndcg@10_std']]
  lines.append(f'Distilled mean >= scratch mean - one std at {len(not_hurting)} of {len(sizes)} '
               'sizes.')
  return lines


def _aligned(lines: Sequence[Sequence[str]]) -> str:
  """Rows of cells as text columns: the first left-aligned, the others right-aligned."""
  widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
  return '\n'.join('  '.join([line[0].ljust(widths[0])] +
                             [cell.rjust(width) for cell, width in zip(line[1:], widths[1:])])
                   for line in lines)


def format_table(rows: Sequence[dict]) -> str:
  header = ('model', 'dim', 'NDCG@10', 'Recall@100', 'bytes', 'p50 ms', 'gap recovered')
  lines = [header]
  for row in rows:
    lines.append((
        row['model'] + (' *' if row.get('default') else ''),
        '' if row['embedding_dim'] is None else str(row['embedding_dim']),
        f"{row['ndcg@10_mean']:.4f} ± {row['ndcg@10_std']:.4f}",
        f"{row['recall@100_mean']:.4f} ± {row['recall@100_std']:.4f}",
        '' if row['bytes'] is None else f"{row['bytes']:,}",
        '' if row['latency_p50_ms'] is None else f"{row['latency_p50_ms']:.2f}",
        '' if row['gap_recovered'] is None else f"{row['gap_recovered']:.0%}"))
  return _aligned(lines) + '\n(* the default student)'


def format_slices_table(rows: Sequence[dict]) -> str:
  """The cold-start slices of every row: mean ± std over the seeds."""
  header = ('model', 'dim') + SLICE_METRICS
  lines = [header]
  for row in rows:
    lines.append((row['model'], '' if row['embedding_dim'] is None else str(row['embedding_dim']),
                  *('' if row[f'{key}_mean'] is None else
                    f"{row[f'{key}_mean']:.4f} ± {row[f'{key}_std']:.4f}"
                    for key in SLICE_METRICS)))
  return _aligned(lines)


def benchmark(data_source: str, output_dir: str, sizes: Sequence[int], seeds: Sequence[int],
              distillation: hparams.DistillationHParams, towers: Sizes = Sizes(),
              training_settings: hparams.TrainingHParams = configs.TRAINING,
              content_path_settings: hparams.ContentPathHParams = configs.CONTENT_PATH,
              export_settings: hparams.ExportHParams = configs.EXPORT) -> List[dict]:
  """Runs the benchmark (see the module docstring); returns its rows."""
  from pipeline import local_runner  # pylint: disable=g-import-not-at-top
  started = time.time()
  source, files = local_runner.resolve_inputs(data_source)
  feedback = loaders.resolve_feedback(configs.FEEDBACK, files)
  transformed_data.run_data_components(source, output_dir, BENCH_PIPELINE_NAME,
                                       configs.LOCAL_BEAM_PIPELINE_ARGS, enable_cache=True,
                                       feedback=feedback)
  logging.info('Data components (%s feedback): %.0f s', feedback, time.time() - started)
  # As the Trainer trains for this feedback (implicit: retrieval only).
  params = run_fn.retrieval_only(hparams.TrainerHParams(
      transform=configs.TRANSFORM, teacher=towers.teacher, student=towers.student,
      training=training_settings, distillation=distillation, export=export_settings,
      item_item=configs.ITEM_ITEM, content_path=content_path_settings, feedback=feedback))
  training_settings, distillation = params.training, params.distillation
  model_dirs, default_dims = {}, set()
  for seed in seeds:
    dirs, default_dim = train_seed(output_dir, seed, sizes, distillation, towers,
                                   training_settings, params.content_path, params.export)
    model_dirs.update(dirs)
    default_dims.add(default_dim)
  sizes = sorted(set(sizes) | default_dims) if sizes else []
  interactions, splits, test_examples, catalogue_items = transformed_data.evaluation_inputs(
      output_dir)
  teacher = model_name(layout.TEACHER, towers.teacher.embedding_dim, seeds[0])
  evaluated = evaluate.evaluate(interactions, splits, test_examples, model_dirs,
                                candidate=teacher, reference=teacher,
                                latency_requests=configs.LATENCY_REQUESTS,
                                catalogue_items=catalogue_items)
  return frontier_rows(evaluated['models'], sizes, seeds, max(default_dims))


def _override(records: Sequence[Any], settings: Sequence[str]) -> List[Any]:
  """`records` (hyper-parameter records) with the `NAME=VALUE` settings, each applied to the
  first record that has the field, in its field's type."""
  values = [hparams.to_dict(record) for record in records]
  for setting in settings:
    name, _, value = setting.partition('=')
    owner = next((fields for fields in values if name in fields), None)
    if owner is None or not value:
      raise ValueError(f'--set {setting!r}: expected NAME=VALUE with NAME one of '
                       f'{sorted(set().union(*values))}')
    owner[name] = (value.lower() in ('1', 'true') if isinstance(owner[name], bool)
                   else type(owner[name])(value))
  return [hparams.from_dict(type(record), fields) for record, fields in zip(records, values)]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data', default=configs.DATA_SOURCE,
                      help='"movielens-100k", a MovieLens directory, or an interactions CSV')
  parser.add_argument('--output', default=os.path.join(configs.OUTPUT_DIR, 'distill'),
                      help='directory for the data components, teachers and models')
  parser.add_argument('--bench-out', default='distill.json', help='JSON file of rows')
  parser.add_argument('--plot', default=None, help='PNG of the frontier (default: beside JSON)')
  parser.add_argument('--sizes', type=int, nargs='*', default=list(SIZES),
                      help='student embedding dimensions (none: the teacher and EASE only)')
  parser.add_argument('--seeds', type=int, default=SEEDS, help='seeds per model')
  parser.add_argument('--set', action='append', default=[], metavar='NAME=VALUE',
                      help='override a distillation, training, content-path or export '
                           'hyper-parameter (of the first record that has it; repeatable)')
  parser.add_argument('--no-item-item', action='store_true',
                      help="the teacher without the item-to-item component (the towers alone)")
  parser.add_argument('--inherited-rank', type=int, default=None, metavar='RANK',
                      help="the rank of the teacher's item-to-item component the students "
                           'inherit (default: chosen by the size budget)')
  parser.add_argument('--item-id-dropout', type=float, default=None, metavar='RATE',
                      help="both towers' item_id_dropout (default: the configs' values)")
  parser.add_argument('--user-id-dropout', type=float, default=None, metavar='RATE',
                      help="both models' user_id_dropout (default: the configs' values)")
  parser.add_argument('--verbose', action='store_true',
                      help="log the details too (the content path's fit and level)")
  args = parser.parse_args(argv)
  progress.install(verbose=args.verbose)
  try:
    distillation, training_settings, content_path_settings, export_settings = _override(
        [configs.DISTILLATION, configs.TRAINING, configs.CONTENT_PATH, configs.EXPORT], args.set)
  except ValueError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  seeds = [training_settings.seed + i for i in range(args.seeds)]
  towers = Sizes()
  if args.item_id_dropout is not None:
    towers = Sizes(*(dataclasses.replace(size, item_id_dropout=args.item_id_dropout)
                     for size in (towers.teacher, towers.student)))
  if args.user_id_dropout is not None:
    towers = Sizes(*(dataclasses.replace(size, user_id_dropout=args.user_id_dropout)
                     for size in (towers.teacher, towers.student)))
  if args.no_item_item:
    towers = Sizes(*(dataclasses.replace(size, item_item=False)
                     for size in (towers.teacher, towers.student)))
  if args.inherited_rank is not None:
    towers = dataclasses.replace(towers, student=dataclasses.replace(
        towers.student, item_item_rank=args.inherited_rank))
  rows = benchmark(args.data, os.path.abspath(args.output), args.sizes, seeds, distillation,
                   towers, training_settings, content_path_settings, export_settings)
  with open(args.bench_out, 'w') as f:
    json.dump(rows, f, indent=2)
  plot = args.plot or os.path.splitext(args.bench_out)[0] + '.png'
  charts.frontier(rows, os.path.dirname(os.path.abspath(plot)), os.path.basename(plot),
                  title=f'Distillation frontier: {os.path.basename(args.data.rstrip("/"))}')
  print(format_table(rows))
  print(format_slices_table(rows))
  print('\n'.join(findings(rows)))
  print(f'Wrote {args.bench_out} and {plot}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
