"""DataGate: stops the run when ExampleValidator found anomalies, before anything trains.

ExampleValidator only records anomalies, split by split. This component reads its `anomalies`
artifact and adds one check across splits: the drift of the rating distribution from the train
split to the test split (TFDV's Jensen-Shannon divergence comparator, against
`rating_drift_threshold`), and, for explicit feedback, that the train split has more than one
rating value: one value is implicit feedback (a log without ratings gets 1.0), on which the rating
head would learn nothing and the rating gates could never pass, so the run stops at once and says
to set FEEDBACK=implicit. For implicit feedback the ratings are not checked for drift. With no
anomaly, it passes the curated schema on as its own
`validated_schema` output, which Transform and the Trainer consume (so they run after it); with
any, it logs one line per anomaly (split, feature, anomaly and its description) and fails, so
nothing downstream runs: nothing trains, nothing is pushed, and the previously pushed model
stays.
"""
import os
from typing import List

import tensorflow_data_validation as tfdv

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
STATISTICS_FILE = 'FeatureStats.pb'


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


def rating_drift(statistics: types.Artifact, schema_file: str, threshold: float) -> List[str]:
  """The drift anomaly of the rating distribution from the train split to the test split, if
  their approximate Jensen-Shannon divergence exceeds `threshold` (one line, as
  `read_anomalies`)."""
  def split_statistics(split):
    return tfdv.load_stats_binary(os.path.join(
        artifact_utils.get_split_uri([statistics], split), STATISTICS_FILE))

  schema = tfdv.load_schema_text(schema_file)
  comparator = tfdv.get_feature(schema, features.RATING).drift_comparator
  comparator.jensen_shannon_divergence.threshold = threshold
  drift = tfdv.validate_statistics(split_statistics(features.TEST_SPLIT), schema,
                                   previous_statistics=split_statistics(features.TRAIN_SPLIT))
  return [f"split {features.TEST_SPLIT!r} against {features.TRAIN_SPLIT!r}, feature {name!r}: "
          f'{info.short_description}: {info.description}'
          for name, info in sorted(drift.anomaly_info.items())]


def single_rating(statistics: types.Artifact, split: str = features.TRAIN_SPLIT) -> List[str]:
  """The anomaly of explicit feedback whose `split` has one rating value in every example
  (one line, as `read_anomalies`), if it has."""
  stats = tfdv.load_stats_binary(os.path.join(
      artifact_utils.get_split_uri([statistics], split), STATISTICS_FILE))
  rating = tfdv.get_feature_stats(stats.datasets[0], tfdv.FeaturePath([features.RATING]))
  low, high = rating.num_stats.min, rating.num_stats.max
  if low != high:
    return []
  return [f'split {split!r}, feature {features.RATING!r}: every rating is {low:g}: this is '
          'implicit feedback, which the rating head and the rating gates cannot learn from; '
          f'run with FEEDBACK={features.IMPLICIT} (or auto)']


@tfx.dsl.components.component
def DataGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    statistics: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleStatistics],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    validated_schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
    rating_drift_threshold: tfx.dsl.components.Parameter[float],
    feedback: tfx.dsl.components.Parameter[str] = features.EXPLICIT,
) -> None:
  """Fails with `DataAnomaliesError` when `anomalies` holds any or the test split's ratings
  drifted from the train split's beyond `rating_drift_threshold`, or `feedback` is explicit
  and the train split has one rating value; otherwise outputs `schema` as `validated_schema`,
  what the training components read."""
  if feedback not in features.FEEDBACK_KINDS:
    raise ValueError(f'feedback {feedback!r}: expected one of {features.FEEDBACK_KINDS}')
  split_names = artifact_utils.decode_split_names(anomalies.split_names)
  if sorted(split_names) != sorted(features.SPLITS):
    raise ValueError(f'anomalies of the splits {split_names}; expected {list(features.SPLITS)}')
  source = os.path.join(schema.uri, SCHEMA_FILE)
  found = read_anomalies(anomalies)
  if feedback == features.EXPLICIT:
    found += single_rating(statistics) + rating_drift(statistics, source, rating_drift_threshold)
  if found:
    for line in found:
      logging.error('Data anomaly: %s', line)
    raise DataAnomaliesError(
        f'{len(found)} data anomalies against the curated schema; the run stops before '
        'Transform and the Trainer (nothing trained or pushed, and the run report is not '
        'written): ' + '; '.join(found))
  logging.info('DataGate: no anomalies in %s, no rating drift; the data passes',
               ', '.join(split_names))
  fileio.makedirs(validated_schema.uri)
  fileio.copy(source, os.path.join(validated_schema.uri, SCHEMA_FILE), overwrite=True)
