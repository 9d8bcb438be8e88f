"""The TFRS "basic retrieval" baseline: ID embeddings only, in-batch softmax (the TFRS tutorial).

It is a reference row of the quality benchmark, trained directly on the train interactions.
"""
from typing import Dict

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from contract import features


class IdRetrievalModel(tfrs.Model):
  """User and item id embeddings scored by dot product."""

  def __init__(self, user_ids: np.ndarray, item_ids: np.ndarray, embedding_dim: int):
    super().__init__()
    def tower(vocabulary):
      return tf.keras.Sequential([
          tf.keras.layers.StringLookup(vocabulary=vocabulary, mask_token=None),
          tf.keras.layers.Embedding(len(vocabulary) + 1, embedding_dim)])
    self.user_model = tower(user_ids)
    self.item_model = tower(item_ids)
    self.task = tfrs.tasks.Retrieval()

  def compute_loss(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    return self.task(self.user_model(inputs[features.USER_ID]),
                     self.item_model(inputs[features.ITEM_ID]), compute_metrics=False)


def train_and_score(train: pd.DataFrame, users: pd.Index, items: pd.Index,
                    embedding_dim: int = 32, learning_rate: float = 0.1, epochs: int = 3,
                    batch_size: int = 8192, seed: int = 42):
  """Trains on `train` and returns (model, scores [len(users), len(items)])."""
  tf.keras.utils.set_random_seed(seed)
  model = IdRetrievalModel(np.unique(train[features.USER_ID]), np.unique(train[features.ITEM_ID]),
                           embedding_dim)
  model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate))
  data = tf.data.Dataset.from_tensor_slices({
      features.USER_ID: train[features.USER_ID].to_numpy(dtype=str),
      features.ITEM_ID: train[features.ITEM_ID].to_numpy(dtype=str)})
  model.fit(data.shuffle(len(train), seed=seed).batch(batch_size), epochs=epochs, verbose=0)
  user_vectors = model.user_model(tf.constant(users.to_numpy(dtype=str))).numpy()
  item_vectors = model.item_model(tf.constant(items.to_numpy(dtype=str))).numpy()
  return model, user_vectors @ item_vectors.T
