"""Quantization of the student: QAT on Dense layers, int8 row-wise embedding tables and index.

- `quantize_dense_layers`: TFMOT quantization-aware training wrappers on the Dense layers of a
  functional core (`quantize_annotate_layer` + `quantize_apply`; embeddings are left alone, as
  TFMOT does not quantize them); `set_kernel_ranges` sets their kernels' ranges without
  training (post-training quantization).
- `int8_embeddings`: the same core with every embedding table of width ≥ 2 stored as int8 values
  plus one float scale per row, dequantized inside the graph (`Int8Embedding`), so the
  SavedModel's variables really are ~4× smaller, and the QAT Dense layers folded into plain
  ones with their int8-grid kernels (no fake-quantization left to run on every request).
- `Int8BruteForce`: a TFRS brute-force top-k index with its candidate matrix stored the same
  way.
Row-wise symmetric quantization: scale = max|row| / 127, q = round(row / scale); the round trip
error of every value is at most scale / 2.
"""
from typing import Dict, Optional, Tuple, Type

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

import compat
from models import towers

tfmot = compat.import_tfmot()

INT8_MAX = 127
MIN_QUANTIZED_WIDTH = 2  # width-1 tables (biases) would grow: 1 byte + a 4-byte scale per row


def quantize_rows(table: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Row-wise symmetric int8 quantization: (int8 values, float32 scales of shape [rows, 1])."""
  table = np.asarray(table, dtype=np.float32)
  scales = np.max(np.abs(table), axis=1, keepdims=True) / INT8_MAX
  scales = np.where(scales > 0, scales, 1.0).astype(np.float32)
  values = np.clip(np.round(table / scales), -INT8_MAX, INT8_MAX).astype(np.int8)
  return values, scales


def dequantize_rows(values: np.ndarray, scales: np.ndarray) -> np.ndarray:
  return values.astype(np.float32) * scales


class Int8Embedding(tf.keras.layers.Layer):
  """An embedding table stored as int8 rows with float scales; looks up then dequantizes."""

  def __init__(self, input_dim: int, output_dim: int, **kwargs):
    super().__init__(**kwargs)
    self.input_dim = input_dim
    self.output_dim = output_dim

  def build(self, input_shape):
    self.int8_embeddings = self.add_weight(
        name='int8_embeddings', shape=(self.input_dim, self.output_dim), dtype=tf.int8,
        initializer='zeros', trainable=False)
    self.scales = self.add_weight(name='scales', shape=(self.input_dim, 1), dtype=tf.float32,
                                  initializer='ones', trainable=False)

  def call(self, indices: tf.Tensor) -> tf.Tensor:
    rows = tf.cast(tf.gather(self.int8_embeddings, indices), tf.float32)
    return rows * tf.gather(self.scales, indices)

  def get_config(self):
    return {**super().get_config(), 'input_dim': self.input_dim, 'output_dim': self.output_dim}

  @classmethod
  def from_embedding(cls, layer: tf.keras.layers.Embedding) -> 'Int8Embedding':
    """An int8 copy of a trained `Embedding` layer (same name, so graphs keep their shape)."""
    quantized = cls(layer.input_dim, layer.output_dim, name=layer.name)
    quantized.build(None)
    quantized.built = True  # so that calling it does not build (and zero) it again
    values, scales = quantize_rows(layer.get_weights()[0])
    quantized.set_weights([values, scales])
    return quantized


def quantize_dense_layers(core: tf.keras.Model, custom_objects: Dict[str, Type]) -> tf.keras.Model:
  """A copy of `core` (weights kept) whose Dense layers train with fake-quantization."""
  def annotate(layer):
    if isinstance(layer, tf.keras.layers.Dense):
      return tfmot.quantization.keras.quantize_annotate_layer(layer)
    return layer

  annotated = tf.keras.models.clone_model(core, clone_function=annotate)
  with tfmot.quantization.keras.quantize_scope(custom_objects):
    return tfmot.quantization.keras.quantize_apply(annotated)


def set_kernel_ranges(model: tf.keras.Model, batch: Dict[str, tf.Tensor]) -> None:
  """Post-training quantization of a model whose Dense layers are quantization-aware
  (`quantize_dense_layers`), without training them: one forward pass over `batch` in training
  mode, in which TFMOT's kernel quantizers record each kernel's range (its last value), so that
  `int8_embeddings` folds the kernels onto int8's grid as after a QAT epoch. No weight changes;
  the activations' moving ranges, which the fold drops, take one step."""
  model(batch, training=True)


def _is_quantized_table(layer: tf.keras.layers.Layer) -> bool:
  return (isinstance(layer, tf.keras.layers.Embedding)
          and layer.output_dim >= MIN_QUANTIZED_WIDTH)


def int8_embeddings(core: tf.keras.Model, custom_objects: Dict[str, Type]) -> tf.keras.Model:
  """The int8 serving copy of `core`: its embedding tables of width ≥ `MIN_QUANTIZED_WIDTH`
  int8 (`Int8Embedding`), and its quantization-aware layers (`quantize_dense_layers`) folded:
  each Dense layer a plain one whose kernel is the fake-quantized kernel it applied (the
  weights that QAT trained on int8's grid), the fake-quantization of activations dropped (TF
  Serving computes in float: it would only add operations to every request)."""
  def clone(layer):
    if _is_quantized_table(layer):
      return Int8Embedding.from_embedding(layer)
    inner = (layer.layer if isinstance(layer, tfmot.quantization.keras.QuantizeWrapperV2)
             else layer)
    copy = inner.__class__.from_config(inner.get_config())
    copied_from[copy.name] = layer
    return copy

  copied_from = {}
  with tfmot.quantization.keras.quantize_scope(custom_objects):
    quantized = tf.keras.models.clone_model(core, clone_function=clone)
  for layer in quantized.layers:
    if layer.name not in copied_from:
      continue
    original = copied_from[layer.name]
    if not isinstance(original, tfmot.quantization.keras.QuantizeWrapperV2):
      layer.set_weights(original.get_weights())
    elif isinstance(original.layer, tf.keras.layers.Dense):
      bias = [original.layer.bias.numpy()] if original.layer.use_bias else []
      layer.set_weights([applied_kernel(original).numpy(), *bias])
  return quantized


def applied_kernel(layer: tf.keras.layers.Layer) -> tf.Tensor:
  """The kernel a Dense layer multiplies its input by: its own, or for a quantization-aware
  Dense (`quantize_dense_layers`) the fake-quantized kernel it applies at inference."""
  if isinstance(layer, tf.keras.layers.Dense):
    return layer.kernel
  if not isinstance(layer, tfmot.quantization.keras.QuantizeWrapperV2):
    raise TypeError(f'{layer.name} is not a (quantization-aware) Dense layer')
  for weight, quantized in compat.quantized_weights(layer):
    if weight.name.split('/')[-1].startswith('kernel'):
      return quantized
  raise ValueError(f'{layer.name} has no quantized kernel')


def saved_model_overhead(catalogue_size: int) -> int:
  """At most what a SavedModel's variables take beyond `exported_bytes`: the checkpoint's fixed
  overhead (32 kB) and the item ids (10 bytes an item)."""
  return 32_000 + 10 * catalogue_size


def exported_bytes(core: tf.keras.Model, catalogue_size: int, int8: bool) -> int:
  """About the variables bytes of `core` exported with an index of `catalogue_size` items:
  float32 weights and index, or, with `int8`, embedding tables (width ≥ 2) and index as int8
  rows with a float32 scale each (`int8_embeddings`, `Int8BruteForce`, which reads the columns
  of the item-to-item component's table from it) and float32 others.
  Less than the SavedModel's bytes by at most `saved_model_overhead`."""
  total = 0
  for layer in core.layers:
    for weight in layer.weights:
      rows = weight.shape[0] if weight.shape.rank else 1
      width = int(np.prod(weight.shape[1:])) if weight.shape.rank else 1
      total += rows * (width + 4) if int8 and _is_quantized_table(layer) else rows * width * 4
  query_width = core.outputs[0].shape[-1]
  if not int8:
    index_row = 4 * query_width
  else:  # The columns of a shared table are read from it, by an int32 row number.
    shared = towers.appended_candidate_table(core)
    index_row = (query_width + 4 if shared is None
                 else query_width - shared.output_dim + 4 + 4)
  return int(total + catalogue_size * (index_row + 4))  # + the index's int32 identifiers


class Int8BruteForce(tfrs.layers.factorized_top_k.TopK):
  """Brute-force top-k over a candidate matrix stored as int8 rows with float scales.

  Scores are those of the dequantized matrix (int8 rows × their scales). Inside a graph (the
  SavedModel's signatures) the matrix is dequantized once, on the first call after loading,
  into a float cache variable that is saved empty: the pushed variables stay int8, and every
  later call scores against the float cache (casting the whole int8 matrix on every call cost
  more than the matrix product). The cache holds the matrix transposed, one candidate per
  column, so that scoring is a plain product `queries · cache`: for one query against 30,000
  candidates of width 256 it took half the time of `BruteForce`'s product with the transposed
  [candidates, width] matrix (`transpose_b`). The same first call also keeps the matrix as it
  is, one candidate per row, in a second float cache (saved empty too), from which
  `queried_rows` reads the rows of the candidates a call returned: gathering columns of the
  transposed cache cost more than the scoring, and dequantizing the gathered int8 rows took
  a dozen operations per request. The two caches hold 2 × 4 bytes per candidate and
  dimension in memory. Called eagerly, it dequantizes each time.
  """

  def __init__(self, k: int = 10, name: Optional[str] = None):
    super().__init__(k=k, name=name)
    self._default_k = k  # the k of `call` when given none
    self._identifiers = None
    self._int8_candidates = None
    self._scales = None
    self._dequantized = None
    self._shared_table = None
    self._shared_rows = None

  def index(self, candidates: tf.Tensor, identifiers: Optional[tf.Tensor] = None,
            shared_table: Optional[tf.keras.layers.Layer] = None,
            shared_rows: Optional[np.ndarray] = None) -> 'Int8BruteForce':
    """Indexes `candidates` [candidates, dim] by `identifiers`. With `shared_table` (a model's
    own embedding table, int8 or float, whose rows `shared_rows` are the candidates' last
    `shared_table.output_dim` columns), the index reads those columns from it instead of
    storing them a second time."""
    candidates = np.asarray(candidates)
    self._shared_table = shared_table
    self._shared_rows = None
    if shared_table is not None:
      width = shared_table.output_dim
      shared = shared_table(tf.constant(shared_rows)).numpy()
      if not np.allclose(candidates[:, -width:], shared, rtol=1e-5, atol=1e-6):
        raise ValueError(f"the candidates' last {width} columns are not the rows of "
                         f'{shared_table.name}')
      candidates = candidates[:, :-width]
      self._shared_rows = self.add_weight(
          name='shared_rows', dtype=tf.int32, shape=(len(shared_rows),), trainable=False,
          initializer='zeros')
      self._shared_rows.assign(np.asarray(shared_rows, np.int32))
    values, scales = quantize_rows(candidates)
    if identifiers is None:
      identifiers = tf.range(values.shape[0])
    self._identifiers = self.add_weight(
        name='identifiers', dtype=identifiers.dtype, shape=identifiers.shape,
        initializer=tf.keras.initializers.Constant(tf.zeros((), identifiers.dtype)),
        trainable=False)
    self._int8_candidates = self.add_weight(
        name='int8_candidates', dtype=tf.int8, shape=values.shape, initializer='zeros',
        trainable=False)
    self._scales = self.add_weight(name='candidate_scales', dtype=tf.float32,
                                   shape=(values.shape[0], 1), initializer='ones',
                                   trainable=False)
    self._identifiers.assign(identifiers)
    self._int8_candidates.assign(values)
    self._scales.assign(scales)
    # Empty until the first call in a graph fills it (`candidate_columns`); saved empty.
    width = values.shape[1] + (0 if shared_table is None else shared_table.output_dim)
    self._dequantized = tf.Variable(tf.zeros([width, 0]), trainable=False,
                                    shape=tf.TensorShape([width, None]),
                                    name='dequantized_candidates')
    self._filled = tf.Variable(False, trainable=False, name='dequantized_candidates_filled')
    self._dequantized_rows = tf.Variable(tf.zeros([0, width]), trainable=False,
                                         shape=tf.TensorShape([None, width]),
                                         name='dequantized_candidate_rows')
    # `query_with_exclusions` is a tf.function: its traces hold the variables they were traced
    # with, so a new index needs a fresh one.
    self.query_with_exclusions = tf.function(self.query_with_exclusions.python_function)
    return self

  def dequantized_candidates(self, rows: Optional[tf.Tensor] = None) -> tf.Tensor:
    """The float candidate matrix [candidates, dim], or its `rows` (a vector of row numbers):
    int8 rows × their scales (and the shared table's rows)."""
    int8_candidates, scales = self._int8_candidates, self._scales
    shared_rows = self._shared_rows
    if rows is not None:
      int8_candidates, scales = tf.gather(int8_candidates, rows), tf.gather(scales, rows)
      shared_rows = None if shared_rows is None else tf.gather(shared_rows, rows)
    own = tf.cast(int8_candidates, tf.float32) * scales
    if self._shared_table is None:
      return own
    return tf.concat([own, self._shared_table(shared_rows)], axis=-1)

  def candidate_columns(self) -> tf.Tensor:
    """The dequantized candidate matrix transposed, [dim, candidates]: in a graph, read from
    the cache (filled by the first call); eagerly, dequantized now (so that nothing fills the
    cache before saving)."""
    if tf.executing_eagerly():
      return tf.transpose(self.dequantized_candidates())

    def fill() -> tf.Tensor:
      rows = self.dequantized_candidates()
      dequantized = tf.transpose(rows)
      with tf.control_dependencies([self._dequantized.assign(dequantized),
                                    self._dequantized_rows.assign(rows)]):
        with tf.control_dependencies([self._filled.assign(True)]):
          return tf.identity(dequantized)

    # A flag, not the cache's shape: Grappler may fold the shape of a variable it last saw empty.
    return tf.cond(self._filled, lambda: self._dequantized.read_value(), fill)

  def candidate_rows(self, rows: tf.Tensor) -> tf.Tensor:
    """The dequantized candidate matrix's `rows` (any shape of row numbers): the values the
    scores are computed from, dequantized from those rows alone (the same products as the
    cache's: gathering the cache's columns cost more than the scoring)."""
    found = self.dequantized_candidates(tf.reshape(rows, [-1]))
    return tf.reshape(found, tf.concat([tf.shape(rows), tf.shape(found)[1:]], axis=0))

  def queried_rows(self, rows: tf.Tensor) -> tf.Tensor:
    """`candidate_rows` of candidates a call of this index returned, in the same graph (e.g. its
    results' row numbers): read from the row cache that call filled, so that they cost one
    gather. Eagerly (where no cache is filled), `candidate_rows`."""
    if tf.executing_eagerly():
      return self.candidate_rows(rows)
    return tf.gather(self._dequantized_rows, rows)

  def clear_cache(self) -> None:
    """Empties the float caches (what `export` saves)."""
    self._filled.assign(False)
    self._dequantized.assign(tf.zeros([self._dequantized.shape[0], 0]))
    self._dequantized_rows.assign(tf.zeros([0, self._dequantized_rows.shape[1]]))

  def call(self, queries: tf.Tensor, k: Optional[int] = None) -> Tuple[tf.Tensor, tf.Tensor]:
    if self._int8_candidates is None:
      raise ValueError('The `index` method must be called first to create the retrieval index.')
    scores = tf.matmul(queries, self.candidate_columns())
    values, indices = tf.math.top_k(scores, k=self._default_k if k is None else k)
    return values, tf.gather(self._identifiers, indices)

  def is_exact(self) -> bool:
    return True
