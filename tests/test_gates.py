"""Tests of the retrieval release gates: thresholds, missing evidence, equal values."""
import dataclasses
import math

import pytest

from components import gates
from pipeline import configs

TEACHER = {'ndcg@10': 0.20, 'bytes': 1_000_000}
GOOD_STUDENT = {'ndcg@10': 0.19, 'bytes': 90_000}
POPULARITY = {'ndcg@10': 0.05}
THRESHOLDS = gates.RetrievalGates(min_ndcg_ratio=0.95, max_size_ratio=0.10,
                                  min_popularity_ratio=1.0)


def decisions_by_gate(student, teacher, thresholds=THRESHOLDS, popularity=POPULARITY):
  return {d.gate: d for d in gates.decide(student, teacher, popularity, thresholds)}


def test_a_good_student_passes_every_gate():
  decisions = gates.decide(GOOD_STUDENT, TEACHER, POPULARITY, THRESHOLDS)
  assert [d.gate for d in decisions] == ['ndcg_vs_teacher', 'size_vs_teacher',
                                         'ndcg_vs_popularity']
  assert gates.all_passed(decisions)
  assert 'student NDCG@10 0.1900 >= 0.95 x teacher NDCG@10 = 0.1900' == decisions[0].reason


def test_a_weak_student_fails_the_teacher_ratio_with_its_reason():
  decision = decisions_by_gate({'ndcg@10': 0.15, 'bytes': 90_000}, TEACHER)['ndcg_vs_teacher']
  assert not decision.passed
  assert decision.reason == 'student NDCG@10 0.1500 < 0.95 x teacher NDCG@10 = 0.1900'


def test_a_big_student_fails_the_size_gate():
  decisions = decisions_by_gate({'ndcg@10': 0.2, 'bytes': 100_001}, TEACHER)
  assert not decisions['size_vs_teacher'].passed
  assert '100001 > 0.1 x teacher bytes = 100000' in decisions['size_vs_teacher'].reason
  assert decisions['ndcg_vs_teacher'].passed and decisions['ndcg_vs_popularity'].passed


def test_equal_values_pass_inclusive_bounds():
  thresholds = gates.RetrievalGates(min_ndcg_ratio=1.0, max_size_ratio=1.0,
                                    min_popularity_ratio=4.0)
  assert gates.all_passed(gates.decide(dict(TEACHER), TEACHER, POPULARITY, thresholds))


def test_the_popularity_floor_holds_even_when_the_teacher_is_weak():
  weak_teacher = {'ndcg@10': 0.01, 'bytes': 1_000_000}
  decisions = decisions_by_gate({'ndcg@10': 0.02, 'bytes': 1_000}, weak_teacher)
  assert decisions['ndcg_vs_teacher'].passed
  assert not decisions['ndcg_vs_popularity'].passed
  assert (decisions['ndcg_vs_popularity'].reason
          == 'student NDCG@10 0.0200 < 1 x popularity NDCG@10 = 0.0500')


def test_the_popularity_floor_follows_the_data():
  sparse_log_student = {'ndcg@10': 0.03, 'bytes': 1_000}
  assert decisions_by_gate(sparse_log_student, TEACHER,
                           popularity={'ndcg@10': 0.01})['ndcg_vs_popularity'].passed
  assert not decisions_by_gate(sparse_log_student, TEACHER,
                               popularity={'ndcg@10': 0.04})['ndcg_vs_popularity'].passed
  missing = decisions_by_gate(sparse_log_student, TEACHER, popularity=None)['ndcg_vs_popularity']
  assert not missing.passed and 'missing' in missing.reason


@pytest.mark.parametrize('teacher', [None, {}, {'ndcg@10': float('nan'), 'bytes': 0}])
def test_a_missing_teacher_fails_the_relative_gates(teacher):
  decisions = decisions_by_gate(GOOD_STUDENT, teacher)
  assert not decisions['ndcg_vs_teacher'].passed
  assert not decisions['size_vs_teacher'].passed
  assert 'missing' in decisions['ndcg_vs_teacher'].reason
  assert decisions['ndcg_vs_popularity'].passed  # the floor needs no teacher
  assert not gates.all_passed(list(decisions.values()))


@pytest.mark.parametrize('student', [None, {'bytes': 1}, {'ndcg@10': math.inf, 'bytes': 1}])
def test_a_missing_student_metric_fails(student):
  decisions = decisions_by_gate(student, TEACHER)
  assert not decisions['ndcg_vs_teacher'].passed
  assert decisions['ndcg_vs_teacher'].reason.startswith('student NDCG@10 is missing')
  assert not decisions['ndcg_vs_popularity'].passed


def test_lenient_gates_bless_anything_measured():
  lenient = gates.RetrievalGates(min_ndcg_ratio=0.0, max_size_ratio=1e9,
                                 min_popularity_ratio=0.0)
  assert gates.all_passed(gates.decide({'ndcg@10': 0.0, 'bytes': 5}, TEACHER, POPULARITY,
                                       lenient))


@pytest.mark.parametrize('field', ['min_ndcg_ratio', 'max_size_ratio', 'min_popularity_ratio'])
@pytest.mark.parametrize('value', [-0.1, math.nan, '0.5'])
def test_bad_thresholds_are_rejected(field, value):
  with pytest.raises(ValueError, match=field):
    gates.RetrievalGates(**{**dataclasses.asdict(THRESHOLDS), field: value})


def test_the_pipeline_thresholds_make_valid_gates():
  assert isinstance(configs.GATES.retrieval, gates.RetrievalGates)
  assert gates.RetrievalGates(**dataclasses.asdict(configs.GATES.retrieval)) == (
      configs.GATES.retrieval)


def test_upstream_blessing():
  assert gates.upstream_blessing_decision(True).passed
  assert not gates.upstream_blessing_decision(False).passed
  assert 'did not bless' in gates.upstream_blessing_decision(False).reason
  assert not gates.upstream_blessing_decision(None).passed


def test_all_passed_needs_decisions():
  assert not gates.all_passed([])
  assert gates.to_dicts([gates.GateDecision('g', True, 'r')]) == [
      {'gate': 'g', 'passed': True, 'reason': 'r'}]


def test_the_evaluator_asks_the_liked_auc_at_the_configured_liked_rating():
  """Thumbs down/up as 0/1: a liked_rating of 1 makes "liked" the thumbs up."""
  import json  # pylint: disable=g-import-not-at-top
  from components import tfma_metrics  # pylint: disable=g-import-not-at-top
  from pipeline import pipeline  # pylint: disable=g-import-not-at-top
  config = pipeline.eval_config(gates.Gates(rmse_upper_bound=0.6, rating_auc_lower_bound=0.6,
                                            rmse_max_increase=0.05, liked_rating=1.0,
                                            retrieval=THRESHOLDS))
  (liked,) = [metric for metric in config.metrics_specs[0].metrics
              if metric.class_name == tfma_metrics.LikedAUC.__name__]
  assert json.loads(liked.config) == {'liked_rating': 1.0}
  auc = tfma_metrics.LikedAUC(**json.loads(liked.config))
  auc.update_state([0.0, 1.0, 0.0, 1.0], [0.2, 0.9, 0.4, 0.6])
  assert float(auc.result()) == pytest.approx(1.0)


def test_every_gate_names_the_settings_that_move_it():
  names = {d.gate for d in gates.decide(GOOD_STUDENT, TEACHER, POPULARITY, THRESHOLDS)}
  names.add(gates.upstream_blessing_decision(False).gate)
  assert names == set(gates.SETTINGS)
