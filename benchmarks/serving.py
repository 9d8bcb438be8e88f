"""Serving benchmark: the student and the teacher against the floor, over loopback, in one run.

    python -m benchmarks.serving --serving-dir outputs/serving --bench-out serving_results.json

The floor is an empty Predict: a trivial SavedModel (an identity signature on one empty string)
built in a temporary directory. For the floor, the student and the teacher, each served alone by
`serving.server` in a subprocess, with batching off and on (`--enable_batching` with
`serving/batching_parameters.txt`), it measures `recommend` (top 100, one user per request)
with the project's client: p50/p99 latency at concurrency 1, throughput at concurrency 8 and 32
(asyncio gRPC, one process) and the server's CPU seconds per request in each phase (psutil's
cpu_times of the server process before and after). It also measures each model's in-process
Predict (`serving.servable`: the same session run and tensor conversion, without gRPC).

Targets, as ratios within the run (printed and written to the JSON): the student's p50 at most
the floor's p50 plus its in-process p50 plus 0.3 ms; with batching, each model's throughput at
concurrency 32 at least 1.3x its throughput without. Where `tensorflow_model_server` is on PATH,
the same phases run against it too. `--student`/`--teacher` take a model base directory (numeric
versions inside) or one SavedModel directory (e.g. the Trainer's model_run/<id>/teacher).
"""
import argparse
import asyncio
import json
import os
import random
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import grpc
import numpy as np
import psutil
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from contract import requests as requests_lib
from contract import signatures
from serving import client as client_lib
from serving import servable as servable_lib

MODELS = ('student', 'teacher')
FLOOR = 'floor'
CONCURRENCIES = (8, 32)
NUM_USERS = 943  # ML-100K user ids are 1..943; other ids are served as unknown users
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCHING_PARAMETERS = os.path.join(REPO_ROOT, 'serving', 'batching_parameters.txt')
P50_MARGIN_MS = 0.3
BATCHING_GAIN = 1.3


def base_directory(path: str, scratch: str, name: str) -> str:
  """A TF Serving base directory for `path`: itself, or a version 1 link to a SavedModel."""
  if os.path.isfile(os.path.join(path, 'saved_model.pb')):
    base = os.path.join(scratch, name)
    os.makedirs(base)
    os.symlink(os.path.abspath(path), os.path.join(base, '1'))
    return base
  if not any(name.isdigit() for name in os.listdir(path)):
    raise ValueError(f'{path} holds neither a SavedModel nor numeric version directories')
  return os.path.abspath(path)


def latest_version_dir(base: str) -> str:
  versions = [int(name) for name in os.listdir(base) if name.isdigit()]
  return os.path.join(base, str(max(versions)))


class _Identity(tf.Module):
  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='x')])
  def identity(self, x):
    return {'y': tf.identity(x)}


def floor_model(scratch: str) -> str:
  """The floor's base directory: version 1 of a SavedModel whose signature returns its input."""
  module = _Identity()
  base = os.path.join(scratch, FLOOR)
  tf.saved_model.save(module, os.path.join(base, '1'),
                      signatures={signatures.SERVING_DEFAULT: module.identity})
  return base


def floor_request() -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = FLOOR
  request.model_spec.signature_name = signatures.SERVING_DEFAULT
  request.inputs['x'].CopyFrom(tf.make_tensor_proto(np.array([b''], object)))
  return request


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


