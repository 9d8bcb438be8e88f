"""The hand-written tf.Example encoder against TensorFlow's own parser."""

import pytest
import tensorflow as tf

from contract import features
from ingest import example_encoding


def parse(serialized: bytes) -> dict:
  example = tf.train.Example.FromString(serialized)
  values = {}
  for name, feature in example.features.feature.items():
    kind = feature.WhichOneof('kind')
    assert kind == example_encoding.list_kind(name)
    (value,) = getattr(feature, kind).value
    values[name] = value.decode('utf-8') if kind == 'bytes_list' else value
  return values


@pytest.mark.parametrize('timestamp, age, rating, text', [
    (874_965_758, 31, 4.0, 'Heat (1995)'),
    (0, 0, 0.0, ''),
    (-1, -2**63, -0.1, 'Amélie · 天'),
    (2**63 - 1, 127, 1e-7, 'x' * 300),
])
def test_encoded_examples_parse_to_the_same_values(timestamp, age, rating, text):
  values = {name: features.default_value(name) for name in features.RAW_FEATURES}
  values.update({features.TIMESTAMP: timestamp, features.AGE: age, features.RATING: rating,
                 features.TITLE: text, features.USER_ID: 'u1', features.HISTORY: 'a b c'})
  serialized = example_encoding.encode_example(
      example_encoding.encode_feature(name, value) for name, value in values.items())
  parsed = parse(serialized)
  assert parsed.pop(features.RATING) == pytest.approx(rating, rel=1e-6)
  del values[features.RATING]
  assert parsed == values
  reference = tf.train.Example.FromString(serialized).SerializeToString(deterministic=True)
  assert tf.train.Example.FromString(reference) == tf.train.Example.FromString(serialized)


def test_out_of_range_and_unknown_features_are_refused():
  with pytest.raises(ValueError, match='int64'):
    example_encoding.encode_feature(features.TIMESTAMP, 2**63)
  with pytest.raises(KeyError, match='not a raw feature'):
    example_encoding.encode_feature('colour', 'red')
