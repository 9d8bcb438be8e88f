"""Why an item: which history item contributed most to each recommended item's score.

A model scores candidate j for a query as query · candidate_j. Where part of the query is a
weighted sum of one vector per history item, each history item i adds its own term to every
score, and those terms are what this module computes, per result and history position:

- The item-to-item component (`towers.with_item_item`): its query part is
  m1 · Σ_i v_i H[h_i] (v: the frozen recency weights of `item_item_pooling`, m1: the
  `HybridMix` weight) and candidate j's part is its row C_j of the candidate table, so
  item i adds m1 · v_i · (H[h_i] · C_j), exactly.
- The towers' pooled history, when it is linear: the pooling (`history_pooling`) is a weighted
  mean Σ_i w_i E[h_i] of the history items' rows of the item table, and the Concatenate after it
  feeds the towers' query output Dense layer directly, with a linear activation (the student:
  no hidden layer, no attention). The towers' query is then K_u · user + K_h · Σ_i w_i E[h_i]
  + (side features) + b, so item i adds m0 · w_i · (E[h_i] K_h) · t_j, t_j the towers' part of
  candidate j and m0 the towers' mix weight (1 without the component). Exact for a float
  model, the exported int8 student included (its Dense layers are folded into plain ones,
  `quantization.int8_embeddings`). In a quantization-aware one (during QAT), K_h is the
  fake-quantized kernel the layer applies, and the int8 rounding of the layer's input and output
  is left out: off from its score by at most about one rounding step of the query per term.

A towers' history encoder that is not linear (the teacher's attention, or an MLP after the
pooling) has no such decomposition: there only the item-to-item component's terms are used,
and a model with neither gives no reasons.

The candidate rows are the top-K index's own (dequantized for an int8 index), the values the
served scores come from. Terms are per history position: an item that occurs twice in a history
counts as two positions.
"""
from typing import List, Optional

import tensorflow as tf

import compat
from contract import features
from models import quantization
from models import towers


def _inbound_layers(layer: tf.keras.layers.Layer, node: int = 0) -> List[tf.keras.layers.Layer]:
  layers = layer.inbound_nodes[node].inbound_layers
  return list(layers) if isinstance(layers, (list, tuple)) else [layers]


def _argument(layer: tf.keras.layers.Layer, position: int, name: str, node: int = 0):
  """What a functional model passes as `layer.call`'s argument `name` (at `position`) in the
  call of its node `node`: positionally, or by name (as a cloned model passes all but the
  first)."""
  call = layer.inbound_nodes[node]
  return call.call_args[position] if len(call.call_args) > position else call.call_kwargs[name]


