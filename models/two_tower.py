"""The multi-task TFRS model: retrieval (in-batch softmax) and rating prediction on one core.

The architecture comes from `models.teacher` or `models.student` as a functional core (see
`models.towers`); this class adds the two tasks and their weighted loss. A rating weight of 0
(implicit feedback: `models.run_fn`) trains retrieval only: the rating head is not run at all,
and `predicts_ratings` is False (its exports score by the retrieval score instead).
"""
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from contract import features
from models import hparams
from models import inputs
from models import towers


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
    # In-batch negatives are sampled ∝ popularity; logQ correction undoes that bias.
    counts = np.maximum(stats.item_counts, 1).astype(np.float32)
    self.sampling_probability = (tf.constant(counts / counts.sum())
                                 if training.popularity_correction else None)
    self.retrieval_weight = training.retrieval_weight
    self.rating_weight = training.rating_weight

  def embed_queries(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    return self.query_tower(towers.select(inputs, self.query_tower), training=training)

  def embed_candidates(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    return self.candidate_tower(towers.select(inputs, self.candidate_tower), training=training)

  def call(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> Dict[str, tf.Tensor]:
    """'queries' and 'candidates' embeddings, and 'rating' when the model predicts ratings
    (otherwise only the towers run)."""
    if not self.predicts_ratings:
      return {'queries': self.embed_queries(inputs, training),
              'candidates': self.embed_candidates(inputs, training)}
    outputs = self.core(towers.select(inputs, self.core), training=training)
    return {'queries': outputs[towers.QUERY], 'candidates': outputs[towers.CANDIDATE],
            'rating': outputs[towers.RATING]}

  def task_losses(self, inputs: Dict[str, tf.Tensor],
                  outputs: Dict[str, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
    """(retrieval loss summed over the batch, mean squared rating error) on ground truth; the
    rating error is 0 for a model that does not predict ratings."""
    items = inputs[features.ITEM_INDEX]
    retrieval_loss = self.retrieval_task(
        outputs['queries'], outputs['candidates'], candidate_ids=items, compute_metrics=False,
        candidate_sampling_probability=(None if self.sampling_probability is None else
                                        tf.gather(self.sampling_probability, items)))
    rating_loss = (self.rating_task(labels=inputs[features.LABEL], predictions=outputs['rating'])
                   if self.predicts_ratings else tf.constant(0.0))
    return retrieval_loss, rating_loss

  def compute_loss(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    retrieval_loss, rating_loss = self.task_losses(inputs, self(inputs, training=training))
    return self.retrieval_weight * retrieval_loss + self.rating_weight * rating_loss
