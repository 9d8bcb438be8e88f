"""Fuzzing Predict: over 1,000 malformed requests from a stock TF Serving client get a status
code that blames the request, and the server keeps serving the same answers in the same memory.

The requests are generated from a fixed seed, so every run sends the same ones, through a raw
`PredictionServiceStub` (no `serving.client` checks in between) to every signature of a tiny
model, an unknown signature, unknown models, versions and labels, and GetModelMetadata (see
CATEGORIES). Each must be answered OK or INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION or
RESOURCE_EXHAUSTED: never UNKNOWN or INTERNAL (a leaked exception), never a timeout. Afterwards
known-good requests get the answers they got before the run, and the server's resident memory
has grown by at most RSS_GROWTH_LIMIT_MB (20 MB) since a warm-up run of as many requests drawn
with another seed. Runs against `tensorflow_model_server` too where it is on PATH, and against
the local server with server-side batching.

Two categories run against the local server only: tensors whose shape asks for millions of
elements filled from one value, and request bytes that are not a PredictRequest (TF Serving's
gRPC layer answers INTERNAL to those, as for any message it cannot parse).
"""
import collections
import random
import time
from typing import Callable, Dict, List, Optional, Tuple

import grpc
import numpy as np
import psutil
import pytest
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

import serving_fixtures
from contract import tensor_codec

SEED = 20241126
MODEL = 'tiny'
MAX_BATCH_SIZE = serving_fixtures.MAX_BATCH_SIZE
TOP_K = serving_fixtures.TOP_K
SIGNATURES = ('serving_default', 'recommend', 'recommend_with_features', 'score')
STRING_INPUTS = {'recommend': ('user_id', 'history'),
                 'recommend_with_features': ('user_id', 'history', 'gender', 'occupation',
                                             'zip_code')}
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED}
MIN_REQUESTS = 1000
# What the server's RSS may grow by over the measured run, after a warm-up run of as many
# requests drawn with another seed: the allocator's arenas (one per gRPC thread) still growing
# to their high-water marks after large requests; it measured 0.3-6 MB. A leak of 20 KB a request
# would exceed it.
RSS_GROWTH_LIMIT_MB = 20
CALL_TIMEOUT_S = 30
PREDICT_METHOD = '/tensorflow.serving.PredictionService/Predict'

Request = object  # a PredictRequest, a GetModelMetadataRequest or raw bytes for Predict


def _request(signature: str, inputs: Dict[str, object], model: str = MODEL,
             **spec) -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model
  request.model_spec.signature_name = signature
  for key, value in spec.items():
    if key == 'version':
      request.model_spec.version.value = value
    else:
      setattr(request.model_spec, key, value)
  for name, value in inputs.items():
    proto = value if isinstance(value, tensor_pb2.TensorProto) else tensor_codec.from_numpy(value)
    request.inputs[name].CopyFrom(proto)
  return request


