"""The content path: candidate embeddings of cold items (without train interactions) learnt
from the content of the warm ones, by distillation from the trained model (the warm model is the
teacher, the content path its student; ALDI, Huang et al., SIGIR'23).

A trained model's candidate tower embeds a cold item from its content too, but with an id
embedding that never trained (an OOV row) and content weights trained beside the ids: its
scores are shrunk towards the average item, so a top-K shared with warm items holds none of
them. The content path is a small network of its own from an item's content (the candidate
tower's content inputs: genres, title tokens, release year; and the words of the item text
that `items.csv` may carry; of the title and text tokens, only those of at least two warm items,
`shared_tokens`) to the towers' part of the candidate embedding; it is
fitted after the model on its warm items, with the model's queries
of `queries` train examples, q, and every warm item i, whose towers' score is s = q · c_i over
the towers' columns (a hybrid model's item-to-item columns score co-occurrence, which no content
tells, and are those of an unknown item for a cold one: measured, fitting the whole score left
the path worse than the candidate tower on a sparse catalogue), at
the temperature T at which the model's scores are calibrated chances (`calibrated_temperature`:
the one under which softmax(s / T) over the unseen catalogue gives the eval split's targets
the highest likelihood; a hybrid model's mix is chosen for ranking, not for chances):

* the ranking term: the cross-entropy of softmax(ŝ / T) against softmax(s / T) over the warm
  items, where ŝ is the score of the content path's embedding of i. Items of the same content
  get the same ŝ, and at the optimum exp(ŝ / T) is the mean of
  their exp(s / T): the chance of a new item that resembles them, not their mean score, which
  is lower;
* the level term: (logsumexp(ŝ / T) − logsumexp(s / T))², so that those chances are on the warm
  items' scale (the ranking term alone leaves each query's level free) and a mixed top-K
  compares cold and warm items by their chances;
  `ContentPathHParams.temperature_scale` multiplies T: above 1, a cold item's score moves from
  its look-alikes' best towards their mean, and fewer cold items reach a mixed top-K;
* the embedding term: the mean squared distance of the content path's embeddings from the
  towers' part of the model's (relative to the latter's mean square), weighted by
  `embedding_weight`, which keeps the embeddings near the model's where the scores allow it.

The level term puts cold items on the warm items' scale as if they were look-alikes of warm
ones; how often users actually pick items without train interactions depends on the data (items
that arrive over time and are in fashion, or old ones that nobody picked). With a `Calibration`,
the fitted path's scores are shifted by an offset learnt from the eval split
(`calibrated_level`): the one under which the model's chances give the eval users' targets, warm
and cold, the highest likelihood, so that the cold items' share of the chances is their share of
the eval picks. The offset is added along the eval queries' mean direction (a bias of the path's
output layer: query q's cold scores move by b · q·m, m the mean query over its square norm),
which needs no column of its own in the index. And the path is kept unless the model's
candidate tower orders the eval split's cold picks among the cold items clearly better
(`_keeps_the_path`): where an item's content tells little, the path can do worse.

`attach` gives a `TwoTowerModel` its fitted content path; its `embed_candidates` then embeds
cold items (their item index an OOV bucket) with it, outside training, so that the exported
index holds the content path's embeddings of cold items and the model's of warm ones.
"""
import dataclasses
import math
from typing import Callable, Dict, List, Optional

from absl import logging
import numpy as np
from scipy import optimize
from scipy import sparse
from scipy import special as scipy_special
import tensorflow as tf

from contract import features
from evaluation import protocol
from models import eval_split
from models import hparams
from models import towers

# Temperatures tried by `calibrated_temperature`, in units of the queries' mean score spread.
TEMPERATURES = tuple(2.0**(k / 2) for k in range(-8, 9))
# The bound of `calibrated_level`'s offsets, in units of the temperature: e^-20 of the chances.
MAX_LEVEL = 20.0


@dataclasses.dataclass(frozen=True)
class Calibration:
  """What the content path is calibrated on: the first eval users' queries and warm targets
  (`eval_queries`, in the index space of the train catalogue), the cold items' catalogue columns
  (`cold_items`) and those users' eval targets among them (`cold_targets`, [users, cold items],
  `eval_split.items_targets`)."""
  eval_queries: eval_split.EvalQueries
  cold_items: Dict[str, np.ndarray]
  cold_targets: sparse.csr_matrix


