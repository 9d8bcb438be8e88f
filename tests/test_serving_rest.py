"""The local server's REST API and metrics against its gRPC API: the same requests get the same
answers; bad JSON, bad inputs and unknown models get TF Serving's HTTP codes and messages; a
bounded fuzz of malformed bodies never gets a 5xx nor stops it; Prometheus counts both.
"""
import base64
import json
import os
import random
import urllib.error
import urllib.request

from google.protobuf import json_format
import grpc
import numpy as np
import pytest
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import predict_pb2

import serving_fixtures
from contract import catalogue
from contract import tensor_codec
from serving import client as client_lib

MODEL = 'tiny'
FUZZ_SEED = 20250601
FUZZ_BODIES = 200


@pytest.fixture(scope='module')
def server(tmp_path_factory):
  base = tmp_path_factory.mktemp('models')
  serving_fixtures.save_tiny_model(str(base / MODEL), 1)
  config = serving_fixtures.write_config(str(base / 'models.config'), {MODEL: base / MODEL},
                                         labels={MODEL: {'stable': 1}})
  rest_port = serving_fixtures.free_port()
  monitoring = os.path.join(serving_fixtures.REPO_ROOT, 'serving', 'monitoring.config')
  with serving_fixtures.running_server(
      'local', config, [MODEL],
      extra_args=[f'--rest_api_port={rest_port}', f'--monitoring_config_file={monitoring}',
                  f'--max_batch_size={serving_fixtures.MAX_BATCH_SIZE}']) as running:
    running.rest = f'http://127.0.0.1:{rest_port}'
    running.version_dir = str(base / MODEL / '1')
    yield running


def _http(server, method: str, path: str, body=None):
  """(HTTP status, body text) of a request to the server's REST port."""
  if isinstance(body, (dict, list)):
    body = json.dumps(body).encode()
  request = urllib.request.Request(server.rest + path, data=body, method=method)
  try:
    with urllib.request.urlopen(request, timeout=30) as response:
      return response.status, response.read().decode()
  except urllib.error.HTTPError as error:
    return error.code, error.read().decode()


def _grpc_predict(server, signature: str, inputs: dict) -> predict_pb2.PredictResponse:
  with server.client(MODEL) as client:
    return client.predict(signature, inputs)


def _strings(values) -> np.ndarray:
  return np.vectorize(str.encode, otypes=[object])(np.array(values, dtype=object))


def _example(user_id: str, item_id: str) -> bytes:
  example = example_pb2.Example()
  example.features.feature['user_id'].bytes_list.value.append(user_id.encode())
  example.features.feature['item_id'].bytes_list.value.append(item_id.encode())
  return example.SerializeToString()


def _columns(response: predict_pb2.PredictResponse) -> dict:
  """A gRPC answer as {output: nested list}, strings decoded."""
  columns = {}
  for name, proto in response.outputs.items():
    array = tensor_codec.to_numpy(proto)
    if array.dtype == np.object_:
      array = np.vectorize(lambda value: value.decode())(array)
    columns[name] = array.tolist()
  return columns


def _assert_same(rest_value, grpc_value):
  """Strings equal, floats equal to float32 precision (REST writes TF Serving's decimals)."""
  assert np.shape(rest_value) == np.shape(grpc_value)
  rest_array, grpc_array = np.array(rest_value), np.array(grpc_value)
  if grpc_array.dtype.kind == 'f':
    np.testing.assert_allclose(rest_array, grpc_array, rtol=1e-6)
  else:
    assert rest_array.tolist() == grpc_array.tolist()


HISTORIES = [['item1', 'item2'], ['item3', '']]
USERS = ['alice', 'nobody']


def test_predict_rows_answer_as_grpc(server):
  grpc_columns = _columns(_grpc_predict(
      server, 'recommend', {'user_id': _strings(USERS), 'history': _strings(HISTORIES)}))
  status, text = _http(server, 'POST', f'/v1/models/{MODEL}:predict', {
      'signature_name': 'recommend',
      'instances': [{'user_id': user, 'history': history}
                    for user, history in zip(USERS, HISTORIES)]})
  assert status == 200, text
  predictions = json.loads(text)['predictions']
  assert len(predictions) == 2
  for name, column in grpc_columns.items():
    _assert_same([row[name] for row in predictions], column)


