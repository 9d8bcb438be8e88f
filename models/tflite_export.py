"""TFLite export of the quantized student, for on-device retrieval.

The TFLite model takes one user's transformed query features (the indices that the Transform
graph's vocabularies give; `features.PADDING_INDEX`-padded history) and returns the top-k
catalogue item ids and scores, with the history's items excluded. Weights are int8: the int8
embedding tables and candidate matrix as they are, the QAT Dense layers through the converter's
default optimizations. On device, ids map to indices with the Transform vocabularies.
"""
import contextlib
import os
import sys
import tempfile
from typing import Dict, Iterator

from absl import logging
import numpy as np
import tensorflow as tf

from contract import features
from models import quantization
from models import towers


class _OnDeviceRetrieval(tf.Module):
  """Query tower + int8 candidate matrix + top-k with history exclusion, for one user."""

  def __init__(self, model, catalogue: Dict[str, np.ndarray], num_vocabulary_items: int,
               top_k: int):
    super().__init__()
    self.query_tower = model.query_tower
    candidates = model.embed_candidates(towers.item_features(catalogue)).numpy()
    values, scales = quantization.quantize_rows(candidates)
    self.candidates = tf.constant(values)
    self.scales = tf.constant(scales.T)
    self.item_ids = tf.constant(catalogue[features.ITEM_ID])
    self.num_items = len(values)
    self.num_vocabulary_items = num_vocabulary_items
    self.top_k = min(top_k, self.num_items)

  def recommend(self, query: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    embedding = self.query_tower(towers.select(query, self.query_tower))
    scores = tf.matmul(embedding, tf.cast(self.candidates, tf.float32),
                       transpose_b=True) * self.scales
    # Item index i + 1 is catalogue row i for vocabulary items (the rows before the cold items);
    # padding (0) and OOV indices exclude nothing.
    history = query[features.HISTORY_INDICES]
    rows = tf.where(history <= self.num_vocabulary_items, history - 1, -1)
    excluded = tf.reduce_max(tf.one_hot(rows, self.num_items), axis=1)
    scores, rows = tf.math.top_k(scores - 1e9 * excluded, k=self.top_k)
    return {'item_ids': tf.gather(self.item_ids, rows), 'scores': scores}


def input_specs(query_tower: tf.keras.Model, history_length: int) -> Dict[str, tf.TensorSpec]:
  """One user's query features, as the TFLite model's inputs."""
  specs = {}
  for name in query_tower.input_names:
    if name == features.HISTORY_INDICES:
      specs[name] = tf.TensorSpec([1, history_length], tf.int64, name=name)
    elif name in (features.AGE_Z,):
      specs[name] = tf.TensorSpec([1], tf.float32, name=name)
    else:
      specs[name] = tf.TensorSpec([1], tf.int64, name=name)
  return specs


@contextlib.contextmanager
def _native_output_logged() -> Iterator[None]:
  """Sends what native code writes to stdout and stderr in the block to the log: the TFLite
  converter prints a summary of the ops it kept (dozens of lines) on every conversion, at DEBUG
  (shown in verbose runs), or at ERROR when the block fails."""
  sys.stdout.flush()
  sys.stderr.flush()
  saved = {fd: os.dup(fd) for fd in (1, 2)}
  failed = True
  with tempfile.TemporaryFile() as captured:
    try:
      for fd in saved:
        os.dup2(captured.fileno(), fd)
      yield
      failed = False
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      for fd, copy in saved.items():
        os.dup2(copy, fd)
        os.close(copy)
      captured.seek(0)
      text = captured.read().decode('utf-8', 'replace').strip()
      if text:
        logging.log(logging.ERROR if failed else logging.DEBUG, 'TFLite converter output:\n%s',
                    text)


def export_tflite(model, catalogue: Dict[str, np.ndarray], num_vocabulary_items: int,
                  history_length: int, top_k: int, path: str) -> None:
  """Converts the int8 student (`TwoTowerModel`) to a TFLite flatbuffer at `path`; the first
  `num_vocabulary_items` rows of `catalogue` are the item vocabulary's, in index order."""
  module = _OnDeviceRetrieval(model, catalogue, num_vocabulary_items, top_k)
  function = tf.function(module.recommend).get_concrete_function(
      input_specs(model.query_tower, history_length))
  converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  with _native_output_logged():
    flatbuffer = converter.convert()
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(flatbuffer)
  logging.info('Exported TFLite student (%d bytes) to %s', len(flatbuffer), path)
