"""Serving building blocks without a server: version discovery and policies, configs, tensors,
error codes, the warmup file format."""
import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2

from serving import config as config_lib
from contract import signatures
from contract import tensor_codec
from contract import versions as version_paths
from contract import warmup
from serving import errors
from serving import versions

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _policy(text: str) -> versions.ServableVersionPolicy:
  return text_format.Parse(text, versions.ServableVersionPolicy())


@pytest.mark.parametrize('policy, expected', [
    ('', {5}),
    ('latest { num_versions: 2 }', {3, 5}),
    ('all {}', {1, 3, 5}),
    ('specific { versions: 1 versions: 4 }', {1}),
])
def test_version_policies_choose_like_tf_serving(policy, expected):
  assert versions.select(_policy(policy), [1, 3, 5]) == expected


def _write_version(base, version, complete=True):
  path = base / str(version)
  (path / 'variables').mkdir(parents=True)
  (path / 'saved_model.pb').write_bytes(b'graph')
  if complete:
    (path / 'variables' / 'variables.index').write_bytes(b'index')
  return path


def test_a_version_is_ready_only_when_complete_and_unchanged(tmp_path):
  _write_version(tmp_path, 1)
  half_written = _write_version(tmp_path, 2, complete=False)
  (tmp_path / 'not-a-version').mkdir()
  (tmp_path / '.tmp-3').mkdir()
  stable = versions.StableVersions(str(tmp_path))
  assert stable.poll() == {}  # nothing has been seen twice yet
  assert set(stable.poll()) == {1}
  (half_written / 'variables' / 'variables.index').write_bytes(b'index')
  assert set(stable.poll()) == {1}  # complete now, but changed since the last poll
  assert set(stable.poll()) == {1, 2}
  (half_written / 'variables' / 'variables.data-00000-of-00001').write_bytes(b'more')
  assert set(stable.poll()) == {1}  # still being written to


def test_a_version_whose_push_was_killed_is_never_ready(tmp_path):
  """What TFX's own Pusher leaves when killed mid-copy (saved_model.pb is copied last), and the
  staging directory of the project's Pusher (`components.pusher`): neither is ever loaded."""
  _write_version(tmp_path, 1)
  killed = tmp_path / '2'
  (killed / 'variables').mkdir(parents=True)
  (killed / 'variables' / 'variables.index').write_bytes(b'index')
  (killed / 'variables' / 'variables.data-00000-of-00001').write_bytes(b'weights')
  staged = tmp_path / '.pushing' / '3'
  (staged / 'variables').mkdir(parents=True)
  (staged / 'saved_model.pb').write_bytes(b'graph')
  (staged / 'variables' / 'variables.index').write_bytes(b'index')
  stable = versions.StableVersions(str(tmp_path))
  for _ in range(5):
    ready = stable.poll()
  assert set(ready) == {1}


def test_the_latest_version_is_the_highest_numeric_directory(tmp_path):
  assert version_paths.version_dirs(str(tmp_path / 'missing')) == {}
  assert version_paths.latest_version_dir(str(tmp_path)) is None
  for name in ('2', '10', 'not-a-version', '.tmp-30'):
    (tmp_path / name).mkdir()
  (tmp_path / '99').write_text('a file, not a version')
  assert version_paths.version_dirs(str(tmp_path)) == {2: str(tmp_path / '2'),
                                                       10: str(tmp_path / '10')}
  assert version_paths.latest_version_dir(str(tmp_path)) == str(tmp_path / '10')


def test_shipped_config_parses_and_rewrites_to_a_local_directory(tmp_path):
  config = config_lib.load_config_file(os.path.join(REPO_ROOT, 'serving', 'models.config'))
  config_lib.validate(config)
  models = {model.name: model for model in config.model_config_list.config}
  assert set(models) == {'student', 'teacher'}
  assert set(models['student'].version_labels) == {'stable', 'canary'}
  config_lib.rewrite_base_paths(config, f'/models={tmp_path}')
  assert {model.base_path for model in config.model_config_list.config} == {
      str(tmp_path / 'student'), str(tmp_path / 'teacher')}


def test_bad_configs_are_refused_with_the_file_name(tmp_path):
  path = tmp_path / 'bad.config'
  path.write_text('model_config_list { config { nme: "x" } }')
  with pytest.raises(ValueError, match='bad.config'):
    config_lib.load_config_file(str(path))
  config = config_lib.single_model_config('a', '/a')
  config.model_config_list.config.append(config.model_config_list.config[0])
  with pytest.raises(ValueError, match='configured twice'):
    config_lib.validate(config)
  with pytest.raises(ValueError, match='FROM=TO'):
    config_lib.rewrite_base_paths(config_lib.single_model_config('a', '/a'), '/models')


@pytest.mark.parametrize('value', [
    np.array([[b'a', b''], [b'b', b'c']], dtype=object),
    np.array([1.5, -2.0], np.float32),
    np.array(7, np.int32),
    np.zeros([0, 3], np.int64),
])
def test_tensor_codec_round_trips_and_reads_tf_protos(value):
  np.testing.assert_array_equal(tensor_codec.to_numpy(tensor_codec.from_numpy(value)), value)
  from_tf = tensor_codec.to_numpy(tf.make_tensor_proto(value))
  assert from_tf.shape == value.shape
  np.testing.assert_array_equal(from_tf, value)


