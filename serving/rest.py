"""TF Serving's REST API (and its Prometheus page) in front of `serving.service`.

    GET  /v1/models/NAME[/versions/N | /labels/L]            model status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   signature metadata
    POST /v1/models/NAME[/versions/N | /labels/L]:predict    {"instances": ...} or {"inputs": ...}

As `tensorflow_model_server --rest_api_port`: the same paths (case-insensitive), JSON and error
messages as its http_rest_api_handler and json_tensor, errors as {"error": message} with the
HTTP status of the error code (`HTTP_STATUS`), 404 for paths outside /v1/, the metrics page and
the two additions of the local server, which TF Serving does not have:

    GET  /                                                    a page to try the models (page.html)
    GET  /v1/models/NAME[/versions/N | /labels/L]/catalogue   the version's catalogue file

A request runs the same ServingService method as over gRPC, so both answer the same. Request
bodies above `max_body_bytes` are refused with RESOURCE_EXHAUSTED (429) unread, as the gRPC
port refuses messages above its limit. Classify and Regress answer UNIMPLEMENTED, as over gRPC.
"""
import base64
import binascii
import http.server
import json
import math
import os
import re
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple
import urllib.parse

from absl import logging
from google.protobuf import json_format
import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import predict_pb2

from contract import signatures
from contract import tensor_codec
from serving import errors
from serving import metrics as metrics_lib
from serving import service as service_lib

# tensorflow_serving/model_servers/http_server.cc, ToHTTPStatusCode.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

_API_PATH = re.compile(r'/v1/.*', re.IGNORECASE | re.ASCII)
_NAME_AND_VERSION = r'/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?'
_PREDICTION_PATH = re.compile(_NAME_AND_VERSION + r':(classify|regress|predict)',
                              re.IGNORECASE | re.ASCII)
_STATUS_PATH = re.compile(
    r'/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?'
    r'(?:/(metadata|catalogue))?', re.IGNORECASE | re.ASCII)
_INT64_MAX = (1 << 63) - 1
_MAX_DEBUG_CHARS = 256  # json_tensor's kMaxJsonDebugStringBytes
_MAX_RANK = 254  # TensorShape's most dimensions
_BYTES_SUFFIX = '_bytes'  # DT_STRING outputs so named are written {"b64": ...}
JSON_CONTENT_TYPE = 'application/json'
PAGE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'page.html')
HTML_CONTENT_TYPE = 'text/html; charset=utf-8'

Response = Tuple[int, str, bytes]  # HTTP status, content type, body


# JSON -> tensors (json_tensor.cc, FillPredictRequestFromJson).

def _debug(value: Any) -> str:
  """A JSON value for an error message, cut to _MAX_DEBUG_CHARS characters."""
  try:
    text = json.dumps(value, separators=(',', ':'), ensure_ascii=False)
  except (ValueError, RecursionError):
    text = '...'
  return text[:_MAX_DEBUG_CHARS]


def _json_type(value: Any) -> str:
  if value is None:
    return 'Null'
  if isinstance(value, bool):
    return 'True' if value else 'False'
  if isinstance(value, (int, float)):
    return 'Number'
  return {str: 'String', list: 'Array', dict: 'Object'}[type(value)]


def _dtype_string(dtype: int) -> str:
  """TensorFlow's DataTypeString: 'float', 'int64', 'string'..."""
  if dtype not in types_pb2.DataType.values():
    return f'unknown dtype {dtype}'
  return types_pb2.DataType.Name(dtype)[3:].lower()


def _is_b64(value: Any) -> bool:
  return isinstance(value, dict) and len(value) == 1 and isinstance(value.get('b64'), str)


def _is_int(value: Any, low: int, high: int) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


_INT32 = (-(1 << 31), (1 << 31) - 1)  # rapidjson's IsInt, for all of TF's small int types
_INT_RANGES = {
    types_pb2.DT_INT32: _INT32, types_pb2.DT_INT16: _INT32, types_pb2.DT_INT8: _INT32,
    types_pb2.DT_UINT8: _INT32, types_pb2.DT_INT64: (-(1 << 63), _INT64_MAX),
    types_pb2.DT_UINT32: (0, (1 << 32) - 1), types_pb2.DT_UINT64: (0, (1 << 64) - 1)}
