"""RawExampleGen: the pipeline's ExampleGen, from raw interaction logs to split tf.Examples.

A `FileBasedExampleGen` (TFX's custom ExampleGen pattern) with its driver, so the input files
are fingerprinted (span, version, fingerprint) and an unchanged input hits the cache. Its
executor runs `ingest.transforms.RawToExamples` in one Beam pipeline: it reads the raw files
(the documented CSV schema: `interactions.csv` with optional `users.csv` / `items.csv`, or one
`.csv` file; or MovieLens-100K's `u.data`, `u.item`, `u.user`) from any file system TensorFlow
reads, validates every row (a bad row fails the execution with a `DataError` naming file, row
and column), groups by user, splits each user's interactions chronologically
(`evaluation.protocol`), adds the history features, joins the side tables, and writes one
output split per protocol split (train, eval, test), plus the `items` split: one example per
known item, the catalogue (`features.ITEMS_SPLIT`).

The chronological split is not one of ExampleGen's hash splits: the output config names the
four splits, and the executor's `GenerateExamplesByBeam` routes each example to its split.

Spans: a source with TFX's span spec, `{SPAN}` or `{SPAN:width}` for zero-padded numbers
(`DATA/span-{SPAN}`: a directory per drop, each in the documented schema; or
`DATA/day-{SPAN}.csv`), is a series of dated drops. A run reads a window of them: the latest
`span_window` spans present (0: all), ending with the span TFX's driver resolves (the latest, or
a `RangeConfig`'s), as one log split per user over the whole window; a user or item described
in several drops' side tables has the latest drop's row. The driver (`Driver`) fingerprints
every span of the window, so a run is cached until a span of its window changes or a new one
arrives; the output `Examples` carry the window's last span as their span, and the window as
the custom property `window_spans` (a JSON list: `examples_window`).
"""
import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
from absl import logging
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen import component as example_gen_component
from tfx.components.example_gen import driver
from tfx.components.example_gen import utils
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2
from tfx.types import artifact_utils
from tfx.types import component_spec
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from contract import features
from ingest import loaders
from ingest import transforms

SOURCE_KEY = 'source'
HISTORY_LENGTH_KEY = 'history_length'
EVAL_FRACTION_KEY = 'eval_fraction'
TEST_FRACTION_KEY = 'test_fraction'
SPAN_WINDOW_KEY = 'span_window'
ITEM_TEXT_COLUMNS_KEY = 'item_text_columns'  # a JSON list
# Set by the driver: the JSON list of the window's spans, oldest first.
WINDOW_SPANS_KEY = 'window_spans'
# The one input split: every file the pattern matches is fingerprinted by the driver.
RAW_SPLIT = 'raw'
DIRECTORY_PATTERN = '*'
# Private exec property: where the executor's Beam job writes the reader's error, if any.
_RECORDS_FILE = 'data_tfrecord'  # TFX's name for ExampleGen's record files
_ERRORS_PREFIX_KEY = '_data_errors_prefix'


def is_span_source(source: str) -> bool:
  """Whether `source` names a series of spans (it holds TFX's span spec)."""
  return re.search(utils.SPAN_FULL_REGEX, source) is not None


def input_base_and_pattern(source: str) -> Tuple[str, str]:
  """The `input_base` and input pattern whose files TFX's driver fingerprints, from the data
  source as given (a pipeline is compiled without reading its data): a directory (the CSV
  schema or MovieLens-100K) is read whole; a single .csv file is its directory and its name;
  a span source is the directory above its first part with a span spec, and the rest (each
  span's files)."""
  for spec in (utils.VERSION_SPEC, *utils.DATE_SPECS):
    if spec in source:
      raise ValueError(f'data source {source!r}: RawExampleGen reads spans named by '
                       f'{utils.SPAN_SPEC} (or {{SPAN:width}}), not {spec}')
  source = source.rstrip('/') or source
  if is_span_source(source):
    if len(re.findall(utils.SPAN_FULL_REGEX, source)) != 1:
      raise ValueError(f'data source {source!r}: one {utils.SPAN_SPEC} spec at most')
    spec = re.search(utils.SPAN_FULL_REGEX, source).start()
    base = source[:source.rfind('/', 0, spec)]
    pattern = source[len(base) + 1:]
    return base, pattern if pattern.lower().endswith('.csv') else f'{pattern}/{DIRECTORY_PATTERN}'
  if source.lower().endswith('.csv'):
    return os.path.split(source)
  return source, DIRECTORY_PATTERN