class _Generator:
  """Malformed requests by category, all drawn from one seeded random.Random."""

  def __init__(self, seed: int):
    self.rng = random.Random(seed)

  # Building blocks.

  def junk(self, max_length: int = 48) -> bytes:
    """Random bytes, mostly not UTF-8 (a leading 0xff or 0x80 never is)."""
    body = self.rng.randbytes(self.rng.randint(0, max_length))
    return self.rng.choice([b'\xff', b'\x80', b'\xc3', b'']) + body

  def item(self) -> bytes:
    return self.rng.choice(serving_fixtures.ITEMS).encode()

  def user(self) -> bytes:
    return self.rng.choice(serving_fixtures.USERS + ['nobody']).encode()

  def history(self, length: Optional[int] = None) -> List[bytes]:
    length = self.rng.randint(0, 25) if length is None else length
    return [self.item() for _ in range(length)]

  def example(self, signature: str, **overrides) -> bytes:
    values = {'user_id': self.user(), 'history': b' '.join(self.history())}
    if signature == 'score':
      values['item_id'] = self.item()
    values.update(overrides)
    example = example_pb2.Example()
    for name, value in values.items():
      if isinstance(value, bytes):
        example.features.feature[name].bytes_list.value.append(value)
      elif isinstance(value, float):
        example.features.feature[name].float_list.value.append(value)
      else:
        example.features.feature[name].int64_list.value.append(value)
    return example.SerializeToString()

  def inputs(self, signature: str, batch: int, width: int = 5) -> Dict[str, np.ndarray]:
    """Valid inputs of `signature` for `batch` users."""
    if signature in ('serving_default', 'score'):
      return {'examples': np.array([self.example(signature) for _ in range(batch)], object)}
    inputs = {'user_id': np.array([self.user() for _ in range(batch)], object),
              'history': np.array([self.history(width) for _ in range(batch)],
                                  object).reshape(batch, width)}
    if signature == 'recommend_with_features':
      inputs.update(age=np.array([self.rng.randint(10, 80) for _ in range(batch)], np.int64),
                    gender=np.array([self.rng.choice([b'F', b'M'])] * batch, object),
                    occupation=np.array([b'artist'] * batch, object),
                    zip_code=np.array([b'12345'] * batch, object))
    return inputs

  def signature(self, with_unknown: bool = True) -> str:
    return self.rng.choice(SIGNATURES + (('no_such_signature',) if with_unknown else ()))

  # Categories: each returns one request.

  def junk_examples(self) -> Request:
    signature = self.rng.choice(['serving_default', 'score'])
    examples = []
    for _ in range(self.rng.randint(1, 8)):
      roll = self.rng.random()
      if roll < 0.5:
        examples.append(self.junk(200))
      elif roll < 0.6:
        examples.append(b'\xff\x00garbage')
      elif roll < 0.8:  # a valid Example whose features have the wrong types or bytes
        examples.append(self.example(signature, **self.rng.choice([
            {'user_id': self.rng.randint(-2 ** 63, 2 ** 63 - 1)},
            {'history': float('nan')}, {'item_id': 7},
            {'user_id': self.junk(), 'history': self.junk()},
            {'history': b' '.join(self.junk(8) for _ in range(10))}])))
      else:
        examples.append(self.example(signature))
    return _request(signature, {'examples': np.array(examples, object)})

  def junk_strings(self) -> Request:
    signature = self.rng.choice(list(STRING_INPUTS))
    batch = self.rng.randint(1, 6)
    inputs = self.inputs(signature, batch)
    for name in self.rng.sample(STRING_INPUTS[signature],
                                self.rng.randint(1, len(STRING_INPUTS[signature]))):
      array = inputs[name]
      inputs[name] = np.array([self.junk() for _ in range(array.size)],
                              object).reshape(array.shape)
    return _request(signature, inputs)

  def wrong_rank(self) -> Request:
    signature = self.signature(with_unknown=False)
    inputs = self.inputs(signature, self.rng.randint(1, 4))
    name = self.rng.choice(sorted(inputs))
    array = inputs[name]
    rank = self.rng.choice([r for r in range(4) if r != array.ndim])
    values = array.ravel()
    inputs[name] = np.resize(values, (1,) * rank if values.size else (0,) * max(rank, 1))
    return _request(signature, inputs)

  def histories(self) -> Request:
    roll = self.rng.random()
    if roll < 0.3:  # histories in serialized examples: empty, huge or not UTF-8
      signature = self.rng.choice(['serving_default', 'score'])
      history = self.rng.choice([
          b'', b' ' * 1000, b' '.join(self.history(10_000)), self.junk(5000),
          b' '.join(self.junk(6) for _ in range(500))])
      return _request(signature, {'examples': np.array(
          [self.example(signature, history=history)], object)})
    signature = self.rng.choice(list(STRING_INPUTS))
    batch = self.rng.randint(1, 4)
    inputs = self.inputs(signature, batch)
    kind = self.rng.choice(['empty', 'huge', 'wide', 'junk', 'padding'])
    if kind == 'empty':
      history = np.zeros((batch, 0), object)
    elif kind == 'huge':
      history = np.array([self.history(self.rng.randint(2_000, 10_000))], object)
      inputs.update({key: value[:1] for key, value in inputs.items() if value.ndim == 1})
    elif kind == 'wide':
      history = np.array([self.history(2_000) for _ in range(batch)], object)
    elif kind == 'junk':
      history = np.array([[self.junk(12) for _ in range(20)] for _ in range(batch)], object)
    else:
      history = np.full((batch, 20), b'', object)
    inputs['history'] = history
    return _request(signature, inputs)

  def numbers(self) -> Request:
    signature = self.rng.choice(list(STRING_INPUTS))
    inputs = self.inputs(signature, self.rng.randint(1, 4))
    roll = self.rng.random()
    if roll < 0.45 or signature == 'recommend':
      # A scalar `k` as the contract had before every input was batched: an extra input now.
      if self.rng.random() < 0.6:
        inputs['k'] = np.array(self.rng.choice([
            0, -1, -2 ** 31, 2 ** 31 - 1, TOP_K + 1, 100, 101,
            self.rng.randint(-2 ** 31, 2 ** 31 - 1)]), np.int32)
      else:
        dtype = self.rng.choice([np.float32, np.float64])
        inputs['k'] = np.array(self.rng.choice([
            float('nan'), float('inf'), -float('inf'), -0.0, 1e30, 5.0]), dtype)
    else:
      batch = inputs['user_id'].shape[0]
      if self.rng.random() < 0.6:
        inputs['age'] = np.array([self.rng.choice([
            -1, -2 ** 63, 2 ** 63 - 1, 0, -self.rng.randint(1, 10 ** 6)])
                                  for _ in range(batch)], np.int64)
      else:
        inputs['age'] = np.array([self.rng.choice([float('nan'), float('inf'), -1.5])] * batch,
                                 self.rng.choice([np.float32, np.float64]))
    return _request(signature, inputs)

  def oversize_batch(self) -> Request:
    signature = self.signature(with_unknown=False)
    batch = self.rng.randint(MAX_BATCH_SIZE + 1, 4 * MAX_BATCH_SIZE)
    return _request(signature, self.inputs(signature, batch, width=2))

  def missing_and_extra(self) -> Request:
    signature = self.signature()
    inputs = self.inputs(signature if signature in SIGNATURES else 'recommend', 2)
    for name in self.rng.sample(sorted(inputs), self.rng.randint(0, len(inputs))):
      del inputs[name]
    for _ in range(self.rng.randint(0 if inputs else 1, 3)):
      name = self.rng.choice(['extra', '', 'k ', 'examples', 'user_id', 'é', 'age'])
      inputs[name] = np.array([self.junk(8)], object)
    return _request(signature, inputs)

  def wrong_dtype(self) -> Request:
    signature = self.signature()
    inputs = self.inputs(signature if signature in SIGNATURES else 'recommend', 2)
    name = self.rng.choice(sorted(inputs))
    proto = tensor_pb2.TensorProto()
    proto.dtype = self.rng.choice(list(types_pb2.DataType.values()) + [999, 12345])
    for size in self.rng.choice([(2,), (), (2, 3)]):
      proto.tensor_shape.dim.add(size=size)
    field = self.rng.choice(['tensor_content', 'float_val', 'int_val', 'string_val', None])
    if field == 'tensor_content':
      proto.tensor_content = self.rng.randbytes(self.rng.randint(0, 64))
    elif field == 'float_val':
      proto.float_val.extend([float('nan'), 1.0])
    elif field == 'int_val':
      proto.int_val.extend([1, -1])
    elif field == 'string_val':
      proto.string_val.extend([self.junk(), self.junk()])
    inputs[name] = proto
    return _request(signature, inputs)

  def empty_tensors(self) -> Request:
    signature = self.signature()
    inputs = self.inputs(signature if signature in SIGNATURES else 'recommend', 2)
    name = self.rng.choice(sorted(inputs))
    array = inputs[name]
    proto = tensor_pb2.TensorProto(dtype=tensor_codec.from_numpy(array).dtype)
    kind = self.rng.choice(['zero batch', 'no values', 'zero dims'])
    if kind == 'zero batch':
      inputs = {key: (value[:0] if value.ndim else value) for key, value in inputs.items()}
      return _request(signature, inputs)
    shape = array.shape if kind == 'no values' else tuple(0 for _ in array.shape)
    for size in shape:
      proto.tensor_shape.dim.add(size=size)
    inputs[name] = proto
    return _request(signature, inputs)

  def mismatched_batch(self) -> Request:
    signature = self.rng.choice(list(STRING_INPUTS))
    batch = self.rng.randint(1, 5)
    inputs = self.inputs(signature, batch)
    other = self.inputs(signature, batch + self.rng.randint(1, 4))
    name = self.rng.choice([name for name in sorted(inputs) if inputs[name].ndim])
    inputs[name] = other[name]
    return _request(signature, inputs)

  def model_spec(self) -> Request:
    signature = self.signature(with_unknown=False)
    inputs = self.inputs(signature, 1)
    roll = self.rng.choice(['signature', 'model', 'version', 'label', 'filter', 'metadata'])
    if roll == 'signature':
      return _request(self.rng.choice(['no_such', 'é\u2603', ' recommend', 'RECOMMEND',
                                       '__saved_model_init_op']), inputs)
    if roll == 'model':
      return _request(signature, inputs, model=self.rng.choice(['', 'nope', 'tiny ', 'tïny']))
    if roll == 'version':
      return _request(signature, inputs, version=self.rng.choice([0, -1, 2, 2 ** 63 - 1]))
    if roll == 'label':
      return _request(signature, inputs, version_label=self.rng.choice(['', 'canary', 'é']))
    if roll == 'filter':
      request = _request(signature, inputs)
      request.output_filter.extend(self.rng.choice([['nope'], ['scores', 'scores'], ['']]))
      return request
    return get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={'name': self.rng.choice([MODEL, 'nope'])},
        metadata_field=self.rng.choice([[], ['nope'], ['signature_def', 'x']]))

  def tensor_shapes(self) -> Request:
    signature = self.signature(with_unknown=False)
    inputs = self.inputs(signature, 2)
    name = self.rng.choice(sorted(inputs))
    proto = tensor_codec.from_numpy(inputs[name])
    kind = self.rng.choice(['negative', 'count', 'content', 'unknown rank'])
    if kind == 'negative':
      proto.tensor_shape.ClearField('dim')
      proto.tensor_shape.dim.add(size=-self.rng.randint(1, 2 ** 40))
    elif kind == 'count':  # a shape that does not fit the number of values sent
      if not proto.tensor_shape.dim:
        proto.tensor_shape.dim.add()
      proto.tensor_shape.dim[0].size = 3
    elif kind == 'content':  # packed bytes whose length is not a multiple of the dtype's
      numeric = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32)
      numeric.tensor_content = self.rng.randbytes(self.rng.choice([1, 3, 5, 7]))
      proto, name = numeric, self.rng.choice(['k', 'age', name])
    else:
      proto.tensor_shape.unknown_rank = True
    inputs[name] = proto
    return _request(signature, inputs)

  def huge_fill(self) -> Request:
    """One value filling a shape of millions of elements (TensorProto's shorthand)."""
    signature = self.rng.choice(list(STRING_INPUTS))
    inputs = self.inputs(signature, 1)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b'item1'])
    for size in self.rng.choice([(1, 2 ** 40), (1, 2 ** 22), (1, 10 ** 7), (2 ** 20, 2 ** 20)]):
      proto.tensor_shape.dim.add(size=size)
    inputs['history'] = proto
    return _request(signature, inputs)

  def unparseable(self) -> Request:
    """Bytes that are not a PredictRequest: random, truncated or with text that is not UTF-8."""
    valid = _request('recommend', self.inputs('recommend', 1)).SerializeToString()
    kind = self.rng.choice(['random', 'truncated', 'not utf-8'])
    if kind == 'random':
      return b'\x0a\xff' + self.rng.randbytes(self.rng.randint(0, 200))
    if kind == 'truncated':
      return valid[:self.rng.randint(1, len(valid) - 1)]
    return valid.replace(b'recommend', b'recomm\xffnd')

  def oversize_message(self) -> Request:
    return _request('recommend', {'user_id': np.array([b'x' * (5 << 20)], object),
                                  'history': np.array([[b'item1']], object)})


