"""A TF-Serving-compatible gRPC and REST model server for local use, tests and benchmarks.

    python -m serving.server --model_config_file serving/models.config \\
        --base_path_rewrite /models=outputs/serving --port 8500 --rest_api_port 8501 \\
        --monitoring_config_file serving/monitoring.config

Implements PredictionService.Predict and GetModelMetadata and ModelService.GetModelStatus over
TF Serving's base-directory layout (`<base_path>/<version>/saved_model.pb`), with its flags where
they mean the same thing; with `--rest_api_port`, the same methods over TF Serving's REST API
(`serving.rest`) and, with `--monitoring_config_file`, its Prometheus metrics
(`serving.metrics`). Binds to 127.0.0.1 unless told otherwise. `--enable_batching` batches
requests server-side as TF Serving does (`serving.batching`, parameters from
`--batching_parameters_file`); requests run one by one without it.
"""
import argparse
from concurrent import futures
import functools
import os
import signal
import sys
import threading
import time
from typing import Callable, List, Optional, Sequence, Tuple

from absl import logging
from google.protobuf import message
import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import batching
from serving import config as config_lib
from serving import errors
from serving import metrics as metrics_lib
from serving import model_manager
from serving import rest
from serving import servable as servable_lib
from serving import service as service_lib

DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH = 4 * 1024 * 1024  # gRPC's default; TF Serving's is 2 GiB


class _Unparseable:
  """What a request that does not parse as its message type is handed to the servicer as."""

  def __init__(self, message_type, error: Exception):
    self.message = f'cannot parse the request as {message_type.DESCRIPTOR.full_name}: {error}'


def _lenient_parser(message_type) -> Callable[[bytes], object]:
  """A request deserializer that returns `_Unparseable` instead of raising: gRPC answers a
  deserializer's exception with INTERNAL ('Exception deserializing request!'), as TF Serving's
  C++ gRPC does, though the request is at fault (e.g. text that is not UTF-8)."""
  def parse(data: bytes):
    try:
      return message_type.FromString(data)
    except (message.DecodeError, ValueError) as error:
      return _Unparseable(message_type, error)
  return parse


def _answers_every_failure(method: Callable) -> Callable:
  """Wraps a servicer method so that each failure gets a status code that says whose it is
  (`service.failure`; an unparseable request is INVALID_ARGUMENT), never gRPC's UNKNOWN
  ('Exception calling application'). A method named in the servicer's `counted` is counted in
  its `metrics`, with its latency when it succeeds, as TF Serving counts Predict."""
  @functools.wraps(method)
  def handle(self, request, context):
    started = time.perf_counter()
    # Only the code and the message outlive the except clause: an exception kept in a local
    # would form a cycle with this frame through its traceback when `abort` raises, and memory
    # would grow with every failed request until the garbage collector ran.
    response = None
    try:
      if isinstance(request, _Unparseable):
        raise errors.invalid_argument(request.message)
      response = method(self, request, context)
      code, message = grpc.StatusCode.OK, ''
    except Exception as error:  # pylint: disable=broad-except
      code, message = service_lib.failure(error, method.__name__)
    if self.metrics and method.__name__ in self.counted:
      model_name = '' if isinstance(request, _Unparseable) else request.model_spec.name
      self.metrics.record_request(model_name, method.__name__, 'GRPC', code,
                                  (time.perf_counter() - started) * 1e6)
    if code != grpc.StatusCode.OK:
      context.abort(code, message)
    return response
  return handle


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Predict and GetModelMetadata; Classify, Regress and MultiInference stay UNIMPLEMENTED."""

  counted = ('Predict',)  # the methods TF Serving counts in its request metrics

  def __init__(self, service: service_lib.ServingService,
               metrics: Optional[metrics_lib.Metrics] = None):
    self._service = service
    self.metrics = metrics

  @_answers_every_failure
  def Predict(self, request, context):  # pylint: disable=invalid-name
    return self._service.predict(request)

  @_answers_every_failure
  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    return self._service.get_model_metadata(request)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
  """GetModelStatus; HandleReloadConfigRequest stays UNIMPLEMENTED."""

  counted = ()
  metrics = None

  def __init__(self, service: service_lib.ServingService):
    self._service = service

  @_answers_every_failure
  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    return self._service.get_model_status(request)


def _add_services(server: grpc.Server, predictions: PredictionServicer,
                  models: ModelServicer) -> None:
  """Registers the methods served, with `_lenient_parser`s (the generated add_*_to_server
  functions parse strictly); the others are answered UNIMPLEMENTED by gRPC."""
  services = {
      'tensorflow.serving.PredictionService': {
          'Predict': (predictions.Predict, predict_pb2.PredictRequest,
                      predict_pb2.PredictResponse),
          'GetModelMetadata': (predictions.GetModelMetadata,
                               get_model_metadata_pb2.GetModelMetadataRequest,
                               get_model_metadata_pb2.GetModelMetadataResponse)},
      'tensorflow.serving.ModelService': {
          'GetModelStatus': (models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest,
                             get_model_status_pb2.GetModelStatusResponse)},
  }
  for service, methods in services.items():
    handlers = {name: grpc.unary_unary_rpc_method_handler(
        method, request_deserializer=_lenient_parser(request_type),
        response_serializer=response_type.SerializeToString)
                for name, (method, request_type, response_type) in methods.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))


def parse_channel_arguments(text: str) -> List[Tuple[str, object]]:
  """TF Serving's --grpc_channel_arguments: 'key=value,key=value' (ints where they parse)."""
  arguments = []
  for item in filter(None, (part.strip() for part in text.split(','))):
    key, sep, value = item.partition('=')
    if not sep:
      raise ValueError(f'grpc channel argument must look like key=value, got {item!r}')
    arguments.append((key, int(value) if value.lstrip('-').isdigit() else value))
  return arguments


