"""Server-side batching in the local server: answers equal the unbatched ones under concurrent
clients, TF Serving's codes for oversize requests and full queues, padding to allowed sizes,
version swaps, and the parameters file."""
import os
import random
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

import serving_fixtures
from contract import requests
from serving import batching
from serving import client as client_lib
from serving import config as config_lib
from serving import errors
from serving import server as server_lib

MAX_BATCH_SIZE = 8
OPTIONS = batching.Options(max_batch_size=MAX_BATCH_SIZE, batch_timeout_micros=5000,
                           num_batch_threads=2, max_enqueued_batches=64)


def _start(base: str, options=None, poll_wait_seconds: float = 0) -> server_lib.ModelServer:
  config = config_lib.single_model_config('tiny', base)
  return server_lib.ModelServer(config, port=0, poll_wait_seconds=poll_wait_seconds,
                                grpc_max_threads=32, batching_options=options).start()


@pytest.fixture(scope='module')
def servers(tmp_path_factory):
  base = str(tmp_path_factory.mktemp('models') / 'tiny')
  serving_fixtures.save_tiny_model(base, 1)
  batched, plain = _start(base, OPTIONS), _start(base)
  yield batched, plain
  batched.stop()
  plain.stop()


def _request(rng: random.Random, signature: str):
  """A valid request to `signature` for 1 to 3 random users (some unknown)."""
  size = rng.randint(1, 3)
  users = [rng.choice(serving_fixtures.USERS + ['nobody']) for _ in range(size)]
  histories = [rng.sample(serving_fixtures.ITEMS, rng.randint(0, 4)) for _ in range(size)]
  if signature == 'recommend':
    request = requests.recommend(users, histories)
  elif signature == 'serving_default':
    request = requests.serving_default(users, histories)
  elif signature == 'score':
    request = requests.score(users[0], rng.sample(serving_fixtures.ITEMS, size), histories[0])
  else:
    request = requests.recommend(users, histories)
    request.model_spec.signature_name = signature
    for name, values in (('age', np.array([rng.randint(10, 80) for _ in users], np.int64)),
                         ('gender', np.array([b'F'] * size, object)),
                         ('occupation', np.array([b'artist'] * size, object)),
                         ('zip_code', np.array([b'12345'] * size, object))):
      request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
  request.model_spec.name = 'tiny'
  return request


def _outputs(response):
  return {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}


