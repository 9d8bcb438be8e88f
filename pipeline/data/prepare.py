"""Turns a `Dataset` into split directories of tf.Examples, the input of ExampleGen.

`prepare_examples` writes `<output_dir>/<split>/data.tfrecord.gz` (GZIP TFRecord, one
tf.train.Example per interaction carrying every name in `features.RAW_FEATURES`) plus a
`manifest.json`. Output is built in a temporary directory beside `output_dir` and renamed into
place, so a failed run leaves the previous output as it was. When the manifest's fingerprint
already matches the inputs nothing is touched, which keeps the TFX cache valid across re-runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import pandas as pd

from models import features
from pipeline.data import loaders, split
from pipeline.data.loaders import Dataset

MANIFEST = 'manifest.json'
DATA_FILE = 'data.tfrecord.gz'
# Bump when the written examples change for the same inputs, so old outputs are rebuilt.
FORMAT_VERSION = 1


def fingerprint(dataset: Dataset, history_length: int, eval_fraction: float,
                test_fraction: float) -> str:
  """SHA-256 over the dataset's tables (index, values, dtypes, column names) and parameters."""
  digest = hashlib.sha256()
  parameters = {
      'format_version': FORMAT_VERSION,
      'history_length': history_length,
      'eval_fraction': eval_fraction,
      'test_fraction': test_fraction,
  }
  digest.update(json.dumps(parameters, sort_keys=True).encode())
  tables = {'interactions': dataset.interactions, 'users': dataset.users, 'items': dataset.items}
  for table_name, table in tables.items():
    digest.update(f'\0table {table_name}'.encode())
    if table is None:
      continue
    frame = table.reset_index()
    for column in frame.columns:
      values = frame[column].to_numpy()
      if values.dtype == object:
        data = json.dumps(values.tolist()).encode()
      else:
        data = np.ascontiguousarray(values).tobytes()
      digest.update(f'\0column {column} {values.dtype} {len(data)}\0'.encode())
      digest.update(data)
  return digest.hexdigest()


def join_side_features(dataset: Dataset) -> pd.DataFrame:
  """Interactions with the user and item side features; missing ones are UNKNOWN or 0."""
  users = dataset.users if dataset.users is not None else loaders.users_frame([], [], [], [], [])
  items = dataset.items if dataset.items is not None else loaders.items_frame([], [], [], [])
  for table in (users, items):
    if not table.index.is_unique:  # a join would repeat interactions
      raise ValueError(f'side table keyed by {table.index.name} has duplicate keys')
  columns = [features.USER_ID, features.ITEM_ID, features.RATING, features.TIMESTAMP]
  frame = (dataset.interactions[columns].reset_index(drop=True).join(
      users, on=features.USER_ID).join(items, on=features.ITEM_ID))
  for name in features.USER_SIDE_FEATURES + features.ITEM_SIDE_FEATURES:
    if name in features.INT_FEATURES:
      frame[name] = frame[name].fillna(0).astype(np.int64)
    else:
      frame[name] = frame[name].fillna(features.UNKNOWN).astype(object)
  return frame


def _columns_by_list_kind(frame: pd.DataFrame) -> Dict[str, Tuple[str, list]]:
  """Each raw feature's tf.train.Feature list field and its values as Python scalars."""
  kinds = {name: 'int64_list' for name in features.INT_FEATURES}
  kinds.update({name: 'float_list' for name in features.FLOAT_FEATURES})
  kinds.update({name: 'bytes_list' for name in features.STRING_FEATURES})
  columns = {}
  for name in features.RAW_FEATURES:
    values = frame[name].tolist()
    if kinds[name] == 'bytes_list':
      values = [value.encode('utf-8') for value in values]
    columns[name] = (kinds[name], values)
  return columns


def _write_tfrecord(path: Path, frame: pd.DataFrame) -> None:
  """Writes one tf.train.Example per row of `frame`, each feature holding one value, to a GZIP
  TFRecord file.

  One Example is reused and its values overwritten per row: several times faster than building
  a new message per row, which matters at 100k rows.
  """
  import tensorflow as tf  # Lazily: loading and validating data does not need TensorFlow.

  example = tf.train.Example()
  slots = []
  for name, (kind, values) in _columns_by_list_kind(frame).items():
    slot = getattr(example.features.feature[name], kind).value
    slot.extend(values[:1])  # One value to overwrite per row (none for an empty frame).
    slots.append((slot, values))
  options = tf.io.TFRecordOptions(compression_type='GZIP')
  with tf.io.TFRecordWriter(str(path), options) as writer:
    for row in range(len(frame)):
      for slot, values in slots:
        slot[0] = values[row]
      writer.write(example.SerializeToString())


def _read_manifest(output_dir: Path) -> Optional[Dict[str, Any]]:
  """The manifest of a previous run: None when absent, {} when not valid JSON."""
  try:
    return json.loads((output_dir / MANIFEST).read_text())
  except FileNotFoundError:
    return None
  except ValueError:
    return {}


def _replace_directory(new: Path, target: Path) -> None:
  """Renames `new` to `target`, moving a previous `target` aside first and deleting it after."""
  if not target.exists():
    new.rename(target)
    return
  previous = target.with_name(f'.{target.name}.old-{uuid.uuid4().hex}')
  target.rename(previous)
  try:
    new.rename(target)
  except BaseException:
    previous.rename(target)
    raise
  shutil.rmtree(previous)


def prepare_examples(
    dataset: Dataset,
    output_dir: Union[str, Path],
    history_length: int,
    eval_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Dict[str, Any]:
  """Joins side features, splits per user, adds history and writes the split TFRecords.

  Returns the manifest: example counts per split, numbers of users and items, the parameters
  and the fingerprint. If `output_dir` already holds a manifest with the same fingerprint,
  nothing is written and that manifest is returned. A non-empty `output_dir` without a
  manifest is refused rather than replaced.
  """
  output_dir = Path(output_dir)
  digest = fingerprint(dataset, history_length, eval_fraction, test_fraction)
  previous = _read_manifest(output_dir)
  if previous is not None and previous.get('fingerprint') == digest:
    return previous
  if previous is None and output_dir.is_dir() and any(output_dir.iterdir()):
    raise FileExistsError(f'{output_dir}: not empty and without {MANIFEST}; not replacing it')

  frame = join_side_features(dataset)
  frame = frame.iloc[split.chronological_order(frame)].reset_index(drop=True)
  frame = split.add_history(frame, history_length)
  splits = split.assign_splits(frame, eval_fraction, test_fraction)

  output_dir.parent.mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f'.{output_dir.name}.tmp-'))
  try:
    staging.chmod(0o755)  # mkdtemp makes it private; the output is meant to be shared.
    counts = {}
    for name in features.SPLITS:
      part = frame[splits == name]
      (staging / name).mkdir()
      _write_tfrecord(staging / name / DATA_FILE, part)
      counts[name] = len(part)
    manifest = {
        'fingerprint': digest,
        'counts': counts,
        'num_users': int(frame[features.USER_ID].nunique()),
        'num_items': int(frame[features.ITEM_ID].nunique()),
        'history_length': history_length,
        'eval_fraction': eval_fraction,
        'test_fraction': test_fraction,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + '\n')
    _replace_directory(staging, output_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return manifest