class SharedTokens(tf.keras.layers.Layer):
  """Token indices with those outside a frozen set replaced by padding (0): `keep` holds 1 for
  the vocabulary indices kept (`shared_tokens`)."""

  def __init__(self, vocabulary_size: int, **kwargs):
    super().__init__(**kwargs)
    self.vocabulary_size = vocabulary_size

  def build(self, input_shape):
    self.keep = self.add_weight(name='keep', shape=(self.vocabulary_size,), initializer='zeros',
                                trainable=False)
    super().build(input_shape)

  def call(self, indices: tf.Tensor) -> tf.Tensor:
    return tf.where(tf.gather(self.keep, indices) > 0, indices, tf.zeros_like(indices))

  def get_config(self):
    return {**super().get_config(), 'vocabulary_size': self.vocabulary_size}


def shared_tokens(token_indices: np.ndarray, vocabulary_size: int,
                  min_items: int = 2) -> np.ndarray:
  """1 for the token indices found in at least `min_items` rows of `token_indices` (one row of
  padded indices per warm item), else 0: a token of a single item tells only which item it
  is, which the content path would learn by heart and a new item never has."""
  rows, columns = np.nonzero(token_indices)
  pairs = np.unique(np.stack([rows, token_indices[rows, columns]], axis=1), axis=0)
  counts = np.bincount(pairs[:, 1], minlength=vocabulary_size)[:vocabulary_size]
  return (counts >= min_items).astype(np.float32)


def build(vocab: towers.Vocabularies, transform: hparams.TransformHParams, width: int,
          hidden_units: int, content_dim: int) -> tf.keras.Model:
  """The content path: an item's content to `width` columns (the towers' part of the
  candidate embedding). Its content is the candidate tower's content inputs, and the item
  text's tokens (`features.ITEM_TEXT_INDICES`, a masked mean of their embeddings) when the
  train items have text (`vocab.item_text_tokens`); title and text tokens go through
  `SharedTokens` ('shared_title_tokens', 'shared_text_tokens': none kept until set)."""
  pool = towers.MaskedMeanPooling(name='masked_mean')
  content_inputs, content_values = towers.item_content(
      vocab, content_dim, transform.max_genres, transform.max_title_tokens, pool,
      SharedTokens(vocab.title_tokens, name='shared_title_tokens'))
  if vocab.item_text_tokens:
    text = towers.index_input(features.ITEM_TEXT_INDICES, transform.max_item_text_tokens)
    kept = SharedTokens(vocab.item_text_tokens, name='shared_text_tokens')(text)
    content_inputs.append(text)
    content_values.append(pool(tf.keras.layers.Embedding(
        vocab.item_text_tokens, content_dim, name='item_text_embedding')(kept), kept))
  hidden = tf.keras.layers.Dense(hidden_units, activation='relu', name='content_hidden')(
      tf.keras.layers.Concatenate(name='content_features')(content_values))
  return tf.keras.Model(content_inputs, tf.keras.layers.Dense(width, name='content_output')(hidden),
                        name='content_path')


class ContentCandidates(tf.Module):
  """A model's candidate embeddings with the towers' part of cold items' from a content path."""

  def __init__(self, path: tf.keras.Model, first_oov_index: int, width: int):
    super().__init__()
    self.path = path
    self.first_oov_index = first_oov_index
    self.width = width

  def __call__(self, inputs: Dict[str, tf.Tensor], candidates: tf.Tensor) -> tf.Tensor:
    """`candidates` (the candidate tower's embeddings of `inputs`) with the first `width`
    columns of cold items' rows replaced by the content path's embeddings."""
    cold = inputs[features.ITEM_INDEX] >= self.first_oov_index
    content = self.path(towers.select(inputs, self.path))
    return tf.where(cold[:, None],
                    tf.concat([content, candidates[:, self.width:]], axis=1), candidates)


