"""TensorProto <-> numpy for the request hot path, without tf.make_ndarray's generality.

Responses use the typed `*_val` fields, as TF Serving does by default (AsProtoField).
"""
import math
from typing import Optional

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2

# dtype enum -> (numpy dtype, TensorProto field holding typed values).
_FIELDS = {
    types_pb2.DT_STRING: (np.object_, 'string_val'),
    types_pb2.DT_FLOAT: (np.float32, 'float_val'),
    types_pb2.DT_DOUBLE: (np.float64, 'double_val'),
    types_pb2.DT_INT32: (np.int32, 'int_val'),
    types_pb2.DT_INT64: (np.int64, 'int64_val'),
    types_pb2.DT_BOOL: (np.bool_, 'bool_val'),
}
_ENUMS = {np.dtype(numpy_dtype): enum for enum, (numpy_dtype, _) in _FIELDS.items()}


def dtype_name(enum: int) -> str:
  return tf.dtypes.as_dtype(enum).name if enum else 'invalid'


def shape_of(proto: tensor_pb2.TensorProto) -> tuple:
  return tuple(dim.size for dim in proto.tensor_shape.dim)


def to_numpy(proto: tensor_pb2.TensorProto, shape: Optional[tuple] = None) -> np.ndarray:
  """The array a TensorProto holds (raises ValueError when its values do not fit its shape);
  `shape`: its shape when the caller has it already."""
  if shape is None:
    shape = shape_of(proto)
  size = math.prod(shape)
  numpy_dtype, field = _FIELDS.get(proto.dtype, (None, None))
  if numpy_dtype is not None and proto.dtype != types_pb2.DT_STRING and proto.tensor_content:
    values = np.frombuffer(proto.tensor_content, numpy_dtype)
  elif numpy_dtype is not None:
    # A list first: numpy converts a list faster than a repeated protobuf field.
    values = np.array(list(getattr(proto, field)), dtype=numpy_dtype)
  else:
    return tf.make_ndarray(proto)
  if values.size == size:
    return values.reshape(shape)
  if values.size == 1:  # a single value fills the whole shape (TensorProto's shorthand)
    return np.full(shape, values[0], dtype=numpy_dtype)
  raise ValueError(f'tensor of shape {list(shape)} holds {values.size} values')


def fill(proto: tensor_pb2.TensorProto, array: np.ndarray) -> None:
  """Writes the array into an empty TensorProto, values in its typed field."""
  enum = _ENUMS.get(array.dtype)
  if enum is None:
    proto.CopyFrom(tf.make_tensor_proto(array))
    return
  proto.dtype = enum
  for size in array.shape:
    proto.tensor_shape.dim.add(size=size)
  getattr(proto, _FIELDS[enum][1]).extend(array.ravel().tolist())


def from_numpy(array: np.ndarray) -> tensor_pb2.TensorProto:
  """A TensorProto with the array's values in its typed field."""
  proto = tensor_pb2.TensorProto()
  fill(proto, array)
  return proto
