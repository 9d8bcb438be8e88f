"""The cell parsers: one text field of an input file to its typed value.

Each parser raises ValueError with the problem; the readers (`ingest.delimited`) add the file,
the line and the column to make it a located `DataError`.
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Callable

from contract import features

Parser = Callable[[str], object]

MILLISECONDS_FROM = 100_000_000_000  # an integer timestamp this large is in milliseconds


def identifier(text: str) -> str:
  value = text.strip()
  if not value:
    raise ValueError('empty id')
  if any(character.isspace() for character in value):
    # Ids are joined by whitespace into history features, so they must not contain any.
    raise ValueError(f'id {value!r} contains whitespace')
  return value


def number(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise ValueError(f'{text!r} is not a number') from None
  if not math.isfinite(value):
    raise ValueError(f'{text!r} is not a finite number')
  return value


def integer(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise ValueError(f'{text!r} is not an integer') from None
  if not -2**63 <= value < 2**63:
    raise ValueError(f'{text!r} is out of the int64 range')
  return value


def timestamp(text: str) -> int:
  """Seconds since the epoch: an integer in seconds, or in milliseconds when it is at least
  `MILLISECONDS_FROM` (as seconds that would be after the year 5000), or an ISO-8601 date or
  date-time such as '1997-12-04T15:55:49', '1997-12-04 15:55:49+01:00' or
  '1997-12-04T15:55:49Z' (UTC when it names no zone)."""
  try:
    value = integer(text)
  except ValueError:
    pass
  else:
    return value // 1000 if value >= MILLISECONDS_FROM else value
  try:
    moment = datetime.datetime.fromisoformat(re.sub(r'[zZ]$', '+00:00', text.strip()))
  except ValueError:
    raise ValueError(f'{text!r} is neither an integer nor an ISO-8601 date-time') from None
  if moment.tzinfo is None:
    moment = moment.replace(tzinfo=datetime.timezone.utc)
  return int(moment.timestamp())


def optional_integer(text: str) -> int:
  return integer(text) if text.strip() else 0


def optional_text(text: str) -> str:
  return text.strip() or features.UNKNOWN


def free_text(text: str) -> str:
  """Free text (a description, tags) with its runs of whitespace, line breaks included, as one
  space; '' when empty."""
  return ' '.join(text.split())
