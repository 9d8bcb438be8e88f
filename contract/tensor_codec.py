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


# The most elements a tensor may be filled to from one value (TensorProto's shorthand for a
# constant tensor): a request of a few bytes must not make the server allocate gigabytes.
MAX_FILLED_ELEMENTS = 1 << 16


def dtype_name(enum: int) -> str:
  """TensorFlow's name of a DataType enum value; any int, e.g. one a request sent."""
  if not enum:
    return 'invalid'
  try:
    return tf.dtypes.as_dtype(enum).name
  except TypeError:
    return f'unknown dtype {enum}'


def shape_of(proto: tensor_pb2.TensorProto) -> tuple:
  return tuple(dim.size for dim in proto.tensor_shape.dim)


def to_numpy(proto: tensor_pb2.TensorProto, shape: Optional[tuple] = None) -> np.ndarray:
  """The array a TensorProto holds; `shape`: its shape when the caller has it already.

  Raises ValueError when the proto does not describe an array: a negative dimension, values that
  do not fit the shape, packed bytes that are not whole values, or one value to fill more than
  MAX_FILLED_ELEMENTS elements.
  """
  if shape is None:
    shape = shape_of(proto)
  if any(dim < 0 for dim in shape):
    raise ValueError(f'tensor shape {list(shape)} has a negative dimension')
  size = math.prod(shape)
  numpy_dtype, field = _FIELDS.get(proto.dtype, (None, None))
  if numpy_dtype is not None and proto.dtype != types_pb2.DT_STRING and proto.tensor_content:
    values = np.frombuffer(proto.tensor_content, numpy_dtype)
  elif numpy_dtype is not None:
    # A list first: numpy converts a list faster than a repeated protobuf field.
    values = np.array(list(getattr(proto, field)), dtype=numpy_dtype)
  else:
    try:
      return tf.make_ndarray(proto)
    except TypeError as error:
      raise ValueError(str(error)) from error
  if values.size == size:
    return values.reshape(shape)
  if values.size == 1:  # a single value fills the whole shape (TensorProto's shorthand)
    if size > MAX_FILLED_ELEMENTS:
      raise ValueError(f'tensor of shape {list(shape)} is filled from 1 value; at most '
                       f'{MAX_FILLED_ELEMENTS} elements may be')
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
