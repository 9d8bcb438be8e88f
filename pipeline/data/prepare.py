"""Turns a data source into split directories of tf.Examples with Apache Beam, the input of
ExampleGen.

`prepare_examples` streams the interactions file through a Beam pipeline: a reader DoFn parses
and validates it row by row (exact line numbers, so errors name file, row and column), the rows
are grouped by user, and each user's interactions are sorted, split (`protocol.split_sizes`), given
their history and joined with the user and item side tables (small, loaded in the driver and
passed as side inputs). It writes `<output_dir>/<split>/data-SSSSS-of-NNNNN.tfrecord.gz` (GZIP
TFRecord shards, one tf.train.Example per interaction carrying every name in
`features.RAW_FEATURES`) plus a `manifest.json`.

Nothing holds the interaction log in the driver's Python memory: the fingerprint streams the
input files' bytes, and grouping by user is Beam's shuffle (with the DirectRunner that shuffle
lives in the runner process; on a distributed runner it is the runner's service). A file is
parsed by one DoFn call, in order: exact line numbers need it, and quoted CSV fields may span
lines, so a file cannot be cut at arbitrary byte offsets. Grouping, building and writing the
examples run on all workers.

Output is built in a temporary directory beside `output_dir` and renamed into place, so a failed
run leaves the previous output as it was. When the manifest's fingerprint already matches the
inputs nothing is touched, which keeps the TFX cache valid across re-runs.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from contract import features
from evaluation import protocol
from pipeline import configs
from pipeline.data import example_encoding, loaders
from pipeline.data.errors import DataError
from pipeline.data.loaders import InputFiles

MANIFEST = 'manifest.json'
DATA_PREFIX = 'data'
DATA_SUFFIX = '.tfrecord.gz'
# Bump when the written examples change for the same inputs, so old outputs are rebuilt.
FORMAT_VERSION = 2

_METRICS_NAMESPACE = 'prepare'
_USERS = 'users'
_ITEMS = 'items'
_ERRORS = 'errors'
_ROWS = 'rows'
_READ_CHUNK_BYTES = 1 << 20

# A user's grouped interactions: (timestamp, line, item id, rating), sorted = chronological.
UserRow = Tuple[int, int, str, float]


def split_files(output_dir: Union[str, Path], split_name: str) -> List[str]:
  """The TFRecord shards of one split written by `prepare_examples`, sorted."""
  return sorted(glob.glob(os.path.join(os.fspath(output_dir), split_name,
                                       f'{DATA_PREFIX}-*{DATA_SUFFIX}')))


def fingerprint(files: InputFiles, history_length: int, eval_fraction: float,
                test_fraction: float) -> str:
  """SHA-256 over the parameters, the input format and the input files' bytes (streamed)."""
  digest = hashlib.sha256()
  parameters = {
      'format_version': FORMAT_VERSION,
      'history_length': history_length,
      'eval_fraction': eval_fraction,
      'test_fraction': test_fraction,
      'movielens': files.movielens,
  }
  digest.update(json.dumps(parameters, sort_keys=True).encode())
  for role in ('interactions', 'users', 'items'):
    path = getattr(files, role)
    digest.update(f'\0{role} {path is not None}\0'.encode())
    if path is None:
      continue
    try:
      with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(_READ_CHUNK_BYTES), b''):
          digest.update(chunk)
    except OSError as error:
      raise DataError(path, f'cannot read: {error.strerror}') from None
  return digest.hexdigest()


def side_feature_tables(
    files: InputFiles) -> Tuple[Dict[str, tuple], Dict[str, tuple]]:
  """Validated user and item side tables (small) as id -> values in USER_SIDE_FEATURES /
  ITEM_SIDE_FEATURES order; empty when a table is absent."""
  tables = []
  for frame, names in ((loaders.load_users(files), features.USER_SIDE_FEATURES),
                       (loaders.load_items(files), features.ITEM_SIDE_FEATURES)):
    if frame is None:
      tables.append({})
    else:
      columns = [frame[name].tolist() for name in names]
      tables.append(dict(zip(frame.index.tolist(), zip(*columns))))
  return tables[0], tables[1]


