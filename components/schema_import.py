"""ImportSchemaGen: the curated schema, with the `rating` domain of the run's settings.

TFX's ImportSchemaGen copies a schema file; this one also sets the `rating` feature's value
domain from one setting, the pipeline's `rating_range` (`configs.RAW_DATA`), so that the
curated file (`pipeline/schema/schema.pbtxt`) holds no rating bounds of its own: data on another
rating scale (0-1, 1-10, thumbs down/up as 0/1) changes that setting only. For implicit feedback
the rating domain is left out: a log without ratings has 1.0 (or one constant value) there, which
the run does not use. ExampleValidator checks the statistics against the schema it writes.

    schema_gen = ImportSchemaGen(schema_file=..., rating_range=(0.5, 5.0), feedback='explicit')
"""
import json
import math
import os
from typing import Any, Dict, List, Sequence

from absl import logging
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import base_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.types import component_spec
from tfx.types import standard_artifacts

from contract import features

SCHEMA_FILE_KEY = 'schema_file'
RATING_RANGE_KEY = 'rating_range'
FEEDBACK_KEY = 'feedback'
SCHEMA_KEY = 'schema'
OUTPUT_FILE = 'schema.pbtxt'  # the name TFX's schema readers look for


def check_rating_range(rating_range: Sequence[float]) -> List[float]:
  """`rating_range` as [low, high], finite with low < high, else a ValueError."""
  values = [float(value) for value in rating_range]
  if len(values) != 2 or not all(math.isfinite(v) for v in values) or values[0] >= values[1]:
    raise ValueError(f'rating_range must be (low, high) with low < high, got {rating_range!r}')
  return values


def curated_schema(schema_file: str, rating_range: Sequence[float],
                   feedback: str) -> schema_pb2.Schema:
  """The schema of `schema_file` with the rating domain `rating_range` for explicit feedback,
  and none for implicit feedback."""
  if feedback not in features.FEEDBACK_KINDS:
    raise ValueError(f'feedback {feedback!r}: expected one of {features.FEEDBACK_KINDS}')
  low, high = check_rating_range(rating_range)
  schema = tfdv.load_schema_text(schema_file)
  rating = tfdv.get_feature(schema, features.RATING)
  rating.ClearField('float_domain')
  if feedback == features.EXPLICIT:
    rating.float_domain.min = low
    rating.float_domain.max = high
  return schema


class Executor(base_executor.BaseExecutor):
  """Writes the curated schema with the run's rating domain into the schema artifact."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    del input_dict
    schema = curated_schema(exec_properties[SCHEMA_FILE_KEY],
                            json.loads(exec_properties[RATING_RANGE_KEY]),
                            exec_properties[FEEDBACK_KEY])
    path = os.path.join(artifact_utils.get_single_uri(output_dict[SCHEMA_KEY]), OUTPUT_FILE)
    tfdv.write_schema_text(schema, path)
    logging.info('Schema of %s with the %s rating domain %s: %s',
                 exec_properties[SCHEMA_FILE_KEY], exec_properties[FEEDBACK_KEY],
                 exec_properties[RATING_RANGE_KEY], path)


class ImportSchemaGenSpec(component_spec.ComponentSpec):
  """Parameters and output of `ImportSchemaGen`."""
  PARAMETERS = {
      SCHEMA_FILE_KEY: component_spec.ExecutionParameter(type=str),
      RATING_RANGE_KEY: component_spec.ExecutionParameter(type=str),
      FEEDBACK_KEY: component_spec.ExecutionParameter(type=str),
  }
  INPUTS = {}
  OUTPUTS = {SCHEMA_KEY: component_spec.ChannelParameter(type=standard_artifacts.Schema)}


class ImportSchemaGen(base_component.BaseComponent):
  """The curated schema file with the `rating` domain of the run's settings."""
  SPEC_CLASS = ImportSchemaGenSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

  def __init__(self, schema_file: str, rating_range: Sequence[float],
               feedback: str = features.EXPLICIT):
    """
    Args:
      schema_file: the curated schema (text proto), a path the component can read.
      rating_range: (low, high) of explicit ratings, the `rating` feature's value domain.
      feedback: `features.EXPLICIT` or `features.IMPLICIT` (no rating domain).
    """
    if feedback not in features.FEEDBACK_KINDS:
      raise ValueError(f'feedback {feedback!r}: expected one of {features.FEEDBACK_KINDS}')
    super().__init__(spec=ImportSchemaGenSpec(
        schema_file=schema_file, rating_range=json.dumps(check_rating_range(rating_range)),
        feedback=feedback, schema=types.Channel(type=standard_artifacts.Schema)))
