"""Knowledge distillation: a frozen teacher teaches a trainable student.

`Distiller` is a `keras.Model` shaped like the keras-io knowledge-distillation example, with
its own `train_step`/`test_step`: `Distiller(teacher, student, ...)`, then
`compile(optimizer, student_loss_fn, distillation_loss_fn, alpha, temperature)` sets

  loss = alpha · student_loss_fn(...) + (1 − alpha) · distillation_loss_fn(...)

with the losses of this module:

  `StudentLoss`: the student's loss on the labels, as without a teacher,
    retrieval_weight · in-batch softmax loss + rating_weight · MSE(rating, label);
  `DistillationLoss`: T² · Σ_queries KL(softmax(teacher / T) ‖ softmax(student / T)) (`kd_loss`)
    + rating_weight · MSE(student rating, teacher rating)
    (the rating terms are 0 for models without a rating head: implicit feedback, `models.run_fn`).

A student that inherits its hybrid teacher's item-to-item component (`models.student.inherit`)
trains its towers alone and adds the component back afterwards: with `teacher_towers_only` (the
default) its towers learn the teacher's towers' scores (`TowersPart`: the teacher's embeddings
without the component's columns, the mix's weight undone), not the hybrid's, which already hold
the component (learning them, the towers spend themselves on what the component gives anyway).

In the KL term, teacher/student are each model's scores of a query against the whole catalogue
(`full_catalogue`: soft labels on every item, so that the student learns what the teacher knows
of items the user never touched, which sparse labels cannot teach), or, for catalogues too large
for that, against the batch's candidates plus `num_sampled_negatives` items drawn uniformly from
the catalogue. Sums over the batch match the TFRS retrieval loss's reduction. Only the
student's variables receive gradients. Every term is reported as a metric (`LOSS_NAMES`).

The teacher is frozen, so its outputs never change, and it never runs in a training step: its
candidate embeddings of the catalogue are computed when the `Distiller` is built, and its
per-example outputs are read from the batches, which `with_teacher_outputs` labels in one
inference pass over a data set (train and eval alike), cached so that epochs train the student
only.
"""
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from models import towers
from models import two_tower

LOSS_NAMES = ('loss', 'hard_loss', 'soft_loss', 'retrieval_loss', 'rating_loss', 'kd_loss',
              'rating_distillation_loss')
# The teacher's outputs as `with_teacher_outputs` adds them to examples.
TEACHER_OUTPUTS = {'queries': 'teacher_queries', 'candidates': 'teacher_candidates',
                   'rating': 'teacher_rating'}


