"""Numbered directories: TF Serving's versions under a model's base path, and TFX's executions
under a component output. A directory whose name is a number is one version; the highest number
is the newest."""
import os
from typing import Dict, Optional


def version_dirs(base: str) -> Dict[int, str]:
  """{version: directory} of the numeric subdirectories of `base` ({} if it is missing)."""
  try:
    names = os.listdir(base)
  except (FileNotFoundError, NotADirectoryError):
    return {}
  return {int(name): os.path.join(base, name) for name in names
          if name.isdigit() and os.path.isdir(os.path.join(base, name))}


def latest_version_dir(base: str) -> Optional[str]:
  """The numeric subdirectory of `base` with the highest number (None if there is none)."""
  dirs = version_dirs(base)
  return dirs[max(dirs)] if dirs else None
