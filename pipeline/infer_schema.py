"""Writes the schema TFDV infers from the latest run's statistics beside the curated one.

    python -m pipeline.infer_schema --output outputs     (what `make schema` runs)

The pipeline validates the data against the curated `pipeline/schema/schema.pbtxt`
(`configs.SCHEMA_FILE`). This reads the newest StatisticsGen output under
`<output>/pipeline_root` (written even when DataGate stopped the run), infers a schema from its
train split as SchemaGen would (`infer_feature_shape`), and writes it to
`pipeline/schema/schema.inferred.pbtxt`, so that a person can diff the two and carry what should
change (a new feature, another rating scale) into the curated schema by hand.
"""
import argparse
import os
import sys

import tensorflow_data_validation as tfdv
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from contract import features
from contract import versions
from pipeline import configs

INFERRED_SCHEMA_FILE = os.path.join(os.path.dirname(configs.SCHEMA_FILE), 'schema.inferred.pbtxt')
STATISTICS_FILE = 'FeatureStats.pb'


def latest_statistics(output_dir: str) -> str:
  """The newest StatisticsGen output directory of a local installation at `output_dir`."""
  base = os.path.join(output_dir, 'pipeline_root', 'StatisticsGen', 'statistics')
  latest = versions.latest_version_dir(base)
  if latest is None:
    raise FileNotFoundError(f'no StatisticsGen output under {base}: run the pipeline first '
                            '(make run)')
  return latest


def infer_schema(statistics_dir: str, schema_file: str = INFERRED_SCHEMA_FILE) -> str:
  """Infers the schema of the train split's statistics in `statistics_dir` into `schema_file`."""
  statistics = standard_artifacts.ExampleStatistics()
  statistics.uri = statistics_dir
  statistics.split_names = artifact_utils.encode_split_names([features.TRAIN_SPLIT])
  path = os.path.join(artifact_utils.get_split_uri([statistics], features.TRAIN_SPLIT),
                      STATISTICS_FILE)
  schema = tfdv.infer_schema(tfdv.load_stats_binary(path), infer_feature_shape=True)
  tfdv.write_schema_text(schema, schema_file)
  return schema_file


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--output', default=configs.OUTPUT_DIR, help='the runs\' output directory')
  args = parser.parse_args(argv)
  try:
    written = infer_schema(latest_statistics(os.path.abspath(args.output)))
  except FileNotFoundError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  print(f'Inferred schema: {written}\nCompare: diff {configs.SCHEMA_FILE} {written}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
