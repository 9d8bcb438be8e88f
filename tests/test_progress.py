"""The local runner's log: Beam's traceback of an error the runner reports in one line is
dropped; every other record passes."""
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