class ReadInteractions(beam.DoFn):
  """Streams one interactions file: (user id, UserRow) per row, each new item id counted.

  The first bad row ends the file with its `DataError` (as constructor arguments) on the
  ERRORS output: exceptions raised in Beam workers reach the driver wrapped differently per
  runner, so the driver re-raises it from there.
  """

  def __init__(self, movielens: bool):
    self._movielens = movielens
    self._items = Metrics.counter(_METRICS_NAMESPACE, _ITEMS)

  def process(self, path: str) -> Iterator[Any]:
    seen_items = set()  # bounded by the catalogue, not by the interactions
    try:
      for row in loaders.read_interactions(path, self._movielens):
        if row.item_id not in seen_items:
          seen_items.add(row.item_id)
          self._items.inc()
        yield row.user_id, (row.timestamp, row.line, row.item_id, row.rating)
    except DataError as error:
      yield beam.pvalue.TaggedOutput(_ERRORS, (error.path, error.problem, error.row,
                                               error.column))


class UserExamples(beam.DoFn):
  """One user's interactions -> serialized examples on the output named after their split.

  The user's and each item's features are encoded once (items cached per worker: memory
  bounded by the catalogue) and concatenated with the per-interaction ones.
  """

  def __init__(self, history_length: int, eval_fraction: float, test_fraction: float):
    self._history_length = history_length
    self._fractions = (eval_fraction, test_fraction)
    self._counters = {name: Metrics.counter(_METRICS_NAMESPACE, name)
                      for name in features.SPLITS + (_USERS,)}
    self._encoded_items: Dict[str, bytes] = {}

  def _item_features(self, item_id: str, items: Mapping[str, tuple]) -> bytes:
    encoded = self._encoded_items.get(item_id)
    if encoded is None:
      encoded = _encode_features(features.ITEM_ID, item_id, features.ITEM_SIDE_FEATURES,
                                 items.get(item_id))
      self._encoded_items[item_id] = encoded
    return encoded

  def process(self, grouped: Tuple[str, Iterable[UserRow]], users: Mapping[str, tuple],
              items: Mapping[str, tuple]) -> Iterator[beam.pvalue.TaggedOutput]:
    user_id, rows = grouped
    rows = sorted(rows)  # by timestamp, then line: the original order breaks ties
    n_eval, n_test = protocol.split_sizes(len(rows), *self._fractions)
    user_features = _encode_features(features.USER_ID, user_id, features.USER_SIDE_FEATURES,
                                     users.get(user_id))
    item_ids = [row[2] for row in rows]
    ratings = [features.rating_text(row[3]) for row in rows]
    counts = dict.fromkeys(features.SPLITS, 0)
    for position, (timestamp, _, item_id, rating) in enumerate(rows):
      start = max(0, position - self._history_length)
      history = features.HISTORY_SEPARATOR.join(item_ids[start:position])
      history_ratings = features.HISTORY_SEPARATOR.join(ratings[start:position])
      name = protocol.split_name(len(rows) - 1 - position, n_eval, n_test)
      counts[name] += 1
      yield beam.pvalue.TaggedOutput(name, example_encoding.encode_example((
          user_features,
          self._item_features(item_id, items),
          example_encoding.encode_feature(features.RATING, rating),
          example_encoding.encode_feature(features.TIMESTAMP, timestamp),
          example_encoding.encode_feature(features.HISTORY, history),
          example_encoding.encode_feature(features.HISTORY_RATINGS, history_ratings),
      )))
    self._counters[_USERS].inc()
    for name, count in counts.items():
      self._counters[name].inc(count)


def _encode_features(id_name: str, id_value: str, side_names: Sequence[str],
                     side_values: Optional[tuple]) -> bytes:
  """The encoded id and side features of a user or item; a missing side row gives
  `features.default_value` (UNKNOWN or 0)."""
  if side_values is None:
    side_values = tuple(features.default_value(name) for name in side_names)
  return b''.join(
      example_encoding.encode_feature(name, value)
      for name, value in zip((id_name,) + tuple(side_names), (id_value,) + tuple(side_values)))