def test_predict_columns_answer_as_grpc_with_a_version_and_a_label(server):
  grpc_columns = _columns(_grpc_predict(
      server, 'recommend', {'user_id': _strings(USERS), 'history': _strings(HISTORIES)}))
  for path in (f'/v1/models/{MODEL}/versions/1:predict', f'/v1/models/{MODEL}/labels/stable'
               ':predict'):
    status, text = _http(server, 'POST', path, {
        'signature_name': 'recommend', 'inputs': {'user_id': USERS, 'history': HISTORIES}})
    assert status == 200, text
    outputs = json.loads(text)['outputs']
    assert set(outputs) == set(grpc_columns)
    for name, column in grpc_columns.items():
      _assert_same(outputs[name], column)


def test_serialized_examples_go_as_base64_to_the_default_signature(server):
  examples = [_example('alice', 'item4'), _example('bob', 'item9')]
  grpc_response = _grpc_predict(server, 'score', {'examples': np.array(examples, dtype=object)})
  grpc_ratings = _columns(grpc_response)['rating']
  encoded = [{'b64': base64.b64encode(example).decode()} for example in examples]
  status, text = _http(server, 'POST', f'/v1/models/{MODEL}:predict',
                       {'signature_name': 'score', 'instances': encoded})
  assert status == 200, text
  # One output: row format answers a plain list of values.
  _assert_same(json.loads(text)['predictions'], grpc_ratings)
  status, text = _http(server, 'POST', f'/v1/models/{MODEL}:predict', {'inputs': encoded})
  assert status == 200, text  # serving_default: the top-k of serialized examples
  assert len(json.loads(text)['outputs']['item_ids']) == 2


def test_status_and_metadata_answer_as_grpc(server):
  with server.client(MODEL) as client:
    grpc_status = json_format.MessageToDict(client.status(), including_default_value_fields=True)
    grpc_metadata = client.metadata()
  status, text = _http(server, 'GET', f'/v1/models/{MODEL}')
  assert status == 200, text
  assert json.loads(text) == grpc_status == {'model_version_status': [{
      'version': '1', 'state': 'AVAILABLE',
      'status': {'error_code': 'OK', 'error_message': ''}}]}
  assert json.loads(_http(server, 'GET', f'/v1/models/{MODEL}/versions/1')[1]) == \
      json.loads(text)
  status, text = _http(server, 'GET', f'/v1/models/{MODEL}/labels/stable/metadata')
  assert status == 200, text
  metadata = json.loads(text)
  assert metadata['model_spec'] == {'name': MODEL, 'version': '1', 'signature_name': ''}
  signature_defs = get_model_metadata_pb2.SignatureDefMap()
  grpc_metadata.metadata['signature_def'].Unpack(signature_defs)
  assert metadata['metadata']['signature_def'] == json_format.MessageToDict(
      signature_defs, including_default_value_fields=True, preserving_proto_field_name=True)
  assert set(metadata['metadata']['signature_def']['signature_def']) == {
      'serving_default', 'recommend', 'recommend_with_features', 'recommend_with_reasons', 'score'}


