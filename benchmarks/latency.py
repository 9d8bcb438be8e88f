"""Latency benchmark: the in-process p50 of SavedModels' signatures, side by side in one run.

    python -m benchmarks.latency --model teacher=DIR --model student_int8=DIR ...
    python -m benchmarks.latency --data DATA --output OUTPUT   # trains and exports the three
    python -m benchmarks.latency --model student_int8=DIR --signature recommend
        --signature recommend_with_reasons                   # what reasons cost

Each model answers the same one-example request (a known user and a history of 20 catalogue
items: a serialized tf.Example for `serving_default`, the user id and the history for
`recommend` and `recommend_with_reasons`) on each `--signature` (default `serving_default`) in
two ways: the loaded SavedModel's signature (`tf.saved_model.load`, as the evaluation's
`serving_latencies_ms` calls it) and a TF1 session over the SavedModel's graph with one
intra-op thread (`tf.compat.v1.saved_model.loader`: the graph, Grappler rewrites and init op
TF Serving runs). The models take turns, one call each per round, so that the machine's load
falls on all of them alike. Prints p50 and p99 per model and the ratios to the fp32 student and to
the teacher (the target: the int8 student's p50 at most the fp32 student's and at most a third
of the teacher's), and with several signatures, one row per model and signature (`model:
signature`) and each one's ratio to the model's first signature (a model without a signature
is not measured on it: exports from before and after a change side by side); writes them as
JSON with `--bench-out`.

With `--data`, the teacher, the distilled fp32 student and the int8 student are trained with the
training API (`models.training`, `pipeline.configs` sizes) for `--epochs` epochs each on the
pipeline's data components' outputs (run on DATA into OUTPUT, cached) and exported with the
serving signatures into OUTPUT/latency_models: short training, since latency does not depend
on how well a model is trained.
"""
import argparse
import dataclasses
import json
import os
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from contract import features
from contract import signatures
from evaluation import saved_models
from models import layout

BENCH_PIPELINE_NAME = 'recsys-distill-latency'
FP32, INT8 = layout.STUDENT_FP32, layout.STUDENT_INT8
HISTORY_ITEMS = 20
USER = '1'
# The signatures measured, by their inputs: a serialized tf.Example, or a user id and a history.
EXAMPLE_SIGNATURES = (signatures.SERVING_DEFAULT,)
QUERY_SIGNATURES = (signatures.RECOMMEND, signatures.RECOMMEND_WITH_REASONS)


def train_and_export(data_source: str, output_dir: str, epochs: int) -> Dict[str, str]:
  """The teacher, the distilled student and the int8 student, trained briefly and exported;
  returns their SavedModel directories by name."""
  # pylint: disable=g-import-not-at-top
  from benchmarks import transformed_data
  from models import training
  from pipeline import configs
  from pipeline import local_runner
  # pylint: enable=g-import-not-at-top
  transformed_data.run_data_components(local_runner.resolve_inputs(data_source)[0],
                                       output_dir, BENCH_PIPELINE_NAME,
                                       configs.LOCAL_BEAM_PIPELINE_ARGS, enable_cache=True)
  training_hparams = dataclasses.replace(configs.TRAINING, epochs=epochs)
  distillation = dataclasses.replace(configs.DISTILLATION, epochs=epochs, qat_epochs=1)
  data = transformed_data.training_data(output_dir, configs.TRANSFORM, training_hparams,
                                        with_eval=False)
  dirs = {}

  def write(name: str, model) -> None:
    dirs[name] = os.path.join(output_dir, 'latency_models', name)
    training.export_model(model, data, configs.EXPORT, dirs[name], int8_index=name == INT8)

  with tempfile.TemporaryDirectory() as tensorboard_dir:
    log = training.TrainingLog(tensorboard_dir)
    teacher = training.train_teacher(
        data, configs.TEACHER, training_hparams, log,
        training.fit_item_item(data, configs.TEACHER, configs.ITEM_ITEM))
    write(layout.TEACHER, teacher)
    student_size = training.student_size(data, teacher, configs.STUDENT, distillation)
    with training.teacher_outputs(data, teacher, training_hparams) as distilling:
      fp32 = training.distil(distilling, teacher, student_size, training_hparams,
                             distillation, log)
      write(FP32, fp32)
      write(INT8, training.quantize(distilling, teacher, fp32, training_hparams, distillation,
                                    log))
  return dirs


def history_items(model) -> List[str]:
  """The first `HISTORY_ITEMS` items the model recommends to a user without history."""
  first = model.signatures[signatures.RECOMMEND](user_id=tf.constant([USER]),
                                                 history=tf.constant([['']]))
  return [item.decode() for item in first[signatures.ITEM_IDS].numpy()[0][:HISTORY_ITEMS]]


def request(model) -> bytes:
  """A serialized tf.Example: user `USER` and a history of `history_items`."""
  def feature(value: str) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
  return tf.train.Example(features=tf.train.Features(feature={
      features.USER_ID: feature(USER),
      features.HISTORY: feature(features.HISTORY_SEPARATOR.join(history_items(model)))}
  )).SerializeToString()


def inputs(model, signature: str) -> Dict[str, np.ndarray]:
  """The one-example request of `signature` (module docstring) by input name."""
  if signature in EXAMPLE_SIGNATURES:
    return {signatures.EXAMPLES: np.array([request(model)], object)}
  if signature in QUERY_SIGNATURES:
    return {signatures.USER_ID: np.array([USER.encode()], object),
            signatures.HISTORY: np.array([[item.encode() for item in history_items(model)]],
                                         object)}
  raise ValueError(f'no request for signature {signature!r}: measured are '
                   f'{EXAMPLE_SIGNATURES + QUERY_SIGNATURES}')


