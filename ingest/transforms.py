"""The Beam transforms that turn raw interaction logs into split tf.Examples.

`RawToExamples` reads each interactions file with one DoFn call (`ReadInteractions`: exact line
numbers, so errors name file, row and column; quoted CSV fields may span lines, so a file cannot
be cut at arbitrary byte offsets), groups the rows of all of them (a window of spans, oldest
first) by user, and for each user sorts, splits
(`contract.split_rules.split_sizes`), builds every example's history and joins the user and item
side tables (small, loaded in the driver by `side_feature_tables` and passed as side inputs).
The result is one PCollection of serialized tf.Examples (every name in `features.RAW_FEATURES`,
and `features.ITEM_TEXT` where the item has text) per split, plus the reader's error, if any.
The `features.ITEMS_SPLIT` split holds one example per item known (in the item side table or in
the interactions), with its side features and no interaction: the catalogue that models rank,
items without train interactions included.

Nothing holds the interaction log in the driver's Python memory: grouping by user is Beam's
shuffle. Files are read through `tf.io.gfile` (`ingest.delimited`), so the same transform runs on
the DirectRunner and on distributed runners, with inputs on any file system TensorFlow reads.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

from contract import features
from contract import split_rules
from ingest import example_encoding, loaders
from ingest.errors import DataError
from ingest.loaders import InputFiles

METRICS_NAMESPACE = 'ingest'
USERS = 'users'
ITEMS = 'items'
ERRORS = 'errors'  # the output of `RawToExamples` holding the reader's DataError, if any
_ROWS = 'rows'

# A user's grouped interactions: (timestamp, (file number, line), item id, rating), sorted =
# chronological (ties in the order of the files, then of their lines).
UserRow = Tuple[int, Tuple[int, int], str, float]


# The item features of the item side table, in its values' order: the side features, then the
# item text ('' when none: left out of the examples).
ITEM_FEATURES = features.ITEM_SIDE_FEATURES + (features.ITEM_TEXT,)


def side_feature_tables(
    sources: Sequence[InputFiles],
    item_text_columns: Sequence[str] = ()) -> Tuple[Dict[str, tuple], Dict[str, tuple]]:
  """Validated user and item side tables (small) of `sources` (oldest first) as id -> values in
  USER_SIDE_FEATURES / ITEM_FEATURES order, the item text from the `item_text_columns` of
  items.csv ('' without them): a user or item described by several sources has the latest
  one's row; empty when no source has the table. Bad rows raise `DataError`."""
  tables = ({}, {})
  for files in sources:
    for table, frame, names in (
        (tables[0], loaders.load_users(files), features.USER_SIDE_FEATURES),
        (tables[1], loaders.load_items(files, item_text_columns), ITEM_FEATURES)):
      if frame is not None:
        columns = [frame[name].tolist() if name in frame else [''] * len(frame)
                   for name in names]
        table.update(zip(frame.index.tolist(), zip(*columns)))
  return tables


class ReadInteractions(beam.DoFn):
  """Streams one interactions file, given as (its number in the window, its `InputFiles`):
  (user id, UserRow) per row, each new item id counted.

  The first bad row ends the file with its `DataError` (as constructor arguments) on the
  ERRORS output: exceptions raised in Beam workers reach the driver wrapped differently per
  runner, so the driver re-raises it from there.
  """

  def __init__(self):
    self._items = Metrics.counter(METRICS_NAMESPACE, ITEMS)

  def process(self, numbered: Tuple[int, InputFiles]) -> Iterator[Any]:
    number, files = numbered
    seen_items = set()  # bounded by the catalogue, not by the interactions
    try:
      for row in loaders.read_interactions(files.interactions, files.movielens):
        if row.item_id not in seen_items:
          seen_items.add(row.item_id)
          self._items.inc()
        yield row.user_id, (row.timestamp, (number, row.line), row.item_id, row.rating)
    except DataError as error:
      yield beam.pvalue.TaggedOutput(ERRORS, (error.path, error.problem, error.row,
                                               error.column))


