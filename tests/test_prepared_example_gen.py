"""PreparedExampleGen's executor: split files copied as they are, the artifact described, and
clear errors for inputs it cannot register."""
import os

import pytest
import tensorflow as tf
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components import prepared_example_gen

SPLITS = ('train', 'eval')


def example(user: str) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      'user_id': tf.train.Feature(bytes_list=tf.train.BytesList(value=[user.encode()]))
  })).SerializeToString()


def write_records(path: str, records) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for record in records:
      writer.write(record)


def run_executor(input_base: str, output_uri: str, splits=SPLITS):
  examples = standard_artifacts.Examples()
  examples.uri = output_uri
  input_config = example_gen_pb2.Input(splits=[
      example_gen_pb2.Input.Split(name=split, pattern=f'{split}/*') for split in splits])
  prepared_example_gen.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, {
      standard_component_specs.INPUT_BASE_KEY: input_base,
      standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config),
      standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(
          example_gen_pb2.Output()),
      standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
  })
  return examples


def read_split(examples, split: str) -> list:
  files = sorted(tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split),
                                               '*')))
  return [record.numpy() for record in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def test_copies_every_split_file_for_file_and_describes_the_artifact(tmp_path):
  records = {'train': [[example('a'), example('b')], [example('c')]], 'eval': [[example('d')]]}
  for split, shards in records.items():
    for shard, shard_records in enumerate(shards):
      write_records(str(tmp_path / 'in' / split / f'data-{shard:05d}-of-{len(shards):05d}.gz'),
                    shard_records)

  examples = run_executor(str(tmp_path / 'in'), str(tmp_path / 'out'))

  assert artifact_utils.decode_split_names(examples.split_names) == list(SPLITS)
  for split, shards in records.items():
    assert read_split(examples, split) == [record for shard in shards for record in shard]
  assert examples_utils.get_payload_format(examples) == example_gen_pb2.FORMAT_TF_EXAMPLE
  assert examples_utils.get_file_format(examples) == 'tfrecords_gzip'


def test_a_split_without_files_is_an_error_naming_it(tmp_path):
  write_records(str(tmp_path / 'in' / 'train' / 'data.gz'), [example('a')])
  with pytest.raises(FileNotFoundError, match='split eval: no files match eval/'):
    run_executor(str(tmp_path / 'in'), str(tmp_path / 'out'))


def test_uncompressed_records_are_refused(tmp_path):
  for split in SPLITS:
    path = tmp_path / 'in' / split / 'data.tfrecord'
    os.makedirs(path.parent)
    with tf.io.TFRecordWriter(str(path)) as writer:
      writer.write(example('a'))
  with pytest.raises(ValueError, match='is not a GZIP file'):
    run_executor(str(tmp_path / 'in'), str(tmp_path / 'out'))
  assert not os.path.exists(tmp_path / 'out' / 'Split-train')  # nothing copied