class ModelServer:
  """The manager and the gRPC server around it. `start()` returns once the first load is done."""

  def __init__(self, config, host: str = '127.0.0.1', port: int = 8500,
               poll_wait_seconds: float = 1.0, max_batch_size: int = 0, grpc_max_threads: int = 8,
               intra_op_threads: int = 1, inter_op_threads: int = 0,
               channel_arguments: Sequence[Tuple[str, object]] = (),
               batching_options: Optional[batching.Options] = None, rest_api_port: int = 0,
               prometheus_path: Optional[str] = None):
    """`rest_api_port` 0: no REST API (TF Serving's default); `prometheus_path`: where the REST
    port serves the metrics page (None: nowhere)."""
    config_lib.validate(config)
    self.scheduler = batching.BatchScheduler(batching_options) if batching_options else None
    session_config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=intra_op_threads,
        inter_op_parallelism_threads=inter_op_threads)

    def load(name: str, version: int, path: str) -> servable_lib.Servable:
      return servable_lib.Servable(name, version, path, max_batch_size, session_config,
                                   self.scheduler)

    self.manager = model_manager.ModelManager(config, load, poll_wait_seconds)
    options = dict([('grpc.max_receive_message_length', DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH),
                    ('grpc.so_reuseport', 0)])
    options.update(channel_arguments)
    self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=grpc_max_threads),
                               options=list(options.items()))
    self.metrics = metrics_lib.Metrics()
    service = service_lib.ServingService(self.manager)
    _add_services(self._server, PredictionServicer(service, self.metrics), ModelServicer(service))
    self.port = self._server.add_insecure_port(f'{host}:{port}')
    if not self.port:
      raise OSError(f'cannot bind {host}:{port}')
    self.address = f'{host}:{self.port}'
    self.rest = None
    if rest_api_port:
      if rest_api_port == self.port:
        raise ValueError(f'--rest_api_port {rest_api_port} is the gRPC port')
      self.rest = rest.RestServer(rest.RestApi(service, self.metrics, prometheus_path), host,
                                  rest_api_port, max_body_bytes=dict(options).get(
                                      'grpc.max_receive_message_length',
                                      DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH))
    self._stopped = threading.Event()

  def start(self) -> 'ModelServer':
    self.manager.start()
    self._server.start()
    if self.rest:
      self.rest.start()
      logging.info('REST API on %s', self.rest.address)
    logging.info('Serving %s on %s (%s)', self.manager.model_names, self.address,
                 f'batching: {self.scheduler.options}' if self.scheduler else 'no batching')
    return self

  def watch_config_file(self, path: str, rewrite: Optional[str], poll_wait_seconds: float) -> None:
    """Re-reads the config file when it changes (TF Serving's
    --model_config_file_poll_wait_seconds); a bad file is logged and the old config kept."""
    def watch() -> None:
      seen = os.stat(path).st_mtime_ns
      while not self._stopped.wait(poll_wait_seconds):
        try:
          mtime = os.stat(path).st_mtime_ns
          if mtime == seen:
            continue
          seen = mtime
          config = config_lib.rewrite_base_paths(config_lib.load_config_file(path), rewrite)
          config_lib.validate(config)
          self.manager.reload(config)
          logging.info('Reloaded %s: serving %s', path, self.manager.model_names)
        except (OSError, ValueError) as error:
          logging.error('Keeping the current config: %s', error)

    threading.Thread(target=watch, name='config-watcher', daemon=True).start()

  def stop(self, grace_seconds: float = 1.0) -> None:
    self._stopped.set()
    if self.rest:
      self.rest.stop()
    self._server.stop(grace_seconds).wait()
    self.manager.stop()
    if self.scheduler:
      self.scheduler.stop()


