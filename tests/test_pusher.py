"""The Pusher's executor (`components.pusher`) without a pipeline: a version directory appears
complete by a rename, a killed push's staging directory is removed by the next push, and a push
killed after its rename is not repeated by the resumed one."""
import os
import signal
import tempfile
import time

import pytest
from tfx import v1 as tfx
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import path_utils
from tfx.utils import proto_utils

from components import pusher
from contract import versions


def _model(tmp_path, marker: bytes = b'weights'):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'model' / marker.decode())
  saved_model = path_utils.serving_model_path(model.uri)  # where the Trainer exports
  os.makedirs(os.path.join(saved_model, 'variables'))
  for path, content in (('saved_model.pb', b'graph'), ('variables/variables.index', b'index'),
                        ('variables/variables.data-00000-of-00001', marker)):
    with open(os.path.join(saved_model, path), 'wb') as f:
      f.write(content)
  return model


def _push(tmp_path, model, base) -> standard_artifacts.PushedModel:
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / 'blessing')
  blessing.set_int_custom_property('blessed', 1)
  pushed = standard_artifacts.PushedModel()
  os.makedirs(tmp_path / 'pushed', exist_ok=True)
  pushed.uri = tempfile.mkdtemp(dir=tmp_path / 'pushed')
  destination = tfx.proto.PushDestination(
      filesystem=tfx.proto.PushDestination.Filesystem(base_directory=str(base)))
  pusher.Executor().Do(
      {standard_component_specs.MODEL_KEY: [model],
       standard_component_specs.MODEL_BLESSING_KEY: [blessing]},
      {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
      {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination),
       standard_component_specs.CUSTOM_CONFIG_KEY: 'null'})
  return pushed


def _complete(path) -> bool:
  return (os.path.isfile(os.path.join(path, 'saved_model.pb'))
          and os.path.isfile(os.path.join(path, 'variables', 'variables.index')))


def test_a_push_renames_a_complete_version_into_place(tmp_path):
  base = tmp_path / 'serving' / 'student'
  pushed = _push(tmp_path, _model(tmp_path), base)
  dirs = versions.version_dirs(str(base))
  assert len(dirs) == 1 and os.listdir(base) == [os.path.basename(dirs[max(dirs)])]
  assert pushed.get_int_custom_property(pusher.PUSHED) == 1
  assert pushed.get_string_custom_property(pusher.PUSHED_DESTINATION) == dirs[max(dirs)]
  assert pushed.get_string_custom_property(pusher.PUSHED_VERSION) == str(max(dirs))
  assert _complete(dirs[max(dirs)])


def test_a_killed_push_leaves_no_version_and_the_next_one_removes_its_staging(tmp_path):
  base = tmp_path / 'serving' / 'student'
  # What a push killed mid-copy leaves: the graph copied last is missing.
  partial = base / pusher.STAGING_DIR / '1700000000'
  (partial / 'variables').mkdir(parents=True)
  (partial / 'variables' / 'variables.index').write_bytes(b'index')
  assert versions.version_dirs(str(base)) == {}
  _push(tmp_path, _model(tmp_path), base)
  dirs = versions.version_dirs(str(base))
  assert len(dirs) == 1 and _complete(dirs[max(dirs)])
  assert not (base / pusher.STAGING_DIR).exists()


def test_a_push_killed_after_its_rename_is_not_repeated(tmp_path):
  base = tmp_path / 'serving' / 'student'
  model = _model(tmp_path)
  first = _push(tmp_path, model, base)  # its execution never recorded: the run is resumed
  again = _push(tmp_path, model, base)
  assert len(versions.version_dirs(str(base))) == 1
  for key in (pusher.PUSHED_DESTINATION, pusher.PUSHED_VERSION):
    assert again.get_string_custom_property(key) == first.get_string_custom_property(key)
  # Another model is a new version (TFX numbers versions in seconds).
  time.sleep(1.1)
  _push(tmp_path, _model(tmp_path, b'other weights'), base)
  assert len(versions.version_dirs(str(base))) == 2


def test_an_unblessed_model_is_not_pushed(tmp_path):
  base = tmp_path / 'serving' / 'student'
  blessing = standard_artifacts.ModelBlessing()
  blessing.set_int_custom_property('blessed', 0)
  pushed = standard_artifacts.PushedModel()
  destination = tfx.proto.PushDestination(
      filesystem=tfx.proto.PushDestination.Filesystem(base_directory=str(base)))
  pusher.Executor().Do(
      {standard_component_specs.MODEL_KEY: [_model(tmp_path)],
       standard_component_specs.MODEL_BLESSING_KEY: [blessing]},
      {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
      {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination)})
  assert pushed.get_int_custom_property(pusher.PUSHED) == 0
  assert versions.version_dirs(str(base)) == {}


@pytest.mark.parametrize('setting, killed', [('student:staged', True), ('teacher:staged', False),
                                             ('student:pushed', False), ('', False)])
def test_the_test_hook_kills_only_at_its_point(monkeypatch, setting, killed):
  calls = []
  monkeypatch.setattr(os, 'kill', lambda pid, sig: calls.append((pid, sig)))
  monkeypatch.setenv(pusher.KILL_AT_ENV, setting)
  pusher._test_kill_point('/serving/student', 'staged')  # pylint: disable=protected-access
  assert calls == ([(os.getpid(), signal.SIGKILL)] if killed else [])