# (category, requests, local server only)
CATEGORIES: List[Tuple[str, int, bool]] = [
    ('junk_examples', 160, False), ('junk_strings', 120, False), ('wrong_rank', 90, False),
    ('histories', 100, False), ('numbers', 130, False), ('oversize_batch', 30, False),
    ('missing_and_extra', 90, False), ('wrong_dtype', 110, False), ('empty_tensors', 70, False),
    ('mismatched_batch', 60, False), ('model_spec', 60, False), ('tensor_shapes', 60, False),
    ('oversize_message', 2, False), ('huge_fill', 8, True), ('unparseable', 40, True),
]


def _corpus(kind: str, seed: int = SEED) -> List[Tuple[str, Request]]:
  """The fuzz requests drawn from `seed`, in an order shuffled by it: (category, request)."""
  generator = _Generator(seed)
  corpus = []
  for category, count, local_only in CATEGORIES:
    make: Callable[[], Request] = getattr(generator, category)
    requests = [make() for _ in range(count)]  # drawn alike for both servers
    if not local_only or kind == 'local':
      corpus += [(category, request) for request in requests]
  random.Random(seed).shuffle(corpus)
  return corpus


def _good_requests() -> List[predict_pb2.PredictRequest]:
  generator = _Generator(0)
  return [_request(signature, generator.inputs(signature, 3)) for signature in SIGNATURES]