@pytest.mark.parametrize('method, path, body, http_status, message', [
    ('POST', f'/v1/models/{MODEL}:predict', b'{"instances": [', 400, 'JSON Parse error: '),
    ('POST', f'/v1/models/{MODEL}:predict', b'', 400, 'JSON Parse error: The document is empty'),
    ('POST', f'/v1/models/{MODEL}:predict', b'[1]', 400, 'JSON Value: [1] Is not object'),
    ('POST', f'/v1/models/{MODEL}:predict', b'{"signature_name": "recommend"}', 400,
     "Missing 'inputs' or 'instances' key"),
    ('POST', f'/v1/models/{MODEL}:predict', b'{"signature_name": 7, "inputs": []}', 400,
     "'signature_name' key must be a string value."),
    ('POST', f'/v1/models/{MODEL}:predict', b'{"signature_name": "nope", "inputs": []}', 400,
     'Serving signature name: "nope" not found in signature def'),
    ('POST', f'/v1/models/{MODEL}:predict',
     b'{"signature_name": "recommend", "instances": []}', 400, "No values in 'instances' array"),
    ('POST', f'/v1/models/{MODEL}:predict',
     b'{"signature_name": "recommend", "instances": [{"user_id": "a", "history": [1]}]}', 400,
     'Failed to process element: 0 key: history of \'instances\' list. Error: INVALID_ARGUMENT: '
     'JSON Value: 1 Type: Number is not of expected type: string'),
    ('POST', f'/v1/models/{MODEL}:predict',
     b'{"signature_name": "recommend", "inputs": {"user_id": ["a"]}}', 400,
     "Missing named input: history in 'inputs' object."),
    ('POST', f'/v1/models/{MODEL}:predict',
     b'{"signature_name": "recommend", '
     b'"inputs": {"user_id": ["a"], "history": [["x"], ["y", "z"]]}}',
     400, 'Encountered list at unexpected size: 2 at level: 1 expected size: 1'),
    ('POST', f'/v1/models/{MODEL}:predict', b'{"inputs": [{"b64": "!!"}]}', 400,
     'Unable to base64 decode'),
    ('POST', '/v1/models/nope:predict', b'{"inputs": []}', 404,
     'Servable not found for request: Latest(nope)'),
    ('POST', f'/v1/models/{MODEL}/versions/9:predict', b'{"inputs": []}', 404,
     f'Servable not found for request: Specific({MODEL}, 9)'),
    ('POST', f'/v1/models/{MODEL}/labels/nope:predict', b'{"inputs": []}', 400,
     'Unrecognized servable version label: nope'),
    ('POST', f'/v1/models/{MODEL}:classify', b'{}', 501, None),
    ('GET', '/v1/models/nope', None, 404, 'Could not find any versions of model nope'),
    ('GET', f'/v1/models/{MODEL}/versions/3', None, 404,
     f'Could not find version 3 of model {MODEL}'),
    ('GET', '/v1/models', None, 400, 'Missing model name in request.'),
    ('PUT', f'/v1/models/{MODEL}', b'{}', 400, f'Malformed request: PUT /v1/models/{MODEL}'),
])
def test_errors_get_tf_servings_http_status_and_message(server, method, path, body,
                                                        http_status, message):
  status, text = _http(server, method, path, body)
  assert status == http_status, text
  error = json.loads(text)['error']
  if message:
    assert message in error


def test_paths_outside_the_api_are_not_found(server):
  assert _http(server, 'GET', '/v2/models/tiny')[0] == 404
  assert _http(server, 'GET', '/monitoring/prometheus/other')[0] == 404


def _malformed_body(rng: random.Random) -> bytes:
  """A predict body broken in one of several ways, from valid JSON to random bytes."""
  valid = {'signature_name': 'recommend',
           'instances': [{'user_id': 'alice', 'history': ['item1', 'item2']}]}
  values = [None, True, 0, -1, 2 ** 70, 1.5, float('nan'), '', 'x' * 50, [], {}, [[[]]],
            {'b64': 'AAAA'}, {'b64': 5}, [1, 'a'], [[1], [1, 2]]]
  kind = rng.randrange(7)
  if kind == 0:  # random bytes
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
  if kind == 1:  # valid JSON cut short
    text = json.dumps(valid)
    return text[:rng.randrange(len(text))].encode()
  if kind == 2:  # a key replaced by a random value
    body = json.loads(json.dumps(valid))
    key = rng.choice(['signature_name', 'instances'])
    body[key] = rng.choice(values)
    return json.dumps(body).encode()
  if kind == 3:  # an input replaced
    body = json.loads(json.dumps(valid))
    body['instances'][0][rng.choice(['user_id', 'history', 'extra'])] = rng.choice(values)
    return json.dumps(body).encode()
  if kind == 4:  # columnar inputs of random values
    inputs = {name: rng.choice(values) for name in rng.sample(['user_id', 'history', 'age'],
                                                              rng.randrange(4))}
    return json.dumps({'signature_name': rng.choice(['recommend', 'score', '']),
                       'inputs': rng.choice([inputs, rng.choice(values)])}).encode()
  if kind == 5:  # deep nesting
    depth = rng.choice([10, 300, 3000])
    return ('{"inputs": ' + '[' * depth + '"x"' + ']' * depth + '}').encode()
  text = bytearray(json.dumps(valid).encode())  # one byte flipped
  text[rng.randrange(len(text))] = rng.randrange(256)
  return bytes(text)


