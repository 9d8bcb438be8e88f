"""Knowledge distillation: a frozen teacher teaches a trainable student.

`Distiller` is a `keras.Model` (after the keras-io knowledge-distillation example) with its own
`train_step`/`test_step`. `compile(optimizer, alpha, temperature, ...)` sets the mix

  loss = alpha · hard + (1 − alpha) · soft
  hard = retrieval_weight · in-batch softmax loss + rating_weight · MSE(rating, label)
  soft = kd_weight · T² · Σ_queries KL(softmax(teacher / T) ‖ softmax(student / T))
         + ranking_weight · Σ_queries Σ_k w_k · −log softmax_k(student)
         + rating_distillation_weight · MSE(student rating, teacher rating)

(the rating terms are 0 for models without a rating head: implicit feedback, `models.run_fn`).

In the KL term, teacher/student are each model's scores of a query against the whole catalogue
(`full_catalogue`: soft labels on every item, so that the student learns what the teacher knows
of items the user never touched, which sparse labels cannot teach), or, for catalogues too large
for that, against the batch's candidates plus `num_sampled_negatives` items drawn uniformly from
the catalogue. The ranking
term is ranking distillation (Tang & Wang, KDD'18): the teacher's top `ranking_top_k` catalogue
items for the query, leaving out the items in its history and its target, are extra positives,
each scored by the student against the sampled negatives, and weighted by rank
(w_k ∝ exp(−k / ranking_decay), summing to 1). It tells the student about items the user
never touched, which sparse data lacks. Sums over the batch match the TFRS retrieval loss's
reduction. Only the student's variables receive gradients; the teacher
always runs with `training=False`. Every term is reported as a metric.

The teacher is frozen, so its outputs never change: its candidate embeddings of the catalogue
are computed once, and `with_teacher_outputs` adds its per-example outputs to a training set in
one inference pass (cached in a file, reshuffled every epoch), so that epochs train the student
only.
"""
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf

from contract import features
from models import two_tower

LOSS_NAMES = ('loss', 'hard_loss', 'soft_loss', 'retrieval_loss', 'rating_loss', 'kd_loss',
              'ranking_loss', 'rating_distillation_loss')
# The teacher's outputs as `with_teacher_outputs` adds them to examples.
TEACHER_OUTPUTS = {'queries': 'teacher_queries', 'candidates': 'teacher_candidates',
                   'rating': 'teacher_rating'}
TEACHER_TOP_ITEMS = 'teacher_top_items'  # catalogue positions of the teacher's top unseen items


def teacher_top_items(queries: tf.Tensor, catalogue_embeddings: tf.Tensor, history: tf.Tensor,
                      item: tf.Tensor, k: int) -> tf.Tensor:
  """[batch, k] catalogue positions of the items the teacher scores highest for each query,
  best first, leaving out the query's history and its target item (item index i is catalogue
  position i - 1; padding and out-of-vocabulary indices are ignored)."""
  scores = tf.matmul(queries, catalogue_embeddings, transpose_b=True)
  touched = tf.concat([tf.cast(history, tf.int32), tf.cast(item, tf.int32)[:, None]], axis=1) - 1
  rows = tf.broadcast_to(tf.range(tf.shape(touched)[0])[:, None], tf.shape(touched))
  valid = (touched >= 0) & (touched < tf.shape(scores)[1])
  positions = tf.stack([tf.boolean_mask(rows, valid), tf.boolean_mask(touched, valid)], axis=1)
  scores = tf.tensor_scatter_nd_update(
      scores, positions, tf.fill([tf.shape(positions)[0]], scores.dtype.min))
  return tf.math.top_k(scores, k).indices


def with_teacher_outputs(batches: tf.data.Dataset, teacher: two_tower.TwoTowerModel,
                         catalogue: Dict[str, np.ndarray], ranking_top_k: int, batch_size: int,
                         shuffle_buffer_size: int, seed: int, cache_file: str) -> tf.data.Dataset:
  """The examples of `batches` with the frozen teacher's outputs (`TEACHER_OUTPUTS`, and its
  `ranking_top_k` top items of `catalogue` as `TEACHER_TOP_ITEMS` when that is not 0), computed
  in one pass during the first epoch and cached, then shuffled anew every epoch and batched.
  The cache is tf.data's: in memory when `cache_file` is '' (fastest), else in that file, and
  memory then holds the shuffle buffer, not the data set."""
  catalogue_embeddings = (teacher.embed_candidates(
      {name: tf.constant(values) for name, values in catalogue.items()
       if name in teacher.candidate_tower.input_names}) if ranking_top_k else None)

  def label(batch):
    outputs = teacher(batch, training=False)  # no 'rating' when it does not predict ratings
    labelled = {**batch, **{name: outputs[key] for key, name in TEACHER_OUTPUTS.items()
                            if key in outputs}}
    if ranking_top_k:
      labelled[TEACHER_TOP_ITEMS] = teacher_top_items(
          outputs['queries'], catalogue_embeddings, batch[features.HISTORY_INDICES],
          batch[features.ITEM_INDEX], ranking_top_k)
    return labelled

  return (batches.map(label).cache(cache_file).unbatch()
          .shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
          .batch(batch_size))