_INT_FIELDS = {types_pb2.DT_INT32: 'int_val', types_pb2.DT_INT16: 'int_val',
               types_pb2.DT_INT8: 'int_val', types_pb2.DT_UINT8: 'int_val',
               types_pb2.DT_INT64: 'int64_val', types_pb2.DT_UINT32: 'uint32_val',
               types_pb2.DT_UINT64: 'uint64_val'}


def _type_error(value: Any, dtype: int) -> errors.ServingError:
  return errors.invalid_argument(f'JSON Value: {_debug(value)} Type: {_json_type(value)} is not '
                                 f'of expected type: {_dtype_string(dtype)}')


def _add_value(value: Any, dtype: int, tensor: tensor_pb2.TensorProto) -> None:
  """Appends one JSON scalar (or {"b64": ...} for a string) to the tensor's typed values."""
  if dtype == types_pb2.DT_STRING:
    if isinstance(value, dict):
      tensor.string_val.append(_b64_decode(value))
    elif isinstance(value, str):
      tensor.string_val.append(value.encode('utf-8', 'surrogatepass'))
    else:
      raise _type_error(value, dtype)
  elif isinstance(value, dict):
    raise _type_error(value, dtype)
  elif dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
      raise _type_error(value, dtype)
    field = tensor.float_val if dtype == types_pb2.DT_FLOAT else tensor.double_val
    field.append(float(value))
  elif dtype in _INT_RANGES:
    if not _is_int(value, *_INT_RANGES[dtype]):
      raise _type_error(value, dtype)
    getattr(tensor, _INT_FIELDS[dtype]).append(value)
  elif dtype == types_pb2.DT_BOOL:
    if not isinstance(value, bool):
      raise _type_error(value, dtype)
    tensor.bool_val.append(value)
  else:
    raise errors.ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f'Conversion of JSON Value: {_debug(value)} to type: {_dtype_string(dtype)}')


def _b64_decode(value: Any) -> bytes:
  if not _is_b64(value):
    raise errors.invalid_argument(
        f'JSON Value: {_debug(value)} not formatted correctly for base64 data')
  text = value['b64']
  try:
    return base64.b64decode(text + '=' * (-len(text) % 4), validate=True)
  except (binascii.Error, ValueError) as error:
    raise errors.invalid_argument('Unable to base64 decode') from error


def _dense_shape(value: Any) -> List[int]:
  """The shape a nested list announces: the length of each first element, down."""
  shape = []
  while isinstance(value, list):
    shape.append(len(value))
    if len(shape) > _MAX_RANK:
      raise errors.invalid_argument(f'JSON value nests lists more than {_MAX_RANK} deep')
    if not value:
      break
    value = value[0]
  return shape


def _fill(value: Any, level: int, shape: List[int], dtype: int,
          tensor: tensor_pb2.TensorProto) -> int:
  """Appends the values of a nested list of `shape` to `tensor`; returns how many."""
  if not isinstance(value, list):
    if level != len(shape):
      raise errors.invalid_argument(
          f'JSON Value: {_debug(value)} found at incorrect level: {level + 1} in the JSON DOM. '
          f'Expected at level: {len(shape)}')
    _add_value(value, dtype, tensor)
    return 1
  if level >= len(shape):
    raise errors.invalid_argument(
        f'Encountered list at unexpected level: {level} expected < {len(shape)}')
  if len(value) != shape[level]:
    raise errors.invalid_argument(
        f'Encountered list at unexpected size: {len(value)} at level: {level} expected size: '
        f'{shape[level]}')
  return sum(_fill(item, level + 1, shape, dtype, tensor) for item in value)


def _shape_string(shape: List[int]) -> str:
  return '[' + ','.join(str(size) for size in shape) + ']'


class _Instances:
  """Row format: one tensor per input, each instance adding one row."""

  def __init__(self, infos: Dict[str, meta_graph_pb2.TensorInfo]):
    self.infos = infos
    self.tensors: Dict[str, tensor_pb2.TensorProto] = {}
    self.shapes: Dict[str, List[int]] = {}
    self.sizes: Dict[str, int] = {}

  def add(self, name: str, value: Any) -> None:
    """AddInstanceItem: one instance's value of input `name`."""
    if name not in self.infos:
      raise errors.invalid_argument(f'JSON object: does not have named input: {name}')
    tensor = self.tensors.setdefault(name, tensor_pb2.TensorProto())
    shape = _dense_shape(value)
    size = _fill(value, 0, shape, self.infos[name].dtype, tensor)
    if name not in self.sizes:
      self.sizes[name], self.shapes[name] = size, shape
    elif self.sizes[name] != size:
      raise errors.invalid_argument(f'Expecting tensor size: {self.sizes[name]} but got: {size}')
    elif self.shapes[name] != shape:
      raise errors.invalid_argument(f'Expecting shape {_shape_string(self.shapes[name])} but '
                                    f'got: {_shape_string(shape)}')