class _Sender:
  """Sends requests as a stock client does and counts the answers' codes."""

  def __init__(self, target: str):
    self.channel = grpc.insecure_channel(target)
    self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
    self.raw_predict = self.channel.unary_unary(PREDICT_METHOD)  # bytes in, bytes out
    self.codes = collections.defaultdict(collections.Counter)
    self.seconds = collections.Counter()
    self.failures = []

  def __enter__(self) -> '_Sender':
    return self

  def __exit__(self, *exc) -> None:
    self.channel.close()

  def send(self, category: str, request: Request) -> None:
    if isinstance(request, bytes):
      call = self.raw_predict
    elif isinstance(request, get_model_metadata_pb2.GetModelMetadataRequest):
      call = self.stub.GetModelMetadata
    else:
      call = self.stub.Predict
    started = time.time()
    try:
      call(request, timeout=CALL_TIMEOUT_S)
      code = grpc.StatusCode.OK
    except grpc.RpcError as error:
      code = error.code()
      if code not in ALLOWED:
        self.failures.append(f'{category}: {code.name}: {error.details()[:300]!r}')
    self.seconds[category] += time.time() - started
    self.codes[category][code.name] += 1


def _rss_mb(server) -> float:
  return psutil.Process(server.process.pid).memory_info().rss / 2 ** 20