class UserExamples(beam.DoFn):
  """One user's interactions -> serialized examples on the output named after their split.

  The user's and each item's features are encoded once (items cached per worker: memory
  bounded by the catalogue) and concatenated with the per-interaction ones.
  """

  def __init__(self, history_length: int, eval_fraction: float, test_fraction: float):
    self._history_length = history_length
    self._fractions = (eval_fraction, test_fraction)
    self._counters = {name: Metrics.counter(METRICS_NAMESPACE, name)
                      for name in features.SPLITS + (USERS,)}
    self._encoded_items: Dict[str, bytes] = {}

  def _item_features(self, item_id: str, items: Mapping[str, tuple]) -> bytes:
    encoded = self._encoded_items.get(item_id)
    if encoded is None:
      encoded = _encode_features(features.ITEM_ID, item_id, ITEM_FEATURES, items.get(item_id))
      self._encoded_items[item_id] = encoded
    return encoded

  def process(self, grouped: Tuple[str, Iterable[UserRow]], users: Mapping[str, tuple],
              items: Mapping[str, tuple]) -> Iterator[beam.pvalue.TaggedOutput]:
    user_id, rows = grouped
    rows = sorted(rows)  # by timestamp, then file and line: the original order breaks ties
    n_eval, n_test = split_rules.split_sizes(len(rows), *self._fractions)
    user_features = _encode_features(features.USER_ID, user_id, features.USER_SIDE_FEATURES,
                                     users.get(user_id))
    item_ids = [row[2] for row in rows]
    ratings = [features.rating_text(row[3]) for row in rows]
    counts = dict.fromkeys(features.SPLITS, 0)
    for position, (timestamp, _, item_id, rating) in enumerate(rows):
      start = max(0, position - self._history_length)
      history = features.HISTORY_SEPARATOR.join(item_ids[start:position])
      history_ratings = features.HISTORY_SEPARATOR.join(ratings[start:position])
      name = split_rules.split_name(len(rows) - 1 - position, n_eval, n_test)
      counts[name] += 1
      yield beam.pvalue.TaggedOutput(name, example_encoding.encode_example((
          user_features,
          self._item_features(item_id, items),
          example_encoding.encode_feature(features.RATING, rating),
          example_encoding.encode_feature(features.TIMESTAMP, timestamp),
          example_encoding.encode_feature(features.HISTORY, history),
          example_encoding.encode_feature(features.HISTORY_RATINGS, history_ratings),
      )))
    self._counters[USERS].inc()
    for name, count in counts.items():
      self._counters[name].inc(count)


def item_example(item_id: str, items: Mapping[str, tuple]) -> bytes:
  """The `features.ITEMS_SPLIT` example of an item: its id and side features, every other raw
  feature at its default (no user, no interaction)."""
  return example_encoding.encode_example((
      _encode_features(features.USER_ID, '', features.USER_SIDE_FEATURES, None),
      _encode_features(features.ITEM_ID, item_id, ITEM_FEATURES, items.get(item_id)),
      *(example_encoding.encode_feature(name, features.default_value(name))
        for name in (features.RATING, features.TIMESTAMP, features.HISTORY,
                     features.HISTORY_RATINGS))))


def _encode_features(id_name: str, id_value: str, side_names: Sequence[str],
                     side_values: Optional[tuple]) -> bytes:
  """The encoded id and side features of a user or item; a missing side row gives
  `features.default_value` (UNKNOWN or 0); an optional feature (the item text) without a value
  is left out."""
  if side_values is None:
    side_values = tuple(features.default_value(name) for name in side_names)
  return b''.join(
      example_encoding.encode_feature(name, value)
      for name, value in zip((id_name,) + tuple(side_names), (id_value,) + tuple(side_values))
      if value != '' or name not in features.OPTIONAL_STRING_FEATURES)