def _status_string(error: errors.ServingError) -> str:
  """absl::Status::ToString of an error: 'INVALID_ARGUMENT: message'."""
  return f'{error.code.name}: {error.message}'


def _tensors_from_instances(instances: list, infos: Dict[str, meta_graph_pb2.TensorInfo]
                            ) -> Dict[str, tensor_pb2.TensorProto]:
  if not isinstance(instances[0], dict) and len(infos) > 1:
    raise errors.invalid_argument(
        'instances is a plain list, but expecting list of objects as multiple input tensors '
        'required as per tensorinfo_map')
  objects = isinstance(instances[0], dict) and not _is_b64(instances[0])
  rows = _Instances(infos)
  for index, instance in enumerate(instances):
    if objects:
      if not isinstance(instance, dict) or _is_b64(instance):
        raise errors.invalid_argument(
            f'Expecting object but got list at item {index} of input list')
      for name, value in instance.items():
        try:
          rows.add(name, value)
        except errors.ServingError as error:
          raise errors.invalid_argument(
              f"Failed to process element: {index} key: {name} of 'instances' list. "
              f'Error: {_status_string(error)}') from error
      if set(instance) != set(infos):
        raise errors.invalid_argument(
            f"Failed to process element: {index} of 'instances' list. JSON object: "
            f'{_debug(instance)} keys must be equal to: {",".join(sorted(infos))}')
    else:
      if isinstance(instance, dict) and not _is_b64(instance):
        raise errors.invalid_argument(
            f'Expecting value/list but got object at item {index} of input list')
      try:
        rows.add(next(iter(infos)), instance)
      except errors.ServingError as error:
        raise errors.invalid_argument(
            f"Failed to process element: {index} of 'instances' list. "
            f'Error: {_status_string(error)}') from error
  for name, tensor in rows.tensors.items():
    tensor.dtype = infos[name].dtype
    for size in [len(instances)] + rows.shapes[name]:
      tensor.tensor_shape.dim.add(size=size)
  return rows.tensors


def _tensor_from_value(value: Any, dtype: int) -> tensor_pb2.TensorProto:
  tensor = tensor_pb2.TensorProto(dtype=dtype)
  shape = _dense_shape(value)
  for size in shape:
    tensor.tensor_shape.dim.add(size=size)
  _fill(value, 0, shape, dtype, tensor)
  return tensor


def _tensors_from_inputs(inputs: Any, infos: Dict[str, meta_graph_pb2.TensorInfo]
                         ) -> Dict[str, tensor_pb2.TensorProto]:
  if not isinstance(inputs, dict) or _is_b64(inputs):
    if len(infos) > 1:
      raise errors.invalid_argument(
          'inputs is a plain value/list, but expecting an object as multiple input tensors '
          'required as per tensorinfo_map')
    name, info = next(iter(infos.items()))
    return {name: _tensor_from_value(inputs, info.dtype)}
  tensors = {}
  for name, info in sorted(infos.items()):
    if name not in inputs:
      raise errors.invalid_argument(f"Missing named input: {name} in 'inputs' object.")
    tensors[name] = _tensor_from_value(inputs[name], info.dtype)
  return tensors


def _first_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
  """A JSON object's members, the first of duplicate keys kept (rapidjson's FindMember)."""
  members: Dict[str, Any] = {}
  for key, value in pairs:
    members.setdefault(key, value)
  return members