def test_concurrent_batched_answers_equal_unbatched_ones(servers):
  batched, plain = servers
  signatures = ['recommend', 'recommend_with_features', 'serving_default', 'score']
  work = [[_request(random.Random(thread * 100 + n), signatures[(thread + n) % 4])
           for n in range(6)] for thread in range(16)]
  runs_before = batched.scheduler.batches_run, batched.scheduler.requests_run
  start = threading.Barrier(16)
  answers, failures = {}, []

  def client(thread: int) -> None:
    with client_lib.ServingClient(batched.address, 'tiny', deadline_s=30) as served:
      start.wait()
      for n, request in enumerate(work[thread]):
        try:
          answers[thread, n] = served.send(request)
        except client_lib.ServingClientError as error:
          failures.append(str(error))

  threads = [threading.Thread(target=client, args=(thread,)) for thread in range(16)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert not failures, failures[:3]
  batches = batched.scheduler.batches_run - runs_before[0]
  merged = batched.scheduler.requests_run - runs_before[1]
  assert merged == 16 * 6 and batches < merged  # requests shared batches
  with client_lib.ServingClient(plain.address, 'tiny') as reference:
    for (thread, n), answer in answers.items():
      expected = reference.send(work[thread][n])
      assert answer.model_spec == expected.model_spec
      got, want = _outputs(answer), _outputs(expected)
      assert set(got) == set(want)
      for name, values in want.items():
        assert got[name].shape == values.shape, name
        if values.dtype == object:
          np.testing.assert_array_equal(got[name], values)
        else:
          np.testing.assert_allclose(got[name], values, rtol=1e-5, atol=1e-6)


def test_a_request_above_max_batch_size_is_refused(servers):
  batched, _ = servers
  with client_lib.ServingClient(batched.address, 'tiny', retries=0) as client:
    with pytest.raises(client_lib.ServingClientError,
                       match='Task size 9 is larger than maximum input batch size 8') as error:
      client.recommend_batch(['alice'] * 9, [[]] * 9, k=3)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(client.recommend_batch(['alice'] * 8, [[]] * 8, k=3)) == 8


def test_a_full_queue_answers_unavailable():
  release = threading.Event()
  scheduler = batching.BatchScheduler(batching.Options(
      max_batch_size=2, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=1))

  def run(*feeds):
    release.wait(10)
    return [feeds[0] * 2]

  results = []
  def submit(size: int) -> None:
    results.append(scheduler.run('queue', run, [np.arange(size)])[0].tolist())

  try:
    first = threading.Thread(target=submit, args=(2,))
    first.start()
    deadline = time.time() + 5
    while scheduler.batches_run == 0 and time.time() < deadline:  # running, blocked
      time.sleep(0.01)
    second = threading.Thread(target=submit, args=(2,))  # fills the queue's one batch
    second.start()
    time.sleep(0.2)
    with pytest.raises(errors.ServingError, match='queue .* is full') as error:
      scheduler.run('queue', run, [np.arange(1)])
    assert error.value.code == grpc.StatusCode.UNAVAILABLE
    release.set()
    first.join()
    second.join()
    assert results == [[0, 2], [0, 2]]
  finally:
    release.set()
    scheduler.stop()


def test_batches_are_padded_to_allowed_sizes_and_inputs_must_agree_on_dimension_0():
  shapes = []
  def run(*feeds):
    shapes.append(feeds[0].shape)
    return [feeds[0] + 1, feeds[1]]
  scheduler = batching.BatchScheduler(batching.Options(
      max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=2,
      allowed_batch_sizes=(2, 4)))
  try:
    outputs = scheduler.run('q', run, [np.array([[5, 6], [7, 8], [9, 10]]),
                                       np.array([b'a', b'b', b'c'], object)])
    assert shapes == [(4, 2)]  # three rows padded to four, the padding dropped
    np.testing.assert_array_equal(outputs[0], [[6, 7], [8, 9], [10, 11]])
    assert outputs[1].tolist() == [b'a', b'b', b'c']
    with pytest.raises(errors.ServingError, match='equal 0th-dimension size'):
      scheduler.run('q', run, [np.zeros([2, 1]), np.zeros([3], object)])
  finally:
    scheduler.stop()


def test_parameters_file_parses_as_tf_servings_text_proto(tmp_path):
  shipped = batching.load_parameters(
      os.path.join(serving_fixtures.REPO_ROOT, 'serving', 'batching_parameters.txt'))
  assert shipped.max_batch_size >= 32
  assert batching.load_parameters(None) == batching.Options()
  parsed = batching.parse_parameters(
      'max_batch_size { value: 16 } allowed_batch_sizes: 8 allowed_batch_sizes: 16 '
      'thread_pool_name { value: "x" }')
  assert (parsed.max_batch_size, parsed.allowed_batch_sizes) == (16, (8, 16))
  for text, message in [('max_batch_size: 3', 'max_batch_size'),
                        ('no_such_field { value: 1 }', 'no_such_field'),
                        ('max_batch_size { value: 8 } allowed_batch_sizes: 4', 'allowed'),
                        ('enable_large_batch_splitting { value: true }', 'not implemented')]:
    with pytest.raises(ValueError, match=message):
      batching.parse_parameters(text)
  path = tmp_path / 'bad.txt'
  path.write_text('num_batch_threads { value: 0 }')
  with pytest.raises(ValueError, match='bad.txt: .*num_batch_threads'):
    batching.load_parameters(str(path))


def test_versions_swap_under_batched_load(tmp_path):
  base = str(tmp_path / 'tiny')
  serving_fixtures.save_tiny_model(base, 1)
  server = _start(base, OPTIONS, poll_wait_seconds=0.2)
  versions, failures, stop = set(), [], threading.Event()

  def load() -> None:
    with client_lib.ServingClient(server.address, 'tiny', deadline_s=30) as client:
      while not stop.is_set():
        try:
          versions.add(client.recommend('alice', ['item1'], k=3).version)
        except client_lib.ServingClientError as error:
          failures.append(str(error))

  threads = [threading.Thread(target=load) for _ in range(6)]
  try:
    for thread in threads:
      thread.start()
    time.sleep(0.3)
    serving_fixtures.save_tiny_model(base, 2)
    deadline = time.time() + 30
    while 2 not in versions and time.time() < deadline:
      time.sleep(0.05)
    time.sleep(0.3)
  finally:
    stop.set()
    for thread in threads:
      thread.join()
    server.stop()
  assert not failures, failures[:3]
  assert versions == {1, 2}