def span_source(source: str, span: int) -> str:
  """The data source of one span of a span source (its directory or .csv file)."""
  return utils.get_pattern_for_span_version(source, True, False, False, span, None)


def present_spans(source: str) -> List[int]:
  """The spans of a span source that hold files, in order."""
  base, pattern = input_base_and_pattern(source)
  spec = re.search(utils.SPAN_FULL_REGEX, pattern)
  width = spec.group('width')

  def regex(glob: str) -> str:
    return re.escape(glob).replace(r'\*', '[^/]*').replace(r'\?', '[^/]')

  number = re.compile(regex(pattern[:spec.start()]) + (rf'(\d{{{width}}})' if width else r'(\d+)')
                      + regex(pattern[spec.end():]))
  spans = set()
  for path in fileio.glob(f'{base}/{pattern[:spec.start()]}*{pattern[spec.end():]}'):
    found = number.fullmatch(path[len(base) + 1:])
    if found:
      if not width and found.group(1) != str(int(found.group(1))):
        raise ValueError(f'{path}: a zero-padded span number; name the spans of {source!r} '
                         f'with {{SPAN:{len(found.group(1))}}}')
      spans.add(int(found.group(1)))
  return sorted(spans)


def window(spans: Sequence[int], size: int, last: Optional[int] = None) -> List[int]:
  """The latest `size` of `spans` (0: all) up to `last` (default: the latest)."""
  if size < 0:
    raise ValueError(f'span window {size}: the number of latest spans to read, or 0 for all')
  kept = sorted(span for span in spans if last is None or span <= last)
  if not kept:
    raise ValueError(f'no span up to {last} among {sorted(spans)}')
  return kept[-size:] if size else kept


def window_spans(exec_properties: Dict[str, Any]) -> Optional[List[int]]:
  """The spans a run reads, oldest first (resolved by `Driver`; without it, the latest
  `span_window` spans); None for a source without spans (the whole source)."""
  source = exec_properties[SOURCE_KEY]
  if not is_span_source(source):
    return None
  spans = exec_properties.get(WINDOW_SPANS_KEY)
  return (json.loads(spans) if spans
          else window(present_spans(source), int(exec_properties.get(SPAN_WINDOW_KEY) or 0)))


def input_sources(exec_properties: Dict[str, Any]) -> List[loaders.InputFiles]:
  """The files the executor reads, oldest first: the source's, or those of the window's spans
  (`window_spans`)."""
  spans = window_spans(exec_properties)
  if spans is None:
    return [loaders.locate_inputs(exec_properties[SOURCE_KEY])]
  return [loaders.locate_inputs(span_source(exec_properties[SOURCE_KEY], span))
          for span in spans]


def examples_window(examples: types.Artifact) -> Optional[List[int]]:
  """The window of spans that `examples` (a RawExampleGen output) were read from, oldest first;
  None for a source without spans, or examples written before the window was recorded."""
  spans = examples.get_string_custom_property(WINDOW_SPANS_KEY)
  return json.loads(spans) if spans else None


class Driver(driver.FileBasedDriver):
  """TFX's file-based ExampleGen driver, which resolves the span a run reads (the latest), and
  for a span source the window that ends with it: `WINDOW_SPANS_KEY`, and a fingerprint of all
  its spans' files (so that a change to any of them, not only to the last, re-runs the
  component)."""

  def resolve_exec_properties(self, exec_properties, pipeline_info, component_info):
    splits = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
        example_gen_pb2.Input()).splits
    exec_properties = super().resolve_exec_properties(exec_properties, pipeline_info,
                                                      component_info)
    source = exec_properties[SOURCE_KEY]
    if not is_span_source(source):
      return exec_properties
    spans = window(present_spans(source), int(exec_properties.get(SPAN_WINDOW_KEY) or 0),
                   last=exec_properties[utils.SPAN_PROPERTY_NAME])
    exec_properties[utils.FINGERPRINT_PROPERTY_NAME] = '\n'.join(
        f'span {span}: {self._fingerprint(splits, exec_properties, span)}' for span in spans)
    exec_properties[WINDOW_SPANS_KEY] = json.dumps(spans)
    logging.info('RawExampleGen: the window of spans %s', spans)
    return exec_properties

  def _fingerprint(self, splits, exec_properties: Dict[str, Any], span: int) -> str:
    """TFX's fingerprint of one span's files."""
    processor = self.get_input_processor(
        splits=splits, input_base_uri=exec_properties[standard_component_specs.INPUT_BASE_KEY],
        range_config=range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
            start_span_number=span, end_span_number=span)))
    processor.resolve_span_and_version()
    return processor.get_input_fingerprint(span, None)