def parse_json_object(body: bytes) -> Dict[str, Any]:
  """The request body's JSON object (trailing content ignored, NaN and Infinity allowed, as
  TF Serving's rapidjson parse); INVALID_ARGUMENT with its message otherwise."""
  if not body:
    raise errors.invalid_argument('JSON Parse error: The document is empty')
  try:
    text = body.decode('utf-8')
  except UnicodeDecodeError as error:
    raise errors.invalid_argument(
        f'JSON Parse error: Invalid encoding in string. at offset: {error.start}') from error
  start = len(text) - len(text.lstrip(' \t\n\r'))
  try:
    document, _ = json.JSONDecoder(object_pairs_hook=_first_keys).raw_decode(text, start)
  except json.JSONDecodeError as error:
    raise errors.invalid_argument(
        f'JSON Parse error: {error.msg} at offset: {error.pos}') from error
  except RecursionError as error:
    raise errors.invalid_argument('JSON Parse error: nesting too deep') from error
  if not isinstance(document, dict):
    raise errors.invalid_argument(f'JSON Value: {_debug(document)} Is not object')
  return document


def predict_request_from_json(
    body: bytes, spec: model_pb2.ModelSpec,
    signature_inputs: Callable[[model_pb2.ModelSpec], Dict[str, meta_graph_pb2.TensorInfo]]
) -> Tuple[predict_pb2.PredictRequest, str]:
  """The PredictRequest a :predict body stands for, and its format: 'instances' (row) or
  'inputs' (columnar). `signature_inputs` gives the inputs of the signature a spec names."""
  document = parse_json_object(body)
  request = predict_pb2.PredictRequest()
  request.model_spec.CopyFrom(spec)
  if 'signature_name' in document:
    if not isinstance(document['signature_name'], str):
      raise errors.invalid_argument(
          f"JSON Value: {_debug(document)} not formatted correctly. 'signature_name' key must "
          'be a string value.')
    request.model_spec.signature_name = document['signature_name']
  infos = signature_inputs(request.model_spec)
  if not infos:
    raise errors.invalid_argument('Failed to get input map for signature: '
                                  f'{request.model_spec.signature_name or "DEFAULT"}')
  if 'instances' in document and 'inputs' in document:
    raise errors.invalid_argument(
        f"JSON Value: {_debug(document)} Not formatted correctly expecting only one of 'inputs' "
        "or 'instances' keys to exist ")
  if 'instances' in document:
    instances = document['instances']
    if not isinstance(instances, list):
      raise errors.invalid_argument(
          f"JSON Value: {_debug(document)} Expecting 'instances' to be an list/array")
    if not instances:
      raise errors.invalid_argument(f"JSON Value: {_debug(document)} No values in 'instances' "
                                    'array')
    tensors, response_format = _tensors_from_instances(instances, infos), 'instances'
  elif 'inputs' in document:
    tensors, response_format = _tensors_from_inputs(document['inputs'], infos), 'inputs'
  else:
    raise errors.invalid_argument("Missing 'inputs' or 'instances' key")
  for name, tensor in tensors.items():
    request.inputs[name].CopyFrom(tensor)
  return request, response_format


# Tensors -> JSON (json_tensor.cc, MakeJsonFromTensors).

def _decimal(value: float, float32: bool) -> float:
  """The number TF Serving writes for a float: six significant digits when they round-trip,
  else all of them (written by json as the shortest text of that double)."""
  if not np.isfinite(value):
    return float(value)
  cast = np.float32 if float32 else np.float64
  short = f'{value:g}'
  if cast(short) == cast(value):
    return float(short)
  return float(f'{value:.{9 if float32 else 17}g}')


def _json_values(array: np.ndarray, as_bytes: bool) -> Any:
  """A numpy array as nested lists of JSON values."""
  if array.dtype == np.object_:
    flat = [{'b64': base64.b64encode(value).decode('ascii')} if as_bytes
            else value.decode('utf-8', 'replace') for value in array.ravel()]
  elif array.dtype in (np.float32, np.float64):
    float32 = array.dtype == np.float32
    flat = [_decimal(value, float32) for value in array.ravel().tolist()]
  else:
    flat = array.ravel().tolist()
  if not array.ndim:
    return flat[0]
  for axis in range(array.ndim - 1, 0, -1):  # group the innermost axis first
    size = array.shape[axis]
    flat = [flat[index * size:(index + 1) * size] for index in range(math.prod(array.shape[:axis]))]
  return flat


