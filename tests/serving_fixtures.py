"""Serving test helpers: tiny SavedModels with the serving contract, and servers to run them.

`TinyRecommender` has the export contract's signatures and dtypes (every input batched; the
recommendation signatures return a fixed top TOP_K; ids are looked up in a table initialised at
load time, as the Transform vocabularies are) but no training: saving one takes about a second. Its scores carry
`marker`, so two versions answer differently. Saved ones carry a catalogue file
(`TINY_CATALOGUE`), as exports do.
"""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterator, List, Optional

import numpy as np
import tensorflow as tf

from serving import client as client_lib
from contract import catalogue
from contract import warmup

ITEMS = [f'item{n}' for n in range(30)]
USERS = ['alice', 'bob', 'carol']
TOP_K = 10
DIM = 4
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_BATCH_SIZE = 64  # the local server's --max_batch_size in `tiny_model_server`
# The tiny models' catalogue: a title, a year and genres for every item but each tenth, of
# which nothing is known (as the data path writes it: 'unknown', year 0).
TINY_CATALOGUE = [catalogue.record(item, 'unknown', 'unknown', 0) if n % 10 == 9 else
                  catalogue.record(item, f'Tiny Film {n}', 'Comedy|Drama' if n % 2 else 'Action',
                                   1990 + n)
                  for n, item in enumerate(ITEMS)]


class TinyRecommender(tf.Module):
  """Dot-product top-k over a fixed catalogue, behind the export contract's signatures."""

  def __init__(self, marker: float):
    super().__init__()
    rng = np.random.default_rng(0)
    self.items = tf.constant(ITEMS)
    self.user_table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(USERS),
                                            tf.range(len(USERS), dtype=tf.int64)),
        default_value=len(USERS))
    self.user_embeddings = tf.Variable(rng.normal(size=(len(USERS) + 1, DIM)).astype('float32'))
    self.item_embeddings = tf.Variable(rng.normal(size=(len(ITEMS), DIM)).astype('float32'))
    self.marker = tf.Variable(marker, dtype=tf.float32)

  def _top_k(self, user_id, history, k=TOP_K):
    queries = tf.gather(self.user_embeddings, self.user_table.lookup(user_id))
    scores = tf.matmul(queries, self.item_embeddings, transpose_b=True) + self.marker
    seen = tf.reduce_any(tf.equal(tf.expand_dims(history, -1), self.items), axis=1)
    scores = tf.where(seen, tf.fill(tf.shape(scores), -1e9), scores)
    values, indices = tf.math.top_k(scores, k)
    return {'item_ids': tf.gather(self.items, indices), 'scores': values}, indices

  def _reasons(self, history, indices):
    """Per result, the history item whose embedding has the largest positive dot product with
    the result's ('' where none has), as the contract's `reason_item_ids`."""
    history = tf.concat([history, tf.fill([tf.shape(history)[0], 1], '')], axis=1)
    matches = tf.equal(tf.expand_dims(history, -1), self.items)  # [batch, history, items]
    rows = tf.gather(self.item_embeddings, tf.argmax(tf.cast(matches, tf.int32), axis=2))
    terms = tf.einsum('bkd,bhd->bkh', tf.gather(self.item_embeddings, indices), rows)
    terms = tf.where(tf.reduce_any(matches, axis=2)[:, None, :], terms, float('-inf'))
    best = tf.gather(history, tf.argmax(terms, axis=2), batch_dims=1)
    return tf.where(tf.reduce_max(terms, axis=2) > 0, best, '')

  def _parse(self, examples):
    parsed = tf.io.parse_example(examples, {
        'user_id': tf.io.FixedLenFeature([], tf.string, ''),
        'history': tf.io.FixedLenFeature([], tf.string, ''),
        'item_id': tf.io.FixedLenFeature([], tf.string, '')})
    history = tf.strings.split(parsed['history']).to_tensor('')
    return parsed, history

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve_examples(self, examples):
    parsed, history = self._parse(examples)
    return self._top_k(parsed['user_id'], history, TOP_K)[0]

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None, None], tf.string, name='history')])
  def recommend(self, user_id, history):
    return self._top_k(user_id, history)[0]

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None, None], tf.string, name='history')])
  def recommend_with_reasons(self, user_id, history):
    outputs, indices = self._top_k(user_id, history)
    return {**outputs, 'reason_item_ids': self._reasons(history, indices)}

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name='user_id'),
      tf.TensorSpec([None, None], tf.string, name='history'),
      tf.TensorSpec([None], tf.int64, name='age'),
      tf.TensorSpec([None], tf.string, name='gender'),
      tf.TensorSpec([None], tf.string, name='occupation'),
      tf.TensorSpec([None], tf.string, name='zip_code')])
  def recommend_with_features(self, user_id, history, age, gender, occupation, zip_code):
    del gender, occupation, zip_code
    outputs, _ = self._top_k(user_id, history)
    return {'item_ids': outputs['item_ids'],
            'scores': outputs['scores'] + tf.cast(tf.expand_dims(age, 1), tf.float32) * 1e-3}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def score(self, examples):
    parsed, _ = self._parse(examples)
    queries = tf.gather(self.user_embeddings, self.user_table.lookup(parsed['user_id']))
    items = tf.argmax(tf.cast(tf.equal(tf.expand_dims(parsed['item_id'], 1), self.items),
                              tf.int32), axis=1)
    dot = tf.reduce_sum(queries * tf.gather(self.item_embeddings, items), axis=1)
    return {'rating': 3.0 + tf.tanh(dot) + self.marker * 1e-3}