@beam.ptransform_fn
def _RawToExamples(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                   split_pattern: str) -> Dict[str, beam.PCollection]:
  """The raw files of the source or its window of spans (`input_sources`) -> {split: examples,
  ERRORS}; the driver's `split_pattern` matched the same files, to fingerprint them."""
  del split_pattern
  sources = input_sources(exec_properties)
  # Fails fast, before the Beam job starts.
  side_tables = transforms.check_inputs(
      sources, json.loads(exec_properties.get(ITEM_TEXT_COLUMNS_KEY) or '[]'))
  return pipeline | 'RawToExamples' >> transforms.RawToExamples(
      sources, side_tables, history_length=int(exec_properties[HISTORY_LENGTH_KEY]),
      eval_fraction=float(exec_properties[EVAL_FRACTION_KEY]),
      test_fraction=float(exec_properties[TEST_FRACTION_KEY]))


def _check_configs(input_config: example_gen_pb2.Input,
                   output_config: example_gen_pb2.Output) -> List[str]:
  """The output split names, which must be `features.EXAMPLE_SPLITS`, from one input split."""
  if len(input_config.splits) != 1:
    raise ValueError('RawExampleGen reads one input split (the raw files), got '
                     f'{[split.name for split in input_config.splits]}')
  names = utils.generate_output_split_names(input_config, output_config)
  if tuple(names) != features.EXAMPLE_SPLITS:
    raise ValueError(f'RawExampleGen writes the splits {list(features.EXAMPLE_SPLITS)}; the '
                     f'output config names {names}')
  return names


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """Writes the protocol's splits of the raw input from one Beam pipeline."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    """The raw files -> one PCollection of serialized tf.Examples per split, and ERRORS."""
    return _RawToExamples

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                             exec_properties: Dict[str, Any]) -> Dict[str, beam.PCollection]:
    """Routes every example to its protocol split (no hash partition); the reader's error is
    written under the exec property `_ERRORS_PREFIX_KEY`, for `Do` to raise."""
    input_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
    output_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output())
    names = _check_configs(input_config, output_config)
    exec_properties['_beam_pipeline_args'] = self._beam_pipeline_args or []
    outputs = pipeline | 'InputToRecord' >> self.GetInputSourceToExamplePTransform()(
        exec_properties, input_config.splits[0].pattern)
    _ = (outputs[transforms.ERRORS]
         | 'ErrorJson' >> beam.Map(json.dumps)
         | 'WriteErrors' >> beam.io.WriteToText(exec_properties[_ERRORS_PREFIX_KEY],
                                                file_name_suffix='.jsonl'))
    return {name: outputs[name] for name in names}

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    """Writes the split examples (GZIP TFRecords) into the `examples` artifact; bad input
    raises `DataError` and the execution fails, publishing nothing."""
    self._log_startup(input_dict, output_dict, exec_properties)
    input_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
    output_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output())
    names = _check_configs(input_config, output_config)
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    examples.split_names = artifact_utils.encode_split_names(names)
    file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY,
                                      example_gen_pb2.FORMAT_TFRECORDS_GZIP)
    errors_dir = os.path.join(examples.uri, '.data_errors')
    exec_properties = {**exec_properties,
                       _ERRORS_PREFIX_KEY: os.path.join(errors_dir, transforms.ERRORS)}

    pipeline = self._make_beam_pipeline()
    # Written as TFX's `WriteSplit` writes them, less its `Reshuffle`: the DirectRunner holds a
    # reshuffle of the whole data set in its driver's memory (past 11 GiB at 10M interactions).
    # The examples stay grouped by user; the Trainer shuffles them.
    for name, split in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
      _ = split | f'WriteSplit[{name}]' >> beam.io.WriteToTFRecord(
          os.path.join(artifact_utils.get_split_uri([examples], name), _RECORDS_FILE),
          file_name_suffix='.gz')
    result = pipeline.run()
    result.wait_until_finish()
    try:
      for path in sorted(fileio.glob(os.path.join(errors_dir, '*.jsonl'))):
        with fileio.open(path) as handle:
          for line in handle:
            transforms.raise_data_error(json.loads(line))
    finally:
      if fileio.exists(errors_dir):
        fileio.rmtree(errors_dir)

    counts = transforms.counters(result)
    logging.info('RawExampleGen: %s examples from %d users and %d items',
                 ', '.join(f'{name} {counts.get(name, 0)}' for name in features.SPLITS),
                 counts.get(transforms.USERS, 0), counts.get(transforms.ITEMS, 0))
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, write_split.to_file_format_str(file_format))
    spans = window_spans(exec_properties)
    if spans is not None:
      examples.set_string_custom_property(WINDOW_SPANS_KEY, json.dumps(spans))


class RawExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
  """FileBasedExampleGen's parameters plus the data source, the split fractions and the history
  length."""

  PARAMETERS = {
      **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
      SOURCE_KEY: component_spec.ExecutionParameter(type=str),
      HISTORY_LENGTH_KEY: component_spec.ExecutionParameter(type=int),
      EVAL_FRACTION_KEY: component_spec.ExecutionParameter(type=float),
      TEST_FRACTION_KEY: component_spec.ExecutionParameter(type=float),
      SPAN_WINDOW_KEY: component_spec.ExecutionParameter(type=int),
      WINDOW_SPANS_KEY: component_spec.ExecutionParameter(type=str, optional=True),
      ITEM_TEXT_COLUMNS_KEY: component_spec.ExecutionParameter(type=str, optional=True),
  }


class RawExampleGen(example_gen_component.FileBasedExampleGen):
  """ExampleGen from raw interaction logs, split per user chronologically.

  Outputs `examples` with the splits train, eval, test and items (GZIP TFRecords of
  tf.Examples holding every name in `features.RAW_FEATURES`, and `features.ITEM_TEXT` where the
  item has text)."""

  SPEC_CLASS = RawExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
  DRIVER_CLASS = Driver

  def __init__(self, source: str, history_length: int, eval_fraction: float,
               test_fraction: float, span_window: int = 0,
               range_config: Optional[Any] = None, item_text_columns: Sequence[str] = ()):
    """Builds the component.

    Args:
      source: the raw data: a directory holding `interactions.csv` (with optional `users.csv`,
        `items.csv`) or MovieLens-100K's `u.data` (with `u.item`, `u.user`), or a `.csv` file of
        interactions; or a series of them named with a span spec (`.../span-{SPAN}`); a local
        path or a URL TensorFlow's file systems read (gs://, s3://, ...).
      history_length: the most recent items kept in each example's history.
      eval_fraction: each user's share of interactions in eval (`evaluation.protocol`).
      test_fraction: each user's share of interactions in test.
      span_window: for a span source, how many of the latest spans a run reads (0: all).
      range_config: an optional `range_config_pb2.RangeConfig`: the span the window ends with
        (as ExampleGen's; default the latest).
      item_text_columns: the free-text columns of `items.csv` kept, joined, as
        `features.ITEM_TEXT` (`TransformHParams.item_text_columns`).
    """
    input_base, pattern = input_base_and_pattern(source)
    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name=RAW_SPLIT, pattern=pattern)])
    # The split names; the routing is the protocol's, so the hash buckets are unused.
    output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=1)
        for name in features.EXAMPLE_SPLITS]))
    spec = RawExampleGenSpec(
        input_base=input_base, input_config=input_config, output_config=output_config,
        custom_config=None, range_config=range_config,
        output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
        output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        source=source, history_length=history_length, eval_fraction=eval_fraction,
        test_fraction=test_fraction, span_window=span_window,
        item_text_columns=json.dumps(list(item_text_columns)),
        examples=types.Channel(type=standard_artifacts.Examples))
    # FileBasedExampleGen's own __init__ builds its own spec; its base takes ours.
    base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
