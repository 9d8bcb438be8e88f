"""The single error type for bad input data, with a one-line message that locates the problem."""

from __future__ import annotations

import os
from typing import Optional, Union

PathLike = Union[str, 'os.PathLike[str]']


def format_message(path: PathLike,
                   problem: str,
                   row: Optional[int] = None,
                   column: Optional[str] = None) -> str:
  """Builds `<file>: row <n>, column '<name>': <problem>` on one line.

  `row` is the 1-based line number in the file (a header is row 1); the row and column parts
  are left out when unknown. Line breaks in `problem` are escaped so the message stays on
  one line.
  """
  where = []
  if row is not None:
    where.append(f'row {row}')
  if column is not None:
    where.append(f'column {column!r}')
  location = os.fspath(path) + (': ' + ', '.join(where) if where else '')
  one_line = problem.replace('\r', '\\r').replace('\n', '\\n')
  return f'{location}: {one_line}'


class DataError(ValueError):
  """Input data that cannot be used; `path`, `row` and `column` say where, when known."""

  def __init__(self,
               path: PathLike,
               problem: str,
               row: Optional[int] = None,
               column: Optional[str] = None) -> None:
    super().__init__(format_message(path, problem, row, column))
    self.path = os.fspath(path)
    self.problem = problem
    self.row = row
    self.column = column

  def __reduce__(self):
    """Pickles by constructor arguments (Beam workers send exceptions between processes)."""
    return type(self), (self.path, self.problem, self.row, self.column)
