"""Version directories under a model's base path, and which of them a version policy serves.

A version is a directory with a numeric name. It is loadable only when complete (saved_model.pb
and variables/variables.index exist) and unchanged across two polls, so a version directory
that is still being copied is never loaded (the pipeline's Pusher renames a finished directory
into place, `components/pusher.py`; TFX's own Pusher and a manual `cp -r` copy in place).
"""
import os
from typing import Dict, Iterable, Optional, Set, Tuple

from tensorflow_serving.config import file_system_storage_path_source_pb2

from contract import versions as version_paths

ServableVersionPolicy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig \
    .ServableVersionPolicy
Fingerprint = Tuple[Tuple[str, int, int], ...]


def is_complete(version_dir: str) -> bool:
  """Whether the SavedModel's graph and variable index are both there."""
  has_graph = any(os.path.isfile(os.path.join(version_dir, name))
                  for name in ('saved_model.pb', 'saved_model.pbtxt'))
  return has_graph and os.path.isfile(os.path.join(version_dir, 'variables', 'variables.index'))


def fingerprint(version_dir: str) -> Optional[Fingerprint]:
  """(path, size, mtime) of every file, or None while the directory is incomplete."""
  if not is_complete(version_dir):
    return None
  entries = []
  for root, _, files in os.walk(version_dir):
    for name in files:
      path = os.path.join(root, name)
      try:
        stat = os.stat(path)
      except FileNotFoundError:  # removed while we walk: not stable
        return None
      entries.append((os.path.relpath(path, version_dir), stat.st_size, stat.st_mtime_ns))
  return tuple(sorted(entries))


def select(policy: ServableVersionPolicy, versions: Iterable[int]) -> Set[int]:
  """The versions a `model_version_policy` serves among the loadable `versions`."""
  versions = sorted(versions)
  choice = policy.WhichOneof('policy_choice')
  if choice == 'all':
    return set(versions)
  if choice == 'specific':
    return set(policy.specific.versions) & set(versions)
  num_versions = policy.latest.num_versions if choice == 'latest' else 1
  return set(versions[-max(num_versions, 1):])


class StableVersions:
  """Tracks version directories across polls; a version is ready once complete and unchanged."""

  def __init__(self, base_path: str):
    self.base_path = base_path
    self._previous: Dict[int, Fingerprint] = {}

  def poll(self) -> Dict[int, str]:
    """{version: directory} of the versions that are ready now."""
    dirs = version_paths.version_dirs(self.base_path)
    current = {version: snapshot for version, path in dirs.items()
               if (snapshot := fingerprint(path)) is not None}
    ready = {version: dirs[version] for version, snapshot in current.items()
             if self._previous.get(version) == snapshot}
    self._previous = current
    return ready
