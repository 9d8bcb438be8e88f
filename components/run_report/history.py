"""The pushed versions' history: a small JSON record per version, kept in the serving base
directory, that the run report shows as a table and a chart.

The RunReport writes the record of the version its run pushed, after the Pusher, as
`<serving_model_dir>/history/<version>.json`: {'version', 'date', 'window_spans', 'model',
'ndcg@10', 'recall@100', 'bytes'} (the candidate's metrics in the RetrievalEvaluator's
metrics.json). The records lie beside the version directories, not in them: a version directory
stays as the Pusher wrote it (TF Serving and `serving/`'s version poller watch its files; a
change after the push reads there as a new copy), and `history` is not a number, so it is no
version to either. Everything goes through tf.io.gfile: the base directory can be on any file
system TensorFlow reads (gs://, a Kubeflow volume).
"""
import datetime
import json
import os
import re
from typing import Any, Dict, List, Mapping

import tensorflow as tf
from tfx.utils import io_utils

from components import gates as gates_lib
from evaluation import metrics as metrics_lib

HISTORY_DIR = 'history'
NDCG = f'ndcg@{metrics_lib.CUTOFF}'
RECALL = f'recall@{max(metrics_lib.RECALL_KS)}'
BYTES = gates_lib.BYTES_KEY
# The row of a version without a readable record says why in its 'note'.
NO_RECORD = 'no record'
UNREADABLE = 'unreadable record'
REMOVED = 'version directory removed'

# The keys of a record and the types each may hold (None: no value, or for 'window_spans' data
# without spans, read whole).
_NUMBER = (int, float)
RECORD_TYPES = {
    'version': (int,),
    'date': (str,),
    'window_spans': (list, type(None)),
    'model': (str,),
    NDCG: _NUMBER + (type(None),),
    RECALL: _NUMBER + (type(None),),
    BYTES: _NUMBER + (type(None),),
}
_RECORD_NAME = re.compile(r'(\d+)\.json')


def version_date(version: str) -> str:
  """The UTC date of a Pusher version: its number is the push time (the Pusher's
  UNIX_TIMESTAMP versioning)."""
  return datetime.datetime.fromtimestamp(int(version), datetime.timezone.utc).strftime(
      '%Y-%m-%d %H:%M UTC')


def make_record(version: str, retrieval: Mapping[str, Any]) -> Dict[str, Any]:
  """The record of the pushed `version` from its run's metrics.json (`retrieval`)."""
  candidate = retrieval.get('candidate')
  metrics = (retrieval.get('models') or {}).get(candidate) or {}
  return {'version': int(version), 'date': version_date(version),
          'window_spans': retrieval.get('window_spans'), 'model': candidate,
          **{key: metrics.get(key) for key in (NDCG, RECALL, BYTES)}}


def record_path(base_dir: str, version: int) -> str:
  return os.path.join(base_dir, HISTORY_DIR, f'{version}.json')


def write_record(base_dir: str, record: Mapping[str, Any]) -> str:
  """Writes `record` into `base_dir`'s history; returns its path."""
  path = record_path(base_dir, record['version'])
  io_utils.write_string_file(path, json.dumps(record, indent=1))
  return path


def read_record(path: str, version: int) -> Dict[str, Any]:
  """The record of `version` at `path`; ValueError naming what is wrong."""
  with tf.io.gfile.GFile(path) as f:
    record = json.load(f)
  if not isinstance(record, dict):
    raise ValueError('expected a JSON object')
  for key, types_ in RECORD_TYPES.items():
    if key not in record:
      raise ValueError(f'no {key!r}')
    if not isinstance(record[key], types_) or isinstance(record[key], bool):
      raise ValueError(f'{key!r} is {record[key]!r}')
  if record['version'] != version:
    raise ValueError(f"'version' is {record['version']}")
  return record


def _names(directory: str) -> List[str]:
  """The entries of `directory` ([] when it is missing), without the trailing '/' some file
  systems give directories."""
  if not tf.io.gfile.isdir(directory):
    return []
  return [name.rstrip('/') for name in tf.io.gfile.listdir(directory)]


def read_history(base_dir: str) -> List[Dict[str, Any]]:
  """One row per version pushed to `base_dir`, oldest first: its record with a 'note' ('' when
  its directory is there, `REMOVED` when it is gone), or {'version', 'note'} when it has no
  record (`NO_RECORD`: pushed before the history was kept, or its record could not be written)
  or an unreadable one (`UNREADABLE` and why)."""
  versions = {int(name) for name in _names(base_dir)
              if name.isdigit() and tf.io.gfile.isdir(os.path.join(base_dir, name))}
  records = {int(found.group(1)) for found in map(_RECORD_NAME.fullmatch,
                                                  _names(os.path.join(base_dir, HISTORY_DIR)))
             if found}
  rows = []
  for version in sorted(versions | records):
    if version not in records:
      rows.append({'version': version, 'note': NO_RECORD})
      continue
    try:
      record = read_record(record_path(base_dir, version), version)
    except (OSError, tf.errors.OpError, ValueError) as error:
      reason = str(error).splitlines()[0] if str(error) else type(error).__name__
      rows.append({'version': version, 'note': f'{UNREADABLE}: {reason}'})
      continue
    rows.append({**record, 'note': '' if version in versions else REMOVED})
  return rows