@pytest.fixture(scope='module', params=serving_fixtures.server_kinds() + ['local-batching'])
def server(request, tmp_path_factory):
  kind, _, batching = request.param.partition('-')
  with serving_fixtures.tiny_model_server(kind, tmp_path_factory.mktemp('models'), MODEL,
                                          batching=bool(batching)) as running:
    yield running


def test_malformed_requests_get_request_error_codes_and_change_nothing(server):
  corpus = _corpus(server.kind)
  assert len(corpus) >= MIN_REQUESTS
  with _Sender(server.target) as sender:
    _fuzz(server, corpus, sender)


def _fuzz(server, corpus, sender: '_Sender') -> None:
  good = _good_requests()
  before = [sender.stub.Predict(request, timeout=CALL_TIMEOUT_S) for request in good]

  # Warm-up: a corpus of other requests, so that every path has allocated what it keeps.
  warmup = _corpus(server.kind, SEED + 1)
  for category, request in warmup:
    sender.send(category, request)
  rss_before = _rss_mb(server)
  sender.codes.clear()
  sender.seconds.clear()
  started = time.time()
  for category, request in corpus:
    sender.send(category, request)
  elapsed = time.time() - started
  rss_after = _rss_mb(server)

  summary = '\n'.join(f'  {category}: {dict(codes)} {sender.seconds[category]:.1f} s'
                      for category, codes in sorted(sender.codes.items()))
  print(f'\n{server.kind}: {len(warmup)} warm-up + {len(corpus)} requests in {elapsed:.1f} s, '
        f'RSS {rss_before:.1f} -> {rss_after:.1f} MB\n{summary}')
  assert not sender.failures, '\n'.join(sender.failures[:20])
  server.check_alive()
  after = [sender.stub.Predict(request, timeout=CALL_TIMEOUT_S) for request in good]
  assert after == before
  assert rss_after - rss_before <= RSS_GROWTH_LIMIT_MB, (rss_before, rss_after)
  # The corpus reaches the checks it means to: the malformed examples are refused.
  assert sender.codes['junk_examples']['INVALID_ARGUMENT'] > 0
