"""Request metrics as TF Serving keeps them, and its Prometheus text page.

`:tensorflow:serving:request_count{model_name,status}` counts requests by the status code they
were answered with; `:tensorflow:serving:request_latency{model_name,API,entrypoint}` is the
histogram of successful requests' wall time in microseconds, in TF Serving's buckets
(exponential from 10 by 1.8, 33 buckets, the last one +Inf). TF Serving counts Predict (and
Classify, Regress) over gRPC and every request to its REST API; so does this server. The page is
served on the REST port when `--monitoring_config_file` enables `prometheus_config`.
"""
import bisect
import threading
from typing import Dict, List, Optional, Tuple

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
import grpc

DEFAULT_PROMETHEUS_PATH = '/monitoring/prometheus/metrics'  # PrometheusExporter::kPrometheusPath
REQUEST_COUNT = ':tensorflow:serving:request_count'
REQUEST_LATENCY = ':tensorflow:serving:request_latency'
# Buckets::Exponential(10, 1.8, 33): the upper limits of the first 32 buckets; the last is +Inf.
LATENCY_BUCKET_LIMITS = [10 * 1.8 ** index for index in range(32)]


def _monitoring_config_class():
  """tensorflow_serving/config/monitoring_config.proto's MonitoringConfig, which the installed
  tensorflow-serving-api does not ship, built from its two messages."""
  proto = descriptor_pb2.FileDescriptorProto(
      name='serving_local/monitoring_config.proto', package='tensorflow.serving', syntax='proto3')
  prometheus = proto.message_type.add(name='PrometheusConfig')
  prometheus.field.add(name='enable', number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
                       label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
  prometheus.field.add(name='path', number=2,
                       type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                       label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
  monitoring = proto.message_type.add(name='MonitoringConfig')
  monitoring.field.add(name='prometheus_config', number=1,
                       type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                       type_name='.tensorflow.serving.PrometheusConfig',
                       label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
  pool = descriptor_pool.DescriptorPool()
  pool.Add(proto)
  return message_factory.MessageFactory(pool).GetPrototype(
      pool.FindMessageTypeByName('tensorflow.serving.MonitoringConfig'))


def load_prometheus_path(path: str) -> Optional[str]:
  """The metrics path a MonitoringConfig text proto enables (its default when it names none),
  or None when it does not enable Prometheus. Raises ValueError naming the file on bad input."""
  with open(path) as config_file:
    text = config_file.read()
  config = _monitoring_config_class()()
  try:
    text_format.Parse(text, config)
  except text_format.ParseError as error:
    raise ValueError(f'{path}: {error}') from error
  if not config.prometheus_config.enable:
    return None
  return config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH


class _Histogram:
  """Counts per bucket (TF's upper_bound: a value equal to a limit goes to the next bucket)."""

  def __init__(self):
    self.buckets = [0] * (len(LATENCY_BUCKET_LIMITS) + 1)
    self.sum = 0.0

  def add(self, value: float) -> None:
    self.buckets[bisect.bisect_right(LATENCY_BUCKET_LIMITS, value)] += 1
    self.sum += value


def _labels(names: Tuple[str, ...], values: Tuple[str, ...]) -> str:
  escaped = (value.replace('\\', '\\\\').replace('"', '\\"') for value in values)
  return ','.join(f'{name}="{value}"' for name, value in zip(names, escaped))


def _number(value: float) -> str:
  """A double as absl::StrCat writes it (six significant digits)."""
  return f'{value:g}'


class Metrics:
  """The request counters and latency histograms of one server. Thread-safe."""

  def __init__(self):
    self._lock = threading.Lock()
    self._counts: Dict[Tuple[str, str], int] = {}
    self._latencies: Dict[Tuple[str, str, str], _Histogram] = {}

  def record_request(self, model_name: str, api: str, entrypoint: str, code: grpc.StatusCode,
                     latency_us: float) -> None:
    """Counts a request answered with `code`; a successful one's latency goes to the
    histogram of (model_name, api, entrypoint), e.g. ('student', 'Predict', 'GRPC')."""
    with self._lock:
      key = (model_name, code.name)
      self._counts[key] = self._counts.get(key, 0) + 1
      if code == grpc.StatusCode.OK:
        self._latencies.setdefault((model_name, api, entrypoint), _Histogram()).add(latency_us)

  def request_count(self, model_name: str, code: grpc.StatusCode) -> int:
    with self._lock:
      return self._counts.get((model_name, code.name), 0)

  def prometheus_page(self) -> str:
    """Prometheus text format, as TF Serving's PrometheusExporter writes it."""
    with self._lock:
      counts = sorted(self._counts.items())
      latencies = sorted((key, list(h.buckets), h.sum) for key, h in self._latencies.items())
    lines: List[str] = [f'# TYPE {REQUEST_COUNT} counter']
    lines += [f'{REQUEST_COUNT}{{{_labels(("model_name", "status"), key)}}} {count}'
              for key, count in counts]
    lines.append(f'# TYPE {REQUEST_LATENCY} histogram')
    for key, buckets, total in latencies:
      labels = _labels(('model_name', 'API', 'entrypoint'), key)
      cumulative = 0
      for index, count in enumerate(buckets):
        cumulative += count
        limit = (_number(LATENCY_BUCKET_LIMITS[index]) if index < len(LATENCY_BUCKET_LIMITS)
                 else '+Inf')
        lines.append(f'{REQUEST_LATENCY}_bucket{{{labels},le="{limit}"}} {cumulative}')
      lines.append(f'{REQUEST_LATENCY}_sum{{{labels}}} {_number(total)}')
      lines.append(f'{REQUEST_LATENCY}_count{{{labels}}} {cumulative}')
    return '\n'.join(lines) + '\n'
