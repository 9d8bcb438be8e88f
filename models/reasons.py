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
from typing import Dict, List, Optional, Tuple

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

  def __init__(self, embedding, pooling, embedded, output, start: int, stop: int):
    self.embedding = embedding
    self.pooling = pooling
    self.embedded = embedded  # the core's (symbolic) embedded history, which the pooling pools
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
        path = cls(embedding, producer, embedded, output, start, start + width)
      start += width
    return path


class HistoryReasons:
  """Per result, the history item with the largest term in its score (module docstring) for a
  model core (`towers.core_model`): what `models.export` returns as `reason_item_ids`.

  Each part with terms (the towers' linear pooled history, the item-to-item component) has
  per history position a row (the towers': E[h_i] K_h; the component's: H[h_i]) and a weight
  (its pooling's recency weight times its mix weight); a position's vector is its rows side by
  side, each times its weight, and its terms are the products of those vectors with the
  candidates' rows, in one batched product. `embed_queries` computes the rows (E[h_i] and
  H[h_i], what the poolings pool) in the query tower's own pass; without them they are looked
  up again. What does not depend on the request (the recency weights' exponentials and sums,
  the mix weights, K_h) is read once, when this is built: an exported model's weights do not
  change. Every operation counts: the reasons of a request are about thirty small operations
  beside the few hundred of its recommendations (docs/results.md, What reasons cost).
  """

  def __init__(self, core: tf.keras.Model):
    names = {layer.name for layer in core.layers}
    self.core = core
    self.mix = core.get_layer('hybrid_mix') if 'hybrid_mix' in names else None
    towers_query = core.outputs[towers.QUERY]
    mix = [1.0, 0.0]
    if self.mix is not None:
      self.item_item_pooling = core.get_layer('item_item_pooling')
      self.rank = core.get_layer('item_item_candidate').output_dim
      towers_query = _argument(self.mix, 0, 'towers_query')
      mix = self.mix.mix.numpy().tolist()
    self.towers = _LinearHistory.find(core, towers_query)
    # The parts with terms, in the order of their columns in the candidates' rows.
    poolings, rows, mixes = [], [], []
    if self.towers is not None:
      poolings.append(self.towers.pooling)
      rows.append(self.towers.embedded)
      mixes.append(mix[0])
    if self.mix is not None:
      poolings.append(self.item_item_pooling)
      rows.append(_argument(self.item_item_pooling, 0, 'embeddings'))
      mixes.append(mix[1])
    self.query_tower = towers.query_tower(core, *rows) if poolings else None
    if poolings:
      # Per recency, each part's exp(recency logit) ([length, parts]); per number of history
      # items, the divisor of each part's weights ([length + 1, parts]): the sum of those
      # items' exp(logit) for a normalized pooling (1 for the others), over its mix weight.
      exp_logits = tf.exp(tf.stack([pooling.recency_logits for pooling in poolings], axis=1))
      sums = tf.concat([tf.zeros([1, len(poolings)]), tf.cumsum(exp_logits, axis=0)], axis=0)
      normalized = tf.constant([pooling.normalize for pooling in poolings])
      self.exp_logits = tf.constant(exp_logits.numpy())
      self.divisors = tf.constant(
          (tf.where(normalized, tf.maximum(sums, 1e-9), 1.0) / mixes).numpy())

  @property
  def available(self) -> bool:
    """Whether any part of the model's scores is a sum over the history items."""
    return self.query_tower is not None

  def embed_queries(self, transformed: Dict[str, tf.Tensor]
                    ) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    """The queries of `transformed` features, as the core's query tower computes them, and
    the rows of each part per position of their history ([batch, length, width] each)."""
    query, *rows = self.query_tower(towers.select(transformed, self.query_tower))
    return query, rows

  def _rows(self, history: tf.Tensor) -> List[tf.Tensor]:
    """The rows of each part per position of `history`, looked up."""
    rows = []
    if self.towers is not None:
      rows.append(self.towers.embedding(history))
    if self.mix is not None:
      rows.append(towers.item_item_history_rows(self.core, history))
    return rows

  def _weights(self, history: tf.Tensor) -> tf.Tensor:
    """[batch, length, parts]: each part's weight of each position of `history` (its
    pooling's `position_weights` times its mix weight). On the history the query tower was
    given, `positions` is the same computation as in its poolings, which Grappler does once."""
    present, recency, count = towers.RecencyWeightedPooling.positions(history)
    return tf.gather(self.exp_logits, recency) * present[..., None] / tf.gather(
        self.divisors, count)

  def _vectors(self, rows: List[tf.Tensor], weights: tf.Tensor) -> tf.Tensor:
    """`vectors` from each part's rows ([batch, length, width]) and weights ([batch, length,
    parts]) of the same positions."""
    if self.towers is not None:
      rows = [_product(rows[0], self.towers.kernel), *rows[1:]]
    if len(rows) == 1:
      return rows[0] * weights
    return tf.concat([part * weights[..., i:i + 1] for i, part in enumerate(rows)], axis=-1)

  def vectors(self, history: tf.Tensor) -> tf.Tensor:
    """[batch, length, dim]: per position of `history` ([batch, length] transformed item
    indices, 0 pads), the vector whose product with a candidate's row of the index is the
    position's term in its score (the component's columns alone for a model whose towers have
    no terms)."""
    return self._vectors(self._rows(history), self._weights(history))

  def _terms(self, candidates: tf.Tensor, vectors: tf.Tensor) -> tf.Tensor:
    """[batch, K, length]: the products of `candidates`' rows with `vectors`."""
    if self.towers is None:  # only the component's columns (the last) have terms
      candidates = candidates[..., -self.rank:]
    return _product(candidates, vectors, adjoint_b=True)

  def terms(self, history: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
    """[batch, K, length]: the term of each history position (`history`: [batch, length]
    transformed item indices, 0 pads) in the score of each of `candidates` ([batch, K, dim]
    rows of the index): one product of the candidates' rows with a vector per position."""
    return self._terms(candidates, self.vectors(history))

  def __call__(self, history: tf.Tensor, history_ids: tf.Tensor, candidates: tf.Tensor,
               rows: Optional[List[tf.Tensor]] = None) -> tf.Tensor:
    """[batch, K] strings: for each of `candidates` ([batch, K, dim] rows of the index), the id
    of the history item with the largest term in its score; '' where none is positive (no
    history, or none raises the score). `history_ids` ([batch, length]) are the raw ids of the
    first `length` positions of `history` ([batch, at least length] transformed item indices, 0
    pads): the batch's longest history is enough, as the positions after it are padding.
    `rows`: `embed_queries`' rows of `history` (looked up when not given)."""
    if not self.available:
      return tf.fill(tf.shape(candidates)[:2], '')
    if rows is None:
      rows = self._rows(history)
    # Only the positions with ids: the later ones are padding, whose terms are 0.
    vectors = self._vectors(rows, self._weights(history))[:, :tf.shape(history_ids)[1]]
    # A first position whose term is 0 and whose id is '': the largest where no history
    # item's term is positive (argmax takes the first of equal largest terms; padding
    # positions, whose terms are 0 too, have the id '' as well).
    terms = tf.pad(self._terms(candidates, vectors), [[0, 0], [0, 0], [1, 0]])
    best = tf.argmax(terms, axis=2, output_type=tf.int32)
    return tf.gather(tf.pad(history_ids, [[0, 0], [1, 0]]), best, batch_dims=1)


def _product(x: tf.Tensor, y: tf.Tensor, adjoint_b: bool = False) -> tf.Tensor:
  """x · y (or x · yᵀ) over the last two axes, batched over the first: `BatchMatMulV3` (a stock
  op), which TensorFlow's oneDNN graph rewrite leaves to its own kernel; the oneDNN batched
  product that `tf.linalg.matmul` becomes cost several times more at these small sizes (a
  hundred results, tens of history items)."""
  return tf.raw_ops.BatchMatMulV3(x=x, y=y, Tout=tf.float32, adj_y=adjoint_b)
