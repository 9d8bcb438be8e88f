"""The item catalogue a SavedModel carries, so that what a model answers can be shown by title.

`models.export` writes `<export_dir>/assets.extra/catalogue.json` beside the warmup requests:
the id, title, year and genres of every item the model's index ranks. TF Serving ignores
`assets.extra/` (the variables are unchanged) and the Pusher copies it with the model, so the
file travels with every pushed version. The client (`serving.client`, `--model-dir`) and the
local server's REST API (`serving.rest`) read it back; the client also reads the project's
`items.csv` (`item_id`, `title`, `genres` '|'-separated, `year`), the side table the data was
prepared from.

The file is one JSON object, `{"items": [record, ...]}`, each record
`{"item_id": str, "title": str or null, "year": int or null, "genres": [str, ...]}` (null and []
where the data did not know them).
"""
import csv
import json
import os
import re
from typing import Any, Dict, Iterable, Optional

import tensorflow as tf

from contract import features
from contract import warmup

CATALOGUE_FILE = 'catalogue.json'
# A record's keys: the raw features' names.
ITEM_ID, TITLE, YEAR, GENRES = features.ITEM_ID, features.TITLE, features.YEAR, features.GENRES

Record = Dict[str, Any]
_TITLE_YEAR = re.compile(r'\(\d{4}\)$')  # a title that ends with its year, e.g. 'Heat (1995)'


def catalogue_path(export_dir: str) -> str:
  return os.path.join(export_dir, warmup.ASSETS_EXTRA_DIR, CATALOGUE_FILE)


def _text(value) -> str:
  return (value.decode('utf-8', 'replace') if isinstance(value, bytes) else str(value)).strip()


def _known(text: str) -> Optional[str]:
  """`text`, or None for what the data path writes when a value is missing ('', 'unknown')."""
  return None if text in ('', features.UNKNOWN) else text


def record(item_id, title='', genres='', year=0) -> Record:
  """One item's record from raw values as the data path writes them (str or bytes; genres
  '|'-separated; 'unknown', '' and year 0 meaning not known)."""
  try:
    year = int(_text(year) or 0)
  except ValueError:
    year = 0
  return {ITEM_ID: _text(item_id), TITLE: _known(_text(title)), YEAR: year if year > 0 else None,
          GENRES: [genre for genre in _text(genres).split(features.GENRE_SEPARATOR)
                   if _known(genre.strip())]}


def write_catalogue(export_dir: str, records: Iterable[Record]) -> str:
  """Writes the records (`record`) as the export's catalogue file; returns its path."""
  path = catalogue_path(export_dir)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump({'items': list(records)}, f, ensure_ascii=False, separators=(',', ':'))
  return path


def read_catalogue(path: str) -> Dict[str, Record]:
  """The records of a catalogue file by item id; ValueError when it is not one."""
  with tf.io.gfile.GFile(path, 'r') as f:
    try:
      items = json.load(f)['items']
      return {item[ITEM_ID]: item for item in items}
    except (ValueError, KeyError, TypeError) as error:
      raise ValueError(f'{path} is not a catalogue file: {error!r}') from None


def read_items_csv(path: str) -> Dict[str, Record]:
  """The records of an `items.csv` (a header row naming `item_id` and any of `title`, `genres`,
  `year`; other columns ignored) by item id; ValueError when it has no `item_id` column."""
  with open(path, newline='', encoding='utf-8') as f:
    rows = csv.DictReader(f)
    if ITEM_ID not in (rows.fieldnames or []):
      raise ValueError(f"{path} is not an items CSV: its header has no '{ITEM_ID}' column")
    items = (record(row[ITEM_ID], row.get(TITLE) or '', row.get(GENRES) or '',
                    row.get(YEAR) or 0) for row in rows)
    return {item[ITEM_ID]: item for item in items}


def title(item: Optional[Record]) -> str:
  """An item's 'Title (year)' ('' when its title is not known; no year is added to a title that
  ends with one, as MovieLens titles do, whose year may differ from the release date's)."""
  if not item or not item.get(TITLE):
    return ''
  text, year = item[TITLE], item.get(YEAR)
  return f'{text} ({year})' if year and not _TITLE_YEAR.search(text) else text


def label(item: Optional[Record]) -> str:
  """How an item reads beside its id: 'Title (year)  Genre, Genre' (`title`; '' when nothing
  is known)."""
  if not item:
    return ''
  year = item.get(YEAR)
  text = title(item) or (f'({year})' if year else '')
  return '  '.join(part for part in (text, ', '.join(item.get(GENRES) or [])) if part)