def _build_pipeline(root: beam.Pipeline, files: InputFiles, side_tables, staging: Path,
                    history_length: int, eval_fraction: float, test_fraction: float) -> None:
  users, items = side_tables
  parsed = (
      root
      | 'InteractionsFile' >> beam.Create([os.fspath(files.interactions)])
      | 'ReadInteractions' >> beam.ParDo(ReadInteractions(files.movielens)).with_outputs(
          _ERRORS, main=_ROWS))
  examples = (
      parsed[_ROWS]
      | 'GroupByUser' >> beam.GroupByKey()
      | 'UserExamples' >> beam.ParDo(
          UserExamples(history_length, eval_fraction, test_fraction),
          beam.pvalue.AsDict(root | 'Users' >> beam.Create(sorted(users.items()))),
          beam.pvalue.AsDict(root | 'Items' >> beam.Create(sorted(items.items())))).with_outputs(
              *features.SPLITS))
  for name in features.SPLITS:
    _ = examples[name] | f'Write_{name}' >> beam.io.WriteToTFRecord(
        os.path.join(staging, name, DATA_PREFIX), file_name_suffix=DATA_SUFFIX)
  _ = (parsed[_ERRORS]
       | 'ErrorJson' >> beam.Map(json.dumps)
       | 'WriteErrors' >> beam.io.WriteToText(os.path.join(staging, _ERRORS),
                                              file_name_suffix='.jsonl'))


def _raise_first_error(staging: Path) -> None:
  """Re-raises the reader's DataError, if it reported one."""
  for path in sorted(staging.glob(f'{_ERRORS}*.jsonl')):
    with open(path) as handle:
      for line in handle:
        raise DataError(*json.loads(line))


def _counters(result) -> Dict[str, int]:
  counters = result.metrics().query(MetricsFilter().with_namespace(_METRICS_NAMESPACE))
  totals: Dict[str, int] = {}
  for counter in counters['counters']:
    value = counter.committed if counter.committed is not None else counter.attempted
    totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value)
  return totals


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
    files: InputFiles,
    output_dir: Union[str, Path],
    history_length: int,
    eval_fraction: float = 0.1,
    test_fraction: float = 0.1,
    beam_pipeline_args: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
  """Validates the inputs, splits per user, adds history and side features, and writes the
  split TFRecords with a Beam pipeline (`beam_pipeline_args`, by default the local runner's
  `configs.LOCAL_BEAM_PIPELINE_ARGS`).

  Returns the manifest: example counts per split, numbers of users and items, the parameters
  and the fingerprint. If `output_dir` already holds a manifest with the same fingerprint,
  nothing is written and that manifest is returned. A non-empty `output_dir` without a
  manifest is refused rather than replaced. Bad input raises `DataError`.
  """
  if history_length < 0:
    raise ValueError(f'history length must be >= 0, got {history_length}')
  protocol.check_fractions(eval_fraction, test_fraction)
  output_dir = Path(output_dir)
  digest = fingerprint(files, history_length, eval_fraction, test_fraction)
  previous = _read_manifest(output_dir)
  if previous is not None and previous.get('fingerprint') == digest:
    return previous
  if previous is None and output_dir.is_dir() and any(output_dir.iterdir()):
    raise FileExistsError(f'{output_dir}: not empty and without {MANIFEST}; not replacing it')
  # Header and first row checked here: a wrong file fails at once, not after starting Beam.
  next(loaders.read_interactions(files.interactions, files.movielens))
  side_tables = side_feature_tables(files)

  output_dir.parent.mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f'.{output_dir.name}.tmp-'))
  try:
    staging.chmod(0o755)  # mkdtemp makes it private; the output is meant to be shared.
    if beam_pipeline_args is None:
      beam_pipeline_args = configs.LOCAL_BEAM_PIPELINE_ARGS
    root = beam.Pipeline(options=PipelineOptions(list(beam_pipeline_args)))
    _build_pipeline(root, files, side_tables, staging, history_length, eval_fraction,
                    test_fraction)
    result = root.run()
    result.wait_until_finish()
    _raise_first_error(staging)
    for path in staging.glob(f'{_ERRORS}*.jsonl'):
      path.unlink()
    counts = _counters(result)
    manifest = {
        'fingerprint': digest,
        'counts': {name: counts.get(name, 0) for name in features.SPLITS},
        'num_users': counts.get(_USERS, 0),
        'num_items': counts.get(_ITEMS, 0),
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