@dataclasses.dataclass(frozen=True)
class FittedPath:
  """A fitted content path (`fit`), and the candidates that use it where it was kept, or None
  (where a later run's path starts from either way)."""
  path: tf.keras.Model
  candidates: Optional[ContentCandidates]


def towers_width(model) -> int:
  """The columns of `model`'s candidate embeddings that its towers compute (the others, in a
  hybrid model, are the item-to-item component's)."""
  width = model.candidate_tower.output_shape[-1]
  table = towers.appended_candidate_table(model.core)
  return width - (table.output_dim if table is not None else 0)


def first_oov_index(model) -> int:
  """The first item index of the OOV buckets (the index of items without train interactions)."""
  dropout = model.core.get_layer('item_id_dropout')
  return dropout.num_ids - dropout.oov_buckets


def _queries(model, train: tf.data.Dataset, count: int) -> np.ndarray:
  """The model's query embeddings of the first `count` examples of `train` (shuffled)."""
  batches: List[np.ndarray] = []
  for batch in train:
    batches.append(model.embed_queries(batch).numpy())
    if sum(len(b) for b in batches) >= count:
      break
  return np.concatenate(batches)[:count]


def calibrated_temperature(scores: np.ndarray, eval_data: protocol.EvalData) -> float:
  """The temperature T of `TEMPERATURES` × the queries' mean score spread under which
  softmax(scores / T) over each query's unseen catalogue items gives its eval targets (columns
  of `eval_data`, the catalogue of `scores`) the highest mean log-likelihood."""
  seen = eval_data.seen.toarray().astype(bool)
  users, columns = eval_data.targets.nonzero()
  unseen_target = ~seen[users, columns]
  users, columns = users[unseen_target], columns[unseen_target]
  if not len(users):
    return 1.0
  masked = np.where(seen, -np.inf, scores)
  spread = float(np.mean(np.std(scores, axis=1))) or 1.0
  best = None
  for factor in TEMPERATURES:
    logits = masked / (factor * spread)
    log_partition = scipy_special.logsumexp(logits, axis=1)
    likelihood = float(np.mean(logits[users, columns] - log_partition[users]))
    if best is None or likelihood > best[1]:
      best = (factor * spread, likelihood)
  return best[0]


def calibrated_level(warm_scores: np.ndarray, cold_scores: np.ndarray, shifts: np.ndarray,
                     eval_data: protocol.EvalData, cold_targets: sparse.csr_matrix,
                     temperature: float) -> float:
  """The offset b under which softmax(scores / `temperature`) over each query's unseen catalogue,
  its warm items' `warm_scores` (the columns of `eval_data`) and its cold items' `cold_scores` +
  b × `shifts` (one shift per query), gives its eval targets (the unseen ones of `eval_data` and
  `cold_targets`) the highest log-likelihood, within ±`MAX_LEVEL` × `temperature`.

  The likelihood is concave in b; with shifts of 1, at its maximum the cold items' chances summed
  over the targets equal the number of cold targets. No target: 0."""
  seen = eval_data.seen.toarray().astype(bool)
  targets = eval_data.targets.toarray().astype(bool) & ~seen
  warm_counts = targets.sum(axis=1)
  cold_counts = np.asarray(cold_targets.sum(axis=1)).ravel()
  counts = warm_counts + cold_counts
  if not counts.sum():
    return 0.0
  warm = scipy_special.logsumexp(np.where(seen, -np.inf, warm_scores / temperature), axis=1)
  cold = scipy_special.logsumexp(cold_scores / temperature, axis=1)

  def minus_likelihood(level: float) -> float:
    moved = level * shifts / temperature
    return float(np.sum(counts * np.logaddexp(warm, cold + moved) - cold_counts * moved))

  bound = MAX_LEVEL * temperature
  return float(optimize.minimize_scalar(minus_likelihood, bounds=(-bound, bound),
                                        method='bounded', options={'xatol': 1e-4 * bound}).x)