def kd_loss(teacher_scores: tf.Tensor, student_scores: tf.Tensor,
            temperature: float) -> tf.Tensor:
  """T² · Σ_rows KL(softmax(teacher / T) ‖ softmax(student / T)) of [queries, candidates]
  score matrices (the T² keeps gradient magnitudes comparable across temperatures)."""
  teacher_log_p = tf.nn.log_softmax(teacher_scores / temperature, axis=1)
  student_log_p = tf.nn.log_softmax(student_scores / temperature, axis=1)
  kl = tf.reduce_sum(tf.exp(teacher_log_p) * (teacher_log_p - student_log_p), axis=1)
  return temperature ** 2 * tf.reduce_sum(kl)


def ranking_weights(top_k: int, decay: float) -> tf.Tensor:
  """[top_k] rank weights w_k ∝ exp(−k / decay), k = 0 .. top_k − 1, summing to 1."""
  weights = tf.exp(-tf.range(top_k, dtype=tf.float32) / decay)
  return weights / tf.reduce_sum(weights)


def ranking_loss(top_scores: tf.Tensor, negative_scores: tf.Tensor,
                 weights: tf.Tensor) -> tf.Tensor:
  """Σ_rows Σ_k weights_k · −log(e^{top_k} / (e^{top_k} + Σ_j e^{negative_j})) of
  [queries, k] scores of the teacher's top items and [queries, negatives] scores."""
  negatives = tf.reduce_logsumexp(negative_scores, axis=1, keepdims=True)
  return tf.reduce_sum(tf.nn.softplus(negatives - top_scores) * weights[None, :])