def json_from_outputs(outputs: Dict[str, tensor_pb2.TensorProto], response_format: str) -> str:
  """A PredictResponse's outputs as {"predictions": [...]} (row format, one per instance,
  objects when several outputs) or {"outputs": ...} (columnar, an object when several)."""
  if not outputs:
    raise errors.invalid_argument('Cannot convert empty tensor map to JSON')
  arrays = {name: tensor_codec.to_numpy(outputs[name]) for name in sorted(outputs)}
  values = {name: _json_values(array, outputs[name].dtype == types_pb2.DT_STRING and
                               name.endswith(_BYTES_SUFFIX))
            for name, array in arrays.items()}
  if response_format == 'inputs':
    answer = values if len(values) > 1 else next(iter(values.values()))
    return json.dumps({'outputs': answer}, indent=1)
  batch_size = None
  for name, array in arrays.items():
    if not array.ndim:
      raise errors.invalid_argument(f'Tensor name: {name} has no shape information ')
    if batch_size is not None and array.shape[0] != batch_size:
      raise errors.invalid_argument(f'Tensor name: {name} has inconsistent batch size: '
                                    f'{array.shape[0]} expecting: {batch_size}')
    batch_size = array.shape[0]
  if len(values) > 1:
    rows = [{name: column[row] for name, column in values.items()} for row in range(batch_size)]
  else:
    rows = next(iter(values.values()))
  return json.dumps({'predictions': rows}, indent=1)


def status_json(response: get_model_status_pb2.GetModelStatusResponse) -> str:
  return json_format.MessageToJson(response, including_default_value_fields=True)


def metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> str:
  """{"model_spec": ..., "metadata": {"signature_def": SignatureDefMap}}, field names kept."""
  signature_defs = get_model_metadata_pb2.SignatureDefMap()
  response.metadata[signatures.SIGNATURE_DEF_FIELD].Unpack(signature_defs)
  def as_dict(proto):
    return json_format.MessageToDict(proto, including_default_value_fields=True,
                                     preserving_proto_field_name=True)
  return json.dumps({'model_spec': as_dict(response.model_spec),
                     'metadata': {'signature_def': as_dict(signature_defs)}}, indent=1)


# Requests.

def _model_spec(name: str, version: Optional[str], label: Optional[str]) -> model_pb2.ModelSpec:
  """ParseModelInfo: the URL-decoded name, the version as an int64 or the URL-decoded label."""
  spec = model_pb2.ModelSpec(name=urllib.parse.unquote(name, errors='replace'))
  if version:
    if int(version) > _INT64_MAX:
      raise errors.invalid_argument(f'Failed to convert version: {version} to numeric.')
    spec.version.value = int(version)
  if label:
    spec.version_label = urllib.parse.unquote(label, errors='replace')
  return spec


class RestApi:
  """Answers REST requests: `handle(method, path, body)` -> (HTTP status, type, body)."""

  def __init__(self, service: service_lib.ServingService,
               metrics: Optional[metrics_lib.Metrics] = None,
               prometheus_path: Optional[str] = None):
    self._service = service
    self._metrics = metrics
    self._prometheus_path = prometheus_path
    with open(PAGE_FILE, 'rb') as page:
      self._page = page.read()

  def handle(self, http_method: str, path: str, body: bytes) -> Response:
    path = urllib.parse.urlsplit(path).path
    if self._prometheus_path and path == self._prometheus_path and self._metrics:
      return 200, 'text/plain', self._metrics.prometheus_page().encode()
    if path == '/' and http_method in ('GET', 'HEAD'):
      return 200, HTML_CONTENT_TYPE, self._page
    if not _API_PATH.fullmatch(path):
      return 404, 'text/plain', b''
    started = time.perf_counter()
    context = {'model_name': '', 'api': ''}
    try:
      text = self._dispatch(http_method, path, body, context)
      code, message = grpc.StatusCode.OK, ''
    except Exception as error:  # pylint: disable=broad-except
      code, message = service_lib.failure(error, f'REST {http_method}')
    if self._metrics:
      self._metrics.record_request(context['model_name'], context['api'], 'REST', code,
                                   (time.perf_counter() - started) * 1e6)
    if code != grpc.StatusCode.OK:
      text = json.dumps({'error': message}, indent=1)
    return HTTP_STATUS.get(code, 500), JSON_CONTENT_TYPE, text.encode('utf-8', 'replace')

  def _dispatch(self, http_method: str, path: str, body: bytes, context: Dict[str, str]) -> str:
    """The JSON answer to a request under /v1/; raises for an error. Fills `context` with the
    model name and API (TF Serving's metric labels) once the path parses."""
    malformed = errors.invalid_argument(f'Malformed request: {http_method} {path}')
    if http_method == 'POST':
      match = _PREDICTION_PATH.fullmatch(path)
      if not match:
        raise malformed
      name, version, label, api = match.groups()
      context['model_name'], context['api'] = name, api
      spec = _model_spec(name, version, label)
      context['model_name'] = spec.name
      if api == 'predict':
        return self._predict(spec, body)
      if api.lower() in ('classify', 'regress'):
        raise errors.ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                  f'{api.lower()} is not implemented by this server')
      raise malformed
    if http_method == 'GET':
      match = _STATUS_PATH.fullmatch(path)
      if not match:
        raise malformed
      name, version, label, subresource = match.groups()
      if not name:
        raise errors.invalid_argument('Missing model name in request.')
      spec = _model_spec(name, version, label)
      context['model_name'] = spec.name
      if subresource == 'metadata':
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec, metadata_field=[signatures.SIGNATURE_DEF_FIELD])
        return metadata_json(self._service.get_model_metadata(request))
      if subresource == 'catalogue':
        return self._service.catalogue(spec)
      request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
      return status_json(self._service.get_model_status(request))
    raise malformed

  def _predict(self, spec: model_pb2.ModelSpec, body: bytes) -> str:
    request, response_format = predict_request_from_json(body, spec,
                                                         self._service.signature_inputs)
    return json_from_outputs(self._service.predict(request).outputs, response_format)


