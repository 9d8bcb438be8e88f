"""The multi-task TFRS model: retrieval (in-batch softmax) and rating prediction on shared towers."""
from typing import Dict

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from models import features
from models import hparams
from models import inputs
from models import towers


class TwoTowerModel(tfrs.Model):
  """Query and candidate towers trained jointly for retrieval and rating regression."""

  def __init__(self, vocab: towers.Vocabularies, size: hparams.TowerHParams,
               training: hparams.TrainingHParams, transform: hparams.TransformHParams,
               stats: inputs.TrainStats):
    super().__init__()
    built = towers.build_towers(vocab, size, transform.history_length, transform.max_genres,
                                transform.max_title_tokens)
    self.query_tower = built['query']
    self.candidate_tower = built['candidate']
    self.rating_head = tf.keras.Sequential([
        tf.keras.layers.Dense(size.rating_hidden_units, activation='relu'),
        tf.keras.layers.Dense(1, bias_initializer=tf.keras.initializers.Constant(stats.mean_rating)),
    ], name='rating_head')
    # Rating = head(query, candidate) + user bias + item bias, as in biased matrix factorisation.
    self.user_bias = tf.keras.layers.Embedding(vocab.users, 1, embeddings_initializer='zeros',
                                               name='user_bias')
    self.item_bias = tf.keras.layers.Embedding(vocab.items, 1, embeddings_initializer='zeros',
                                               name='item_bias')
    self.retrieval_task = tfrs.tasks.Retrieval(remove_accidental_hits=True)
    self.rating_task = tfrs.tasks.Ranking(
        loss=tf.keras.losses.MeanSquaredError(),
        metrics=[tf.keras.metrics.RootMeanSquaredError(name='rmse')])
    # In-batch negatives are sampled ∝ popularity; logQ correction undoes that bias.
    counts = np.maximum(stats.item_counts, 1).astype(np.float32)
    self.sampling_probability = (tf.constant(counts / counts.sum())
                                 if training.popularity_correction else None)
    self.retrieval_weight = training.retrieval_weight
    self.rating_weight = training.rating_weight

  def embed_queries(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    return self.query_tower(towers.select(inputs, towers.QUERY_FEATURES), training=training)

  def embed_candidates(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    return self.candidate_tower(towers.select(inputs, towers.CANDIDATE_FEATURES),
                                training=training)

  def predict_rating(self, inputs: Dict[str, tf.Tensor], queries: tf.Tensor,
                     candidates: tf.Tensor) -> tf.Tensor:
    rating = (self.rating_head(tf.concat([queries, candidates], axis=1))
              + self.user_bias(inputs[features.USER_INDEX])
              + self.item_bias(inputs[features.ITEM_INDEX]))
    return tf.squeeze(rating, axis=1)

  def call(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> Dict[str, tf.Tensor]:
    queries = self.embed_queries(inputs, training)
    candidates = self.embed_candidates(inputs, training)
    return {'queries': queries, 'candidates': candidates,
            'rating': self.predict_rating(inputs, queries, candidates)}

  def compute_loss(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    outputs = self(inputs, training=training)
    items = inputs[features.ITEM_INDEX]
    retrieval_loss = self.retrieval_task(
        outputs['queries'], outputs['candidates'], candidate_ids=items, compute_metrics=False,
        candidate_sampling_probability=(None if self.sampling_probability is None else
                                        tf.gather(self.sampling_probability, items)))
    rating_loss = self.rating_task(labels=inputs[features.LABEL], predictions=outputs['rating'])
    return self.retrieval_weight * retrieval_loss + self.rating_weight * rating_loss
