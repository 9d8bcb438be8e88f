"""The multi-task TFRS model: retrieval (softmax over sampled or all items) and rating prediction
on one core.

The architecture comes from `models.teacher` or `models.student` as a functional core (see
`models.towers`); this class adds the two tasks and their weighted loss. A rating weight of 0
(implicit feedback: `models.run_fn`) trains retrieval only: the rating head is not run at all,
and `predicts_ratings` is False (its exports score by the retrieval score instead).

The retrieval loss is a softmax of each query's target against negatives
(`TrainingHParams`): every catalogue item when the catalogue is small enough
(`catalogue_softmax_loss`); otherwise the batch's candidates, plus items drawn uniformly from the
catalogue ("mixed negatives", Yang et al., WWW'20), with each candidate's score corrected by a
share of the log of its expected count among the negatives (logQ; `popularity_correction`) and
accidental hits removed.
"""
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from contract import features
from models import hparams
from models import inputs
from models import towers


def catalogue_softmax_loss(queries: tf.Tensor, catalogue_embeddings: tf.Tensor,
                           items: tf.Tensor) -> tf.Tensor:
  """Σ_rows −log softmax(queries · catalogueᵀ)[item − 1]: each query's target item against every
  catalogue item (item index i is catalogue position i − 1); rows whose item is not in the
  catalogue (out-of-vocabulary in an eval split) count 0."""
  scores = tf.matmul(queries, catalogue_embeddings, transpose_b=True)
  positions = tf.cast(items, tf.int32) - 1
  known = (positions >= 0) & (positions < tf.shape(scores)[1])
  losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.where(known, positions, 0), logits=scores)
  return tf.reduce_sum(tf.where(known, losses, 0.0))


def mixed_sampling_probability(item_probability: tf.Tensor, candidate_items: tf.Tensor,
                               batch_size: tf.Tensor, num_sampled: int,
                               num_items: int) -> tf.Tensor:
  """Each candidate's expected count among the mixed negatives: `batch_size` in-batch draws
  ∝ `item_probability` (by item index) plus `num_sampled` uniform draws from `num_items` items."""
  return (tf.cast(batch_size, tf.float32) * tf.gather(item_probability, candidate_items)
          + num_sampled / num_items)


class TwoTowerModel(tfrs.Model):
  """Query and candidate towers trained jointly for retrieval and rating regression."""

  def __init__(self, core: tf.keras.Model, training: hparams.TrainingHParams,
               stats: inputs.TrainStats):
    super().__init__()
    self.core = core
    self.query_tower = towers.query_tower(core)
    self.candidate_tower = towers.candidate_tower(core)
    self.retrieval_task = tfrs.tasks.Retrieval(remove_accidental_hits=True)
    self.predicts_ratings = training.rating_weight > 0
    self.rating_task = tfrs.tasks.Ranking(
        loss=tf.keras.losses.MeanSquaredError(),
        # Without a rating head, an RMSE metric would report a 0 it never measured.
        metrics=([tf.keras.metrics.RootMeanSquaredError(name='rmse')]
                 if self.predicts_ratings else []))
    # In-batch negatives are sampled ∝ popularity; logQ correction undoes that bias, in the
    # share `popularity_correction` (each logit less that share of log Q).
    counts = np.maximum(stats.item_counts, 1).astype(np.float32)
    self.sampling_probability = (tf.constant(counts / counts.sum())
                                 if training.popularity_correction else None)
    self.correction_share = float(training.popularity_correction)
    if not 0.0 <= self.correction_share <= 1.0:
      raise ValueError(f'popularity_correction {training.popularity_correction}: the share of the '
                       'logQ correction, from 0 (none) to 1 (all)')
    self.retrieval_weight = training.retrieval_weight
    self.rating_weight = training.rating_weight
    # The negatives of the retrieval loss (module docstring).
    self.num_items = len(stats.catalogue[features.ITEM_ID])
    self.full_catalogue = self.num_items <= training.catalogue_softmax_max_items
    self.mixed_negatives = 0 if self.full_catalogue else training.mixed_negatives
    # The candidate features of the catalogue, held only by a loss that embeds its items.
    self.catalogue = ({name: tf.constant(values) for name, values in stats.catalogue.items()
                       if name in self.candidate_tower.input_names}
                      if self.full_catalogue or self.mixed_negatives else {})
    self.sampler = tf.random.Generator.from_seed(training.seed)
    # Set once trained (`training.attach_content_path`): embeds the cold items of exports.
    self.content_candidates = None

  def embed_queries(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    return self.query_tower(towers.select(inputs, self.query_tower), training=training)

  def embed_candidates(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    """The candidate embeddings of `inputs`; outside training, those of cold items from the
    content path when the model has one (`models.content_path`)."""
    candidates = self.candidate_tower(towers.select(inputs, self.candidate_tower),
                                      training=training)
    if self.content_candidates is None or training:
      return candidates
    return self.content_candidates(inputs, candidates)

  def call(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> Dict[str, tf.Tensor]:
    """'queries' and 'candidates' embeddings, and 'rating' when the model predicts ratings
    (otherwise only the towers run)."""
    if not self.predicts_ratings:
      return {'queries': self.embed_queries(inputs, training),
              'candidates': self.embed_candidates(inputs, training)}
    outputs = self.core(towers.select(inputs, self.core), training=training)
    return {'queries': outputs[towers.QUERY], 'candidates': outputs[towers.CANDIDATE],
            'rating': outputs[towers.RATING]}

  def task_losses(self, inputs: Dict[str, tf.Tensor], outputs: Dict[str, tf.Tensor],
                  training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    """(retrieval loss summed over the batch, mean squared rating error) on ground truth; the
    rating error is 0 for a model that does not predict ratings."""
    retrieval_loss = self.retrieval_loss(inputs[features.ITEM_INDEX], outputs, training)
    rating_loss = (self.rating_task(labels=inputs[features.LABEL], predictions=outputs['rating'])
                   if self.predicts_ratings else tf.constant(0.0))
    return retrieval_loss, rating_loss

  def retrieval_loss(self, items: tf.Tensor, outputs: Dict[str, tf.Tensor],
                     training: bool = False) -> tf.Tensor:
    """The softmax loss of each query's target item (`items`) against the negatives, summed
    over the batch."""
    if self.full_catalogue:
      return catalogue_softmax_loss(outputs['queries'],
                                    self.embed_candidates(self.catalogue, training), items)
    candidates, candidate_items = outputs['candidates'], items
    if self.mixed_negatives:
      sampled = self.sampler.uniform([self.mixed_negatives], 0, self.num_items, tf.int64)
      candidates = tf.concat([candidates, self.embed_candidates(
          {name: tf.gather(values, sampled) for name, values in self.catalogue.items()},
          training)], axis=0)
      candidate_items = tf.concat([items, tf.cast(sampled + 1, items.dtype)], axis=0)
    probability = None
    if self.sampling_probability is not None:
      probability = (mixed_sampling_probability(
          self.sampling_probability, candidate_items, tf.shape(items)[0],
          self.mixed_negatives, self.num_items) if self.mixed_negatives
                     else tf.gather(self.sampling_probability, candidate_items))
      if self.correction_share != 1.0:
        probability = probability**self.correction_share
    return self.retrieval_task(outputs['queries'], candidates, candidate_ids=candidate_items,
                               compute_metrics=False, candidate_sampling_probability=probability)

  def compute_loss(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    retrieval_loss, rating_loss = self.task_losses(inputs, self(inputs, training=training),
                                                   training)
    return self.retrieval_weight * retrieval_loss + self.rating_weight * rating_loss
