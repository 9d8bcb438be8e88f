"""Server-side batching as TF Serving's `--enable_batching` does it, for the local server.

Requests to one signature of one model version wait in that signature's queue; batch threads
concatenate the inputs of queued requests along dimension 0, run the signature once and split
the outputs back. A batch runs when it is full (`max_batch_size` rows) or its oldest request
has waited `batch_timeout_micros`, on the first of `num_batch_threads` threads (shared by all
models, as TF Serving shares one batch scheduler) that is free. Like TF Serving:

* a request larger than `max_batch_size` is refused with INVALID_ARGUMENT (TF Serving's answer
  with `enable_large_batch_splitting` off; splitting is not implemented here);
* a queue holding `max_enqueued_batches` batches' worth of rows refuses more with UNAVAILABLE;
* inputs of one request must agree on their dimension 0;
* with `allowed_batch_sizes`, a batch is padded up to the next allowed size with copies of its
  first row, and the padding is dropped from the outputs;
* a batch that fails fails every request in it.

Unlike TF Serving, requests whose inputs differ in a dimension other than 0 are never merged
(each such shape gets its own batch) instead of failing the batch or padding the inputs:
`pad_variable_length_inputs` is accepted and does nothing here.

The parameters are TF Serving's `BatchingParameters` text proto (`--batching_parameters_file`).
"""
import collections
import dataclasses
import threading
import time
from typing import Callable, Deque, Dict, Hashable, List, Optional, Sequence, Tuple

from absl import logging
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2
import grpc
import numpy as np

from serving import errors

Run = Callable[..., Sequence[np.ndarray]]  # feeds in, outputs out; raises ServingError

# TF Serving's defaults where the file leaves a parameter out (BasicBatchScheduler::Options;
# num_batch_threads defaults to the cores there, to 4 here).
DEFAULTS = {'max_batch_size': 1000, 'batch_timeout_micros': 0, 'max_enqueued_batches': 10,
            'num_batch_threads': 4}
_WRAPPED_FIELDS = ('max_batch_size', 'batch_timeout_micros', 'max_enqueued_batches',
                   'num_batch_threads', 'max_execution_batch_size')


def _parameters_class():
  """TF Serving's `tensorflow.serving.BatchingParameters` message class.

  tensorflow-serving-api does not ship `session_bundle_config_pb2`, so the message is built
  here from its field list (names, numbers and types of
  tensorflow_serving/servables/tensorflow/session_bundle_config.proto), enough to parse the
  text format TF Serving reads.
  """
  try:  # pylint: disable-next=import-outside-toplevel
    from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2
    return session_bundle_config_pb2.BatchingParameters
  except ImportError:
    pass
  pool = descriptor_pool.DescriptorPool()
  pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
  proto = descriptor_pb2.FileDescriptorProto(
      name='serving/batching_parameters.proto', package='tensorflow.serving', syntax='proto3',
      dependency=['google/protobuf/wrappers.proto'])
  message = proto.message_type.add(name='BatchingParameters')
  field = descriptor_pb2.FieldDescriptorProto
  for number, name, kind in [
      (1, 'max_batch_size', '.google.protobuf.Int64Value'),
      (2, 'batch_timeout_micros', '.google.protobuf.Int64Value'),
      (3, 'max_enqueued_batches', '.google.protobuf.Int64Value'),
      (4, 'num_batch_threads', '.google.protobuf.Int64Value'),
      (5, 'thread_pool_name', '.google.protobuf.StringValue'),
      (8, 'enable_large_batch_splitting', '.google.protobuf.BoolValue'),
      (9, 'max_execution_batch_size', '.google.protobuf.Int64Value')]:
    message.field.add(name=name, number=number, label=field.LABEL_OPTIONAL,
                      type=field.TYPE_MESSAGE, type_name=kind)
  message.field.add(name='allowed_batch_sizes', number=6, label=field.LABEL_REPEATED,
                    type=field.TYPE_INT64)
  message.field.add(name='pad_variable_length_inputs', number=7, label=field.LABEL_OPTIONAL,
                    type=field.TYPE_BOOL)
  pool.Add(proto)
  descriptor = pool.FindMessageTypeByName('tensorflow.serving.BatchingParameters')
  return message_factory.MessageFactory(pool).GetPrototype(descriptor)


BatchingParameters = _parameters_class()


