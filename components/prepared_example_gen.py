"""PreparedExampleGen: registers already split GZIP TFRecords of tf.Examples as `Examples`.

The prepare step (`pipeline/data/prepare.py`) writes the split examples with Beam. ImportExampleGen
would read them again and write them through `beam.Reshuffle()`, which TFX's `WriteSplit` always
applies: on the DirectRunner that shuffle is held in the driver's memory, several GiB at 10M
interactions (README, Scale). This component has ImportExampleGen's interface and driver (input
fingerprint, span and version, hence the same caching) and copies each split's files into the
artifact, file by file, so its memory does not grow with the data. The trainer shuffles
(`TrainingConfig.shuffle_buffer_size`).
"""
import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.example_gen import component as example_gen_component
from tfx.components.example_gen import utils
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.io import fileio
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

_GZIP_MAGIC = b'\x1f\x8b'


def _check_gzip(path: str) -> None:
  with fileio.open(path, 'rb') as f:
    if f.read(2) != _GZIP_MAGIC:
      raise ValueError(f'{path} is not a GZIP file: PreparedExampleGen takes GZIP TFRecords')


class Executor(base_beam_executor.BaseBeamExecutor):
  """Copies the files of every input split into the split's directory of the output."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    input_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
    output_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output())
    if output_config.HasField('split_config'):
      raise ValueError('PreparedExampleGen keeps the input splits; output_config cannot '
                       're-split them')
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]

    sources = {}
    for split in input_config.splits:
      sources[split.name] = sorted(fileio.glob(os.path.join(input_base, split.pattern)))
      if not sources[split.name]:
        raise FileNotFoundError(f'split {split.name}: no files match {split.pattern} '
                                f'under {input_base}')
      for path in sources[split.name]:
        _check_gzip(path)

    examples.split_names = artifact_utils.encode_split_names(
        utils.generate_output_split_names(input_config, output_config))
    for split_name, paths in sources.items():
      split_dir = artifact_utils.get_split_uri([examples], split_name)
      fileio.makedirs(split_dir)
      for path in paths:
        fileio.copy(path, os.path.join(split_dir, os.path.basename(path)))
      logging.info('Split %s: copied %d files to %s', split_name, len(paths), split_dir)

    examples_utils.set_payload_format(examples, exec_properties.get(
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY, example_gen_pb2.FORMAT_TF_EXAMPLE))
    examples_utils.set_file_format(
        examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))


class PreparedExampleGen(example_gen_component.FileBasedExampleGen):
  """ImportExampleGen for inputs that are already split and shuffled enough: no Beam pass.

  Takes `input_base` and an `input_config` naming one file pattern per split (GZIP TFRecords of
  tf.Examples); the output `examples` has those splits, file for file."""

  # FileBasedExampleGen is a Beam component: its executor gets the Beam arguments, unused here.
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, input_base: str, input_config: example_gen_pb2.Input):
    super().__init__(input_base=input_base, input_config=input_config,
                     output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE)
