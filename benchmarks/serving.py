"""Serving benchmark: the student and the teacher behind the local gRPC server, over loopback.

    python -m benchmarks.serving --serving-dir outputs/serving --bench-out serving_results.json

For each model, starts `serving.server` in a subprocess serving only that model, then measures
top-k `recommend` (k = 100 by default) with the project's client: latency percentiles at
concurrency 1, throughput at concurrency 8 and 32 (asyncio gRPC, one process), and the server's
resident memory. `--student`/`--teacher` take a model base directory (numeric versions inside)
or one SavedModel directory (e.g. the Trainer's model_run/<id>/teacher).
"""
import argparse
import asyncio
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

import grpc
import numpy as np
import psutil
from tensorflow_serving.apis import prediction_service_pb2_grpc

from contract import signatures
from serving import client as client_lib

MODELS = ('student', 'teacher')
CONCURRENCIES = (8, 32)
NUM_USERS = 943  # ML-100K user ids are 1..943; other ids are served as unknown users
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


class Server:
  """`serving.server` serving one model in a subprocess."""

  def __init__(self, name: str, base_path: str, threads: int, extra_args: Sequence[str] = ()):
    self.name = name
    self.target = None
    self.process = subprocess.Popen(
        [sys.executable, '-m', 'serving.server', '--port=0', f'--model_name={name}',
         f'--model_base_path={base_path}', '--file_system_poll_wait_seconds=0',
         f'--grpc_max_threads={threads}', '--max_batch_size=0', *extra_args],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in self.process.stdout:
      if line.startswith('Serving '):
        self.target = line.split(' on ')[-1].strip()
        break
    if self.target is None:
      raise RuntimeError(f'server for {name} exited with {self.process.wait()}')

  def rss_mib(self) -> float:
    return psutil.Process(self.process.pid).memory_info().rss / 2 ** 20

  def stop(self) -> None:
    self.process.terminate()
    self.process.wait()


def queries(client: client_lib.ServingClient, k: int, count: int,
            seed: int = 0) -> List[Tuple[str, List[str]]]:
  """`count` (user id, history) pairs: random users, histories of served item ids."""
  catalogue = set()
  for user in range(1, 21):
    catalogue.update(client.recommend(str(user), (), k).item_ids)
  catalogue = sorted(catalogue)
  rng = random.Random(seed)
  return [(str(rng.randint(1, NUM_USERS)), rng.sample(catalogue, signatures.HISTORY_LENGTH))
          for _ in range(count)]


def latency_ms(client, requests) -> Dict[str, float]:
  """Sequential calls (concurrency 1): percentiles of the client-observed latency."""
  latencies = []
  for request in requests:
    started = time.perf_counter()
    client.send(request)
    latencies.append(time.perf_counter() - started)
  millis = np.array(latencies) * 1e3
  return {f'p{q}_ms': float(np.percentile(millis, q)) for q in (50, 95, 99)}


async def _throughput(target: str, requests, concurrency: int, seconds: float) -> Dict[str, float]:
  async with grpc.aio.insecure_channel(target) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    done, failed = 0, 0
    stop_at = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
      nonlocal done, failed
      index = offset
      while time.perf_counter() < stop_at:
        try:
          await stub.Predict(requests[index % len(requests)], timeout=10)
          done += 1
        except grpc.RpcError:
          failed += 1
        index += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(worker(offset) for offset in range(concurrency)))
    return {'rps': done / (time.perf_counter() - started), 'failed': failed}


def measure(name: str, base_path: str, k: int, num_requests: int, seconds: float,
            threads: int, server_args: Sequence[str] = ()) -> dict:
  server = Server(name, base_path, threads, server_args)
  try:
    with client_lib.ServingClient(server.target, name, deadline_s=30) as client:
      version = client.wait_until_available()
      pairs = queries(client, k, num_requests)
      requests = [client.recommend_request([user], [history], k) for user, history in pairs]
      returned = len(client.recommend(*pairs[0], k).item_ids)
      latency_ms(client, requests[:200])  # warm the channel and the server's threads
      row = {'model': name, 'version': version, 'k': returned, **latency_ms(client, requests)}
    for concurrency in CONCURRENCIES:
      result = asyncio.run(_throughput(server.target, requests, concurrency, seconds))
      row[f'rps_c{concurrency}'] = result['rps']
      row[f'failed_c{concurrency}'] = result['failed']
    row['rss_mib'] = server.rss_mib()
    return row
  finally:
    server.stop()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--serving-dir', default='outputs/serving',
                      help="the Pusher's serving directory (student/ and teacher/ inside)")
  parser.add_argument('--student', help='student base directory or SavedModel')
  parser.add_argument('--teacher', help='teacher base directory or SavedModel')
  parser.add_argument('--bench-out', default='serving_results.json', help='JSON written here')
  parser.add_argument('-k', type=int, default=signatures.TOP_K, help='items per recommendation')
  parser.add_argument('--requests', type=int, default=2000, help='calls for the latency run')
  parser.add_argument('--seconds', type=float, default=10.0, help='per throughput run')
  parser.add_argument('--threads', type=int, default=8, help="server's request threads")
  parser.add_argument('--server-args', default='',
                      help='more serving.server flags, e.g. "--tensorflow_intra_op_parallelism=0"')
  args = parser.parse_args(argv)

  rows = []
  load_before = os.getloadavg()[0]
  with tempfile.TemporaryDirectory() as scratch:
    for name in MODELS:
      path = getattr(args, name) or os.path.join(args.serving_dir, name)
      if not os.path.isdir(path):
        print(f'error: no {name} model at {path} (make run pushes the student; pass --{name})',
              file=sys.stderr)
        return 2
      print(f'Measuring {name} ({path}) ...', flush=True)
      rows.append(measure(name, base_directory(path, scratch, name), args.k, args.requests,
                          args.seconds, args.threads, shlex.split(args.server_args)))

  header = (f'{"model":8} {"k":>4} {"p50 ms":>7} {"p95 ms":>7} {"p99 ms":>7} '
            f'{"rps c=8":>8} {"rps c=32":>9} {"RSS MiB":>8}')
  print(header)
  for row in rows:
    print(f'{row["model"]:8} {row["k"]:4d} {row["p50_ms"]:7.2f} {row["p95_ms"]:7.2f} '
          f'{row["p99_ms"]:7.2f} {row["rps_c8"]:8.0f} {row["rps_c32"]:9.0f} '
          f'{row["rss_mib"]:8.0f}')
  by_model = {row['model']: row for row in rows}
  student, teacher = by_model['student'], by_model['teacher']
  targets = {
      'student_p50_le_1ms': student['p50_ms'] <= 1.0,
      'student_p99_le_3ms': student['p99_ms'] <= 3.0,
      'student_rps_c8_ge_3x_teacher': student['rps_c8'] >= 3 * teacher['rps_c8'],
  }
  ratio = student['rps_c8'] / teacher['rps_c8']
  print(f'student/teacher throughput at c=8: {ratio:.1f}x; targets: ' +
        ', '.join(f'{name} {"met" if met else "MISSED"}' for name, met in targets.items()))
  load = (load_before, os.getloadavg()[0])
  print(f'{os.cpu_count()} CPUs, load average {load[0]:.1f} before and {load[1]:.1f} after '
        '(client and server share them)')
  with open(args.bench_out, 'w') as out:
    json.dump({'rows': rows, 'throughput_ratio_c8': ratio, 'targets': targets,
               'cpu_count': os.cpu_count(), 'load_average': load,
               'server_args': args.server_args}, out, indent=2)
  print(f'Wrote {args.bench_out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