@dataclasses.dataclass(frozen=True)
class Options:
  """The batching parameters the local server honours."""
  max_batch_size: int = DEFAULTS['max_batch_size']
  batch_timeout_micros: int = DEFAULTS['batch_timeout_micros']
  max_enqueued_batches: int = DEFAULTS['max_enqueued_batches']
  num_batch_threads: int = DEFAULTS['num_batch_threads']
  allowed_batch_sizes: Tuple[int, ...] = ()
  pad_variable_length_inputs: bool = False

  def __post_init__(self):
    for name in ('max_batch_size', 'max_enqueued_batches', 'num_batch_threads'):
      if getattr(self, name) < 1:
        raise ValueError(f'batching parameter {name} must be >= 1, got {getattr(self, name)}')
    if self.batch_timeout_micros < 0:
      raise ValueError(f'batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}')
    sizes = self.allowed_batch_sizes
    if sizes and (list(sizes) != sorted(set(sizes)) or sizes[0] < 1
                  or sizes[-1] != self.max_batch_size):
      raise ValueError(f'allowed_batch_sizes must increase and end with max_batch_size '
                       f'{self.max_batch_size}, got {list(sizes)}')

  @classmethod
  def from_proto(cls, parameters) -> 'Options':
    values = {name: getattr(parameters, name).value for name in DEFAULTS
              if parameters.HasField(name)}
    if parameters.HasField('enable_large_batch_splitting') and (
        parameters.enable_large_batch_splitting.value):
      raise ValueError('enable_large_batch_splitting is not implemented by the local server')
    return cls(allowed_batch_sizes=tuple(parameters.allowed_batch_sizes),
               pad_variable_length_inputs=parameters.pad_variable_length_inputs, **values)


def parse_parameters(text: str, source: str = 'batching parameters') -> Options:
  """Options from a BatchingParameters text proto (ValueError naming `source` if bad)."""
  parameters = BatchingParameters()
  try:
    text_format.Parse(text, parameters)
    return Options.from_proto(parameters)
  except (text_format.ParseError, ValueError) as error:
    raise ValueError(f'{source}: {error}') from error


def load_parameters(path: Optional[str]) -> Options:
  """Options from `--batching_parameters_file` (TF Serving's defaults without one)."""
  if not path:
    return Options()
  with open(path) as parameters_file:
    return parse_parameters(parameters_file.read(), path)


class _Task:
  """One request waiting for its batch."""

  def __init__(self, feeds: Sequence[np.ndarray], size: int):
    self.feeds = feeds
    self.size = size
    self.shape_key = tuple((array.dtype.str, array.shape[1:]) for array in feeds)
    self.enqueued = time.monotonic()
    self.done = threading.Event()
    self.outputs: Optional[List[np.ndarray]] = None
    self.error: Optional[Tuple[grpc.StatusCode, str]] = None


class _Queue:
  def __init__(self, run: Run):
    self.run = run
    self.tasks: Deque[_Task] = collections.deque()
    self.rows = 0


