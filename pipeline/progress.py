"""Readable progress for local runs: component start/finish with timings, our own log lines,
and warnings; TFX's verbose INFO dumps are dropped unless asked for."""
import logging
import os
import re
import time
from typing import Sequence, Type

from absl import logging as absl_logging

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NODE = re.compile(r'node (\w+) is (running|finished)')


def _is_project_file(path: str) -> bool:
  """True for this project's sources (not for packages installed in a venv inside it)."""
  return path.startswith(PROJECT_ROOT) and 'site-packages' not in path


class ProgressFilter(logging.Filter):
  """Keeps warnings, records logged from this project, and TFX node transitions (timed)."""

  def __init__(self):
    super().__init__()
    self._started = {}
    self.durations = {}

  def filter(self, record: logging.LogRecord) -> bool:
    node = _NODE.match(record.getMessage())
    if node:
      name, state = node.groups()
      if state == 'running':
        self._started[name] = time.time()
      else:
        self.durations[name] = time.time() - self._started.get(name, time.time())
        record.msg, record.args = 'node %s is finished (%.1f s)', (name, self.durations[name])
      return True
    return record.levelno >= logging.WARNING or _is_project_file(record.pathname)


class ReportedErrorFilter(logging.Filter):
  """Drops the tracebacks Beam logs for errors the runner reports itself, in one line."""

  def __init__(self, reported: Sequence[Type[Exception]]):
    super().__init__()
    self._names = tuple(error.__name__ for error in reported)

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(f'{name}: ' in message for name in self._names)


def install(verbose: bool = False,
            reported: Sequence[Type[Exception]] = ()) -> ProgressFilter:
  """Filters the 'absl' logger (which TFX and this project log to); other libraries' INFO
  chatter (Beam, TensorFlow), and Beam's tracebacks of the `reported` errors, are hidden unless
  `verbose`. Returns the filter for its timings."""
  absl_logging.set_verbosity(absl_logging.INFO)
  progress = ProgressFilter()
  if not verbose:
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger('tensorflow').setLevel(logging.ERROR)
    logging.getLogger('absl').addFilter(progress)
    logging.getLogger('apache_beam.runners.common').addFilter(ReportedErrorFilter(reported))
  return progress