def _inner(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer:
  """The layer a quantization wrapper wraps, or `layer` itself."""
  return getattr(layer, 'layer', layer)


def _is_linear(activation) -> bool:
  # A quantization-aware layer's activation wraps the layer's own.
  activation = getattr(activation, 'activation', activation)
  return tf.keras.activations.serialize(activation) == 'linear'


class _LinearHistory:
  """The towers' linear pooled-history path of a core (module docstring): the item table, the
  pooling, the query output layer, and the rows of its kernel that the pooled history meets."""

  def __init__(self, embedding, pooling, output, start: int, stop: int):
    self.embedding = embedding
    self.pooling = pooling
    self.output = output
    self.start = start
    self.stop = stop
    # The rows of the kernel the layer applies ([dim, width]), taken once: an exported model's
    # weights do not change, and a quantization-aware layer would fake-quantize it every call.
    self.kernel = tf.constant(quantization.applied_kernel(output)[start:stop])

  @property
  def width(self) -> int:
    return _inner(self.output).units

  @classmethod
  def find(cls, core: tf.keras.Model, towers_output) -> Optional['_LinearHistory']:
    """The path ending at the layer that outputs the towers' query (`towers_output`, a symbolic
    tensor of `core`), or None when there is no linear one."""
    output, _ = compat.keras_producer(towers_output)
    if not (isinstance(_inner(output), tf.keras.layers.Dense)
            and _is_linear(_inner(output).activation)):
      return None
    features_layer = _inbound_layers(output)
    if len(features_layer) != 1 or not isinstance(_inner(features_layer[0]),
                                                  tf.keras.layers.Concatenate):
      return None
    concatenate = features_layer[0]
    start = 0
    path = None
    for tensor in _argument(concatenate, 0, 'inputs'):
      producer, node = compat.keras_producer(tensor)
      width = tensor.shape[-1]
      if isinstance(producer, towers.RecencyWeightedPooling):
        if path is not None:
          return None
        embedded = _argument(producer, 0, 'embeddings', node)
        indices = _argument(producer, 1, 'indices', node)
        embedding, embedding_node = compat.keras_producer(embedded)
        history, _ = compat.keras_producer(indices)
        sources = _inbound_layers(embedding, embedding_node)
        if (history.name != features.HISTORY_INDICES or len(sources) != 1
            or sources[0] is not history):
          return None  # e.g. attention between the table and the pooling
        path = cls(embedding, producer, output, start, start + width)
      start += width
    return path

  def vectors(self, history: tf.Tensor, mix: tf.Tensor) -> tf.Tensor:
    """[batch, length, width]: per history position, the vector whose product with a
    candidate's towers' part is the position's term, weighted by the towers' `mix`:
    w_i · E[h_i] K_h."""
    weights = self.pooling.position_weights(history) * mix
    return tf.linalg.matmul(self.embedding(history) * weights[..., None], self.kernel)


class HistoryReasons:
  """Per result, the history item with the largest term in its score (module docstring) for a
  model core (`towers.core_model`): what `models.export` returns as `reason_item_ids`."""

  def __init__(self, core: tf.keras.Model):
    names = {layer.name for layer in core.layers}
    self.mix = core.get_layer('hybrid_mix') if 'hybrid_mix' in names else None
    towers_query = core.outputs[towers.QUERY]
    if self.mix is not None:
      self.core = core
      self.item_item_pooling = core.get_layer('item_item_pooling')
      self.rank = core.get_layer('item_item_candidate').output_dim
      towers_query = _argument(self.mix, 0, 'towers_query')
    self.towers = _LinearHistory.find(core, towers_query)

  @property
  def available(self) -> bool:
    """Whether any part of the model's scores is a sum over the history items."""
    return self.mix is not None or self.towers is not None

  def terms(self, history: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
    """[batch, K, length]: the term of each history position (`history`: [batch, length]
    transformed item indices, 0 pads) in the score of each of `candidates` ([batch, K, dim]
    rows of the index): one product of the candidates' rows with a vector per position, the
    towers' part and the component's side by side, as in the rows."""
    vectors = []
    if self.towers is not None:
      vectors.append(self.towers.vectors(history, 1.0 if self.mix is None else self.mix.mix[0]))
    if self.mix is not None:
      weights = self.item_item_pooling.position_weights(history) * self.mix.mix[1]
      vectors.append(towers.item_item_history_rows(self.core, history) * weights[..., None])
    if self.towers is None:  # only the component's columns (the last) have terms
      candidates = candidates[..., -self.rank:]
    return tf.linalg.matmul(candidates, tf.concat(vectors, axis=-1) if len(vectors) > 1
                            else vectors[0], transpose_b=True)

  def __call__(self, history: tf.Tensor, history_ids: tf.Tensor,
               candidates: tf.Tensor) -> tf.Tensor:
    """[batch, K] strings: for each of `candidates`, the id (`history_ids`: [batch, length], the
    raw ids of `history`'s positions) of the history item with the largest term in its score;
    '' where none is positive (no history, or none raises the score)."""
    if not self.available:
      return tf.fill(tf.shape(candidates)[:2], '')
    # Histories are right-padded: positions beyond the batch's longest history add nothing
    # (one position is kept, so that a batch without history still has one to reduce over).
    length = tf.maximum(tf.reduce_max(tf.math.count_nonzero(
        tf.not_equal(history, features.PADDING_INDEX), axis=1, dtype=tf.int32)), 1)
    history, history_ids = history[:, :length], history_ids[:, :length]
    # Padding positions weigh 0, so their terms are 0: never the largest positive one.
    terms = self.terms(history, candidates)
    best = tf.argmax(terms, axis=2, output_type=tf.int32)
    return tf.where(tf.reduce_max(terms, axis=2) > 0.0,
                    tf.gather(history_ids, best, batch_dims=1), '')