class _Handler(http.server.BaseHTTPRequestHandler):
  """Reads a request's body and hands it to the server's RestApi."""

  protocol_version = 'HTTP/1.1'  # keep-alive; every answer has a Content-Length

  def _answer(self) -> None:
    api: RestApi = self.server.api  # type: ignore[attr-defined]
    limit: int = self.server.max_body_bytes  # type: ignore[attr-defined]
    if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
      self.close_connection = True
      self._reply(411, JSON_CONTENT_TYPE,
                  b'{"error": "chunked request bodies are not supported: send Content-Length"}')
      return
    try:
      length = int(self.headers.get('Content-Length') or 0)
    except ValueError:
      length = -1
    if length < 0 or length > limit:
      self.close_connection = True  # the body is left unread
      message = (f'Received message larger than max ({length} vs. {limit})' if length > limit
                 else 'Content-Length is not a number of bytes')
      code = (grpc.StatusCode.RESOURCE_EXHAUSTED if length > limit
              else grpc.StatusCode.INVALID_ARGUMENT)
      self._reply(HTTP_STATUS[code], JSON_CONTENT_TYPE, json.dumps({'error': message}).encode())
      return
    body = self.rfile.read(length) if length else b''
    self._reply(*api.handle(self.command, self.path, body))

  def _reply(self, status: int, content_type: str, body: bytes) -> None:
    self.send_response(status)
    self.send_header('Content-Type', content_type)
    self.send_header('Content-Length', str(len(body)))
    self.end_headers()
    if self.command != 'HEAD':
      self.wfile.write(body)

  do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer  # noqa: N815

  def log_message(self, format, *args) -> None:  # pylint: disable=redefined-builtin
    logging.vlog(1, 'REST %s: ' + format, self.address_string(), *args)


class RestServer:
  """A threaded HTTP server for a RestApi on host:port (0: any free port)."""

  def __init__(self, api: RestApi, host: str = '127.0.0.1', port: int = 8501,
               max_body_bytes: int = 4 * 1024 * 1024):
    self._server = http.server.ThreadingHTTPServer((host, port), _Handler)
    self._server.daemon_threads = True
    self._server.api = api  # type: ignore[attr-defined]
    self._server.max_body_bytes = max_body_bytes  # type: ignore[attr-defined]
    self.port = self._server.server_address[1]
    self.address = f'{host}:{self.port}'
    self._thread: Optional[threading.Thread] = None

  def start(self) -> 'RestServer':
    self._thread = threading.Thread(target=self._server.serve_forever, name='rest-server',
                                    daemon=True)
    self._thread.start()
    return self

  def stop(self) -> None:
    self._server.shutdown()
    self._server.server_close()
    if self._thread:
      self._thread.join()