def test_fuzzed_bodies_get_client_errors_and_the_server_keeps_answering(server):
  rng = random.Random(FUZZ_SEED)
  statuses = {}
  for _ in range(FUZZ_BODIES):
    status, text = _http(server, 'POST', f'/v1/models/{MODEL}:predict', _malformed_body(rng))
    assert status in (200, 400, 501), text
    assert ('predictions' if status == 200 else 'error') in json.loads(text)
    statuses[status] = statuses.get(status, 0) + 1
  assert statuses.get(400, 0) > FUZZ_BODIES // 2
  server.check_alive()
  with server.client(MODEL) as client:
    assert len(client.recommend('alice', ['item1'], k=3).item_ids) == 3
  assert _http(server, 'GET', f'/v1/models/{MODEL}')[0] == 200


def _metric(page: str, line_prefix: str) -> int:
  values = [int(float(line.rsplit(' ', 1)[1])) for line in page.splitlines()
            if line.startswith(line_prefix)]
  return sum(values)


def test_prometheus_counts_grpc_and_rest_requests_by_status(server):
  def page():
    status, text = _http(server, 'GET', '/monitoring/prometheus/metrics')
    assert status == 200
    return text
  ok = f':tensorflow:serving:request_count{{model_name="{MODEL}",status="OK"}}'
  missing = ':tensorflow:serving:request_count{model_name="absent",status="NOT_FOUND"}'
  grpc_latency = (f':tensorflow:serving:request_latency_count{{model_name="{MODEL}",'
                  'API="Predict",entrypoint="GRPC"}')
  before = page()
  with server.client(MODEL) as client:
    client.recommend('alice', k=3)
  with server.client('absent', retries=0) as client:
    with pytest.raises(client_lib.ServingClientError) as raised:
      client.recommend('alice', k=3)
  assert raised.value.code == grpc.StatusCode.NOT_FOUND
  assert _http(server, 'GET', f'/v1/models/{MODEL}')[0] == 200
  assert _http(server, 'POST', '/v1/models/absent:predict', b'{"inputs": []}')[0] == 404
  after = page()
  assert _metric(after, ok) == _metric(before, ok) + 2  # gRPC Predict and REST status
  assert _metric(after, missing) == _metric(before, missing) + 2
  assert _metric(after, grpc_latency) == _metric(before, grpc_latency) + 1
  assert '# TYPE :tensorflow:serving:request_latency histogram' in after
  assert (f':tensorflow:serving:request_latency_bucket{{model_name="{MODEL}",API="Predict",'
          'entrypoint="GRPC",le="+Inf"}') in after


def test_the_page_and_the_catalogue_of_each_version_are_served(server):
  """The local server's additions to the REST API: the page at / and a version's catalogue
  file at .../catalogue (NOT_FOUND for a version exported without one)."""
  status, text = _http(server, 'GET', '/')
  assert status == 200 and text.startswith('<!doctype html>') and 'Try the models' in text
  for path in (f'/v1/models/{MODEL}/catalogue', f'/v1/models/{MODEL}/versions/1/catalogue',
               f'/v1/models/{MODEL}/labels/stable/catalogue'):
    status, text = _http(server, 'GET', path)
    assert status == 200, text
    assert json.loads(text) == {'items': serving_fixtures.TINY_CATALOGUE}
  assert _http(server, 'GET', '/v1/models/nope/catalogue')[0] == 404
  assert _http(server, 'GET', f'/v1/models/{MODEL}/versions/9/catalogue')[0] == 404
  path = catalogue.catalogue_path(server.version_dir)
  os.rename(path, path + '.away')
  try:
    status, text = _http(server, 'GET', f'/v1/models/{MODEL}/catalogue')
  finally:
    os.rename(path + '.away', path)
  assert (status, json.loads(text)) == (404, {'error': 'tiny version 1 has no catalogue.json'})