def save_tiny_model(base_path: str, version: int, marker: Optional[float] = None,
                    with_warmup: bool = True, with_reasons: bool = True) -> str:
  """Writes version `version` under `base_path` the way the Pusher does (temp dir, rename);
  without `recommend_with_reasons` when not `with_reasons` (as models exported before it)."""
  module = TinyRecommender(float(version if marker is None else marker))
  os.makedirs(base_path, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f'.tmp-{version}-', dir=base_path)
  functions = {
      'serving_default': module.serve_examples.get_concrete_function(),
      'recommend': module.recommend.get_concrete_function(),
      'recommend_with_features': module.recommend_with_features.get_concrete_function(),
      'score': module.score.get_concrete_function()}
  if with_reasons:
    functions['recommend_with_reasons'] = module.recommend_with_reasons.get_concrete_function()
  tf.saved_model.save(module, staging, signatures=functions)
  if with_warmup:
    warmup.write_warmup_requests(staging, USERS[:2], [['item1'], []], with_reasons=with_reasons)
  catalogue.write_catalogue(staging, TINY_CATALOGUE)
  target = os.path.join(base_path, str(version))
  os.rename(staging, target)
  return target


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


class ServerProcess:
  """A model server subprocess on 127.0.0.1:port; `kind` is 'local' or 'tensorflow_model_server'."""

  def __init__(self, kind: str, config_path: str, poll_wait_seconds: float = 0.5,
               extra_args: Optional[List[str]] = None):
    self.kind = kind
    self.port = free_port()
    self.target = f'127.0.0.1:{self.port}'
    if kind == 'local':
      command = [sys.executable, '-m', 'serving.server', f'--port={self.port}']
    else:
      command = [shutil.which('tensorflow_model_server'), f'--port={self.port}',
                 '--allow_version_labels_for_unavailable_models=true',
                 '--grpc_channel_arguments=grpc.max_receive_message_length=4194304']
    command += [f'--model_config_file={config_path}',
                f'--file_system_poll_wait_seconds={poll_wait_seconds}'] + (extra_args or [])
    self.log = tempfile.NamedTemporaryFile(prefix='server-', suffix='.log', delete=False)
    self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=self.log,
                                    stderr=subprocess.STDOUT)

  def client(self, model: str, **kwargs) -> client_lib.ServingClient:
    return client_lib.ServingClient(self.target, model, **kwargs)

  def wait_until_available(self, model: str, timeout_s: float = 90.0) -> int:
    with self.client(model, retries=0, deadline_s=2.0) as client:
      deadline = time.time() + timeout_s
      while True:
        self.check_alive()
        try:
          return client.wait_until_available(timeout_s=1.0)
        except TimeoutError:
          if time.time() > deadline:
            raise

  def check_alive(self) -> None:
    if self.process.poll() is not None:
      raise RuntimeError(f'{self.kind} server exited with {self.process.returncode}:\n'
                         f'{self.output()}')

  def output(self) -> str:
    with open(self.log.name) as log:
      return log.read()[-5000:]

  def stop(self) -> None:
    if self.process.poll() is None:
      self.process.terminate()
      try:
        self.process.wait(timeout=15)
      except subprocess.TimeoutExpired:
        self.process.kill()
        self.process.wait()
    os.unlink(self.log.name)