class Distiller(tf.keras.Model):
  """Trains `student` to match `teacher` (both `TwoTowerModel`s) and the ground truth."""

  def __init__(self, teacher: two_tower.TwoTowerModel, student: two_tower.TwoTowerModel,
               catalogue: Dict[str, np.ndarray], num_sampled_negatives: int, seed: int = 0,
               ranking_top_k: int = 0, full_catalogue: bool = False):
    super().__init__()
    self.teacher = teacher
    self.student = student
    self.teacher.trainable = False
    self.catalogue = {name: tf.constant(values) for name, values in catalogue.items()
                      if name in teacher.candidate_tower.input_names
                      or name in student.candidate_tower.input_names}
    self.num_items = len(next(iter(self.catalogue.values())))
    self.teacher_catalogue = teacher.embed_candidates(self.catalogue)  # frozen: computed once
    self.num_sampled_negatives = num_sampled_negatives
    self.full_catalogue = full_catalogue
    self.ranking_top_k = ranking_top_k
    self.sampler = tf.random.Generator.from_seed(seed)
    self.trackers = {name: tf.keras.metrics.Mean(name=name) for name in LOSS_NAMES}

  def compile(self, optimizer, alpha: float = 0.5, temperature: float = 1.0,
              kd_weight: float = 1.0, ranking_weight: float = 0.0, ranking_decay: float = 1.0,
              rating_distillation_weight: float = 1.0, **kwargs):
    super().compile(optimizer=optimizer, **kwargs)
    if not 0.0 <= alpha <= 1.0 or temperature <= 0 or ranking_decay <= 0:
      raise ValueError('need 0 <= alpha <= 1, temperature > 0 and ranking_decay > 0, got '
                       f'{alpha}, {temperature}, {ranking_decay}')
    if ranking_weight and not self.ranking_top_k:
      raise ValueError('a ranking_weight needs a Distiller with ranking_top_k > 0')
    self.alpha = alpha
    self.temperature = temperature
    self.kd_weight = kd_weight
    self.ranking_weight = ranking_weight
    self.ranking_weights = ranking_weights(max(self.ranking_top_k, 1), ranking_decay)
    self.rating_distillation_weight = rating_distillation_weight

  @property
  def metrics(self):
    return list(self.trackers.values())

  def call(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> Dict[str, tf.Tensor]:
    return self.student(inputs, training=training)

  def _scores(self, outputs: Dict[str, tf.Tensor], negatives: tf.Tensor) -> tf.Tensor:
    """Each query's scores against the batch's candidates and the sampled negatives."""
    candidates = tf.concat([outputs['candidates'], negatives], axis=0)
    return tf.matmul(outputs['queries'], candidates, transpose_b=True)

  def _teacher_outputs(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The teacher's outputs, with its top items under TEACHER_TOP_ITEMS when the ranking term
    is on: from the batch when `with_teacher_outputs` added them."""
    if TEACHER_OUTPUTS['queries'] in batch:
      outputs = {key: batch[name] for key, name in TEACHER_OUTPUTS.items() if name in batch}
    else:
      outputs = self.teacher(batch, training=False)
    if self.ranking_top_k:
      outputs[TEACHER_TOP_ITEMS] = (
          batch[TEACHER_TOP_ITEMS] if TEACHER_TOP_ITEMS in batch else teacher_top_items(
              outputs['queries'], self.teacher_catalogue, batch[features.HISTORY_INDICES],
              batch[features.ITEM_INDEX], self.ranking_top_k))
    return outputs

  def _ranking_loss(self, top_items: tf.Tensor, student_queries: tf.Tensor,
                    negative_scores: tf.Tensor, training: bool) -> tf.Tensor:
    """The ranking-distillation term for the teacher's [batch, k] top catalogue positions."""
    flat = tf.reshape(top_items, [-1])
    embeddings = self.student.embed_candidates(
        {name: tf.gather(values, flat) for name, values in self.catalogue.items()}, training)
    embeddings = tf.reshape(embeddings, [tf.shape(top_items)[0], self.ranking_top_k, -1])
    top_scores = tf.einsum('bd,bkd->bk', student_queries, embeddings)
    return ranking_loss(top_scores, negative_scores, self.ranking_weights)

  def _soft_label_scores(self, teacher_outputs: Dict[str, tf.Tensor],
                         student_outputs: Dict[str, tf.Tensor],
                         training: bool) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The teacher's and the student's scores that the KL term compares (the whole catalogue,
    or the batch's candidates and sampled items), and the student's scores of the items the
    ranking term takes as negatives (the catalogue, or the sampled items)."""
    if self.full_catalogue:
      student_scores = tf.matmul(student_outputs['queries'],
                                 self.student.embed_candidates(self.catalogue, training),
                                 transpose_b=True)
      return (tf.matmul(teacher_outputs['queries'], self.teacher_catalogue, transpose_b=True),
              student_scores, student_scores)
    sampled = self.sampler.uniform([self.num_sampled_negatives], 0, self.num_items, tf.int64)
    negatives = {name: tf.gather(values, sampled) for name, values in self.catalogue.items()}
    student_scores = self._scores(student_outputs,
                                  self.student.embed_candidates(negatives, training))
    return (self._scores(teacher_outputs, tf.gather(self.teacher_catalogue, sampled)),
            student_scores, student_scores[:, -self.num_sampled_negatives:])

  def distillation_losses(self, batch: Dict[str, tf.Tensor],
                          training: bool) -> Dict[str, tf.Tensor]:
    teacher_outputs = self._teacher_outputs(batch)
    student_outputs = self.student(batch, training=training)
    teacher_scores, student_scores, negative_scores = self._soft_label_scores(
        teacher_outputs, student_outputs, training)

    retrieval_loss, rating_loss = self.student.task_losses(batch, student_outputs,
                                                              training)
    losses = {
        'retrieval_loss': retrieval_loss,
        'rating_loss': rating_loss,
        'kd_loss': kd_loss(tf.stop_gradient(teacher_scores), student_scores, self.temperature),
        'ranking_loss': (self._ranking_loss(
            teacher_outputs[TEACHER_TOP_ITEMS], student_outputs['queries'], negative_scores,
            training)
                         if self.ranking_top_k else tf.constant(0.0)),
        # Only between models that predict ratings (implicit feedback: neither does).
        'rating_distillation_loss': (tf.reduce_mean(tf.square(
            student_outputs['rating'] - tf.stop_gradient(teacher_outputs['rating'])))
                                     if 'rating' in student_outputs and 'rating' in teacher_outputs
                                     else tf.constant(0.0)),
    }
    losses['hard_loss'] = (self.student.retrieval_weight * retrieval_loss
                           + self.student.rating_weight * rating_loss)
    losses['soft_loss'] = (self.kd_weight * losses['kd_loss']
                           + self.ranking_weight * losses['ranking_loss']
                           + self.rating_distillation_weight * losses['rating_distillation_loss'])
    losses['loss'] = self.alpha * losses['hard_loss'] + (1 - self.alpha) * losses['soft_loss']
    return losses

  def _report(self, losses: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    for name, tracker in self.trackers.items():
      tracker.update_state(losses[name])
    return {name: tracker.result() for name, tracker in self.trackers.items()}

  def train_step(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    variables = self.student.trainable_variables
    with tf.GradientTape() as tape:
      losses = self.distillation_losses(batch, training=True)
    self.optimizer.apply_gradients(zip(tape.gradient(losses['loss'], variables), variables))
    return self._report(losses)

  def test_step(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    return self._report(self.distillation_losses(batch, training=False))
