"""Readable progress for local runs: component start/finish with timings, our own log lines,
and warnings; TFX's verbose INFO dumps and the known-harmless warnings below are dropped unless
asked for."""
import logging
import os
import re
import time
from typing import Sequence, Type
import warnings

from absl import logging as absl_logging

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NODE = re.compile(r'node (\w+) is (running|finished)')

# Warnings of the libraries that every local run logs and that say nothing the user can act on:
# a part of the message, and why it is harmless. Any other warning is shown.
HARMLESS_WARNINGS = {
    'Tables initialized inside a tf.function':
        "TF Transform's vocabulary tables, initialised inside the transform graph by design",
    'ArtifactQuery.property_predicate is not supported':
        "TFX's local metadata store ignores a filter it does not need to resolve the artifacts",
    'Examples artifact does not have payload_format custom property':
        'RawExampleGen writes tf.Examples, the format TFX falls back to',
    "Couldn't find python-snappy":
        "Beam's TFRecord checksums in pure Python; no data here is snappy-compressed",
}
# The loggers (besides 'absl') that log those warnings.
HARMLESS_WARNING_LOGGERS = ('apache_beam.io.tfrecordio',)
# Loggers whose warnings a default run does not show: TensorFlow's are deprecation notices about
# the libraries' own calls.
QUIET_LOGGERS = {'tensorflow': logging.ERROR}
# Python warnings of the same kind: (message regex, category, why).
HARMLESS_PYTHON_WARNINGS = (
    ('You are using a non-supported Python version', FutureWarning,
     "Google's client libraries announce the end of Python 3.10, which TFX 1.15 needs"),
)


def _is_project_file(path: str) -> bool:
  """True for this project's sources (not for packages installed in a venv inside it)."""
  return path.startswith(PROJECT_ROOT) and 'site-packages' not in path


def is_shown_warning(record: logging.LogRecord) -> bool:
  """Whether a default run's log shows this warning (or error): always the project's own, and
  the libraries' unless their logger is quiet (QUIET_LOGGERS) or HARMLESS_WARNINGS lists it."""
  if record.levelno < QUIET_LOGGERS.get(record.name, logging.WARNING):
    return False
  message = record.getMessage()
  return (_is_project_file(record.pathname)
          or not any(known in message for known in HARMLESS_WARNINGS))


class HarmlessWarningFilter(logging.Filter):
  """Drops the warnings HARMLESS_WARNINGS lists (`is_shown_warning`)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno < logging.WARNING or is_shown_warning(record)


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
    if record.levelno >= logging.WARNING:
      return is_shown_warning(record)
    return _is_project_file(record.pathname)


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
  chatter (Beam, TensorFlow), the known-harmless warnings, and Beam's tracebacks of the
  `reported` errors, are hidden unless `verbose`. Returns the filter for its timings. (What the
  imports print before this runs, TF's C++ log lines and Python warnings, `make run` quiets
  with TF_CPP_MIN_LOG_LEVEL and PYTHONWARNINGS.)"""
  # Verbose runs also show the details the project logs at DEBUG.
  absl_logging.set_verbosity(absl_logging.DEBUG if verbose else absl_logging.INFO)
  progress = ProgressFilter()
  if not verbose:
    for message, category, _ in HARMLESS_PYTHON_WARNINGS:
      warnings.filterwarnings('ignore', message=message, category=category)
    logging.getLogger().setLevel(logging.WARNING)
    for name, level in QUIET_LOGGERS.items():
      logging.getLogger(name).setLevel(level)
    for name in HARMLESS_WARNING_LOGGERS:
      logging.getLogger(name).addFilter(HarmlessWarningFilter())
    logging.getLogger('absl').addFilter(progress)
    logging.getLogger('apache_beam.runners.common').addFilter(ReportedErrorFilter(reported))
  return progress