def write_config(path: str, models: dict, labels: Optional[dict] = None,
                 policies: Optional[dict] = None) -> str:
  """A ModelServerConfig text proto: {name: base_path}, {name: {label: version}}, {name: text}."""
  entries = []
  for name, base_path in models.items():
    body = [f'name: "{name}"', f'base_path: "{base_path}"', 'model_platform: "tensorflow"']
    if policies and name in policies:
      body.append(f'model_version_policy {{ {policies[name]} }}')
    for label, version in ((labels or {}).get(name) or {}).items():
      body.append(f'version_labels {{ key: "{label}" value: {version} }}')
    entries.append('  config {\n    ' + '\n    '.join(body) + '\n  }')
  with open(path, 'w') as config_file:
    config_file.write('model_config_list {\n' + '\n'.join(entries) + '\n}\n')
  return path


@contextlib.contextmanager
def running_server(kind: str, config_path: str, models: List[str],
                   **kwargs) -> Iterator[ServerProcess]:
  server = ServerProcess(kind, config_path, **kwargs)
  try:
    for model in models:
      server.wait_until_available(model)
    yield server
  finally:
    server.stop()


BATCHING_PARAMETERS = f"""max_batch_size {{ value: {MAX_BATCH_SIZE} }}
batch_timeout_micros {{ value: 500 }}
num_batch_threads {{ value: 2 }}
max_enqueued_batches {{ value: 8 }}
"""


@contextlib.contextmanager
def tiny_model_server(kind: str, base, model: str = 'tiny',
                      batching: bool = False) -> Iterator[ServerProcess]:
  """`kind` serving version 1 of a tiny model saved under `base`; the local server refuses
  batches above MAX_BATCH_SIZE (TF Serving without batching has no such limit). With
  `batching`, the server batches requests (BATCHING_PARAMETERS, max_batch_size MAX_BATCH_SIZE)."""
  base_dir = str(base)
  save_tiny_model(os.path.join(base_dir, model), 1)
  config = write_config(os.path.join(base_dir, 'models.config'),
                        {model: os.path.join(base_dir, model)})
  extra = [f'--max_batch_size={MAX_BATCH_SIZE}'] if kind == 'local' else []
  if batching:
    parameters = os.path.join(base_dir, 'batching_parameters.txt')
    with open(parameters, 'w') as parameters_file:
      parameters_file.write(BATCHING_PARAMETERS)
    extra += ['--enable_batching=true', f'--batching_parameters_file={parameters}']
  with running_server(kind, config, [model], extra_args=extra) as running:
    yield running


def server_kinds() -> list:
  """The servers the serving tests run against: ours always, TF Serving's when installed."""
  import pytest  # pylint: disable=import-outside-toplevel
  return ['local', pytest.param('tensorflow_model_server', marks=pytest.mark.skipif(
      shutil.which('tensorflow_model_server') is None,
      reason='tensorflow_model_server is not on PATH'))]


def tf_serving_extra_args(kind: str) -> List[str]:
  """Flags that make TF Serving give up on a broken version at once (ours never retries)."""
  return ['--max_num_load_retries=0'] if kind == 'tensorflow_model_server' else []
