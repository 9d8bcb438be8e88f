"""Tests of the run report's page, charts and executor, from plain data (no pipeline run)."""
import html
import json
import os

import pytest
from tfx import types
from tfx.types import standard_artifacts

from components import artifacts
from components.retrieval_evaluator import executor as retrieval_executor
from components.run_report import charts
from components.run_report import component
from components.run_report import executor
from components.run_report import page
from evaluation import metrics as metrics_lib

CURVE = [0.1 * k for k in range(1, 11)]
RETRIEVAL = {
    'split': 'test', 'users': 3, 'catalogue_items': 5, 'candidate': 'student_int8',
    'models': {
        'teacher': {'recall@10': 0.5, 'ndcg@10': 0.25, 'bytes': 2_000_000,
                    'latency_mean_ms': 4.0, 'latency_p99_ms': 9.0, 'fidelity@10': 1.0},
        'student_int8': {'recall@10': 0.4, 'ndcg@10': 0.2, 'bytes': 150_000,
                         'latency_mean_ms': 2.0, 'latency_p99_ms': 3.0, 'fidelity@10': 0.7},
        'popularity': {'recall@10': 0.3, 'ndcg@10': 0.15, 'bytes': None,
                       'recall@100_cold_items': None, 'ndcg@10_new_users': 0.125},
    },
    'slice_users': {'cold_items': 0, 'warm_items': 3, 'new_users': 3, 'short_history': 2},
    'recall_curves': {'teacher': CURVE, 'student_int8': CURVE[::-1]},
    'score_sample': {'reference': [1.0, 2.0, 3.0], 'candidate': [1.1, 1.9, 3.2], 'pearson': 0.99},
    'gates': {
        'thresholds': {'min_ndcg_ratio': 0.95, 'max_size_ratio': 0.1, 'min_ndcg': 0.05},
        'decisions': [
            {'gate': 'ndcg_vs_teacher', 'passed': False,
             'reason': 'student NDCG@10 0.2000 < 0.95 x teacher NDCG@10 = 0.2375'},
            {'gate': 'ndcg_vs_popularity', 'passed': True, 'reason': 'fine <script>'},
        ],
        'blessed': False,
    },
}


def _row(model, dim, ndcg, size, gap=None, **extra):
  """A row of `benchmarks/distill.py`'s JSON results."""
  return {'model': model, 'embedding_dim': dim, 'seeds': 3, 'ndcg@10_mean': ndcg,
          'ndcg@10_std': 0.01, 'ndcg@10_per_seed': [ndcg] * 3, 'recall@100_mean': 2 * ndcg,
          'recall@100_std': 0.02, 'recall@100_per_seed': [2 * ndcg] * 3, 'bytes': size,
          'latency_p50_ms': 1.5 if size else None, 'gap_recovered': gap, **extra}


FRONTIER_ROWS = [
    _row('teacher', 64, 0.30, 2_000_000), _row('ease', None, 0.32, None),
    _row('student_scratch', 8, 0.20, 60_000), _row('student_distilled', 8, 0.25, 60_000, 0.5),
    _row('student_int8', 8, 0.24, 20_000, 0.4),
    _row('student_scratch', 16, 0.24, 120_000),
    _row('student_distilled', 16, 0.27, 120_000, 0.5),
    _row('student_int8', 16, 0.27, 40_000, 0.5, default=True),
]
SUMMARY = {'teacher': {'history': {'loss': [3.0, 2.0], 'val_loss': [3.5, 2.5],
                                   'total_loss': [3.0, 2.0]}},
           'student': {'params': 10}}


