"""`make bench-distill` on tiny generated data, 2 sizes × 1 seed: the JSON's shape, finite
values and the plot (not quality or timing)."""
import json
import math

from benchmarks import distill
from evaluation import evaluate
from ingest import sparse_testbed
from models import layout
from pipeline import configs


def test_benchmark_writes_a_row_per_model_and_size_and_the_frontier_plot(tmp_path):
  data = tmp_path / 'data'
  sparse_testbed.write(sparse_testbed.generate(sparse_testbed.TestbedConfig(
      num_users=120, num_items=300, num_topics=8, median_history=20)), str(data))
  out = tmp_path / 'distill.json'
  assert distill.main(['--data', str(data), '--output', str(tmp_path / 'run'), '--bench-out',
                       str(out), '--sizes', '4', '--seeds', '1']) == 0
  rows = json.loads(out.read_text())
  # The pipeline's student size, chosen from the teacher's bytes, is always measured.
  default = [row['embedding_dim'] for row in rows if row.get('default')]
  assert len(default) == 1 and default[0] in configs.DISTILLATION.student_dims
  sizes = sorted({4, default[0]})
  # The catalogue has items without train interactions: the teacher and the int8 students are
  # also measured with a fresh quota, and without their content path when it is on.
  teacher_dim = configs.TEACHER.embedding_dim
  variants = lambda kind: (distill.WITH_FRESH_QUOTA[kind],) + (
      (distill.WITHOUT_CONTENT_PATH[kind],) if configs.CONTENT_PATH.epochs else ())
  assert [(row['model'], row['embedding_dim']) for row in rows] == (
      [(layout.TEACHER, teacher_dim)]
      + [(variant, teacher_dim) for variant in variants(layout.TEACHER)] + [(evaluate.EASE, None)]
      + [(kind, dim) for dim in sizes
         for kind in distill.STUDENT_KINDS + variants(distill.INT8)])
  for row in rows:
    assert row['seeds'] == 1
    for name in ('ndcg@10_mean', 'ndcg@10_std', 'recall@100_mean', 'recall@100_std'):
      assert math.isfinite(row[name]) and row[name] >= 0, (row, name)
    if row['model'] != evaluate.EASE:
      assert row['bytes'] > 0 and math.isfinite(row['latency_p50_ms']), row
    if row['model'] in (distill.DISTILLED, distill.INT8):
      assert row['gap_recovered'] is None or math.isfinite(row['gap_recovered'])
  assert (tmp_path / 'distill.png').stat().st_size > 0


def test_the_set_option_overrides_distillation_and_training_fields_and_rejects_unknown_ones():
  changed, trained = distill._override(
      [configs.DISTILLATION, configs.TRAINING],
      ['temperature=2', 'alpha=0.2', 'mixed_negatives=64', 'popularity_correction=0.5'])
  assert changed.temperature == 2.0 and changed.alpha == 0.2
  assert changed.epochs == configs.DISTILLATION.epochs
  assert trained.mixed_negatives == 64 and trained.popularity_correction == 0.5
  assert trained.epochs == configs.TRAINING.epochs
  assert distill.main(['--set', 'no_such_field=1']) == 2


def test_findings_of_a_teacher_only_run_compare_it_with_ease_and_say_nothing_of_students():
  rows = [{'model': 'teacher', 'embedding_dim': 64, 'ndcg@10_mean': 0.12,
           'recall@100_mean': 0.33},
          {'model': evaluate.EASE, 'embedding_dim': None, 'ndcg@10_mean': 0.10,
           'recall@100_mean': 0.30}]
  assert distill.findings(rows) == ['Teacher against EASE: NDCG@10 1.20x, Recall@100 1.10x.']
