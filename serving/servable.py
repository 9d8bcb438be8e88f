"""One loaded version of a SavedModel: a TF session over its graph, and Predict on its signatures.

Like TF Serving, requests run `Session.run` on the signature's tensors (a prebuilt callable per
signature, so a request costs one feed and one fetch), and the checks TF Serving makes before
running come first, with its status codes and messages. With a `batching.BatchScheduler`,
requests to a signature whose inputs all have a batch dimension run in batches with other
requests to the same version and signature.
"""
import threading
from typing import List, Optional, Tuple

from absl import logging
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

import compat
from contract import signatures
from contract import tensor_codec
from serving import batching
from serving import errors

DEFAULT_SIGNATURE = signatures.SERVING_DEFAULT  # what a request that names no signature runs
SERVE_TAG = 'serve'


class _Signature:
  """A signature's inputs, outputs and the session callable that runs it."""

  def __init__(self, session: tf.compat.v1.Session, signature: meta_graph_pb2.SignatureDef):
    self.input_names = sorted(signature.inputs)
    self.inputs = {name: signature.inputs[name] for name in self.input_names}
    self.output_names = sorted(signature.outputs)
    # (dtype enum, expected shape or None for unknown rank) per input, in feed order.
    self.specs = [(info.dtype, None if info.tensor_shape.unknown_rank else
                   tuple(dim.size for dim in info.tensor_shape.dim))
                  for info in (self.inputs[name] for name in self.input_names)]
    options = config_pb2.CallableOptions(
        feed=[self.inputs[name].name for name in self.input_names],
        fetch=[signature.outputs[name].name for name in self.output_names])
    self.run = compat.session_callable(session, options)
    # Every input has a known rank >= 1 whose dimension 0 is the batch: requests can be merged.
    self.batchable = all(shape is not None and len(shape) >= 1 and shape[0] < 0
                         for _, shape in self.specs)

  def run_checked(self, *feeds):
    """Runs the signature; raises ServingError with TF Serving's code."""
    try:
      return self.run(*feeds)
    except tf.errors.OpError as error:
      raise errors.from_tensorflow(error) from error
    except UnicodeDecodeError as error:  # an op's message quoting request bytes, see errors
      raise errors.from_undecodable_op_message(error) from error


def _check_inputs_size(signature: _Signature, request: predict_pb2.PredictRequest) -> None:
  sent, expected = set(request.inputs), set(signature.input_names)
  if sent != expected:
    raise errors.invalid_argument(
        f'input size does not match signature: {len(sent)}!={len(expected)} '
        f'len({{{",".join(sorted(sent))}}}) != len({{{",".join(sorted(expected))}}}). '
        f'Sent extra: {{{",".join(sorted(sent - expected))}}}. '
        f'Missing but required: {{{",".join(sorted(expected - sent))}}}.')


def _check_tensor(name: str, index: int, spec: Tuple[int, Optional[tuple]], proto,
                  shape: tuple) -> None:
  dtype, expected = spec
  if any(size < 0 for size in shape):
    raise errors.invalid_argument(f'input {name}: shape {list(shape)} has a negative dimension')
  if proto.dtype != dtype:
    raise errors.invalid_argument(
        f'Expects arg[{index}] ({name}) to be {tensor_codec.dtype_name(dtype)} but '
        f'{tensor_codec.dtype_name(proto.dtype)} is provided')
  if expected is None:
    return
  if len(shape) != len(expected) or any(e >= 0 and e != s for e, s in zip(expected, shape)):
    shown = [e if e >= 0 else None for e in expected]
    raise errors.invalid_argument(
        f'input {name}: shape {list(shape)} is not compatible with the signature shape {shown}')


