"""Scale benchmark: the data stages and one teacher epoch on a large synthetic data set.

    python -m benchmarks.scale --users 100000 --items 50000 --interactions 10000000 \\
        --output /tmp/scale --bench-out scale_results.json

Generates the data set (streamed to CSV; reused when already generated with the same
parameters), runs the pipeline's own data components from the raw CSV (RawExampleGen: validate,
split and build the examples with Beam; StatisticsGen, ImportSchemaGen, ExampleValidator,
DataGate, Transform) on the multi-processing DirectRunner, then streams the transformed train split
with tf.data for the trainer's statistics pass and one training epoch of the teacher. Prints
the wall time of every stage and the peak resident memory of the whole process tree (sampled,
children included) and writes them as JSON.
"""
import argparse
import dataclasses
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from typing import Dict, List

import psutil
from absl import logging

from contract import features
from benchmarks import transformed_data
from pipeline import configs
from pipeline import progress
from ingest import synthetic

GIB = 1024**3
BENCH_PIPELINE_NAME = 'recsys-distill-scale'


def beam_args(workers: int) -> List[str]:
  """The DirectRunner with one process per worker (the driver only coordinates)."""
  return ['--direct_running_mode=multi_processing', f'--direct_num_workers={workers}']


class ProcessTreeMonitor:
  """Samples this process and all its descendants in a thread: the peak of their summed
  resident memory, and the CPU seconds they used (worker processes come and go between
  Beam pipelines, so each one's last sample is kept)."""

  def __init__(self, interval_s: float = 0.5):
    self._interval_s = interval_s
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._cpu_by_pid: Dict[int, float] = {}
    self.peak_bytes = 0

  def sample(self) -> int:
    """Records every live process's CPU time; returns their summed resident memory."""
    root = psutil.Process()
    total = 0
    for process in [root] + root.children(recursive=True):
      try:
        with process.oneshot():
          total += process.memory_info().rss
          times = process.cpu_times()
        self._cpu_by_pid[process.pid] = times.user + times.system
      except psutil.Error:  # exited between listing and reading
        pass
    return total

  def cpu_seconds(self) -> float:
    self.sample()
    return sum(self._cpu_by_pid.values())

  def _run(self):
    while not self._stop.is_set():
      self.peak_bytes = max(self.peak_bytes, self.sample())
      self._stop.wait(self._interval_s)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc_info):
    self._stop.set()
    self._thread.join()


@dataclasses.dataclass
class Stage:
  name: str
  seconds: float
  cpu_seconds: float  # process tree, all cores
  peak_rss_gib: float  # process tree, during this stage


class Stages:
  """Times named stages, with the process tree's CPU time and peak memory during each."""

  def __init__(self, monitor: ProcessTreeMonitor):
    self._monitor = monitor
    self.stages: List[Stage] = []

  def run(self, name: str, function, *args, **kwargs):
    logging.info('Stage %s', name)
    self._monitor.peak_bytes = self._monitor.sample()
    cpu_before = self._monitor.cpu_seconds()
    started = time.time()
    result = function(*args, **kwargs)
    stage = Stage(name, time.time() - started, self._monitor.cpu_seconds() - cpu_before,
                  max(self._monitor.peak_bytes, self._monitor.sample()) / GIB)
    self.stages.append(stage)
    logging.info('Stage %s: %.1f s, %.1f CPU s, peak RSS %.2f GiB', name, stage.seconds,
                 stage.cpu_seconds, stage.peak_rss_gib)
    return result


def generate(directory: str, users: int, items: int, interactions: int, seed: int) -> int:
  """Writes the synthetic data set unless `directory` already holds it; returns its rows."""
  parameters = {'users': users, 'items': items, 'interactions': interactions, 'seed': seed}
  marker = os.path.join(directory, 'generated.json')
  if os.path.exists(marker):
    with open(marker) as f:
      previous = json.load(f)
    if previous['parameters'] == parameters:
      return previous['rows']
  rows = synthetic.write_large_csv(directory, users, items, interactions, seed)
  with open(marker, 'w') as f:
    json.dump({'parameters': parameters, 'rows': rows}, f)
  return rows


def run_data_components(data_dir: str, output_dir: str, workers: int,
                        tracker: progress.ProgressFilter) -> Dict[str, float]:
  """Runs the pipeline's data components (no cache); returns each component's seconds."""
  transformed_data.run_data_components(data_dir, output_dir, BENCH_PIPELINE_NAME,
                                       beam_args(workers), enable_cache=False)
  return dict(tracker.durations)


def train_teacher_epoch(output_dir: str, batch_size: int, stages: Stages) -> Dict[str, float]:
  """Streams the transformed train split: the trainer's statistics pass, the hybrid teacher's
  item-to-item fit (its middle L2 weight and largest rank: no eval split), then one epoch of the
  teacher, with the training API of `models.run_fn` (no eval split, TensorBoard logs in a
  temporary directory). Returns the train examples seen, the teacher's parameter count and its
  final loss."""
  from models import layout  # pylint: disable=g-import-not-at-top
  from models import training  # pylint: disable=g-import-not-at-top

  training_hparams = dataclasses.replace(configs.TRAINING, epochs=1, batch_size=batch_size)
  data = stages.run('train_statistics_pass', transformed_data.training_data, output_dir,
                    configs.TRANSFORM, training_hparams, with_eval=False)
  with tempfile.TemporaryDirectory() as tensorboard_dir:
    log = training.TrainingLog(tensorboard_dir)
    tables = stages.run('item_item_fit', training.fit_item_item, data, configs.TEACHER,
                        configs.ITEM_ITEM)
    model = stages.run('teacher_epoch', training.train_teacher, data, configs.TEACHER,
                       training_hparams, log, tables)
  return {'train_examples': data.train_examples,
          'teacher_params': int(model.count_params()),
          'teacher_loss': log.records[layout.TEACHER]['history']['loss'][-1]}


