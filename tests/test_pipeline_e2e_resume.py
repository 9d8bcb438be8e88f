"""A pipeline run that dies is resumed, not repeated (BeamDagRunner, tiny generated data): a run
in a subprocess is SIGKILLed while Transform runs, then while the Trainer runs, then in the
Pusher (after its copy, before its rename; then after its rename, before its execution is
recorded: `components.pusher`'s test hook), and started again each time. The last start finishes
from the TFX cache (no component completes twice), pushes exactly one complete version of each
model, and the local server loads it.

The module runs its own child: `python tests/test_pipeline_e2e_resume.py SOURCE OUTPUT RESULT`.
"""
import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2
import pytest
from tfx import v1 as tfx
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tfx.orchestration import metadata

from components import gates
from components import pusher
from components.run_report import history
from contract import versions as version_paths
from ingest import synthetic
from pipeline import configs
from pipeline import local_runner
from serving import config as config_lib
from serving import model_manager
from serving import servable
from serving import versions
import input_writers

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 900  # one start, on a loaded 2-core machine
KILLED = -signal.SIGKILL
State = metadata_store_pb2.Execution.State


def _lenient_gates():
  # Tiny data trains for a few steps: gates any model passes (as tests/test_pipeline_e2e.py's).
  return dataclasses.replace(
      configs.GATES, rmse_upper_bound=10.0, rating_auc_lower_bound=0.0,
      retrieval=gates.RetrievalGates(min_ndcg_ratio=0.0, max_size_ratio=1.0,
                                     min_popularity_ratio=0.0))


def _child(source: str, output: str, result_path: str) -> None:
  result = local_runner.run(source, output, gates=_lenient_gates(),
                            training=dataclasses.replace(configs.TRAINING, epochs=1))
  with open(result_path, 'w') as f:
    json.dump({'pushed': result['pushed'], 'latest': result['latest']}, f)


