"""Serializes tf.train.Examples with one value per feature straight into protobuf wire format.

RawExampleGen writes millions of examples whose features all hold a single value, and
many of them repeat (a user's side features for each of the user's interactions, an item's for
each of its interactions). Encoding the bytes directly lets those repeated parts be encoded once
and concatenated, and is several times faster than filling and serializing a `tf.train.Example`
message. The bytes parse as the same
`tf.train.Example` (tested against TensorFlow's parser).

Message layout (tensorflow/core/example/{example,feature}.proto):
  Example  { Features features = 1; }
  Features { map<string, Feature> feature = 1; }    each entry: key = 1, value = 2
  Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                          Int64List int64_list = 3; } }
  BytesList { repeated bytes value = 1; }  FloatList / Int64List { packed repeated value = 1; }
"""

import struct
from typing import Iterable, Union

from contract import features

Value = Union[int, float, str]

_LENGTH_DELIMITED_FIELD_1 = b'\x0a'  # field 1, wire type 2
_MAP_VALUE = b'\x12'  # field 2, wire type 2
_FEATURE_KIND = {'bytes_list': b'\x0a', 'float_list': b'\x12', 'int64_list': b'\x1a'}
_INT64_MASK = (1 << 64) - 1


def _varint(value: int) -> bytes:
  """Base-128 varint of a non-negative integer below 2**64."""
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _length_delimited(tag: bytes, payload: bytes) -> bytes:
  return tag + _varint(len(payload)) + payload


def list_kind(name: str) -> str:
  """The tf.train.Feature list field of a raw feature."""
  if name in features.INT_FEATURES:
    return 'int64_list'
  if name in features.FLOAT_FEATURES:
    return 'float_list'
  if name in features.STRING_FEATURES + features.OPTIONAL_STRING_FEATURES:
    return 'bytes_list'
  raise KeyError(f'{name!r} is not a raw feature')


def encode_feature(name: str, value: Value) -> bytes:
  """One entry of Features.feature: `name` holding the single `value` (text as UTF-8, int64
  two's complement, float as float32)."""
  kind = list_kind(name)
  if kind == 'bytes_list':
    values = _length_delimited(_LENGTH_DELIMITED_FIELD_1, value.encode('utf-8'))
  elif kind == 'float_list':
    values = _length_delimited(_LENGTH_DELIMITED_FIELD_1, struct.pack('<f', value))
  else:
    if not -2**63 <= value < 2**63:
      raise ValueError(f'{name}: {value} is out of the int64 range')
    values = _length_delimited(_LENGTH_DELIMITED_FIELD_1, _varint(value & _INT64_MASK))
  feature = _length_delimited(_FEATURE_KIND[kind], values)
  key = _length_delimited(_LENGTH_DELIMITED_FIELD_1, name.encode('utf-8'))
  return _length_delimited(_LENGTH_DELIMITED_FIELD_1, key + _length_delimited(_MAP_VALUE, feature))


def encode_example(encoded_features: Iterable[bytes]) -> bytes:
  """A serialized tf.train.Example from `encode_feature` outputs (distinct names)."""
  return _length_delimited(_LENGTH_DELIMITED_FIELD_1, b''.join(encoded_features))