def test_tensor_codec_refuses_values_that_do_not_fit_the_shape():
  proto = tensor_codec.from_numpy(np.array([1, 2, 3], np.int32))
  proto.tensor_shape.dim[0].size = 2
  with pytest.raises(ValueError, match='holds 3 values'):
    tensor_codec.to_numpy(proto)


def _filled(dtype, field, value, shape):
  proto = tensor_pb2.TensorProto(dtype=dtype)
  getattr(proto, field).append(value)
  for size in shape:
    proto.tensor_shape.dim.add(size=size)
  return proto


def test_tensor_codec_fills_a_shape_from_one_value_up_to_a_bound():
  filled = tensor_codec.to_numpy(_filled(types_pb2.DT_STRING, 'string_val', b'x', [2, 3]))
  np.testing.assert_array_equal(filled, np.full([2, 3], b'x', object))
  with pytest.raises(ValueError, match='filled from 1 value; at most 65536'):
    tensor_codec.to_numpy(_filled(types_pb2.DT_STRING, 'string_val', b'x', [1, 2 ** 40]))


@pytest.mark.parametrize('proto, message', [
    (_filled(types_pb2.DT_INT32, 'int_val', 1, [2, -1]), 'negative dimension'),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_content=b'\x01\x02\x03'),
     'multiple of element size'),
])
def test_tensor_codec_refuses_protos_that_are_no_array(proto, message):
  with pytest.raises(ValueError, match=message):
    tensor_codec.to_numpy(proto)


def test_dtype_names_cover_any_number_a_request_sends():
  assert tensor_codec.dtype_name(types_pb2.DT_INT32) == 'int32'
  assert tensor_codec.dtype_name(0) == 'invalid'
  assert tensor_codec.dtype_name(999) == 'unknown dtype 999'


def test_op_errors_keep_tf_codes_but_unknown_and_undecodable_messages():
  error = tf.errors.InvalidArgumentError(None, None, 'k must be in [1, 100]')
  assert errors.from_tensorflow(error).code == grpc.StatusCode.INVALID_ARGUMENT
  assert errors.from_tensorflow(tf.errors.ResourceExhaustedError(None, None, 'oom')).code == \
      grpc.StatusCode.RESOURCE_EXHAUSTED
  assert errors.from_tensorflow(tf.errors.UnknownError(None, None, 'x')).code == \
      grpc.StatusCode.INTERNAL
  undecodable = b"Could not parse example input, value: '\xff"
  with pytest.raises(UnicodeDecodeError) as decode_error:
    undecodable.decode()
  refused = errors.from_undecodable_op_message(decode_error.value)
  assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
  assert refused.message == "Could not parse example input, value: '\\xff"
  assert errors.shortened('x' * 2010) == 'x' * 2000 + '... (10 more characters)'


def test_warmup_file_holds_tf_serving_prediction_logs(tmp_path):
  path = warmup.write_warmup_requests(str(tmp_path), ['u1', 'u2'], [['i1', 'i2', 'i3'], []])
  assert path == str(tmp_path / 'assets.extra' / 'tf_serving_warmup_requests')
  logs = warmup.read_warmup_requests(str(tmp_path))
  assert [log.WhichOneof('log_type') for log in logs] == ['predict_log', 'predict_log']
  recommend, examples = (log.predict_log.request for log in logs)
  assert recommend.model_spec.signature_name == 'recommend'
  np.testing.assert_array_equal(tf.make_ndarray(recommend.inputs['history']),
                                [[b"i1", b"i2", b"i3"] + [b""] * (signatures.HISTORY_LENGTH - 3),
                                 [b""] * signatures.HISTORY_LENGTH])
  assert set(recommend.inputs) == {'user_id', 'history'}  # every input batched, no k
  assert examples.model_spec.signature_name == 'serving_default'
  parsed = tf.io.parse_example(tf.make_ndarray(examples.inputs['examples']), {
      'user_id': tf.io.FixedLenFeature([], tf.string),
      'history': tf.io.FixedLenFeature([], tf.string)})
  assert parsed['history'].numpy().tolist() == [b'i1 i2 i3', b'']
  # Plain TFRecords: what TF Serving's reader expects.
  assert len(list(tf.data.TFRecordDataset(path))) == 2


def test_warmup_asks_for_reasons_when_the_model_has_them(tmp_path):
  path = warmup.write_warmup_requests(str(tmp_path), ['u1'], [['i1']], with_reasons=True)
  requests = [log.predict_log.request for log in warmup.read_warmup_requests(str(tmp_path))]
  assert [request.model_spec.signature_name for request in requests] == [
      'recommend', 'serving_default', 'recommend_with_reasons']
  assert requests[2].inputs == requests[0].inputs  # the same inputs as `recommend`
  assert len(list(tf.data.TFRecordDataset(path))) == 3


def test_warmup_needs_one_history_per_user(tmp_path):
  with pytest.raises(ValueError, match='one history per user'):
    warmup.write_warmup_requests(str(tmp_path), ['u1'], [])