def test_page_shows_the_metrics_table_and_why_nothing_was_pushed():
  text = page.render({'title': 'run', 'retrieval': RETRIEVAL,
                      'data': {'train': {'examples': 1200, 'users': 3, 'items': 5,
                                         'mean_rating': 3.5}},
                      'tfma': {'metrics': {'root_mean_squared_error': 1.1},
                               'validation_ok': False, 'failures': ['rmse too high']},
                      'push': {'pushed': False}, 'charts': {'recall_curves': 'r.png'}})
  table = text[text.index('<table id="metrics-table">'):]
  table = table[:table.index('</table>')]
  assert '<td class="text">student_int8 (pushed candidate)</td><td>0.4000</td>' in table
  assert '<td>150,000</td>' in table and '<td>-</td>' in table
  reason = html.escape(RETRIEVAL['gates']['decisions'][0]['reason'])
  assert f'Not pushed: {reason}.' in text
  assert 'fine &lt;script&gt;' in text and '<script>' not in text
  assert '1,200' in text and 'rmse too high' in text and 'TFMA thresholds failed' in text
  assert '<img src="r.png" alt="recall_curves">' in text
  slices = text[text.index('<table id="slices-table">'):]
  slices = slices[:slices.index('</table>')]
  assert slices.count('<tr>') == 1 + len(metrics_lib.SLICE_METRIC_KEYS)  # the header, a row each
  assert ('<th>slice metric</th><th>slice</th><th>users</th><th>teacher</th>'
          '<th>student_int8</th><th>popularity</th>') in slices
  assert ('<td class="text">ndcg@10_new_users</td>' in slices and
          '<td>3</td><td>-</td><td>-</td><td>0.1250</td></tr>' in slices)
  # No cold test items: the slice is empty and shows '-'.
  assert '<td class="text">recall@100_cold_items</td>' in slices
  assert '<td>0</td><td>-</td><td>-</td><td>-</td></tr>' in slices


def test_page_of_a_pushed_model():
  text = page.render({'retrieval': {}, 'push': {'pushed': True, 'version': '17',
                                                'destination': '/serving/student/17'}})
  assert 'Pushed version 17: /serving/student/17' in text
  assert 'No retrieval metrics.' in text and 'No charts.' in text


def test_charts_are_written_as_png(tmp_path):
  out = str(tmp_path)
  names = [charts.recall_curves(RETRIEVAL['recall_curves'], out),
           charts.score_scatter(RETRIEVAL['score_sample'], 'student_int8', out),
           charts.size_and_latency(RETRIEVAL['models'], out),
           charts.training_loss(SUMMARY, out)]
  assert names == [charts.RECALL_CURVES, charts.SCORE_SCATTER, charts.SIZE_LATENCY,
                   charts.TRAINING_LOSS]
  for name in names:
    with open(os.path.join(out, name), 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_charts_without_data_are_left_out(tmp_path):
  out = str(tmp_path)
  assert charts.recall_curves({}, out) is None
  assert charts.score_scatter(None, 'student', out) is None
  assert charts.size_and_latency({'popularity': {'bytes': None}}, out) is None
  assert charts.training_loss({'student': {'params': 1}}, out) is None
  assert not os.listdir(out)


def test_page_shows_the_distillation_frontier_and_its_rows():
  text = page.render({'retrieval': RETRIEVAL, 'distillation': {
      'path': '/b/distill.json', 'rows': FRONTIER_ROWS, 'chart': charts.FRONTIER}})
  section = text[text.index('<h2>Distillation frontier</h2>'):]
  assert '/b/distill.json' in section and 'over 3 seeds' in section
  assert f'<img src="{charts.FRONTIER}" alt="frontier">' in section
  table = section[section.index('<table id="frontier-table">'):]
  table = table[:table.index('</table>')]
  assert table.count('<tr>') == 1 + len(FRONTIER_ROWS)
  assert ('<td class="text">student_int8 *</td><td>16</td><td>0.2700 ± 0.0100</td>'
          '<td>0.5400 ± 0.0200</td><td>40,000</td><td>50%</td>') in table
  assert '<td class="text">ease</td><td>-</td><td>0.3200 ± 0.0100</td>' in table
  assert '<td>2,000,000</td><td>-</td></tr>' in table  # the teacher: no gap recovered


def test_page_without_distillation_results_has_no_frontier_section():
  assert 'Distillation frontier' not in page.render({'retrieval': RETRIEVAL})


def test_page_says_in_one_line_why_the_results_were_not_read():
  text = page.render({'retrieval': RETRIEVAL, 'distillation': {
      'path': '/b/<x>.json', 'error': 'Expecting value: line 1 column 1 (char 0)'}})
  section = text[text.index('<h2>Distillation frontier</h2>'):text.index('</body>')]
  (line,) = [line for line in section.splitlines() if 'frontier-error' in line]
  assert line == ('<p class="fail" id="frontier-error">Could not read the distillation results '
                  '/b/&lt;x&gt;.json: Expecting value: line 1 column 1 (char 0)</p>')
  assert '<table' not in section and '<img' not in section


def _run_executor(tmp_path, distill_results):
  """Runs the RunReport executor on RETRIEVAL alone; returns report.html's text and its dir."""
  evaluation = artifacts.RetrievalEvaluation()
  evaluation.uri = str(tmp_path / 'evaluation')
  os.makedirs(evaluation.uri)
  with open(os.path.join(evaluation.uri, retrieval_executor.METRICS_FILE), 'w') as f:
    json.dump(RETRIEVAL, f)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / 'pushed')
  pushed.set_int_custom_property('pushed', 0)
  report = artifacts.RunReport()
  report.uri = str(tmp_path / 'report')
  executor.Executor().Do(
      {executor.RETRIEVAL_EVALUATION_KEY: [evaluation], executor.PUSHED_MODEL_KEY: [pushed]},
      {executor.REPORT_KEY: [report]},
      {executor.TITLE_KEY: 'run', executor.DISTILL_RESULTS_KEY: distill_results})
  with open(os.path.join(report.uri, executor.REPORT_FILE)) as f:
    return f.read(), report.uri