class _Session:
  """A signature run as TF Serving runs it: a session over the SavedModel's graph."""

  def __init__(self, path: str, signature_name: str = signatures.SERVING_DEFAULT):
    graph = tf.Graph()
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1)
    self.session = tf.compat.v1.Session(graph=graph, config=config)
    with graph.as_default():
      meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ['serve'], path)
    signature = meta_graph.signature_def[signature_name]
    self.feeds = {name: info.name for name, info in signature.inputs.items()}
    self.fetch = [signature.outputs[name].name for name in sorted(signature.outputs)]

  def __call__(self, feeds: Dict[str, np.ndarray]) -> None:
    self.session.run(self.fetch, {self.feeds[name]: value for name, value in feeds.items()})


def measure(paths: Dict[str, str], rounds: int, warmup: int,
            signature_names: Sequence[str] = (signatures.SERVING_DEFAULT,)
            ) -> Dict[str, Dict[str, float]]:
  """p50, p99 and mean milliseconds of each model's signatures, both ways, the models and
  signatures taking turns; by model name, or `model:signature` with several signatures."""
  calls = {}
  for name, path in paths.items():
    model = tf.saved_model.load(path)
    for signature_name in signature_names:
      if signature_name not in model.signatures:  # e.g. an export from before the signature
        print(f'{name} has no {signature_name} signature: not measured', file=sys.stderr)
        continue
      label = name if len(signature_names) == 1 else f'{name}:{signature_name}'
      feeds = inputs(model, signature_name)
      serve = model.signatures[signature_name]
      tensors = {key: tf.constant(value) for key, value in feeds.items()}
      calls[(label, 'signature')] = (
          lambda serve=serve, tensors=tensors: serve(**tensors)[signatures.ITEM_IDS].numpy())
      session = _Session(path, signature_name)
      calls[(label, 'session')] = lambda session=session, feeds=feeds: session(feeds)
  results = {}
  for (name, way), stats in saved_models.timed_in_turns(calls, rounds, warmup).items():
    results.setdefault(name, {}).update({f'{way}_{stat}': value for stat, value in stats.items()})
  return results


def format_table(results: Dict[str, Dict[str, float]]) -> str:
  """One row per model (or `model:signature`): p50 and p99 both ways, and the p50 ratios to the
  fp32 student's and the teacher's (same signature), and to the model's first signature."""
  width = max([14] + [len(label) for label in results])
  lines = [f'{"model":{width}} {"signature p50":>13} {"p99":>7} {"session p50":>11} {"p99":>7} '
           f'{"/ fp32 p50":>10} {"/ teacher p50":>13} {"/ 1st signature":>15}']
  firsts = {}
  for label in results:
    firsts.setdefault(label.partition(':')[0], label)

  def ratio(row: Dict[str, float], base: Optional[Dict[str, float]]) -> str:
    return (f'{row["signature_p50_ms"] / base["signature_p50_ms"]:.2f}/'
            f'{row["session_p50_ms"] / base["session_p50_ms"]:.2f}' if base else '')

  for label, row in results.items():
    name, colon, signature = label.partition(':')
    ratios = [ratio(row, results.get(reference + colon + signature))
              for reference in (FP32, layout.TEACHER)]
    ratios.append(ratio(row, results[firsts[name]]) if colon else '')
    lines.append(f'{label:{width}} {row["signature_p50_ms"]:13.3f} {row["signature_p99_ms"]:7.3f} '
                 f'{row["session_p50_ms"]:11.3f} {row["session_p99_ms"]:7.3f} '
                 f'{ratios[0]:>10} {ratios[1]:>13} {ratios[2]:>15}')
  return '\n'.join(lines) + '\n(ratios: signature/session)'


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', action='append', default=[], metavar='NAME=DIR',
                      help='a SavedModel to measure (repeatable); names teacher, '
                      f'{FP32} and {INT8} get ratios')
  parser.add_argument('--data', help='train and export the three models on DATA instead')
  parser.add_argument('--output', default=os.path.join('outputs', 'latency'),
                      help='with --data: directory for the data components and the models')
  parser.add_argument('--epochs', type=int, default=1, help='with --data: training epochs')
  parser.add_argument('--signature', action='append', default=[],
                      choices=EXAMPLE_SIGNATURES + QUERY_SIGNATURES,
                      help='a signature to measure (repeatable; default serving_default)')
  parser.add_argument('--rounds', type=int, default=1000, help='timed calls of each model')
  parser.add_argument('--warmup', type=int, default=50, help='untimed rounds first')
  parser.add_argument('--bench-out', help='JSON file of the results')
  args = parser.parse_args(argv)
  paths = {}
  for spec in args.model:
    name, _, path = spec.partition('=')
    if not name or not tf.saved_model.contains_saved_model(path):
      print(f'error: --model {spec!r}: expected NAME=DIR of a SavedModel', file=sys.stderr)
      return 2
    paths[name] = path
  if args.data:
    paths.update(train_and_export(args.data, os.path.abspath(args.output), args.epochs))
  if not paths:
    print('error: give --model NAME=DIR or --data', file=sys.stderr)
    return 2
  load = [os.getloadavg()[0]]
  signature_names = args.signature or [signatures.SERVING_DEFAULT]
  results = measure(paths, args.rounds, args.warmup, signature_names)
  load.append(os.getloadavg()[0])
  print(format_table(results))
  print(f'{os.cpu_count()} CPUs, load average {load[0]:.1f} before and {load[1]:.1f} after')
  if args.bench_out:
    with open(args.bench_out, 'w') as out:
      json.dump({'models': paths, 'signatures': signature_names, 'results': results,
                 'load_average': load,
                 'cpu_count': os.cpu_count(), 'rounds': args.rounds}, out, indent=2)
    print(f'Wrote {args.bench_out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
