"""Pusher: TFX's Pusher, made atomic for whoever watches the serving directory and idempotent for
a resumed run.

TFX's Pusher copies the model straight into `<base>/<version>/` (saved_model.pb last), so a run
killed mid-copy leaves a numbered directory without a complete SavedModel, which TF Serving tries
to load. This Pusher lets TFX's executor push into `<base>/.pushing/` (not a number: TF Serving
and `serving/` ignore it), then renames the finished `<version>` directory into `<base>`, so a
numbered directory is always complete. A push killed before its rename leaves only the staging
directory, which the next push removes (a resumed run's Pusher runs again: its killed execution
never completed). A push killed after its rename, before its execution was recorded, left a
complete version: the re-run finds that the latest version holds the same files and records that
version as pushed instead of pushing a second copy. On other filesystems than the local one
(gs://, ...) a rename is no atomic move, and TFX's own copy is kept.

For tests only: `PUSHER_TEST_KILL_AT=<model>:<point>` (model: the base directory's name, point:
'staged' after the copy into the staging directory, 'pushed' after the rename) makes the push of
that model SIGKILL its own process there, as a kill at that very moment would.
"""
import filecmp
import os
import shutil
import signal
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx import v1 as tfx
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from contract import versions

STAGING_DIR = '.pushing'
KILL_AT_ENV = 'PUSHER_TEST_KILL_AT'
# The custom properties TFX's Pusher records on its `pushed_model` output.
PUSHED = 'pushed'
PUSHED_DESTINATION = 'pushed_destination'
PUSHED_VERSION = 'pushed_version'


def same_files(first: str, second: str) -> bool:
  """Whether two directories hold the same relative paths with the same bytes."""
  def files(top):
    return sorted(os.path.relpath(os.path.join(root, name), top)
                  for root, _, names in os.walk(top) for name in names)
  paths = files(first)
  return paths == files(second) and all(
      filecmp.cmp(os.path.join(first, path), os.path.join(second, path), shallow=False)
      for path in paths)


def _test_kill_point(base: str, point: str) -> None:
  if os.environ.get(KILL_AT_ENV) == f'{os.path.basename(base.rstrip("/"))}:{point}':
    logging.warning('%s: killing this process %s the push into %s', KILL_AT_ENV,
                    'after' if point == 'pushed' else 'in', base)
    os.kill(os.getpid(), signal.SIGKILL)


class Executor(pusher_executor.Executor):
  """TFX's Pusher executor, pushing a local destination through a staging directory."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    key = standard_component_specs.PUSH_DESTINATION_KEY
    destination = tfx.proto.PushDestination()
    proto_utils.json_to_proto(exec_properties[key], destination)
    base = destination.filesystem.base_directory
    if not base or '://' in base:
      super().Do(input_dict, output_dict, exec_properties)
      return
    staging = os.path.join(base, STAGING_DIR)
    if os.path.exists(staging):
      logging.warning('Removing %s, left by a push that did not finish', staging)
      shutil.rmtree(staging)
    destination.filesystem.base_directory = staging
    super().Do(input_dict, output_dict,
               {**exec_properties, key: proto_utils.proto_to_json(destination)})
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if model_push.get_int_custom_property(PUSHED) != 1:
      return
    version = model_push.get_string_custom_property(PUSHED_VERSION)
    staged = os.path.join(staging, version)
    _test_kill_point(base, 'staged')
    latest = versions.latest_version_dir(base)
    if latest is not None and same_files(latest, staged):
      version = os.path.basename(latest)
      logging.warning('%s already holds this model (a push that was not recorded): not pushed '
                   'again', latest)
    elif os.path.exists(os.path.join(base, version)):  # TFX skips a version that exists too
      logging.info('%s exists: not pushed again', os.path.join(base, version))
    else:
      os.rename(staged, os.path.join(base, version))
    shutil.rmtree(staging)
    model_push.set_string_custom_property(PUSHED_DESTINATION, os.path.join(base, version))
    model_push.set_string_custom_property(PUSHED_VERSION, version)
    logging.info('Model pushed to %s', os.path.join(base, version))
    _test_kill_point(base, 'pushed')


class Pusher(tfx.components.Pusher):
  """TFX's Pusher whose numbered version directories appear complete, once (`Executor`)."""

  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