def example_counts(output_dir: str) -> Dict[str, int]:
  """Examples per split, from the StatisticsGen output of the data components' run."""
  import tensorflow_data_validation as tfdv
  from tfx.types import artifact_utils
  from tfx.types import standard_artifacts

  statistics = standard_artifacts.ExampleStatistics()
  statistics.uri = transformed_data.latest_output(output_dir, 'StatisticsGen', 'statistics')
  statistics.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
  return {split: int(tfdv.load_stats_binary(os.path.join(
      artifact_utils.get_split_uri([statistics], split), 'FeatureStats.pb')).datasets[0]
                     .num_examples)
          for split in features.SPLITS}


def max_rss_gib(who: int) -> float:
  return resource.getrusage(who).ru_maxrss * 1024 / GIB  # ru_maxrss is in KiB on Linux


def benchmark(args) -> dict:
  tracker = progress.install()
  data_dir = os.path.join(args.output, 'data')
  # Everything but the generated data is rebuilt, so every stage is timed cold;
  # --training-only times the training stages on the data components' outputs of a previous run.
  rebuilt = (transformed_data.PIPELINE_ROOT, transformed_data.METADATA)
  for previous in () if args.training_only else rebuilt:
    path = os.path.join(args.output, previous)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)
  started = time.time()
  with ProcessTreeMonitor() as monitor:
    stages = Stages(monitor)
    if args.training_only:
      training = train_teacher_epoch(args.output, args.batch_size, stages)
      return {'parameters': vars(args), 'training': training,
              'stages': [dataclasses.asdict(stage) for stage in stages.stages],
              'total_s': time.time() - started,
              'peak_rss_gib': max(stage.peak_rss_gib for stage in stages.stages)}
    rows = stages.run('generate', generate, data_dir, args.users, args.items, args.interactions,
                      args.seed)
    components = stages.run('tfx_data_components', run_data_components, data_dir,
                            args.output, args.workers, tracker)
    training = train_teacher_epoch(args.output, args.batch_size, stages)
  return {
      'parameters': {'users': args.users, 'items': args.items, 'interactions': args.interactions,
                     'seed': args.seed,
                     'workers': args.workers, 'batch_size': args.batch_size,
                     'cpus': os.cpu_count(), 'memory_gib': psutil.virtual_memory().total / GIB},
      'rows': rows,
      'examples': example_counts(args.output),
      'stages': [dataclasses.asdict(stage) for stage in stages.stages],
      'components_s': components,
      'training': training,
      'total_s': time.time() - started,
      'peak_rss_gib': max(stage.peak_rss_gib for stage in stages.stages),
      'ru_maxrss_self_gib': max_rss_gib(resource.RUSAGE_SELF),
      'ru_maxrss_largest_child_gib': max_rss_gib(resource.RUSAGE_CHILDREN),
  }


def format_table(result: dict) -> str:
  lines = [('stage', 'seconds', 'CPU s', 'peak RSS GiB')]
  for stage in result['stages']:
    lines.append((stage['name'], f"{stage['seconds']:.1f}", f"{stage['cpu_seconds']:.1f}",
                  f"{stage['peak_rss_gib']:.2f}"))
    if stage['name'] == 'tfx_data_components':
      lines.extend((f'  {name}', f'{seconds:.1f}', '', '')
                   for name, seconds in result['components_s'].items())
  lines.append(('total', f"{result['total_s']:.1f}", '', f"{result['peak_rss_gib']:.2f}"))
  widths = [max(len(line[i]) for line in lines) for i in range(4)]
  table = '\n'.join('  '.join([line[0].ljust(widths[0])] +
                              [cell.rjust(width) for cell, width in zip(line[1:], widths[1:])])
                    for line in lines)
  if 'rows' not in result:  # --training-only
    return f"{table}\n{result['training']}"
  parameters = result['parameters']
  return (f"{result['rows']:,} interactions, {parameters['users']:,} users, "
          f"{parameters['items']:,} items; examples {result['examples']}\n{table}\n"
          f"ru_maxrss: driver {result['ru_maxrss_self_gib']:.2f} GiB, largest child "
          f"{result['ru_maxrss_largest_child_gib']:.2f} GiB")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--users', type=int, default=100_000)
  parser.add_argument('--items', type=int, default=50_000)
  parser.add_argument('--interactions', type=int, default=10_000_000)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--workers', type=int, default=2, help='DirectRunner worker processes')
  parser.add_argument('--batch-size', type=int, default=2048, help='teacher training batch')
  parser.add_argument('--output', default=os.path.join(configs.OUTPUT_DIR, 'scale'))
  parser.add_argument('--training-only', action='store_true',
                      help='only the statistics pass and the teacher epoch, on a previous run')
  parser.add_argument('--bench-out', default='scale_results.json', help='JSON file for results')
  args = parser.parse_args(argv)
  result = benchmark(args)
  with open(args.bench_out, 'w') as f:
    json.dump(result, f, indent=2)
  print(format_table(result))
  print(f'Wrote {args.bench_out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
