"""Custom TFMA metrics, referenced from the EvalConfig by class name and this module's path.

    tfma.MetricConfig(class_name='LikedAUC', module='components.tfma_metrics')
"""
import tensorflow as tf

import compat

# TFMA accepts Keras metrics of the Keras it uses (tf_keras when installed, else tf.keras).
tf_keras = compat.tfma_keras()

LIKED_RATING = 4.0  # a rating at or above this means the user liked the item


class LikedAUC(tf_keras.metrics.AUC):
  """ROC AUC of predicted ratings as scores for "liked" (label rating >= `liked_rating`).

  A predicted rating r becomes the score sigmoid(r - liked_rating), which keeps the ranking of the
  predictions (so the AUC is theirs) and spreads ratings around the cut over AUC's thresholds.
  """

  def __init__(self, name: str = 'liked_auc', liked_rating: float = LIKED_RATING,
               num_thresholds: int = 1000, **kwargs):
    super().__init__(name=name, num_thresholds=num_thresholds, **kwargs)
    self.liked_rating = liked_rating

  def update_state(self, y_true, y_pred, sample_weight=None):
    liked = tf.cast(tf.cast(y_true, tf.float32) >= self.liked_rating, tf.float32)
    score = tf.sigmoid(tf.cast(y_pred, tf.float32) - self.liked_rating)
    return super().update_state(liked, score, sample_weight)

  def get_config(self):
    config = super().get_config()
    config['liked_rating'] = self.liked_rating
    return config
