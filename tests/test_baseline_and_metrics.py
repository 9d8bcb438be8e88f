"""Tests of the Evaluator's baseline resolution and its custom rating AUC metric."""
import numpy as np
import pytest
from tfx.types import standard_artifacts

from components import baseline_resolver
from components import tfma_metrics


def _model(artifact_id):
  model = standard_artifacts.Model()
  model.id = artifact_id
  return model


def _blessing(artifact_id, model_id, blessed):
  blessing = standard_artifacts.ModelBlessing()
  blessing.id = artifact_id
  blessing.set_int_custom_property('current_model_id', model_id)
  blessing.set_int_custom_property('blessed', int(blessed))
  return blessing


MODELS = [_model(1), _model(5), _model(9)]


def _resolve(candidate_id, blessings):
  return baseline_resolver.latest_blessed_before([_model(candidate_id)], MODELS, blessings)


def test_the_latest_blessed_model_before_the_candidate_is_the_baseline():
  result = _resolve(9, [_blessing(2, 1, True), _blessing(6, 5, True)])
  assert [m.id for m in result['model']] == [5]
  assert [b.id for b in result['model_blessing']] == [6]
  assert [c.id for c in result['candidate']] == [9]


def test_the_candidate_is_never_its_own_baseline():
  # A re-run whose Trainer hit the cache: candidate 9 was blessed by the previous run.
  result = _resolve(9, [_blessing(10, 9, True)])
  assert result['model'] == [] and result['model_blessing'] == []


def test_unblessed_models_are_skipped():
  result = _resolve(9, [_blessing(2, 1, True), _blessing(6, 5, False)])
  assert [m.id for m in result['model']] == [1]


def test_no_blessed_model_means_no_baseline():
  assert _resolve(9, [])['model'] == []


def test_liked_auc_ranks_predicted_ratings():
  labels = np.array([5.0, 4.0, 3.0, 1.0, 4.0, 2.0])
  predictions = np.array([4.5, 3.0, 3.5, 1.0, 4.2, 3.9])
  # Liked: 5, 4, 4 (predicted 4.5, 3.0, 4.2); not liked: 3.5, 1.0, 3.9.
  # Pairs ranked right: 4.5 > all 3; 3.0 > 1.0 only; 4.2 > all 3 -> 7 of 9.
  metric = tfma_metrics.LikedAUC()
  metric.update_state(labels, predictions)
  assert float(metric.result()) == pytest.approx(7 / 9, abs=0.01)
  restored = tfma_metrics.LikedAUC.from_config(metric.get_config())
  assert restored.liked_rating == tfma_metrics.LIKED_RATING