def labelled(teacher: two_tower.TwoTowerModel,
             batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """`batch` with the frozen teacher's outputs under `TEACHER_OUTPUTS` (no rating when the
  teacher does not predict ratings)."""
  outputs = teacher(batch, training=False)
  return {**batch, **{name: outputs[key] for key, name in TEACHER_OUTPUTS.items()
                      if key in outputs}}


def with_teacher_outputs(batches: tf.data.Dataset, teacher: two_tower.TwoTowerModel,
                         cache_file: str) -> tf.data.Dataset:
  """`batches` with the frozen teacher's outputs (`labelled`), computed in one pass during the
  first iteration and cached: in memory when `cache_file` is '' (fastest), else in that file."""
  return batches.map(lambda batch: labelled(teacher, batch)).cache(cache_file)


def kd_loss(teacher_scores: tf.Tensor, student_scores: tf.Tensor,
            temperature: float) -> tf.Tensor:
  """T² · Σ_rows KL(softmax(teacher / T) ‖ softmax(student / T)) of [queries, candidates]
  score matrices (the T² keeps gradient magnitudes comparable across temperatures)."""
  teacher_log_p = tf.nn.log_softmax(teacher_scores / temperature, axis=1)
  student_log_p = tf.nn.log_softmax(student_scores / temperature, axis=1)
  kl = tf.reduce_sum(tf.exp(teacher_log_p) * (teacher_log_p - student_log_p), axis=1)
  return temperature ** 2 * tf.reduce_sum(kl)


class StudentLoss:
  """The student's loss on the labels, as it trains without a teacher
  (`TwoTowerModel.compute_loss`): retrieval_weight · retrieval loss + rating_weight · rating
  MSE, with the student's own weights and negatives. Returns the loss and its terms by name."""

  def __call__(self, student: two_tower.TwoTowerModel, batch: Dict[str, tf.Tensor],
               outputs: Dict[str, tf.Tensor],
               training: bool) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    retrieval_loss, rating_loss = student.task_losses(batch, outputs, training)
    return (student.retrieval_weight * retrieval_loss + student.rating_weight * rating_loss,
            {'retrieval_loss': retrieval_loss, 'rating_loss': rating_loss})


class DistillationLoss:
  """What the student learns from the teacher: `kd_loss` of both models' 'scores' of each
  query against the same candidates, + `rating_weight` · MSE(student rating, teacher rating)
  when both predict ratings (else that term is 0). Returns the loss and its terms by name."""

  def __init__(self, rating_weight: float = 1.0):
    self.rating_weight = rating_weight

  def __call__(self, teacher: Dict[str, tf.Tensor], student: Dict[str, tf.Tensor],
               temperature: float) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    terms = {
        'kd_loss': kd_loss(teacher['scores'], student['scores'], temperature),
        'rating_distillation_loss': (
            tf.reduce_mean(tf.square(student['rating'] - teacher['rating']))
            if 'rating' in student and 'rating' in teacher else tf.constant(0.0)),
    }
    return terms['kd_loss'] + self.rating_weight * terms['rating_distillation_loss'], terms


class TowersPart:
  """The towers' part of a hybrid model's embeddings (`models.towers.with_item_item`): their
  first `width` columns, the query's scaled by the mix's towers weight (`towers.HybridMix`),
  which `queries` undoes."""

  def __init__(self, model: two_tower.TwoTowerModel):
    self.width = (model.core.outputs[towers.QUERY].shape[-1]
                  - towers.appended_candidate_table(model.core).output_dim)
    self.weight = float(model.core.get_layer('hybrid_mix').mix.numpy()[0])

  def queries(self, queries: tf.Tensor) -> tf.Tensor:
    return queries[:, :self.width] / self.weight

  def candidates(self, candidates: tf.Tensor) -> tf.Tensor:
    return candidates[:, :self.width]

  @classmethod
  def of_teacher(cls, teacher: two_tower.TwoTowerModel,
                 student: two_tower.TwoTowerModel) -> Optional['TowersPart']:
    """What a student learns of its teacher: the towers' part when both are hybrid and the
    teacher's towers weigh in its score; None (the whole score) otherwise."""
    if not all(towers.appended_candidate_table(model.core) for model in (teacher, student)):
      return None
    part = cls(teacher)
    return part if part.weight > 0 else None


class Distiller(tf.keras.Model):
  """Trains `student` to match `teacher` (both `TwoTowerModel`s) and the ground truth, on
  batches that carry the teacher's outputs (`with_teacher_outputs`); with
  `teacher_towers_only`, a student that inherits its hybrid teacher's component learns the
  teacher's towers (`TowersPart.of_teacher`)."""

  def __init__(self, teacher: two_tower.TwoTowerModel, student: two_tower.TwoTowerModel,
               catalogue: Dict[str, np.ndarray], num_sampled_negatives: int, seed: int = 0,
               full_catalogue: bool = False, teacher_towers_only: bool = True):
    super().__init__()
    self.teacher = teacher
    self.student = student
    self.teacher.trainable = False
    self.catalogue = {name: tf.constant(values) for name, values in catalogue.items()
                      if name in teacher.candidate_tower.input_names
                      or name in student.candidate_tower.input_names}
    self.num_items = len(next(iter(self.catalogue.values())))
    self.teacher_part = (TowersPart.of_teacher(teacher, student) if teacher_towers_only
                         else None)
    self.teacher_catalogue = self._teacher_candidates(  # frozen: computed once
        teacher.embed_candidates(self.catalogue))
    self.num_sampled_negatives = num_sampled_negatives
    self.full_catalogue = full_catalogue
    self.sampler = tf.random.Generator.from_seed(seed)
    self.trackers = {name: tf.keras.metrics.Mean(name=name) for name in LOSS_NAMES}

  def compile(self, optimizer, student_loss_fn: StudentLoss,
              distillation_loss_fn: DistillationLoss, alpha: float = 0.5,
              temperature: float = 1.0, **kwargs):
    super().compile(optimizer=optimizer, **kwargs)
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
      raise ValueError(f'need 0 <= alpha <= 1 and temperature > 0, got {alpha}, {temperature}')
    self.student_loss_fn = student_loss_fn
    self.distillation_loss_fn = distillation_loss_fn
    self.alpha = alpha
    self.temperature = temperature

  @property
  def metrics(self):
    return list(self.trackers.values())

  def call(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> Dict[str, tf.Tensor]:
    return self.student(inputs, training=training)

  def _teacher_queries(self, queries: tf.Tensor) -> tf.Tensor:
    return queries if self.teacher_part is None else self.teacher_part.queries(queries)

  def _teacher_candidates(self, candidates: tf.Tensor) -> tf.Tensor:
    return candidates if self.teacher_part is None else self.teacher_part.candidates(candidates)

  def _soft_label_scores(self, teacher_outputs: Dict[str, tf.Tensor],
                         student_outputs: Dict[str, tf.Tensor],
                         training: bool) -> Tuple[tf.Tensor, tf.Tensor]:
    """The teacher's and the student's scores of each query against the soft-label
    candidates: the whole catalogue, or the batch's candidates and sampled items."""
    teacher_queries = self._teacher_queries(teacher_outputs['queries'])
    if self.full_catalogue:
      student_catalogue = self.student.embed_candidates(self.catalogue, training)
      return (tf.matmul(teacher_queries, self.teacher_catalogue, transpose_b=True),
              tf.matmul(student_outputs['queries'], student_catalogue, transpose_b=True))
    sampled = self.sampler.uniform([self.num_sampled_negatives], 0, self.num_items, tf.int64)
    student_negatives = self.student.embed_candidates(
        {name: tf.gather(values, sampled) for name, values in self.catalogue.items()}, training)
    scores = lambda queries, candidates, negatives: tf.matmul(
        queries, tf.concat([candidates, negatives], axis=0), transpose_b=True)
    return (scores(teacher_queries, self._teacher_candidates(teacher_outputs['candidates']),
                   tf.gather(self.teacher_catalogue, sampled)),
            scores(student_outputs['queries'], student_outputs['candidates'],
                   student_negatives))

  def distillation_losses(self, batch: Dict[str, tf.Tensor],
                          training: bool) -> Dict[str, tf.Tensor]:
    """The loss and its terms (`LOSS_NAMES`) on a batch that carries the teacher's outputs."""
    if TEACHER_OUTPUTS['queries'] not in batch:
      raise ValueError("the Distiller's batches carry the teacher's outputs: "
                       'see with_teacher_outputs')
    teacher_outputs = {key: batch[name] for key, name in TEACHER_OUTPUTS.items() if name in batch}
    student_outputs = self.student(batch, training=training)
    teacher_scores, student_scores = self._soft_label_scores(teacher_outputs, student_outputs,
                                                             training)
    hard_loss, hard_terms = self.student_loss_fn(self.student, batch, student_outputs, training)
    soft_loss, soft_terms = self.distillation_loss_fn(
        {**teacher_outputs, 'scores': teacher_scores},
        {**student_outputs, 'scores': student_scores}, self.temperature)
    return {**hard_terms, **soft_terms, 'hard_loss': hard_loss, 'soft_loss': soft_loss,
            'loss': self.alpha * hard_loss + (1 - self.alpha) * soft_loss}

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