def _flag(text: str) -> bool:
  """A boolean flag's value as TF Serving spells it (true/false, 1/0)."""
  if text.lower() in ('true', '1'):
    return True
  if text.lower() in ('false', '0'):
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--host', default='127.0.0.1', help='address to bind (default loopback)')
  parser.add_argument('--port', type=int, default=8500, help='gRPC port (0: any free port)')
  parser.add_argument('--rest_api_port', type=int, default=0,
                      help='REST API port, on --host too (0: no REST API)')
  parser.add_argument('--monitoring_config_file',
                      help='MonitoringConfig text proto; prometheus_config serves metrics on the '
                           'REST port')
  parser.add_argument('--model_name', default='default', help='model name without a config')
  parser.add_argument('--model_base_path', help='base path of the one model without a config')
  parser.add_argument('--model_config_file', help='ModelServerConfig text proto')
  parser.add_argument('--base_path_rewrite', metavar='FROM=TO',
                      help='replace the prefix FROM of every config base_path by TO, e.g. '
                           '/models=outputs/serving for serving/models.config')
  parser.add_argument('--file_system_poll_wait_seconds', type=float, default=1.0,
                      help='seconds between polls for new versions (0: load once)')
  parser.add_argument('--model_config_file_poll_wait_seconds', type=float, default=0,
                      help='seconds between checks of the config file for changes (0: never)')
  parser.add_argument('--max_batch_size', type=int, default=1024,
                      help='largest batch a request may carry without batching (0: no limit)')
  parser.add_argument('--enable_batching', type=_flag, nargs='?', const=True, default=False,
                      help='batch requests server-side, as TF Serving does')
  parser.add_argument('--batching_parameters_file',
                      help='BatchingParameters text proto (default: TF Serving\'s defaults)')
  parser.add_argument('--grpc_max_threads', type=int, default=8, help='request threads')
  parser.add_argument('--grpc_channel_arguments', default='',
                      help='key=value,... e.g. grpc.max_receive_message_length=4194304')
  # One thread per op by default (TF Serving's 0 lets TensorFlow choose): the ops of a small
  # request are too small to split (the trade-off measured is in serving/README.md).
  parser.add_argument('--tensorflow_intra_op_parallelism', type=int, default=1,
                      help='threads per op (0: TensorFlow chooses)')
  parser.add_argument('--tensorflow_inter_op_parallelism', type=int, default=0,
                      help='threads running ops (0: TensorFlow chooses; < 0: the request thread)')
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parser().parse_args(argv)
  logging.set_verbosity(logging.INFO)
  try:
    if args.model_config_file:
      config = config_lib.load_config_file(args.model_config_file)
    elif args.model_base_path:
      config = config_lib.single_model_config(args.model_name, args.model_base_path)
    else:
      raise ValueError('give --model_config_file or --model_base_path')
    config = config_lib.rewrite_base_paths(config, args.base_path_rewrite)
    prometheus_path = (metrics_lib.load_prometheus_path(args.monitoring_config_file)
                       if args.monitoring_config_file else None)
    batching_options = (batching.load_parameters(args.batching_parameters_file)
                        if args.enable_batching else None)
    server = ModelServer(
        config, host=args.host, port=args.port,
        poll_wait_seconds=args.file_system_poll_wait_seconds,
        max_batch_size=args.max_batch_size, grpc_max_threads=args.grpc_max_threads,
        intra_op_threads=args.tensorflow_intra_op_parallelism,
        inter_op_threads=args.tensorflow_inter_op_parallelism,
        channel_arguments=parse_channel_arguments(args.grpc_channel_arguments),
        batching_options=batching_options, rest_api_port=args.rest_api_port,
        prometheus_path=prometheus_path)
  except (ValueError, OSError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  server.start()
  if args.model_config_file and args.model_config_file_poll_wait_seconds > 0:
    server.watch_config_file(args.model_config_file, args.base_path_rewrite,
                             args.model_config_file_poll_wait_seconds)
  for model in config.model_config_list.config:
    print(f'{model.name}: versions under {model.base_path}')
  rest_address = f' (REST on {server.rest.address})' if server.rest else ''
  print(f'Serving {", ".join(server.manager.model_names)} on {server.address}{rest_address}',
        flush=True)
  stopped = threading.Event()
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda *_: stopped.set())
  stopped.wait()
  server.stop()
  return 0


if __name__ == '__main__':
  sys.exit(main())