class Server:
  """One model served in a subprocess: `serving.server` ('local') or TF Serving ('tfs')."""

  def __init__(self, kind: str, name: str, base_path: str, threads: int, batching: bool,
               batching_parameters: str, extra_args: Sequence[str] = ()):
    port = _free_port()
    self.target = f'127.0.0.1:{port}'
    common = [f'--port={port}', f'--model_name={name}', f'--model_base_path={base_path}',
              '--file_system_poll_wait_seconds=0']
    if batching:
      common += ['--enable_batching=true', f'--batching_parameters_file={batching_parameters}']
    if kind == 'local':
      command = [sys.executable, '-m', 'serving.server', *common,
                 f'--grpc_max_threads={threads}', '--max_batch_size=0']
    else:
      command = [shutil.which('tensorflow_model_server'), *common, '--rest_api_port=0']
    self.process = subprocess.Popen([*command, *extra_args], cwd=REPO_ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    self._psutil = psutil.Process(self.process.pid)

  def wait_until_available(self, name: str, timeout_s: float = 300) -> int:
    with client_lib.ServingClient(self.target, name, deadline_s=2, retries=0) as client:
      deadline = time.time() + timeout_s
      while True:
        if self.process.poll() is not None:
          raise RuntimeError(f'server for {name} exited with {self.process.returncode}')
        try:
          return client.wait_until_available(timeout_s=1)
        except (TimeoutError, client_lib.ServingClientError):
          if time.time() > deadline:
            raise

  def cpu_seconds(self) -> float:
    times = self._psutil.cpu_times()
    return times.user + times.system

  def rss_mib(self) -> float:
    return self._psutil.memory_info().rss / 2 ** 20

  def stop(self) -> None:
    self.process.terminate()
    try:
      self.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
      self.process.kill()
      self.process.wait()


def recommend_requests(client: client_lib.ServingClient, count: int,
                       seed: int = 0) -> List[predict_pb2.PredictRequest]:
  """`count` one-user `recommend` requests: random users, histories of served item ids."""
  catalogue = set()
  for user in range(1, 21):
    catalogue.update(client.recommend(str(user), (), signatures.TOP_K).item_ids)
  catalogue = sorted(catalogue)
  rng = random.Random(seed)
  length = min(signatures.HISTORY_LENGTH, len(catalogue))
  return [client.recommend_request([str(rng.randint(1, NUM_USERS))],
                                   [rng.sample(catalogue, length)]) for _ in range(count)]


def _percentiles(seconds: Sequence[float]) -> Dict[str, float]:
  millis = np.array(seconds) * 1e3
  return {'p50_ms': float(np.percentile(millis, 50)), 'p99_ms': float(np.percentile(millis, 99))}


def latency(server: Server, client: client_lib.ServingClient, requests) -> Dict[str, float]:
  """Sequential calls (concurrency 1): percentiles and the server's CPU per request."""
  latencies = []
  cpu = server.cpu_seconds()
  for request in requests:
    started = time.perf_counter()
    client.send(request)
    latencies.append(time.perf_counter() - started)
  cpu = server.cpu_seconds() - cpu
  return {**_percentiles(latencies), 'cpu_ms_c1': cpu / len(requests) * 1e3}


async def _throughput(target: str, requests, concurrency: int, seconds: float) -> Tuple[int, int,
                                                                                        float]:
  async with grpc.aio.insecure_channel(target) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    done, failed = 0, 0
    stop_at = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
      nonlocal done, failed
      index = offset
      while time.perf_counter() < stop_at:
        try:
          await stub.Predict(requests[index % len(requests)], timeout=30)
          done += 1
        except grpc.RpcError:
          failed += 1
        index += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(worker(offset) for offset in range(concurrency)))
    return done, failed, time.perf_counter() - started


def throughput(server: Server, requests, concurrency: int, seconds: float) -> Dict[str, float]:
  cpu = server.cpu_seconds()
  done, failed, elapsed = asyncio.run(_throughput(server.target, requests, concurrency, seconds))
  cpu = server.cpu_seconds() - cpu
  return {f'rps_c{concurrency}': done / elapsed, f'failed_c{concurrency}': failed,
          f'cpu_ms_c{concurrency}': cpu / max(done, 1) * 1e3}


def measure(kind: str, name: str, base_path: str, batching: bool, args) -> dict:
  """Every phase on one model served alone."""
  server = Server(kind, name, base_path, args.threads, batching, args.batching_parameters,
                  shlex.split(args.server_args) if kind == 'local' else ())
  try:
    version = server.wait_until_available(name)
    with client_lib.ServingClient(server.target, name, deadline_s=30) as client:
      if name == FLOOR:
        requests, returned = [floor_request()] * args.requests, 0
      else:
        requests = recommend_requests(client, args.requests)
        returned = len(client.parse_recommendations(client.send(requests[0]))[0].item_ids)
      for request in requests[:args.warmup]:  # the channel, the server's threads, caches
        client.send(request)
      row = {'server': kind, 'model': name, 'batching': batching, 'version': version,
             'k': returned, **latency(server, client, requests)}
    for concurrency in CONCURRENCIES:
      row.update(throughput(server, requests, concurrency, args.seconds))
    row['rss_mib'] = server.rss_mib()
    return row
  finally:
    server.stop()


def in_process_p50_ms(base_path: str, name: str, requests: int, warmup: int) -> float:
  """p50 of `recommend` Predict on the loaded SavedModel in this process (`serving.servable`:
  the server's session run and tensor conversion, without gRPC), one user per request."""
  session_config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1)
  servable = servable_lib.Servable(name, 1, latest_version_dir(base_path), 0, session_config)
  try:
    rng = random.Random(1)
    first = servable.predict(requests_lib.recommend([str(rng.randint(1, NUM_USERS))], [[]]))
    catalogue = [item.decode() for item in tf.make_ndarray(first.outputs[signatures.ITEM_IDS])[0]]
    length = min(signatures.HISTORY_LENGTH, len(catalogue))
    calls = [requests_lib.recommend([str(rng.randint(1, NUM_USERS))],
                                    [rng.sample(catalogue, length)]) for _ in range(requests)]
    for request in calls[:warmup]:
      servable.predict(request)
    timings = []
    for request in calls:
      started = time.perf_counter()
      servable.predict(request)
      timings.append(time.perf_counter() - started)
    return _percentiles(timings)['p50_ms']
  finally:
    servable.retire()