class Servable:
  """A loaded version. Thread-safe; `acquire`/`release` bracket each request so that a retired
  version closes its session only after its in-flight requests finish."""

  def __init__(self, name: str, version: int, path: str, max_batch_size: int = 0,
               session_config: Optional[tf.compat.v1.ConfigProto] = None,
               scheduler: Optional[batching.BatchScheduler] = None):
    self.name = name
    self.version = version
    self.path = path
    # Without batching, the largest batch a request may carry (0: any); with batching, the
    # scheduler's max_batch_size applies instead.
    self.max_batch_size = 0 if scheduler else max_batch_size
    self._scheduler = scheduler
    graph = tf.Graph()
    self._session = tf.compat.v1.Session(graph=graph, config=session_config)
    with graph.as_default():
      meta_graph = tf.compat.v1.saved_model.loader.load(self._session, [SERVE_TAG], path)
    self.signature_defs = {key: signature for key, signature in meta_graph.signature_def.items()
                           if not key.startswith('__')}
    self._signatures = {key: _Signature(self._session, signature)
                        for key, signature in self.signature_defs.items()}
    self._lock = threading.Lock()
    self._in_flight = 0
    self._retired = False
    self._closed = False

  def try_acquire(self) -> bool:
    """Registers a request; False once the version is retired (ask the manager again)."""
    with self._lock:
      if self._retired:
        return False
      self._in_flight += 1
      return True

  def release(self) -> None:
    with self._lock:
      self._in_flight -= 1
      close = self._retired and self._in_flight == 0
    if close:
      self._close()

  def retire(self) -> None:
    """Stops new requests; the session closes when the last in-flight request ends."""
    with self._lock:
      self._retired = True
      close = self._in_flight == 0
    if close:
      self._close()

  def _close(self) -> None:
    with self._lock:
      if self._closed:
        return
      self._closed = True
    if self._scheduler:
      self._scheduler.remove_queues(lambda key: key[:2] == (self.name, self.version))
    self._session.close()
    logging.info('Unloaded %s version %d', self.name, self.version)

  def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """Runs the request's signature; raises ServingError with TF Serving's status code."""
    signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = self._signatures.get(signature_name)
    if signature is None:
      raise errors.failed_precondition(f'Serving signature key "{signature_name}" not found.')
    _check_inputs_size(signature, request)
    output_names = list(request.output_filter) or signature.output_names
    for alias in output_names:
      if alias not in signature.output_names:
        raise errors.invalid_argument(
            f'output tensor alias not found in signature: {alias} Outputs expected to be in '
            f'the set {{{",".join(signature.output_names)}}}.')
    if len(set(output_names)) != len(output_names):
      raise errors.invalid_argument(f'duplicate output tensor alias in {output_names}')

    shapes = []
    for index, name in enumerate(signature.input_names):
      shape = tensor_codec.shape_of(request.inputs[name])
      _check_tensor(name, index, signature.specs[index], request.inputs[name], shape)
      shapes.append(shape)
    self._check_batch_size(signature, shapes)  # before any array of that size is made
    feeds = []
    for name, shape in zip(signature.input_names, shapes):
      try:
        feeds.append(tensor_codec.to_numpy(request.inputs[name], shape))
      except ValueError as error:
        raise errors.invalid_argument(f'input {name}: {error}') from error

    if self._scheduler and signature.batchable:
      outputs = self._scheduler.run((self.name, self.version, signature_name),
                                    signature.run_checked, feeds)
    else:
      outputs = signature.run_checked(*feeds)

    response = predict_pb2.PredictResponse()
    response.model_spec.name = self.name
    response.model_spec.version.value = self.version
    response.model_spec.signature_name = signature_name
    for name, value in zip(signature.output_names, outputs):
      if name in output_names:
        tensor_codec.fill(response.outputs[name], value)
    return response

  def _check_batch_size(self, signature: _Signature, shapes: List[tuple]) -> None:
    """Empty batches are refused, and so are batches above max_batch_size (TF Serving's
    batching message; without batching only, the scheduler checks its own limit); scalar
    inputs have no batch dimension and are left out."""
    sizes = {shape[0] for shape in shapes if shape}
    if not sizes:
      return
    if 0 in sizes:
      raise errors.invalid_argument(
          f'empty batch: inputs {signature.input_names} have a zero-size batch dimension')
    largest = max(sizes)
    if self.max_batch_size and largest > self.max_batch_size:
      raise errors.invalid_argument(f'Task size {largest} is larger than maximum input batch '
                                    f'size {self.max_batch_size}')

  def warm_up(self, logs: List[prediction_log_pb2.PredictionLog]) -> int:
    """Replays warmup PredictLogs (a failure fails the load, as in TF Serving); returns how
    many ran."""
    replayed = 0
    for log in logs:
      kind = log.WhichOneof('log_type')
      if kind != 'predict_log':
        logging.warning('%s version %d: skipping a %s warmup record (only Predict is served)',
                        self.name, self.version, kind)
        continue
      self.predict(log.predict_log.request)
      replayed += 1
    return replayed