class BatchScheduler:
  """Queues per (model, version, signature) and the batch threads that serve them all."""

  def __init__(self, options: Options):
    self.options = options
    self._condition = threading.Condition()
    self._queues: Dict[Hashable, _Queue] = {}
    self._stopped = False
    self.batches_run = 0  # batches and requests run so far (for tests and logs)
    self.requests_run = 0
    self._threads = [threading.Thread(target=self._serve, name=f'batch-{index}', daemon=True)
                     for index in range(options.num_batch_threads)]
    for thread in self._threads:
      thread.start()

  def run(self, queue: Hashable, run: Run, feeds: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Runs `feeds` (every one with the request's batch as dimension 0) in a batch of queue
    `queue`'s requests, with `run`; returns this request's rows of the outputs."""
    sizes = {array.shape[0] if array.ndim else None for array in feeds}
    if len(sizes) != 1 or None in sizes:
      raise errors.invalid_argument('Batching session Run() input tensors must have equal '
                                    '0th-dimension size')
    size = sizes.pop()
    if size > self.options.max_batch_size:
      raise errors.invalid_argument(f'Task size {size} is larger than maximum input batch '
                                    f'size {self.options.max_batch_size}')
    task = _Task(feeds, size)
    with self._condition:
      if self._stopped:
        raise errors.ServingError(grpc.StatusCode.UNAVAILABLE, 'batch scheduler stopped')
      waiting = self._queues.get(queue)
      if waiting is None:
        waiting = self._queues[queue] = _Queue(run)
      limit = self.options.max_enqueued_batches * self.options.max_batch_size
      if waiting.rows + size > limit:
        raise errors.ServingError(grpc.StatusCode.UNAVAILABLE, 'The batch scheduling queue to '
                                  'which this task was submitted is full')
      waiting.tasks.append(task)
      waiting.rows += size
      self._condition.notify()
    task.done.wait()
    if task.error:
      raise errors.ServingError(*task.error)
    return task.outputs

  def remove_queues(self, owner: Callable[[Hashable], bool]) -> None:
    """Drops the queues `owner` claims (a retired version's), failing what they still hold."""
    with self._condition:
      for key in [key for key in self._queues if owner(key)]:
        for task in self._queues.pop(key).tasks:
          task.error = (grpc.StatusCode.UNAVAILABLE, 'the model version was unloaded')
          task.done.set()

  def stop(self) -> None:
    with self._condition:
      self._stopped = True
      self._condition.notify_all()
    for thread in self._threads:
      thread.join(timeout=5)
    self.remove_queues(lambda key: True)

  def _serve(self) -> None:
    while True:
      with self._condition:
        while True:
          if self._stopped:
            return
          batch, wait_s = self._next_batch()
          if batch:
            if any(queue.tasks for queue in self._queues.values()):
              self._condition.notify()  # another thread may take the rest
            break
          self._condition.wait(wait_s)
      self._run(*batch)

  def _next_batch(self) -> Tuple[Optional[Tuple[_Queue, List[_Task]]], Optional[float]]:
    """The batch to run now, taken off its queue, or None and how long until one is due.

    The queues are visited oldest head first. A batch is the head request and the requests
    after it with inputs of the same shape (but dimension 0), in order, while they fit
    max_batch_size; it is due when full or when its head has waited batch_timeout_micros.
    """
    now = time.monotonic()
    timeout_s = self.options.batch_timeout_micros / 1e6
    wait_s = None
    for queue in sorted((queue for queue in self._queues.values() if queue.tasks),
                        key=lambda queue: queue.tasks[0].enqueued):
      head = queue.tasks[0]
      batch, rows, full = [], 0, False
      for task in queue.tasks:
        if task.shape_key != head.shape_key:
          continue
        if rows + task.size > self.options.max_batch_size:
          full = True
          break
        batch.append(task)
        rows += task.size
      full = full or rows == self.options.max_batch_size
      due_in = head.enqueued + timeout_s - now
      if full or due_in <= 0:
        taken = set(map(id, batch))
        queue.tasks = collections.deque(task for task in queue.tasks if id(task) not in taken)
        queue.rows -= rows
        return (queue, batch), None
      wait_s = due_in if wait_s is None else min(wait_s, due_in)
    return None, wait_s

  def _run(self, queue: _Queue, batch: List[_Task]) -> None:
    rows = sum(task.size for task in batch)
    self.batches_run += 1
    self.requests_run += len(batch)
    padded = next((size for size in self.options.allowed_batch_sizes if size >= rows), rows)
    try:
      feeds = batch[0].feeds if len(batch) == 1 else [
          np.concatenate(arrays) for arrays in zip(*(task.feeds for task in batch))]
      if padded > rows:
        feeds = [np.concatenate([array, np.repeat(array[:1], padded - rows, axis=0)])
                 for array in feeds]
      outputs = queue.run(*feeds)
      for output in outputs:
        if np.ndim(output) < 1 or output.shape[0] != padded:
          raise errors.ServingError(
              grpc.StatusCode.INTERNAL, f'a batched output has shape {np.shape(output)}, '
              f'not the batch size {padded} in dimension 0')
      start = 0
      for task in batch:
        task.outputs = [output[start:start + task.size] for output in outputs]
        start += task.size
    except errors.ServingError as error:
      for task in batch:
        task.error = (error.code, error.message)
    except Exception as error:  # pylint: disable=broad-except
      logging.exception('A batch of %d rows failed', rows)
      for task in batch:
        task.error = (grpc.StatusCode.INTERNAL, f'{type(error).__name__}: {error}')
    finally:
      for task in batch:
        task.done.set()
