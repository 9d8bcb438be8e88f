"""The local runner's log: Beam's traceback of an error the runner reports in one line is
dropped, and so are the known-harmless library warnings; every other warning passes."""
import logging

from pipeline import progress


class _ReportedError(Exception):
  pass


def _record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
  return logging.LogRecord('apache_beam.runners.common', level, __file__, 1, message, None, None)


def test_reported_errors_tracebacks_are_dropped_and_others_kept():
  reported = progress.ReportedErrorFilter([_ReportedError])
  assert not reported.filter(_record(
      "Traceback ...\ntests._ReportedError: row 3, column 'rating' [while running 'Run[Gen]']"))
  assert reported.filter(_record('Traceback ...\nValueError: something else went wrong'))
  assert reported.filter(_record('_ReportedErrors are mentioned, not raised'))
  assert progress.ReportedErrorFilter([]).filter(_record('_ReportedError: anything'))


def _library_warning(message: str, logger: str = 'absl') -> logging.LogRecord:
  return logging.LogRecord(logger, logging.WARNING, '/venv/site-packages/tfx/x.py', 1, message,
                           None, None)


def test_known_harmless_library_warnings_are_dropped_and_every_other_warning_kept():
  progress_filter = progress.ProgressFilter()
  for message in progress.HARMLESS_WARNINGS:
    assert not progress_filter.filter(_library_warning('Prefix: ' + message + ' ... details'))
    assert not progress.HarmlessWarningFilter().filter(_library_warning(message, 'apache_beam'))
  assert progress_filter.filter(_library_warning('Something the user should know'))
  own = logging.LogRecord('absl', logging.WARNING, progress.__file__, 1,
                          next(iter(progress.HARMLESS_WARNINGS)), None, None)
  assert progress_filter.filter(own)  # the project's own warnings always show
  assert not progress.is_shown_warning(_library_warning('x is deprecated', 'tensorflow'))
