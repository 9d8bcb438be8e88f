"""A corpus of bad requests: each gets TF Serving's status code and the server keeps serving.

Cases marked local-only are where TF Serving has no check of its own and runs the model on
whatever arrives (an empty batch, a history of the wrong rank); the local server refuses them.
"""
import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2

import serving_fixtures
from serving import client as client_lib

MODEL = 'tiny'
TOP_K = serving_fixtures.TOP_K
MAX_BATCH_SIZE = serving_fixtures.MAX_BATCH_SIZE


def _strings(*values, shape=None):
  array = np.array([value.encode() for value in values], dtype=object)
  return array.reshape(shape) if shape else array


def _recommend_inputs(**overrides):
  inputs = {'user_id': _strings('alice'), 'history': _strings('item1', shape=(1, 1))}
  inputs.update(overrides)
  return {name: value for name, value in inputs.items() if value is not None}


def _features_inputs(**overrides):
  inputs = {**_recommend_inputs(), 'age': np.array([30], np.int64), 'gender': _strings('F'),
            'occupation': _strings('artist'), 'zip_code': _strings('12345')}
  inputs.update(overrides)
  return inputs


def _filled_history(*shape):
  """A history TensorProto of `shape` filled from one value (TensorProto's shorthand)."""
  proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b'item1'])
  for size in shape:
    proto.tensor_shape.dim.add(size=size)
  return proto


# (id, client options, signature, inputs, expected code, local only)
CASES = [
    ('empty batch', {}, 'recommend',
     _recommend_inputs(user_id=np.zeros([0], object), history=np.zeros([0, 1], object)),
     grpc.StatusCode.INVALID_ARGUMENT, True),
    ('wrong dtype', {}, 'recommend', _recommend_inputs(user_id=np.array([1], np.int64)),
     grpc.StatusCode.INVALID_ARGUMENT, False),
    ('float age', {}, 'recommend_with_features', _features_inputs(age=np.array([5.0], np.float32)),
     grpc.StatusCode.INVALID_ARGUMENT, False),
    ('missing input', {}, 'recommend', _recommend_inputs(history=None),
     grpc.StatusCode.INVALID_ARGUMENT, False),
    ('extra input', {}, 'recommend', _recommend_inputs(extra=_strings('x')),
     grpc.StatusCode.INVALID_ARGUMENT, False),
    ('history of the wrong rank', {}, 'recommend', _recommend_inputs(history=_strings('item1')),
     grpc.StatusCode.INVALID_ARGUMENT, True),
    ('scalar user id', {}, 'recommend', _recommend_inputs(user_id=np.array(b'alice', object)),
     grpc.StatusCode.INVALID_ARGUMENT, True),
    ('oversized batch', {}, 'recommend',
     _recommend_inputs(user_id=_strings(*['alice'] * (MAX_BATCH_SIZE + 1)),
                       history=_strings(*['item1'] * (MAX_BATCH_SIZE + 1),
                                        shape=(MAX_BATCH_SIZE + 1, 1))),
     grpc.StatusCode.INVALID_ARGUMENT, True),
    ('unknown signature', {}, 'no_such_signature', _recommend_inputs(),
     grpc.StatusCode.FAILED_PRECONDITION, False),
    ('unknown model', {'model': 'no_such_model'}, 'recommend', _recommend_inputs(),
     grpc.StatusCode.NOT_FOUND, False),
    ('unknown version', {'version': 99}, 'recommend', _recommend_inputs(),
     grpc.StatusCode.NOT_FOUND, False),
    ('unknown version label', {'version_label': 'no_such_label'}, 'recommend',
     _recommend_inputs(), grpc.StatusCode.INVALID_ARGUMENT, False),
    ('10 MB payload', {}, 'recommend',
     _recommend_inputs(user_id=np.array([b'x' * (10 * 1024 * 1024)], dtype=object)),
     grpc.StatusCode.RESOURCE_EXHAUSTED, False),
    ('malformed serialized example', {}, 'serving_default',
     {'examples': np.array([b'\xff\x00garbage'], dtype=object)},
     grpc.StatusCode.INVALID_ARGUMENT, False),
    ('malformed example among good ones', {}, 'score',
     {'examples': np.array([b'', b'\x80\x81', b''], dtype=object)},
     grpc.StatusCode.INVALID_ARGUMENT, False),
    ('negative dimension', {}, 'recommend', _recommend_inputs(history=_filled_history(1, -3)),
     grpc.StatusCode.INVALID_ARGUMENT, False),
    ('one value filling a trillion elements', {}, 'recommend',
     _recommend_inputs(history=_filled_history(1, 2 ** 40)),
     grpc.StatusCode.INVALID_ARGUMENT, True),
    ('unknown dtype number', {}, 'recommend',
     _recommend_inputs(user_id=tensor_pb2.TensorProto(dtype=999, int_val=[5])),
     grpc.StatusCode.INVALID_ARGUMENT, True),
]


@pytest.fixture(scope='module', params=serving_fixtures.server_kinds())
def server(request, tmp_path_factory):
  with serving_fixtures.tiny_model_server(request.param, tmp_path_factory.mktemp('models'),
                                          MODEL) as running:
    yield running


def _still_serving(server):
  server.check_alive()
  with server.client(MODEL) as client:
    assert len(client.recommend('alice', ['item1'], k=3).item_ids) == 3


@pytest.mark.parametrize('options, signature, inputs, code, local_only',
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_request_gets_tf_servings_code(server, options, signature, inputs, code, local_only):
  if local_only and server.kind != 'local':
    pytest.skip('TF Serving runs the model on this request without a check of its own')
  options = dict(options)
  with server.client(options.pop('model', MODEL), retries=0, **options) as client:
    with pytest.raises(client_lib.ServingClientError) as error:
      client.predict(signature, inputs)
  assert error.value.code == code, str(error.value)
  _still_serving(server)


def test_metadata_without_fields_is_invalid(server):
  with server.client(MODEL) as client:
    with pytest.raises(client_lib.ServingClientError) as error:
      client.metadata(fields=[])
  assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
  _still_serving(server)


def test_error_messages_name_the_problem(server):
  with server.client(MODEL, retries=0) as client:
    with pytest.raises(client_lib.ServingClientError, match='Missing but required: {history}'):
      client.predict('recommend', _recommend_inputs(history=None))
  with server.client(MODEL, version_label='canary') as client:
    with pytest.raises(client_lib.ServingClientError,
                       match='Unrecognized servable version label: canary'):
      client.recommend('alice')


def test_a_malformed_example_is_named_in_the_message(server):
  with server.client(MODEL, retries=0) as client:
    with pytest.raises(client_lib.ServingClientError,
                       match='Could not parse example input') as error:
      client.predict('serving_default', {'examples': np.array([b'\xff\x00garbage'], object)})
  assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_request_that_does_not_parse_is_invalid(server):
  """Text fields must be UTF-8; TF Serving's gRPC layer answers INTERNAL to such bytes."""
  if server.kind != 'local':
    pytest.skip('TF Serving answers INTERNAL to a request it cannot parse')
  request = predict_pb2.PredictRequest()
  request.model_spec.name = MODEL
  request.model_spec.signature_name = 'recommend'
  data = request.SerializeToString().replace(b'recommend', b'recomm\xffnd')
  with grpc.insecure_channel(server.target) as channel:
    with pytest.raises(grpc.RpcError) as error:
      channel.unary_unary('/tensorflow.serving.PredictionService/Predict')(data, timeout=10)
  assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert 'cannot parse the request as tensorflow.serving.PredictRequest' in error.value.details()
  _still_serving(server)