class _Start:
  """One start of the pipeline in a subprocess, its log in a file."""

  def __init__(self, source: str, output: str, number: int, kill_at: str = ''):
    self.log_path = os.path.join(output, f'start-{number}.log')
    self.result_path = os.path.join(output, f'start-{number}.json')
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
        [REPO_ROOT, os.path.join(REPO_ROOT, 'tests'), os.environ.get('PYTHONPATH', '')])}
    env.pop('PUSHER_TEST_KILL_AT', None)
    if kill_at:
      env['PUSHER_TEST_KILL_AT'] = kill_at
    with open(self.log_path, 'w') as log:
      self.process = subprocess.Popen(
          [sys.executable, os.path.abspath(__file__), source, output, self.result_path],
          cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    self.deadline = time.time() + TIMEOUT_S

  def _check_time(self, waiting_for: str) -> None:
    if time.time() > self.deadline:
      self.kill()
      pytest.fail(f'timed out waiting for {waiting_for}\n{self.log_tail()}')

  def kill_when_exists(self, path: str, delay_s: float) -> None:
    """SIGKILLs the run `delay_s` after `path` appears (a component's output directory: TFX
    makes it just before the component's executor starts)."""
    while not os.path.exists(path):
      if self.process.poll() is not None:
        pytest.fail(f'the run ended (exit {self.process.returncode}) before {path} appeared\n'
                    f'{self.log_tail()}')
      self._check_time(path)
      time.sleep(0.2)
    time.sleep(delay_s)
    assert self.process.poll() is None, f'the run ended before the kill\n{self.log_tail()}'
    self.kill()
    assert self.wait() == KILLED

  def kill(self) -> None:
    os.killpg(self.process.pid, signal.SIGKILL)

  def wait(self) -> int:
    try:
      return self.process.wait(timeout=max(1.0, self.deadline - time.time()))
    except subprocess.TimeoutExpired:
      self.kill()
      pytest.fail(f'timed out\n{self.log_tail()}')

  def log_tail(self, lines: int = 60) -> str:
    with open(self.log_path, errors='replace') as f:
      return ''.join(f.readlines()[-lines:])

  def result(self) -> dict:
    code = self.wait()
    assert code == 0, f'the run failed (exit {code})\n{self.log_tail()}'
    with open(self.result_path) as f:
      return json.load(f)


def _executions(metadata_path: str) -> Dict[str, List[int]]:
  """The states of each node's executions (`metadata_store_pb2.Execution.State`), oldest
  first."""
  config = tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
  with metadata.Metadata(config) as handle:
    return {node.name.split('.', 1)[-1]: [execution.last_known_state for execution in sorted(
                handle.store.get_executions_by_context(node.id), key=lambda e: e.id)]
            for node in handle.store.get_contexts_by_type('node')}


def _versions(serving: str, model: str) -> Dict[int, str]:
  return version_paths.version_dirs(os.path.join(serving, model))


def _check_versions_complete(serving: str) -> None:
  """Every numbered directory of both models holds a complete SavedModel."""
  for model in ('student', 'teacher'):
    for path in _versions(serving, model).values():
      assert versions.is_complete(path), f'{path} is a partial version directory'


def _served(serving: str) -> Dict[str, Optional[int]]:
  """The latest version each model of the shipped config serves, loaded by the local server's
  model manager from `serving`."""
  config = config_lib.rewrite_base_paths(
      config_lib.load_config_file(os.path.join(REPO_ROOT, 'serving', 'models.config')),
      f'/models={serving}')
  manager = model_manager.ModelManager(config, servable.Servable, poll_wait_seconds=0)
  manager.start()
  try:
    served = {}
    for name in manager.model_names:
      statuses = manager.status(model_pb2.ModelSpec(name=name)).model_version_status
      available = [status.version for status in statuses
                   if status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE]
      served[name] = max(available) if available else None
    return served
  finally:
    manager.stop()


@pytest.fixture(scope='module')
def csv_dir(tmp_path_factory):
  dataset = synthetic.generate(num_users=60, num_items=150, seed=0, arriving_items=15,
                               interactions_per_user=(5, 40))
  return str(input_writers.write_csv(dataset, tmp_path_factory.mktemp('resume_csv')))


def test_a_killed_run_resumed_finishes_with_one_complete_new_version(csv_dir, tmp_path):
  output = str(tmp_path)
  root = os.path.join(output, 'pipeline_root')
  serving = os.path.join(output, 'serving')
  metadata_path = os.path.join(output, 'metadata.sqlite')
  starts = itertools.count(1)

  def start(kill_at: str = '') -> _Start:
    return _Start(csv_dir, output, next(starts), kill_at)

  # Killed while Transform runs (it takes tens of seconds on this data).
  start().kill_when_exists(os.path.join(root, 'Transform'), delay_s=2.0)
  assert State.COMPLETE not in _executions(metadata_path)['Transform']
  # Resumed, and killed while the Trainer runs.
  start().kill_when_exists(os.path.join(root, 'Trainer'), delay_s=3.0)
  states = _executions(metadata_path)
  assert State.COMPLETE not in states['Trainer']
  assert states['Transform'].count(State.COMPLETE) == 1
  assert not _versions(serving, 'student')
  # Killed in the Pusher after its copy into the staging directory: no version directory.
  assert start('student:staged').wait() == KILLED
  assert not _versions(serving, 'student')
  assert os.path.isdir(os.path.join(serving, 'student', pusher.STAGING_DIR))
  # Killed after the rename, before the Pusher's execution is recorded: one complete version.
  assert start('student:pushed').wait() == KILLED
  pushed = _versions(serving, 'student')
  assert len(pushed) == 1
  _check_versions_complete(serving)
  assert State.COMPLETE not in _executions(metadata_path)['Pusher']

  result = start().result()

  # Exactly one new version of each model, complete, and the killed push's is the one.
  student, teacher = _versions(serving, 'student'), _versions(serving, 'teacher')
  assert student == pushed and len(teacher) == 1
  _check_versions_complete(serving)
  # Nothing else but the run report's version history (no staging left behind).
  assert sorted(set(os.listdir(os.path.join(serving, 'student'))) - {history.HISTORY_DIR}) == [
      str(v) for v in student]
  assert result['pushed'] == result['latest'] == student[max(student)]
  # Resumed from the cache: every component completed once (the killed executions stay
  # RUNNING in the store; the resolvers resolve afresh in each run).
  states = _executions(metadata_path)
  for node, node_states in states.items():
    if not node.endswith('resolver'):
      assert node_states.count(State.COMPLETE) == 1, (node, node_states)
  killed = {node: node_states.count(State.RUNNING) for node, node_states in states.items()}
  assert killed == {**{node: 0 for node in states}, 'Transform': 1, 'Trainer': 1, 'Pusher': 2}
  # The local server loads the pushed versions.
  assert _served(serving) == {'student': max(student), 'teacher': max(teacher)}


if __name__ == '__main__':
  _child(*sys.argv[1:])
