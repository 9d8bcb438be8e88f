"""SavedModel export: every model (teacher, student) keeps the serving contract of
`contract.signatures` (its signatures, their inputs and outputs, and `rank_catalogue`).

Top-k runs over the whole catalogue (every item known at export time, cold items embedded from
their content) with a TFRS BruteForce index (int8 for a quantized model) and excludes the items
of the (latest `history_length`) history, matched by raw id. Ids unknown to the vocabularies
fall into OOV buckets. The recommendation signatures return a fixed top-k (no `k`
input: every input has a batch dimension, so TF Serving can batch requests); clients keep the
first k they want. Only the inference graph is saved (no optimizer state). `score` returns the
predicted rating of a model that predicts ratings, and otherwise (implicit feedback: no rating
head) the retrieval score of the example's user and item, query · candidate, the score
`recommend` ranks by (`contract.signatures`). `recommend_with_reasons` answers as `recommend`
and adds, beside each result, the history item that raised its score most (`reason_item_ids`,
computed by `models.reasons` from the exported weights: nothing is added to the variables); the
other signatures do not compute them. Beside the warmup requests (`recommend`,
`serving_default` and `recommend_with_reasons`), `assets.extra/` holds the catalogue file
(`contract.catalogue`): the id, title, year and genres of every item the index ranks, so that
clients show answers by title.

Fresh items (`fresh`: those with at most `ExportHParams.fresh_max_interactions` train
interactions, cold items included) can be given a quota of `fresh_slots` of the top-k
(`with_fresh_quota`): the fresh items a query ranks there stay; when fewer than the quota, the
best other fresh ones (by the same scores: for cold items, their content path's) replace the
lowest-ranked others, and the answer stays ordered by score. The recommendation signatures and
`rank_catalogue` apply it alike.
"""
from typing import Dict, Iterator, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

import compat
from contract import catalogue as catalogue_lib
from contract import features
from contract import signatures
from contract import warmup
from models import inputs
from models import preprocessing
from models import quantization
from models import reasons
from models import towers

# Input specs of the signatures (`contract.signatures`).
_EXAMPLES_SPEC = tf.TensorSpec([None], tf.string, name=signatures.EXAMPLES)
_QUERY_SPECS = [tf.TensorSpec([None], tf.string, name=signatures.USER_ID),
                tf.TensorSpec([None, None], tf.string, name=signatures.HISTORY)]
_SIDE_FEATURE_SPECS = [
    tf.TensorSpec([None], tf.int64 if name in features.INT_FEATURES else tf.string, name=name)
    for name in signatures.SIDE_FEATURES]
_DEPTH_SPEC = tf.TensorSpec([], tf.int32, name=signatures.DEPTH)


def _serving_raw_spec(tf_transform_output) -> Dict[str, tf.io.FixedLenFeature]:
  """The raw feature spec without the label, every feature optional with its default."""
  spec = {}
  for name, feature in tf_transform_output.raw_feature_spec().items():
    if name == features.LABEL:
      continue
    shape = list(feature.shape) if isinstance(feature, tf.io.FixedLenFeature) else [1]
    spec[name] = tf.io.FixedLenFeature(shape, feature.dtype, features.default_value(name))
  return spec


