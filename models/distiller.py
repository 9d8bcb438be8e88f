"""Knowledge distillation: a frozen teacher teaches a trainable student.

`Distiller` is a `keras.Model` (after the keras-io knowledge-distillation example) with its own
`train_step`/`test_step`. `compile(optimizer, alpha, temperature, ...)` sets the mix

  loss = alpha · hard + (1 − alpha) · soft
  hard = retrieval_weight · in-batch softmax loss + rating_weight · MSE(rating, label)
  soft = kd_weight · T² · Σ_queries KL(softmax(teacher / T) ‖ softmax(student / T))
         + rating_distillation_weight · MSE(student rating, teacher rating)

where teacher/student are each model's scores of a query against the batch's candidates plus
`num_sampled_negatives` items drawn uniformly from the catalogue. Sums over the batch match
the TFRS retrieval loss's reduction. Only the student's variables receive gradients; the teacher
always runs with `training=False`. Every term is reported as a metric.

The teacher is frozen, so its outputs never change: its candidate embeddings of the catalogue
are computed once, and `with_teacher_outputs` adds its per-example outputs to a training set in
one inference pass (cached in a file, reshuffled every epoch), so that epochs train the student
only.
"""
from typing import Dict

import numpy as np
import tensorflow as tf

from models import two_tower

LOSS_NAMES = ('loss', 'hard_loss', 'soft_loss', 'retrieval_loss', 'rating_loss', 'kd_loss',
              'rating_distillation_loss')
# The teacher's outputs as `with_teacher_outputs` adds them to examples.
TEACHER_OUTPUTS = {'queries': 'teacher_queries', 'candidates': 'teacher_candidates',
                   'rating': 'teacher_rating'}


def with_teacher_outputs(batches: tf.data.Dataset, teacher: two_tower.TwoTowerModel,
                         batch_size: int, shuffle_buffer_size: int, seed: int,
                         cache_file: str) -> tf.data.Dataset:
  """The examples of `batches` with the frozen teacher's outputs (`TEACHER_OUTPUTS`), computed
  in one pass during the first epoch and cached, then shuffled anew every epoch and batched.
  The cache is tf.data's: in memory when `cache_file` is '' (fastest), else in that file, and
  memory then holds the shuffle buffer, not the data set."""
  def label(batch):
    outputs = teacher(batch, training=False)
    return {**batch, **{name: outputs[key] for key, name in TEACHER_OUTPUTS.items()}}

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


class Distiller(tf.keras.Model):
  """Trains `student` to match `teacher` (both `TwoTowerModel`s) and the ground truth."""

  def __init__(self, teacher: two_tower.TwoTowerModel, student: two_tower.TwoTowerModel,
               catalogue: Dict[str, np.ndarray], num_sampled_negatives: int, seed: int = 0):
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
    self.sampler = tf.random.Generator.from_seed(seed)
    self.trackers = {name: tf.keras.metrics.Mean(name=name) for name in LOSS_NAMES}

  def compile(self, optimizer, alpha: float = 0.5, temperature: float = 1.0,
              kd_weight: float = 1.0, rating_distillation_weight: float = 1.0, **kwargs):
    super().compile(optimizer=optimizer, **kwargs)
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
      raise ValueError(f'need 0 <= alpha <= 1 and temperature > 0, got {alpha}, {temperature}')
    self.alpha = alpha
    self.temperature = temperature
    self.kd_weight = kd_weight
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
    """The teacher's outputs: from the batch when `with_teacher_outputs` added them."""
    if all(name in batch for name in TEACHER_OUTPUTS.values()):
      return {key: batch[name] for key, name in TEACHER_OUTPUTS.items()}
    return self.teacher(batch, training=False)

  def distillation_losses(self, batch: Dict[str, tf.Tensor],
                          training: bool) -> Dict[str, tf.Tensor]:
    sampled = self.sampler.uniform([self.num_sampled_negatives], 0, self.num_items, tf.int64)
    negatives = {name: tf.gather(values, sampled) for name, values in self.catalogue.items()}
    teacher_outputs = self._teacher_outputs(batch)
    teacher_scores = self._scores(teacher_outputs, tf.gather(self.teacher_catalogue, sampled))
    student_outputs = self.student(batch, training=training)
    student_scores = self._scores(student_outputs,
                                  self.student.embed_candidates(negatives, training))

    retrieval_loss, rating_loss = self.student.task_losses(batch, student_outputs)
    losses = {
        'retrieval_loss': retrieval_loss,
        'rating_loss': rating_loss,
        'kd_loss': kd_loss(tf.stop_gradient(teacher_scores), student_scores, self.temperature),
        'rating_distillation_loss': tf.reduce_mean(tf.square(
            student_outputs['rating'] - tf.stop_gradient(teacher_outputs['rating']))),
    }
    losses['hard_loss'] = (self.student.retrieval_weight * retrieval_loss
                           + self.student.rating_weight * rating_loss)
    losses['soft_loss'] = (self.kd_weight * losses['kd_loss'] + self.rating_distillation_weight
                           * losses['rating_distillation_loss'])
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