def targets(rows: List[dict], in_process: Dict[str, float]) -> Dict[str, dict]:
  """The run's targets per server kind: {name: {value, limit, met}}."""
  found = {}
  by_key = {(row['server'], row['model'], row['batching']): row for row in rows}
  for kind in sorted({row['server'] for row in rows}):
    floor, student = by_key.get((kind, FLOOR, False)), by_key.get((kind, 'student', False))
    if floor and student:
      limit = floor['p50_ms'] + in_process['student'] + P50_MARGIN_MS
      found[f'{kind}: student p50 <= floor p50 + in-process p50 + {P50_MARGIN_MS} ms'] = {
          'value': student['p50_ms'], 'limit': limit, 'met': student['p50_ms'] <= limit}
    for model in MODELS:
      off, on = by_key.get((kind, model, False)), by_key.get((kind, model, True))
      if off and on:
        limit = BATCHING_GAIN * off['rps_c32']
        found[f'{kind}: {model} rps c=32 batching on >= {BATCHING_GAIN}x off'] = {
            'value': on['rps_c32'], 'limit': limit, 'met': on['rps_c32'] >= limit}
  return found


def _table(rows: List[dict]) -> str:
  lines = [f'{"server":6} {"model":8} {"batch":5} {"p50 ms":>7} {"p99 ms":>7} {"rps c8":>7} '
           f'{"rps c32":>8} {"cpu ms/req c1/c8/c32":>21} {"fail":>5} {"RSS MiB":>8}']
  for row in rows:
    cpu = '/'.join(f'{row[f"cpu_ms_c{c}"]:.2f}' for c in (1, *CONCURRENCIES))
    failed = sum(row[f'failed_c{c}'] for c in CONCURRENCIES)
    lines.append(f'{row["server"]:6} {row["model"]:8} {"on" if row["batching"] else "off":5} '
                 f'{row["p50_ms"]:7.2f} {row["p99_ms"]:7.2f} {row["rps_c8"]:7.0f} '
                 f'{row["rps_c32"]:8.0f} {cpu:>21} {failed:5d} {row["rss_mib"]:8.0f}')
  return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--serving-dir', default='outputs/serving',
                      help="the Pusher's serving directory (student/ and teacher/ inside)")
  parser.add_argument('--student', help='student base directory or SavedModel')
  parser.add_argument('--teacher', help='teacher base directory or SavedModel')
  parser.add_argument('--bench-out', default='serving_results.json', help='JSON written here')
  parser.add_argument('--requests', type=int, default=1000,
                      help='calls of the concurrency-1 phase (and of the in-process one)')
  parser.add_argument('--warmup', type=int, default=100, help='untimed calls first')
  parser.add_argument('--seconds', type=float, default=3.0, help='per throughput phase')
  parser.add_argument('--threads', type=int, default=32, help="server's request threads")
  parser.add_argument('--batching-parameters', default=BATCHING_PARAMETERS,
                      help='BatchingParameters text proto for the batching-on phases')
  parser.add_argument('--server-args', default='',
                      help='more serving.server flags, e.g. "--tensorflow_intra_op_parallelism=0"')
  args = parser.parse_args(argv)

  kinds = ['local'] + (['tfs'] if shutil.which('tensorflow_model_server') else [])
  rows, in_process = [], {}
  load_before = os.getloadavg()[0]
  with tempfile.TemporaryDirectory() as scratch:
    bases = {FLOOR: floor_model(scratch)}
    for name in MODELS:
      path = getattr(args, name) or os.path.join(args.serving_dir, name)
      if not os.path.isdir(path):
        print(f'error: no {name} model at {path} (make run pushes the student; pass --{name})',
              file=sys.stderr)
        return 2
      bases[name] = base_directory(path, scratch, name)
      print(f'In-process Predict of {name} ({path}) ...', flush=True)
      in_process[name] = in_process_p50_ms(bases[name], name, args.requests, args.warmup)
    for kind in kinds:
      for name in (FLOOR, *MODELS):
        for batching in (False, True):
          print(f'Measuring {kind} {name}, batching {"on" if batching else "off"} ...',
                flush=True)
          rows.append(measure(kind, name, bases[name], batching, args))

  print(_table(rows))
  print('in-process recommend Predict p50: ' +
        ', '.join(f'{name} {value:.2f} ms' for name, value in in_process.items()))
  found = targets(rows, in_process)
  for name, target in found.items():
    print(f'{"pass" if target["met"] else "MISS"}  {name}: {target["value"]:.2f} vs '
          f'{target["limit"]:.2f}')
  load = (load_before, os.getloadavg()[0])
  print(f'{os.cpu_count()} CPUs, load average {load[0]:.1f} before and {load[1]:.1f} after '
        '(client and server share them)')
  result = {'rows': rows, 'in_process_p50_ms': in_process, 'targets': found,
            'cpu_count': os.cpu_count(), 'load_average': load,
            'settings': {'requests': args.requests, 'seconds': args.seconds,
                         'threads': args.threads, 'server_args': args.server_args,
                         'batching_parameters': args.batching_parameters}}
  with open(args.bench_out, 'w') as out:
    json.dump(result, out, indent=2)
  print(f'Wrote {args.bench_out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
