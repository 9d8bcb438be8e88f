"""Release gates of the retrieval evaluation: may the student candidate replace what is served?

Pure logic over metric dictionaries (the keys of `evaluation.metrics.METRIC_KEYS` plus 'bytes'):
each gate yields a `GateDecision` with a readable reason, and the candidate is blessed only when
every decision passes. Bounds are inclusive (a student exactly at 0.95 x the teacher passes), and
a missing or non-finite value fails its gate: nothing is blessed on evidence that is not there.
"""
import dataclasses
import math
from typing import Dict, List, Mapping, Optional

NDCG_KEY = 'ndcg@10'
BYTES_KEY = 'bytes'
# The settings (`pipeline/configs.py`) that move each gate's outcome: what a user changes when a
# gate refuses the candidate.
SETTINGS = {
    'ndcg_vs_teacher': 'GATES.retrieval.min_ndcg_ratio, or a wider student '
                       '(DISTILLATION.size_budget, STUDENT.embedding_dim)',
    'size_vs_teacher': 'GATES.retrieval.max_size_ratio, or a smaller student '
                       '(DISTILLATION.size_budget, STUDENT.embedding_dim)',
    'ndcg_vs_popularity': 'GATES.retrieval.min_popularity_ratio',
    'evaluator_blessing': 'GATES.rmse_upper_bound, GATES.rating_auc_lower_bound, '
                          'GATES.rmse_max_increase, or FEEDBACK=implicit for data without '
                          'meaningful ratings',
}


@dataclasses.dataclass(frozen=True)
class RetrievalGates:
  """Thresholds of the retrieval gates (the pipeline's are `pipeline.configs.GATES.retrieval`).

  Attributes:
    min_ndcg_ratio: the student's NDCG@10 must be at least this fraction of the teacher's.
    max_size_ratio: the student's SavedModel variables may take at most this fraction of the
      teacher's bytes.
    min_popularity_ratio: the student's NDCG@10 must be at least this multiple of the
      popularity baseline's on the same split: a floor that follows the data (an absolute one
      would refuse every model on a sparse log, and bless a poor one on a dense log).
  """
  min_ndcg_ratio: float
  max_size_ratio: float
  min_popularity_ratio: float

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f'{field.name} must be a finite number >= 0, got {value!r}')


@dataclasses.dataclass(frozen=True)
class Gates:
  """Every threshold a candidate must meet to be pushed (the pipeline's are
  `pipeline.configs.GATES`).

  Attributes:
    rmse_upper_bound: the TFMA Evaluator's bound on the student's eval-split RMSE.
    rating_auc_lower_bound: the Evaluator's bound on the ROC AUC of the predicted rating for
      "rating >= liked_rating".
    rmse_max_increase: the Evaluator's bound on the RMSE's increase over the latest blessed
      model's (the change threshold).
    liked_rating: the rating at or above which a user liked an item (on the data's scale).
    retrieval: the RetrievalEvaluator's gates.
  """
  rmse_upper_bound: float
  rating_auc_lower_bound: float
  rmse_max_increase: float
  liked_rating: float
  retrieval: RetrievalGates


@dataclasses.dataclass(frozen=True)
class GateDecision:
  """One gate's outcome and why."""
  gate: str
  passed: bool
  reason: str


def _value(metrics: Optional[Mapping[str, float]], key: str) -> Optional[float]:
  """metrics[key] as a float when present and finite, else None."""
  if metrics is None or metrics.get(key) is None:
    return None
  value = float(metrics[key])
  return value if math.isfinite(value) else None


def _at_least(gate: str, what: str, value: Optional[float], bound: Optional[float],
              bound_text: str) -> GateDecision:
  if value is None or bound is None:
    missing = what if value is None else bound_text
    return GateDecision(gate, False, f'{missing} is missing: cannot check {gate}')
  passed = value >= bound
  relation = '>=' if passed else '<'
  return GateDecision(gate, passed, f'{what} {value:.4f} {relation} {bound_text} = {bound:.4f}')


def _at_most(gate: str, what: str, value: Optional[float], bound: Optional[float],
             bound_text: str) -> GateDecision:
  if value is None or bound is None:
    missing = what if value is None else bound_text
    return GateDecision(gate, False, f'{missing} is missing: cannot check {gate}')
  passed = value <= bound
  relation = '<=' if passed else '>'
  return GateDecision(gate, passed, f'{what} {value:.0f} {relation} {bound_text} = {bound:.0f}')


def decide(student: Optional[Mapping[str, float]], teacher: Optional[Mapping[str, float]],
           popularity: Optional[Mapping[str, float]],
           gates: RetrievalGates) -> List[GateDecision]:
  """The decisions of every retrieval gate for a student candidate.

  Args:
    student: the candidate's metrics (NDCG_KEY, BYTES_KEY), or None when it was not evaluated.
    teacher: the teacher's metrics, or None when there is no teacher to compare with.
    popularity: the popularity baseline's metrics (NDCG_KEY) on the same split, or None.
    gates: the thresholds.

  Returns:
    One decision per gate: 'ndcg_vs_teacher', 'size_vs_teacher', 'ndcg_vs_popularity'.
  """
  student_ndcg, teacher_ndcg = _value(student, NDCG_KEY), _value(teacher, NDCG_KEY)
  popularity_ndcg = _value(popularity, NDCG_KEY)
  student_bytes, teacher_bytes = _value(student, BYTES_KEY), _value(teacher, BYTES_KEY)
  if teacher_bytes is not None and teacher_bytes <= 0:
    teacher_bytes = None  # an empty teacher is no size reference
  return [
      _at_least('ndcg_vs_teacher', 'student NDCG@10', student_ndcg,
                None if teacher_ndcg is None else gates.min_ndcg_ratio * teacher_ndcg,
                f'{gates.min_ndcg_ratio:g} x teacher NDCG@10'),
      _at_most('size_vs_teacher', 'student bytes', student_bytes,
               None if teacher_bytes is None else gates.max_size_ratio * teacher_bytes,
               f'{gates.max_size_ratio:g} x teacher bytes'),
      _at_least('ndcg_vs_popularity', 'student NDCG@10', student_ndcg,
                None if popularity_ndcg is None
                else gates.min_popularity_ratio * popularity_ndcg,
                f'{gates.min_popularity_ratio:g} x popularity NDCG@10'),
  ]


def upstream_blessing_decision(blessed: Optional[bool]) -> GateDecision:
  """The decision carried over from the TFMA Evaluator's blessing (None: no blessing given)."""
  if blessed is None:
    return GateDecision('evaluator_blessing', False, 'the Evaluator gave no blessing')
  if blessed:
    return GateDecision('evaluator_blessing', True, 'the Evaluator blessed the model')
  return GateDecision('evaluator_blessing', False,
                      'the Evaluator did not bless the model (rating metrics thresholds)')


def all_passed(decisions: List[GateDecision]) -> bool:
  """True when there is at least one decision and every one passed."""
  return bool(decisions) and all(decision.passed for decision in decisions)


def to_dicts(decisions: List[GateDecision]) -> List[Dict[str, object]]:
  """JSON-ready decisions."""
  return [dataclasses.asdict(decision) for decision in decisions]
