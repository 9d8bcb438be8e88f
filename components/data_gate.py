"""DataGate: stops the run when ExampleValidator found anomalies, before anything trains.

ExampleValidator only records anomalies. This component reads its `anomalies` artifact: with
none, it passes the curated schema on as its own `schema` output, which Transform and the
Trainer consume (so they run after it); with any, it logs one line per anomaly (split, feature,
anomaly and its description) and fails, so nothing downstream runs: nothing trains, nothing is
pushed, and the previously pushed model stays.
"""
import os
from typing import List

from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx import v1 as tfx
from tfx.components.example_validator import executor as example_validator_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils

from contract import features

SCHEMA_FILE = 'schema.pbtxt'


class DataAnomaliesError(RuntimeError):
  """The data has anomalies against the curated schema; the message names each of them."""


def read_anomalies(anomalies: types.Artifact) -> List[str]:
  """One line per anomaly recorded in an ExampleAnomalies artifact:
  `split 'S', feature 'F': SHORT_DESCRIPTION (TYPE): description`."""
  found = []
  for split in artifact_utils.decode_split_names(anomalies.split_names):
    path = os.path.join(artifact_utils.get_split_uri([anomalies], split),
                        example_validator_executor.DEFAULT_FILE_NAME)
    split_anomalies = anomalies_pb2.Anomalies()
    split_anomalies.ParseFromString(io_utils.read_bytes_file(path))
    for feature, info in sorted(split_anomalies.anomaly_info.items()):
      kinds = ', '.join(sorted(anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
                               for reason in info.reason)) or 'UNKNOWN_TYPE'
      found.append(f"split {split!r}, feature {feature!r}: {info.short_description} ({kinds}): "
                   f'{info.description}')
    if split_anomalies.HasField('dataset_anomaly_info'):
      info = split_anomalies.dataset_anomaly_info
      found.append(f'split {split!r}, the data set: {info.short_description}: '
                   f'{info.description}')
  return found


@tfx.dsl.components.component
def DataGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    validated_schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
) -> None:
  """Fails with `DataAnomaliesError` when `anomalies` holds any; otherwise outputs `schema`
  as `validated_schema`, what the training components read."""
  split_names = artifact_utils.decode_split_names(anomalies.split_names)
  if sorted(split_names) != sorted(features.SPLITS):
    raise ValueError(f'anomalies of the splits {split_names}; expected {list(features.SPLITS)}')
  found = read_anomalies(anomalies)
  if found:
    for line in found:
      logging.error('Data anomaly: %s', line)
    raise DataAnomaliesError(
        f'{len(found)} data anomalies against the curated schema; the run stops before '
        'Transform and the Trainer (nothing trained or pushed, and the run report is not '
        'written): ' + '; '.join(found))
  logging.info('DataGate: no anomalies in %s; the data passes', ', '.join(split_names))
  source = os.path.join(schema.uri, SCHEMA_FILE)
  fileio.makedirs(validated_schema.uri)
  fileio.copy(source, os.path.join(validated_schema.uri, SCHEMA_FILE), overwrite=True)