def percentiles(scores: np.ndarray, targets: sparse.csr_matrix) -> np.ndarray:
  """For each (user, item) pair of `targets`, the share of the user's other items (columns of
  `scores`) that score below the item (ties count half): 1 when it is first, 0.5 on average
  for a random order."""
  users, columns = targets.nonzero()
  rows, picked = scores[users], scores[users, columns][:, None]
  below = (rows < picked).sum(axis=1) + 0.5 * ((rows == picked).sum(axis=1) - 1)
  return below / max(scores.shape[1] - 1, 1)


# How many standard errors the candidate tower must order the eval split's cold picks better
# than the content path, pick by pick, for the path to be dropped.
TOWER_WINS_BY_STANDARD_ERRORS = 2.0


def _keeps_the_path(content_scores: np.ndarray, tower_scores: np.ndarray,
                    calibration: Calibration, name: str) -> bool:
  """Whether the fitted path's `content_scores` of `calibration`'s cold items are kept: unless
  the candidate tower's `tower_scores` order its cold picks better (`percentiles`, paired pick
  by pick) by more than `TOWER_WINS_BY_STANDARD_ERRORS` standard errors of the mean difference.
  The path is the one fitted for cold items; a few dozen eval picks (often old items that
  nobody picked, not new ones) reverse a small difference from one seed to the next, so it
  takes a clear loss to fall back to the tower. True without cold picks."""
  if not calibration.cold_targets.nnz:
    return True
  content = percentiles(content_scores, calibration.cold_targets)
  differences = percentiles(tower_scores, calibration.cold_targets) - content
  standard_error = (differences.std(ddof=1) / math.sqrt(len(differences))
                    if len(differences) > 1 else 0.0)
  tower_wins = differences.mean() > TOWER_WINS_BY_STANDARD_ERRORS * standard_error
  logging.debug('Content path of %s: the eval split\'s %d cold picks at a mean percentile of '
                '%.3f among the cold items (the candidate tower: %.3f; standard error of the '
                'difference %.3f)', name, len(content), content.mean(),
                content.mean() + differences.mean(), standard_error)
  return not tower_wins


def _shift_to_level(path: tf.keras.Model, queries: np.ndarray, content_scores: np.ndarray,
                    warm_scores: np.ndarray, calibration: Calibration, temperature: float,
                    name: str) -> None:
  """Adds `calibrated_level`'s offset of the fitted `path`'s `content_scores` of
  `calibration`'s cold items (by its users' `queries`, the towers' part; `warm_scores` of the
  warm items) to the path's output bias, along the queries' mean direction (module
  docstring)."""
  mean = queries.mean(axis=0)
  direction = mean / max(float(mean @ mean), 1e-12)
  shifts = queries @ direction
  level = calibrated_level(warm_scores, content_scores, shifts,
                           calibration.eval_queries.eval_data, calibration.cold_targets,
                           temperature)
  path.get_layer('content_output').bias.assign_add(level * direction.astype(np.float32))
  logging.debug('Content path of %s: the cold items\' level %+.3g (%d cold eval targets of %d '
                'users; shifts of the queries %.2f ± %.2f)', name, level,
                calibration.cold_targets.nnz, len(shifts), shifts.mean(), shifts.std())


def losses(queries: tf.Tensor, candidates: tf.Tensor, content: tf.Tensor, width: int,
           temperature: float = 1.0) -> Dict[str, tf.Tensor]:
  """The three terms (module docstring), each a mean over the queries (or items), for model
  embeddings `candidates` [items, dim] of the warm items, of which the first `width` columns are
  the towers' part, and the content path's `content` [items, width], at `temperature`."""
  scores = tf.matmul(queries[:, :width], candidates[:, :width], transpose_b=True) / temperature
  content_scores = tf.matmul(queries[:, :width], content, transpose_b=True) / temperature
  ranking = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
      labels=tf.nn.softmax(scores), logits=content_scores))
  level = tf.reduce_mean(tf.square(tf.reduce_logsumexp(content_scores, axis=1)
                                   - tf.reduce_logsumexp(scores, axis=1)))
  towers_part = candidates[:, :width]
  embedding = (tf.reduce_mean(tf.reduce_sum(tf.square(content - towers_part), axis=1))
               / tf.maximum(tf.reduce_mean(tf.reduce_sum(tf.square(towers_part), axis=1)),
                            1e-12))
  return {'ranking': ranking, 'level': level, 'embedding': embedding}