def test_report_draws_the_frontier_of_a_results_file(tmp_path):
  results = tmp_path / 'distill.json'
  results.write_text(json.dumps(FRONTIER_ROWS))
  text, out_dir = _run_executor(tmp_path, str(results))
  assert '<h2>Distillation frontier</h2>' in text and 'id="frontier-table"' in text
  assert f'<img src="{charts.FRONTIER}" alt="frontier">' in text
  with open(os.path.join(out_dir, charts.FRONTIER), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert 'frontier-error' not in text


@pytest.mark.parametrize('content, reason', [
    ('{"model": ', 'Expecting value'),
    ('{"rows": []}', 'expected a non-empty JSON list of rows'),
    ('[]', 'expected a non-empty JSON list of rows'),
    (json.dumps([{'model': 'teacher'}]), "row 0 has no 'embedding_dim'"),
    (json.dumps(FRONTIER_ROWS[:2] + [{**FRONTIER_ROWS[2], 'bytes': 'big'}]),
     "row 2: 'bytes' is 'big'"),
    (None, 'no such file'),
])
def test_an_unreadable_results_file_is_named_and_the_report_still_written(
    tmp_path, caplog, content, reason):
  results = tmp_path / 'distill.json'
  if content is not None:
    results.write_text(content)
  text, out_dir = _run_executor(tmp_path, str(results))
  (line,) = [line for line in text.splitlines() if 'frontier-error' in line]
  assert f'Could not read the distillation results {results}: ' in line
  assert html.escape(reason) in line, line
  assert 'id="metrics-table"' in text  # the rest of the report is there
  assert not os.path.exists(os.path.join(out_dir, charts.FRONTIER))
  assert any('left out of the report' in r.getMessage() and r.levelname == 'WARNING'
             for r in caplog.records)


def test_report_without_results_has_no_frontier_section(tmp_path):
  text, out_dir = _run_executor(tmp_path, '')
  assert 'Distillation frontier' not in text
  assert not os.path.exists(os.path.join(out_dir, charts.FRONTIER))


def test_the_fingerprint_follows_a_local_file_content(tmp_path):
  results = tmp_path / 'distill.json'
  assert executor.results_fingerprint('') == ''
  assert executor.results_fingerprint(str(results)) == ''  # missing
  assert executor.results_fingerprint('gs://bucket/distill.json') == ''
  results.write_text('[1]')
  first = executor.results_fingerprint(str(results))
  results.write_text('[2]')
  assert first and executor.results_fingerprint(str(results)) not in ('', first)


def test_the_component_carries_the_path_and_the_fingerprint(tmp_path):
  results = tmp_path / 'distill.json'
  results.write_text(json.dumps(FRONTIER_ROWS))
  evaluation = types.Channel(type=artifacts.RetrievalEvaluation)
  with_results = component.RunReport(evaluation, distill_results=str(results)).exec_properties
  assert with_results[executor.DISTILL_RESULTS_KEY] == str(results)
  assert with_results[executor.DISTILL_RESULTS_FINGERPRINT_KEY] == executor.results_fingerprint(
      str(results))
  without = component.RunReport(evaluation).exec_properties
  assert without.get(executor.DISTILL_RESULTS_KEY) is None
  assert without.get(executor.DISTILL_RESULTS_FINGERPRINT_KEY) is None


def test_the_pipeline_passes_the_results_path_to_the_run_report(tmp_path):
  from pipeline import configs  # pylint: disable=g-import-not-at-top
  from pipeline import pipeline  # pylint: disable=g-import-not-at-top

  def run_report(**arguments):
    built = pipeline.create_pipeline(
        pipeline_name='p', pipeline_root=str(tmp_path / 'root'), data_source=str(tmp_path),
        schema_file=configs.SCHEMA_FILE, serving_model_dir=str(tmp_path / 'serving'),
        teacher_serving_model_dir=str(tmp_path / 'teacher'),
        **{**configs.pipeline_arguments(), **arguments})
    (report,) = [c for c in built.components if c.id == 'RunReport']
    return report.exec_properties

  results = tmp_path / 'distill.json'
  results.write_text(json.dumps(FRONTIER_ROWS))
  assert run_report(distill_results=str(results))[executor.DISTILL_RESULTS_KEY] == str(results)
  assert run_report(distill_results='').get(executor.DISTILL_RESULTS_KEY) is None


def test_distill_results_come_from_the_environment_and_the_local_runner_flag(monkeypatch):
  import importlib  # pylint: disable=g-import-not-at-top
  from pipeline import configs  # pylint: disable=g-import-not-at-top
  from pipeline import local_runner  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv('DISTILL_RESULTS', 'from_env.json')
  try:
    assert importlib.reload(configs).pipeline_arguments()['distill_results'] == 'from_env.json'
  finally:
    monkeypatch.undo()
    importlib.reload(configs)
  calls = []
  monkeypatch.setattr(local_runner, 'run', lambda *args, **kwargs: calls.append(kwargs) or {
      'pushed': '1', 'report': 'r.html'})
  monkeypatch.setattr(local_runner.progress, 'install', lambda **kwargs: None)
  assert local_runner.main(['--distill-results', 'bench.json']) == 0
  assert local_runner.main([]) == 0
  assert [call['distill_results'] for call in calls] == ['bench.json', configs.DISTILL_RESULTS]


def test_the_page_says_which_feedback_the_run_had_and_why_no_evaluator():
  data = {'train': {'examples': 1200, 'users': 3, 'items': 5, 'mean_rating': 1.0}}
  implicit = page.render({'retrieval': {**RETRIEVAL, 'feedback': 'implicit'}, 'data': data})
  assert 'Feedback: implicit (no ratings): retrieval only' in implicit
  assert 'No Evaluator: implicit feedback has no ratings to gate.' in implicit
  # The constant 1.0 that implicit interactions read as is no mean rating.
  assert '<td>1,200</td>' in implicit and 'mean rating' not in implicit
  explicit = page.render({'retrieval': {**RETRIEVAL, 'feedback': 'explicit'}, 'data': data})
  assert 'mean rating' in explicit and '<td>1.000</td>' in explicit
  assert 'Feedback: explicit (ratings)' in explicit
  assert 'No Evaluator result.' in explicit
  assert 'Feedback: not recorded.' in page.render({'retrieval': RETRIEVAL})