class RawToExamples(beam.PTransform):
  """Raw input files -> {split name (`features.EXAMPLE_SPLITS`): serialized tf.Examples,
  ERRORS: the reader's error}.

  The input is one source's files or a window of spans' (`sources`, oldest first): their
  interactions are one log, split per user over the whole window, and their side tables one
  table (`side_feature_tables`). Applied to a pipeline (its root). The ERRORS PCollection holds
  at most one element per interactions file: the first bad row's `DataError` as its constructor
  arguments (exceptions raised in Beam workers reach the driver wrapped differently per runner);
  `raise_data_error` re-raises it. Counters in `METRICS_NAMESPACE` count the examples of each split,
  the users and the items.
  """

  def __init__(self, sources: Sequence[InputFiles],
               side_tables: Tuple[Mapping[str, tuple], Mapping[str, tuple]],
               history_length: int, eval_fraction: float, test_fraction: float):
    super().__init__()
    if history_length < 0:
      raise ValueError(f'history length must be >= 0, got {history_length}')
    if not sources:
      raise ValueError('no input files to read')
    split_rules.check_fractions(eval_fraction, test_fraction)
    self._sources = list(sources)
    self._side_tables = side_tables
    self._history_length = history_length
    self._fractions = (eval_fraction, test_fraction)

  def expand(self, root: beam.pvalue.PBegin) -> Dict[str, beam.PCollection]:
    users, items = self._side_tables
    pipeline = root.pipeline if isinstance(root, beam.pvalue.PBegin) else root
    items_table = beam.pvalue.AsDict(pipeline | 'Items' >> beam.Create(sorted(items.items())))
    parsed = (
        pipeline
        | 'InteractionsFiles' >> beam.Create(list(enumerate(self._sources)))
        | 'ReadInteractions' >> beam.ParDo(ReadInteractions()).with_outputs(ERRORS, main=_ROWS))
    examples = (
        parsed[_ROWS]
        | 'GroupByUser' >> beam.GroupByKey()
        | 'UserExamples' >> beam.ParDo(
            UserExamples(self._history_length, *self._fractions),
            beam.pvalue.AsDict(pipeline | 'Users' >> beam.Create(sorted(users.items()))),
            items_table).with_outputs(*features.SPLITS))
    known_items = (
        (parsed[_ROWS] | 'InteractionItems' >> beam.Map(lambda row: row[1][2]),
         pipeline | 'SideTableItems' >> beam.Create(sorted(items)))
        | 'AllItems' >> beam.Flatten()
        | 'DistinctItems' >> beam.Distinct()
        | 'ItemExamples' >> beam.Map(item_example, items_table))
    return {**{name: examples[name] for name in features.SPLITS},
            features.ITEMS_SPLIT: known_items, ERRORS: parsed[ERRORS]}


def raise_data_error(error_args: Optional[Sequence[Any]]) -> None:
  """Re-raises an element of `RawToExamples`' ERRORS output as the `DataError` it was."""
  if error_args:
    raise DataError(*error_args)


def check_inputs(sources: Sequence[InputFiles], item_text_columns: Sequence[str] = ()
                 ) -> Tuple[Dict[str, tuple], Dict[str, tuple]]:
  """Checks each interactions file's header and first row and loads the side tables, so that a
  wrong file fails at once, before a Beam job starts; returns `side_feature_tables`."""
  for files in sources:
    next(loaders.read_interactions(files.interactions, files.movielens))
  return side_feature_tables(sources, item_text_columns)


def counters(result: beam.runners.runner.PipelineResult) -> Dict[str, int]:
  """The `METRICS_NAMESPACE` counters of a finished pipeline, by name."""
  found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
  totals: Dict[str, int] = {}
  for counter in found['counters']:
    value = counter.committed if counter.committed is not None else counter.attempted
    totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value)
  return totals
