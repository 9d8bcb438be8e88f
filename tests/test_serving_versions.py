"""Version lifecycle: a pushed version is picked up, a half-written or broken one never serves,
a failed warmup fails the load, and deleting the newest version rolls back.

One server per server kind watches one model with TF Serving's default policy (latest version);
each test pushes a higher version number than the one before.
"""
import os
import shutil
import time

import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import prediction_log_pb2

import serving_fixtures
from contract import requests
from contract import warmup

MODEL = 'rolling'
State = get_model_status_pb2.ModelVersionStatus


@pytest.fixture(scope='module', params=serving_fixtures.server_kinds())
def rolling(request, tmp_path_factory):
  base = tmp_path_factory.mktemp('rolling')
  serving_fixtures.save_tiny_model(str(base / MODEL), 1)
  config = serving_fixtures.write_config(str(base / 'models.config'), {MODEL: base / MODEL})
  with serving_fixtures.running_server(
      request.param, config, [MODEL], poll_wait_seconds=0.2,
      extra_args=serving_fixtures.tf_serving_extra_args(request.param)) as server:
    yield server, base / MODEL


def _states(server):
  with server.client(MODEL) as client:
    return {status.version: (status.state, status.status.error_message)
            for status in client.status().model_version_status}


def _wait_for(predicate, timeout_s=60.0):
  deadline = time.time() + timeout_s
  while not predicate():
    assert time.time() < deadline, 'timed out'
    time.sleep(0.1)


def _answering_version(server):
  with server.client(MODEL) as client:
    return client.recommend('alice', k=3).version


def test_a_pushed_version_replaces_the_old_one(rolling):
  server, base = rolling
  assert _answering_version(server) == 1
  serving_fixtures.save_tiny_model(str(base), 2)
  _wait_for(lambda: _answering_version(server) == 2)
  _wait_for(lambda: _states(server).get(1, (None,))[0] == State.END)
  assert _states(server)[2][0] == State.AVAILABLE


def test_a_half_written_version_is_never_loaded(rolling, tmp_path):
  server, base = rolling
  finished = serving_fixtures.save_tiny_model(str(tmp_path), 3)
  # Copy the graph but not the variables, as an interrupted `cp -r` would leave it.
  os.makedirs(base / '3' / 'variables')
  shutil.copy(os.path.join(finished, 'saved_model.pb'), base / '3')
  time.sleep(2.0)  # ten polls
  assert 3 not in _states(server)
  assert _answering_version(server) == 2
  shutil.rmtree(base / '3')
  os.rename(finished, base / '3')
  _wait_for(lambda: _answering_version(server) == 3)


def test_a_broken_version_fails_to_load_and_the_old_one_keeps_serving(rolling, tmp_path):
  server, base = rolling
  broken = serving_fixtures.save_tiny_model(str(tmp_path), 4)
  with open(os.path.join(broken, 'saved_model.pb'), 'r+b') as graph:
    graph.truncate(100)
  os.rename(broken, base / '4')
  _wait_for(lambda: _states(server).get(4, (None,))[0] == State.END)
  assert _states(server)[4][1]  # the load error is reported
  assert _answering_version(server) == 3


def test_a_version_whose_warmup_fails_is_not_served(rolling, tmp_path):
  server, base = rolling
  path = serving_fixtures.save_tiny_model(str(tmp_path), 5)
  # A warmup request without its history input: the model cannot run it.
  request = requests.recommend(['alice'], [[]])
  del request.inputs['history']
  log = prediction_log_pb2.PredictionLog(
      predict_log=prediction_log_pb2.PredictLog(request=request))
  with tf.io.TFRecordWriter(warmup.warmup_path(path)) as writer:
    writer.write(log.SerializeToString())
  os.rename(path, base / '5')
  _wait_for(lambda: _states(server).get(5, (None,))[0] == State.END)
  assert 'Missing but required: {history}' in _states(server)[5][1]
  assert _answering_version(server) == 3


def test_deleting_the_newest_version_rolls_back(rolling):
  server, base = rolling
  for version in (4, 5):
    shutil.rmtree(base / str(version))
  serving_fixtures.save_tiny_model(str(base), 6)
  _wait_for(lambda: _answering_version(server) == 6)
  shutil.rmtree(base / '6')
  _wait_for(lambda: _answering_version(server) == 3)
