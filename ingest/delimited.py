"""Reading delimited text files one row at a time, with exact line numbers.

Files are parsed with the `csv` module so that every problem is reported as a `DataError` naming
the file, its 1-based line number and the column. Files are opened with `tf.io.gfile`, so they
can be on any file system TensorFlow reads (local paths, gs://, s3://, hdfs://, ram://); paths
are strings.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Sequence, Tuple, Union

import tensorflow as tf

from ingest.cells import Parser
from ingest.errors import DataError

Source = Union[str, Path]  # a file or directory: a local path, or a URL (gs://bucket/dir)
Row = Tuple[int, List[str]]  # (line number, fields)
Columns = Tuple[List[int], Dict[str, list]]  # (line numbers, column name -> parsed values)


def _decoded_lines(path: str, encoding: str) -> Iterator[str]:
  """Yields the file's lines as text, reporting undecodable bytes on their own line."""
  try:
    if tf.io.gfile.isdir(path):
      raise DataError(path, 'cannot read: is a directory')
    handle = tf.io.gfile.GFile(path, 'rb')
    lines = iter(handle)
    first = next(lines, None)
  except tf.errors.OpError as error:
    raise DataError(path, f'cannot read: {error.message}') from None
  with handle:
    number = 0
    while first is not None:
      number += 1
      try:
        yield first.decode(encoding)
      except UnicodeDecodeError as error:
        problem = f'invalid {encoding} text: {error.reason}'
        raise DataError(path, problem, row=number) from None
      first = next(lines, None)


def rows(path: str, delimiter: str, encoding: str, quoting: int) -> Iterator[Row]:
  """Yields (1-based line number where the row starts, fields) for every non-blank row."""
  reader = csv.reader(_decoded_lines(path, encoding), delimiter=delimiter, quoting=quoting)
  empty = True
  while True:
    start = reader.line_num + 1
    try:
      fields = next(reader)
    except StopIteration:
      break
    except csv.Error as error:
      raise DataError(path, f'malformed CSV: {error}', row=start) from None
    if fields:
      empty = False
      yield start, fields
  if empty:
    raise DataError(path, 'file is empty', row=1)


def header(path: str, rows: Iterator[Row], required: Sequence[str]) -> List[str]:
  """Reads the header row and returns its column names, checking them."""
  header_row, fields = next(rows)
  names = [name.strip() for name in fields]
  seen = set()
  for name in names:
    if name and name in seen:
      raise DataError(path, 'duplicate column name in the header', header_row, name)
    seen.add(name)
  for name in required:
    if name not in seen:
      problem = f"missing required column (header has: {', '.join(names)})"
      raise DataError(path, problem, header_row, name)
  return names


def parsed_rows(path: str, rows: Iterable[Row], names: Sequence[str],
                parsers: Mapping[str, Parser]) -> Iterator[Tuple[int, Dict[str, object]]]:
  """Checks that every row has one field per name and parses the named columns that have a
  parser; yields (line number, column name -> parsed value) one row at a time."""
  wanted = [(index, name, parsers[name]) for index, name in enumerate(names) if name in parsers]
  for number, fields in rows:
    if len(fields) != len(names):
      raise DataError(path, f'expected {len(names)} fields, found {len(fields)}', number)
    values = {}
    for index, name, parse in wanted:
      try:
        values[name] = parse(fields[index])
      except ValueError as error:
        raise DataError(path, str(error), number, name) from None
    yield number, values


def parse(path: str, rows: Iterable[Row], names: Sequence[str],
          parsers: Mapping[str, Parser]) -> Columns:
  """All of `parsed_rows` as columns: the line numbers and the parsed columns."""
  numbers: List[int] = []
  columns: Dict[str, list] = {name: [] for name in names if name in parsers}
  for number, values in parsed_rows(path, rows, names, parsers):
    numbers.append(number)
    for name, value in values.items():
      columns[name].append(value)
  return numbers, columns


def check_unique(path: str, numbers: Sequence[int], ids: Sequence[str], column: str) -> None:
  """Raises a `DataError` on the second row of any id of `ids` (rows `numbers`)."""
  first_rows: Dict[str, int] = {}
  for number, key in zip(numbers, ids):
    if key in first_rows:
      problem = f'duplicate id {key!r} (first on row {first_rows[key]})'
      raise DataError(path, problem, number, column)
    first_rows[key] = number