class ServingModule(tf.Module):
  """Transform graph + towers + BruteForce index behind the serving signatures."""

  def __init__(self, model, tf_transform_output, catalogue: Dict[str, np.ndarray], top_k: int,
               history_length: int, int8_index: bool = False,
               fresh: Optional[np.ndarray] = None, fresh_slots: int = 0):
    super().__init__()
    num_items = len(catalogue[features.ITEM_ID])
    self.top_k = min(top_k, num_items - history_length)
    if self.top_k <= 0:
      raise ValueError(f'catalogue of {num_items} items is too small to return top-k results '
                       f'after excluding {history_length} history items')
    self.history_length = history_length
    self.num_items = num_items
    # The inference graph only: tracking the compiled model would also save its optimizer.
    self.core = model.core
    self.query_tower = model.query_tower
    self.candidate_tower = model.candidate_tower
    self.predicts_ratings = getattr(model, 'predicts_ratings', True)
    self.reasons = reasons.HistoryReasons(model.core)
    self.tft_layer = tf_transform_output.transform_features_layer()
    self.raw_spec = _serving_raw_spec(tf_transform_output)
    # Optional raw features (the item text), which the Transform graph takes sparse: requests
    # give them dense, '' where absent.
    self.sparse_raw = sorted(name for name, feature in
                             tf_transform_output.raw_feature_spec().items()
                             if isinstance(feature, tf.io.VarLenFeature))
    candidates = model.embed_candidates(towers.item_features(catalogue))
    index_class = (quantization.Int8BruteForce if int8_index
                   else tfrs.layers.factorized_top_k.BruteForce)
    self.index = index_class(k=self.top_k + history_length)
    # The index identifies candidates by their catalogue row + 1 (0 matches none), and a table
    # maps the history's raw ids to those numbers, so excluding history items compares integers
    # (cold items share the OOV tower index: only their raw ids tell them apart); the returned
    # numbers become raw item ids in one gather at the end.
    item_ids = inputs.id_strings(catalogue[features.ITEM_ID]).tolist()
    if len(set(item_ids)) != num_items:
      raise ValueError('catalogue item ids must be distinct')
    # An int8 index reads the columns that the candidate tower copies from one of its tables
    # (the item-to-item component's) from that table, rather than storing them twice.
    shared = towers.appended_candidate_table(model.core) if int8_index else None
    self.index.index(candidates, identifiers=tf.range(1, num_items + 1),
                     **({} if shared is None else dict(
                         shared_table=shared, shared_rows=catalogue[features.ITEM_INDEX])))
    self.ids_by_index = tf.Variable([''] + item_ids, dtype=tf.string, trainable=False,
                                    name='ids_by_index')
    self.index_by_id = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(item_ids, tf.range(1, num_items + 1)), 0)
    # TFRS indexes must be called once before saving.
    self.index(tf.zeros([1, candidates.shape[1]]))
    # The quota's own index: the fresh items' rows (the main index holds them too).
    fresh = np.zeros(num_items, bool) if fresh is None else np.asarray(fresh, bool)
    self.num_fresh = int(fresh.sum())
    self.fresh_slots = min(fresh_slots, self.num_fresh, self.top_k)
    self.fresh_index = None
    if self.fresh_slots:
      self.fresh_index = index_class(k=self.fresh_slots)
      self.fresh_index.index(tf.gather(candidates, np.flatnonzero(fresh)),
                             identifiers=tf.constant(np.flatnonzero(fresh) + 1, tf.int32),
                             **({} if shared is None else dict(
                                 shared_table=shared,
                                 shared_rows=catalogue[features.ITEM_INDEX][fresh])))
      self.fresh_index(tf.zeros([1, candidates.shape[1]]))
    self.is_fresh = tf.constant(np.concatenate([[False], fresh]))  # by index number
    logging.debug('Index over %d items, top-%d, excluding up to %d history items',
                 num_items, self.top_k, history_length)

  def _transform(self, raw: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    raw = {**raw, **{name: tf.sparse.from_dense(raw[name]) for name in self.sparse_raw}}
    return inputs.flatten_scalars(self.tft_layer(raw))

  def _raw_defaults(self, batch_size: tf.Tensor) -> Dict[str, tf.Tensor]:
    return {name: tf.fill([batch_size] + spec.shape, tf.constant(spec.default_value, spec.dtype))
            for name, spec in self.raw_spec.items()}

  def _embed_queries(self, transformed: Dict[str, tf.Tensor]) -> tf.Tensor:
    return self.query_tower(towers.select(transformed, self.query_tower))

  def _latest_history(self, raw: Dict[str, tf.Tensor]) -> tf.RaggedTensor:
    """The raw ids of the latest `history_length` history items: the positions of the
    transformed history (`features.HISTORY_INDICES`), which pads them on the right."""
    history = preprocessing.tokens(tf.reshape(raw[features.HISTORY], [-1]),
                                   features.HISTORY_SEPARATOR)
    return history[:, -self.history_length:]

  def _exclusions(self, latest: tf.RaggedTensor) -> tf.Tensor:
    """[batch, history_length] index numbers of the `latest` history items (0 pads; ids
    outside the catalogue get 0 too: neither matches a candidate)."""
    numbers = tf.ragged.map_flat_values(self.index_by_id.lookup, latest)
    return numbers.to_tensor(default_value=0, shape=[None, self.history_length])

  def _index_rows(self, item_indices: tf.Tensor, queried: bool = False) -> tf.Tensor:
    """The index's candidate rows of the items it returned as `item_indices` (catalogue row
    + 1): the values their scores were computed from. With `queried`, they are results of a
    query of the index in this graph, which an int8 index reads from the float cache that
    query filled."""
    rows = item_indices - 1
    if isinstance(self.index, quantization.Int8BruteForce):
      return self.index.queried_rows(rows) if queried else self.index.candidate_rows(rows)
    return tf.gather(compat.brute_force_candidates(self.index), rows)

  def _top(self, queries: tf.Tensor, exclusions: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """The top-k of the index without `exclusions` ([batch, history_length] index numbers),
    with the fresh items' quota."""
    scores, item_indices = self.index.query_with_exclusions(queries, exclusions, k=self.top_k)
    if self.fresh_index is None:
      return scores, item_indices
    return with_fresh_quota(
        scores, item_indices,
        *_unseen_first(self.fresh_index, queries, exclusions, self.fresh_slots, self.num_fresh),
        self.is_fresh, self.fresh_slots)

  def _recommend(self, raw: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    scores, item_indices = self._top(self._embed_queries(self._transform(raw)),
                                     self._exclusions(self._latest_history(raw)))
    return self._results(scores, item_indices)

  def _recommend_with_reasons(self, raw: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """`_recommend`'s results and, per result, the history item that led to it
    (`signatures.REASON_ITEM_IDS`; '' throughout for a model without per-history-item terms)."""
    if not self.reasons.available:
      results = self._recommend(raw)
      results[signatures.REASON_ITEM_IDS] = tf.fill(tf.shape(results[signatures.ITEM_IDS]), '')
      return results
    transformed = self._transform(raw)
    latest = self._latest_history(raw)
    # The query tower's pass also gives the rows of the history that the reasons weigh.
    queries, rows = self.reasons.embed_queries(transformed)
    scores, item_indices = self._top(queries, self._exclusions(latest))
    results = self._results(scores, item_indices)
    # The ids of the batch's longest history's positions (the later ones are padding).
    results[signatures.REASON_ITEM_IDS] = self.reasons(
        transformed[features.HISTORY_INDICES], latest.to_tensor(default_value=''),
        self._index_rows(item_indices, queried=True), rows)
    return results

  def _results(self, scores: tf.Tensor, item_indices: tf.Tensor) -> Dict[str, tf.Tensor]:
    return {signatures.ITEM_IDS: tf.gather(self.ids_by_index, item_indices),
            signatures.SCORES: scores}

  @tf.function(input_signature=[_EXAMPLES_SPEC])
  def serve_examples(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    return self._recommend(tf.io.parse_example(examples, self.raw_spec))

  def _raw_query(self, user_id: tf.Tensor, history: tf.Tensor,
                 *side_features: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Raw features of queries given as user ids and ''-padded history id matrices, and
    optionally age, gender, occupation and zip code."""
    raw = self._raw_defaults(tf.shape(user_id)[0])
    # Padding '' leaves runs of separators, which the Transform's split drops as empty tokens.
    joined = tf.strings.reduce_join(history, axis=1, separator=features.HISTORY_SEPARATOR)
    raw[features.USER_ID] = tf.reshape(user_id, tf.shape(raw[features.USER_ID]))
    raw[features.HISTORY] = tf.reshape(joined, tf.shape(raw[features.HISTORY]))
    for name, value in zip(signatures.SIDE_FEATURES, side_features):
      raw[name] = tf.reshape(value, tf.shape(raw[name]))
    return raw

  @tf.function(input_signature=_QUERY_SPECS)
  def recommend(self, user_id: tf.Tensor, history: tf.Tensor) -> Dict[str, tf.Tensor]:
    return self._recommend(self._raw_query(user_id, history))

  @tf.function(input_signature=[*_QUERY_SPECS, *_SIDE_FEATURE_SPECS])
  def recommend_with_features(self, user_id: tf.Tensor, history: tf.Tensor, age: tf.Tensor,
                              gender: tf.Tensor, occupation: tf.Tensor,
                              zip_code: tf.Tensor) -> Dict[str, tf.Tensor]:
    return self._recommend(
        self._raw_query(user_id, history, age, gender, occupation, zip_code))

  @tf.function(input_signature=_QUERY_SPECS)
  def recommend_with_reasons(self, user_id: tf.Tensor,
                             history: tf.Tensor) -> Dict[str, tf.Tensor]:
    return self._recommend_with_reasons(self._raw_query(user_id, history))

  @tf.function(input_signature=[*_QUERY_SPECS, *_SIDE_FEATURE_SPECS, _DEPTH_SPEC])
  def rank_catalogue(self, user_id: tf.Tensor, history: tf.Tensor, age: tf.Tensor,
                     gender: tf.Tensor, occupation: tf.Tensor, zip_code: tf.Tensor,
                     depth: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The best `depth` catalogue items (all of them when `depth` is at least their number),
    best first, the whole `history` (the items the protocol excludes as seen) after all the
    others, with the fresh items' quota within the first `top_k`: for offline evaluation (not
    a serving signature). Side features as in `recommend_with_features` (0 / 'UNKNOWN' when
    not known)."""
    raw = self._raw_query(user_id, history, age, gender, occupation, zip_code)
    queries = self._embed_queries(self._transform(raw))
    seen = tf.ragged.map_flat_values(
        self.index_by_id.lookup,
        preprocessing.tokens(tf.reshape(raw[features.HISTORY], [-1]), features.HISTORY_SEPARATOR))
    seen = seen.to_tensor(default_value=0)
    scores, item_indices = _unseen_first(self.index, queries, seen, depth, self.num_items)
    if self.fresh_index is not None:
      top_scores, top_indices = with_fresh_quota(
          scores[:, :self.top_k], item_indices[:, :self.top_k],
          *_unseen_first(self.fresh_index, queries, seen, self.fresh_slots, self.num_fresh),
          self.is_fresh, self.fresh_slots)
      scores = tf.concat([top_scores, scores[:, self.top_k:]], axis=1)
      item_indices = tf.concat([top_indices, item_indices[:, self.top_k:]], axis=1)
    return self._results(scores, item_indices)

  @tf.function(input_signature=[_EXAMPLES_SPEC])
  def score(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    raw = tf.io.parse_example(examples, self.raw_spec)
    transformed = self._transform(raw)
    if self.predicts_ratings:
      return {signatures.RATING: self.core(towers.select(transformed, self.core))[towers.RATING]}
    # A catalogue item's row of the index (a cold item's from the content path, an int8
    # model's dequantized): the score `recommend` ranks by; other items' from the tower.
    numbers = self.index_by_id.lookup(tf.reshape(raw[features.ITEM_ID], [-1]))
    candidates = tf.where((numbers > 0)[:, None], self._index_rows(tf.maximum(numbers, 1)),
                          self.candidate_tower(towers.select(transformed, self.candidate_tower)))
    return {signatures.RATING: tf.reduce_sum(self._embed_queries(transformed) * candidates,
                                             axis=1)}


def _unseen_first(index, queries: tf.Tensor, seen: tf.Tensor, depth: tf.Tensor,
                  size: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """The best min(`depth`, `size`) of `index`'s `size` candidates for `queries`, those in
  `seen` ([batch, n] index numbers, 0 for none) last with score -inf."""
  k = tf.minimum(depth, size)  # first: `depth` may be the largest int32 ("every item")
  scores, item_indices = index(queries, k=tf.minimum(k + tf.shape(seen)[1], size))
  hit = tf.reduce_any(item_indices[:, :, None] == tf.cast(seen, item_indices.dtype)[:, None, :],
                      axis=2)
  scores, order = tf.math.top_k(tf.where(hit, -np.inf, scores), k=k)
  return scores, tf.gather(item_indices, order, batch_dims=1)


def with_fresh_quota(scores: tf.Tensor, item_indices: tf.Tensor, fresh_scores: tf.Tensor,
                     fresh_indices: tf.Tensor, is_fresh: tf.Tensor,
                     slots: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """A top-k ([batch, k] `scores` and index numbers, best first) with at least `slots` fresh
  items where the fresh list holds them: `fresh_scores`/`fresh_indices` [batch, slots] are the
  best fresh items of the same queries (score -inf or number 0: none), `is_fresh` says by index
  number. The top-k's own fresh items stay; the best fresh items not in it replace its lowest
  other items; the result is ordered by score."""
  k = tf.shape(item_indices)[1]
  fresh_in_top = tf.gather(is_fresh, item_indices)
  already = tf.reduce_any(fresh_indices[:, :, None] == item_indices[:, None, :], axis=2)
  addable = ~already & (fresh_indices > 0) & (fresh_scores > -np.inf)
  have = tf.reduce_sum(tf.cast(fresh_in_top, tf.int32), axis=1, keepdims=True)
  wanted = tf.minimum(slots, have + tf.reduce_sum(tf.cast(addable, tf.int32), axis=1,
                                                  keepdims=True))
  added = tf.maximum(wanted - have, 0)  # [batch, 1] fresh items to add
  # Keep the top-k's fresh items and its best k - have - added others.
  other_rank = tf.cumsum(tf.cast(~fresh_in_top, tf.int32), axis=1) - 1
  keep = fresh_in_top | (other_rank < k - have - added)
  add = addable & (tf.cumsum(tf.cast(addable, tf.int32), axis=1) <= added)
  merged_scores = tf.concat([tf.where(keep, scores, -np.inf),
                             tf.where(add, fresh_scores, -np.inf)], axis=1)
  merged_indices = tf.concat([item_indices, tf.cast(fresh_indices, item_indices.dtype)], axis=1)
  top_scores, order = tf.math.top_k(merged_scores, k=k)
  return top_scores, tf.gather(merged_indices, order, batch_dims=1)


def catalogue_records(catalogue: Dict[str, np.ndarray]) -> Iterator[catalogue_lib.Record]:
  """The catalogue file's record of every item of `catalogue`, in index order, with the item
  metadata the catalogue carries (`inputs.ITEM_METADATA`; ids alone when it carries none)."""
  metadata = [name for name in inputs.ITEM_METADATA if name in catalogue]
  for row, item_id in enumerate(catalogue[features.ITEM_ID]):
    yield catalogue_lib.record(item_id, **{name: catalogue[name][row] for name in metadata})


def export_saved_model(model, tf_transform_output, catalogue: Dict[str, np.ndarray], top_k: int,
                       history_length: int, export_dir: str, int8_index: bool = False,
                       fresh: Optional[np.ndarray] = None, fresh_slots: int = 0) -> None:
  """Writes the SavedModel of a `TwoTowerModel` with the serving signatures to `export_dir`,
  with warmup requests and the catalogue file in its `assets.extra/`; `fresh` (bool per
  catalogue row) items get a quota of `fresh_slots` (module docstring)."""
  module = ServingModule(model, tf_transform_output, catalogue, top_k, history_length,
                         int8_index, fresh, fresh_slots)
  # The tf.functions themselves, not concrete functions traced here: `tf.saved_model.save`
  # traces them again in its own context, which would save every signature's graph twice.
  functions = {
      signatures.SERVING_DEFAULT: module.serve_examples,
      signatures.RECOMMEND: module.recommend,
      signatures.RECOMMEND_WITH_FEATURES: module.recommend_with_features,
      signatures.RECOMMEND_WITH_REASONS: module.recommend_with_reasons,
      signatures.SCORE: module.score,
  }
  if isinstance(module.index, quantization.Int8BruteForce):
    module.index.clear_cache()  # its float cache is filled after loading, not saved
  # Only the signatures are served: Keras's per-layer call traces would slow down writing and
  # loading the SavedModel, in the Trainer, the evaluators and the server.
  with compat.keras_saves_no_traces():
    tf.saved_model.save(module, export_dir, signatures=functions)
  # Warmup requests TF Serving replays on load: known users and an unknown one, histories of
  # 0, 1 and `history_length` catalogue items.
  users = inputs.id_strings(
      tf_transform_output.vocabulary_by_name(features.USER_VOCAB)[:2]).tolist() + ['warmup-user']
  items = [str(item) for item in catalogue[features.ITEM_ID][:history_length]]
  warmup.write_warmup_requests(export_dir, users, [[], items[:1], items][:len(users)],
                               with_reasons=True)
  catalogue_lib.write_catalogue(export_dir, catalogue_records(catalogue))
  logging.debug('Exported SavedModel with signatures %s, warmup requests and the catalogue file '
                'to %s', sorted(functions), export_dir)