def fit(model, train: tf.data.Dataset, catalogue: Dict[str, np.ndarray],
        vocab: towers.Vocabularies, transform: hparams.TransformHParams,
        settings: hparams.ContentPathHParams, seed: int,
        calibration: Optional[Calibration] = None,
        start: Optional[Callable[[tf.keras.Model], bool]] = None,
        warm_epochs: int = 0) -> FittedPath:
  """The content path of a trained `model`, fitted on the warm items of `catalogue` (the
  train vocabulary's) with the model's queries of `train` examples, at the temperature
  calibrated on `calibration`'s eval users (1 without them); with `settings.level_from_eval`,
  kept unless the candidate tower orders their cold picks clearly better, and its cold items'
  level learnt on them (module docstring); the candidates None when not kept. It trains
  `settings.epochs`, or `warm_epochs` when `start` (given the new path) sets its weights from an
  earlier run's."""
  tf.random.set_seed(seed)
  width = towers_width(model)
  path = build(vocab, transform, width, settings.hidden_units, settings.content_dim)
  epochs = warm_epochs if start is not None and start(path) else settings.epochs
  path.get_layer('shared_title_tokens').set_weights(
      [shared_tokens(catalogue[features.TITLE_INDICES], vocab.title_tokens)])
  if vocab.item_text_tokens:
    path.get_layer('shared_text_tokens').set_weights(
        [shared_tokens(catalogue[features.ITEM_TEXT_INDICES], vocab.item_text_tokens)])
  content_inputs = {name: tf.constant(catalogue[name]) for name in path.input_names}
  # The item-to-item columns of cold items: those of an OOV index (zero for EASE's tables).
  warm_candidates = model.embed_candidates(towers.item_features(catalogue)).numpy()
  candidates = tf.constant(warm_candidates)
  queries = _queries(model, train, settings.queries)
  calibrated = 1.0
  if calibration is not None:
    eval_queries = eval_split.query_embeddings(model, calibration.eval_queries)
    warm_scores = eval_queries @ warm_candidates.T  # as `eval_split.catalogue_scores`
    calibrated = calibrated_temperature(warm_scores, calibration.eval_queries.eval_data)
  temperature = calibrated * settings.temperature_scale
  optimizer = tf.keras.optimizers.Adam(settings.learning_rate)

  @tf.function
  def step(batch: tf.Tensor) -> Dict[str, tf.Tensor]:
    with tf.GradientTape() as tape:
      terms = losses(batch, candidates, path(content_inputs, training=True), width,
                     temperature)
      loss = terms['ranking'] + settings.level_weight * terms['level'] + (
          settings.embedding_weight * terms['embedding'])
    optimizer.apply_gradients(zip(tape.gradient(loss, path.trainable_variables),
                                  path.trainable_variables))
    return terms

  batches = math.ceil(len(queries) / settings.batch_size)
  rng = np.random.RandomState(seed)
  terms = {}
  for _ in range(epochs):
    order = rng.permutation(len(queries))
    for b in range(batches):
      terms = step(tf.constant(queries[order[b * settings.batch_size:
                                             (b + 1) * settings.batch_size]]))
  logging.debug('Content path of %s at temperature %.3g: %s', model.core.name, temperature,
               ', '.join(f'{name} loss {float(value):.4f}' for name, value in terms.items()))
  if calibration is not None and settings.level_from_eval:
    cold_items = calibration.cold_items
    content_scores = eval_queries[:, :width] @ path(
        {name: tf.constant(cold_items[name]) for name in path.input_names}).numpy().T
    tower_scores = eval_queries @ model.embed_candidates(
        towers.item_features(cold_items)).numpy().T
    if not _keeps_the_path(content_scores, tower_scores, calibration, model.core.name):
      logging.debug('Content path of %s: not kept (cold items embedded by the candidate tower)',
                    model.core.name)
      return FittedPath(path, None)
    _shift_to_level(path, eval_queries[:, :width], content_scores, warm_scores, calibration,
                    calibrated, model.core.name)
  return FittedPath(path, ContentCandidates(path, first_oov_index(model), width))
