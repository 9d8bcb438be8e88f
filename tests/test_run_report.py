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
from components.run_report import history
from components.run_report import page
from contract import versions
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


def _run_executor(tmp_path, distill_results, serving_model_dir='', pushed_version=None,
                  retrieval=None, name='report'):
  """Runs the RunReport executor on RETRIEVAL (or `retrieval`) alone, after a Pusher that pushed
  `pushed_version` into `serving_model_dir` (None: pushed nothing); returns report.html's text
  and its dir."""
  evaluation = artifacts.RetrievalEvaluation()
  evaluation.uri = str(tmp_path / f'{name}-evaluation')
  os.makedirs(evaluation.uri)
  with open(os.path.join(evaluation.uri, retrieval_executor.METRICS_FILE), 'w') as f:
    json.dump(retrieval or RETRIEVAL, f)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / f'{name}-pushed')
  pushed.set_int_custom_property('pushed', 0 if pushed_version is None else 1)
  if pushed_version is not None:
    pushed.set_string_custom_property('pushed_version', pushed_version)
    pushed.set_string_custom_property('pushed_destination',
                                      os.path.join(serving_model_dir, pushed_version))
  report = artifacts.RunReport()
  report.uri = str(tmp_path / name)
  executor.Executor().Do(
      {executor.RETRIEVAL_EVALUATION_KEY: [evaluation], executor.PUSHED_MODEL_KEY: [pushed]},
      {executor.REPORT_KEY: [report]},
      {executor.TITLE_KEY: 'run', executor.DISTILL_RESULTS_KEY: distill_results,
       executor.SERVING_MODEL_DIR_KEY: serving_model_dir})
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


def test_the_pipeline_passes_the_results_path_and_serving_dir_to_the_run_report(tmp_path):
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
  # The Pusher's base directory, where the report keeps the pushed versions' history.
  assert run_report()[executor.SERVING_MODEL_DIR_KEY] == str(tmp_path / 'serving')


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


# The pushed versions' history.

V1, V2 = '1700000000', '1700086400'  # the Pusher's versions: push times, a day apart


def _retrieval(ndcg, recall, size, spans):
  """A metrics.json whose candidate has these NDCG@10, Recall@100 and bytes."""
  return {**RETRIEVAL, 'window_spans': spans, 'models': {
      **RETRIEVAL['models'],
      'student_int8': {**RETRIEVAL['models']['student_int8'], 'ndcg@10': ndcg,
                       'recall@100': recall, 'bytes': size}}}


def _push_version(base, version):
  """A version directory as the Pusher leaves it (the files' content does not matter here)."""
  os.makedirs(os.path.join(base, version, 'variables'))
  with open(os.path.join(base, version, 'saved_model.pb'), 'wb') as f:
    f.write(b'graph')
  return os.path.join(base, version)


def _files(directory):
  return sorted(os.path.relpath(os.path.join(root, name), directory)
                for root, _, names in os.walk(directory) for name in names)


def test_a_record_holds_the_candidate_metrics_date_and_window():
  record = history.make_record(V1, _retrieval(0.2, 0.6, 150_000, [2, 3]))
  assert record == {'version': int(V1), 'date': '2023-11-14 22:13 UTC', 'window_spans': [2, 3],
                    'model': 'student_int8', 'ndcg@10': 0.2, 'recall@100': 0.6,
                    'bytes': 150_000}
  assert set(record) == set(history.RECORD_TYPES)
  # Data without spans: all of it.
  assert history.make_record(V1, RETRIEVAL)['window_spans'] is None


def test_the_history_has_a_row_per_version_and_says_why_one_has_no_values(tmp_path):
  base = str(tmp_path / 'serving')
  good = history.make_record('100', _retrieval(0.2, 0.6, 150_000, [1]))
  for version in ('100', '200', '400', '500', '600'):
    _push_version(base, version)
  history.write_record(base, good)
  history.write_record(base, {**good, 'version': 300})  # its directory was removed since
  records = os.path.join(base, history.HISTORY_DIR)
  with open(os.path.join(records, '200.json'), 'w') as f:
    f.write('{"version": 2')  # cut short
  with open(os.path.join(records, '500.json'), 'w') as f:
    json.dump({**good, 'version': 500, 'ndcg@10': 'high'}, f)
  with open(os.path.join(records, '600.json'), 'w') as f:
    json.dump({**good, 'version': 6}, f)  # another version's record
  # Neither versions nor records: the history directory, stray files.
  for stray in ('notes.txt', os.path.join(history.HISTORY_DIR, '700.json.tmp')):
    with open(os.path.join(base, stray), 'w') as f:
      f.write('x')
  rows = history.read_history(base)
  assert [row['version'] for row in rows] == [100, 200, 300, 400, 500, 600]
  assert rows[0] == {**good, 'note': ''}
  assert rows[1]['note'].startswith('unreadable record: ') and 'date' not in rows[1]
  assert rows[2] == {**good, 'version': 300, 'note': history.REMOVED}
  assert rows[3] == {'version': 400, 'note': history.NO_RECORD}
  assert rows[4] == {'version': 500, 'note': "unreadable record: 'ndcg@10' is 'high'"}
  assert rows[5] == {'version': 600, 'note': "unreadable record: 'version' is 6"}
  # The history is no version to TF Serving's numbering.
  assert sorted(versions.version_dirs(base)) == [100, 200, 400, 500, 600]


def test_no_base_directory_is_no_history(tmp_path):
  assert history.read_history(str(tmp_path / 'missing')) == []


def test_the_history_chart_needs_two_versions_with_metrics(tmp_path):
  out = str(tmp_path)
  first = {**history.make_record(V1, _retrieval(0.2, 0.6, 1, [1])), 'note': ''}
  second = {**history.make_record(V2, _retrieval(0.25, None, 1, [1, 2])), 'note': ''}
  no_record = {'version': 5, 'note': history.NO_RECORD}
  assert charts.version_history([first, no_record], out) is None
  assert not os.listdir(out)
  assert charts.version_history([first, no_record, second], out) == charts.VERSION_HISTORY
  with open(os.path.join(out, charts.VERSION_HISTORY), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def _history_table(text):
  table = text[text.index('<table id="version-history">'):]
  return table[:table.index('</table>')]


def test_page_shows_the_pushed_versions_oldest_first():
  rows = [{**history.make_record(V1, _retrieval(0.2, 0.6, 150_000, None)), 'note': ''},
          {'version': 1700050000, 'note': history.NO_RECORD},
          {**history.make_record(V2, _retrieval(0.25, 0.65, 160_000, [2, 3, 4])), 'note': ''},
          {**history.make_record('1700090000', _retrieval(0.3, 0.7, 170_000, [2, 4])),
           'note': history.REMOVED}]
  text = page.render({'retrieval': RETRIEVAL, 'push': {'pushed': True, 'version': V2},
                      'history': {'base_dir': '/serving/student', 'rows': rows,
                                  'chart': charts.VERSION_HISTORY}})
  section = text[text.index('<h2>Pushed versions</h2>'):text.index('<h2>Data</h2>')]
  assert 'The versions pushed to /serving/student, oldest first' in section
  table = _history_table(section)
  assert ('<th>version</th><th>date</th><th>window (spans)</th><th>NDCG@10</th>'
          '<th>Recall@100</th><th>bytes</th><th>note</th>') in table
  assert table.count('<tr>') == 1 + len(rows)
  assert (f'<td class="text">{V1}</td><td class="text">2023-11-14 22:13 UTC</td>'
          '<td class="text">all</td><td>0.2000</td><td>0.6000</td><td>150,000</td>'
          '<td class="text"></td></tr>') in table
  assert ('<td class="text">1700050000</td><td class="text">-</td><td class="text">-</td>'
          '<td>-</td><td>-</td><td>-</td><td class="text">no record</td>') in table
  assert '<td class="text">2-4</td><td>0.2500</td>' in table
  assert '<td class="text">2, 4</td>' in table and 'version directory removed' in table
  assert table.index(V1) < table.index(V2)
  assert f'<img src="{charts.VERSION_HISTORY}" alt="version_history">' in section


def test_page_of_a_single_version_or_none_or_an_unreadable_base():
  row = {**history.make_record(V1, _retrieval(0.2, 0.6, 150_000, [1])), 'note': ''}
  single = page.render({'retrieval': RETRIEVAL, 'history': {
      'base_dir': '/s', 'rows': [row], 'chart': None}})
  assert _history_table(single).count('<tr>') == 2
  assert '<td class="text">1</td>' in _history_table(single)
  assert 'alt="version_history"' not in single
  none = page.render({'retrieval': RETRIEVAL, 'history': {'base_dir': '/s', 'rows': [],
                                                          'chart': None}})
  assert 'No version pushed to /s yet.' in none and 'version-history' not in none
  unreadable = page.render({'retrieval': RETRIEVAL, 'history': {
      'base_dir': 'gs://b/<s>', 'error': 'permission denied'}})
  assert ('<p class="fail" id="history-error">Could not read the pushed versions in '
          'gs://b/&lt;s&gt;: permission denied</p>') in unreadable
  # Without a serving directory: no section.
  assert 'Pushed versions' not in page.render({'retrieval': RETRIEVAL})


def test_each_report_records_its_push_and_shows_every_version(tmp_path):
  base = str(tmp_path / 'serving')
  first_dir = _push_version(base, V1)
  before = _files(first_dir)
  text, out_dir = _run_executor(tmp_path, '', base, V1, _retrieval(0.2, 0.6, 150_000, [1]),
                                'first')
  assert _history_table(text).count('<tr>') == 2
  assert 'alt="version_history"' not in text  # one version: no line to draw
  assert not os.path.exists(os.path.join(out_dir, charts.VERSION_HISTORY))
  # The record lies beside the version, which stays as the Pusher wrote it.
  assert _files(first_dir) == before
  assert os.path.isfile(history.record_path(base, int(V1)))
  assert sorted(versions.version_dirs(base)) == [int(V1)]

  _push_version(base, V2)
  text, out_dir = _run_executor(tmp_path, '', base, V2,
                                _retrieval(0.25, 0.65, 160_000, [1, 2]), 'second')
  table = _history_table(text)
  assert table.count('<tr>') == 3
  assert '<td class="text">1</td><td>0.2000</td>' in table
  assert '<td class="text">1-2</td><td>0.2500</td><td>0.6500</td><td>160,000</td>' in table
  assert f'<img src="{charts.VERSION_HISTORY}" alt="version_history">' in text
  assert os.path.isfile(os.path.join(out_dir, charts.VERSION_HISTORY))

  # A run that pushed nothing records nothing and still shows the history.
  text, _ = _run_executor(tmp_path, '', base, None, name='unpushed')
  assert _history_table(text).count('<tr>') == 3
  assert sorted(os.listdir(os.path.join(base, history.HISTORY_DIR))) == [
      f'{V1}.json', f'{V2}.json']


def test_a_record_that_cannot_be_written_or_read_does_not_fail_the_report(
    tmp_path, caplog, monkeypatch):
  blocked = tmp_path / 'file'
  blocked.write_text('not a directory')
  text, _ = _run_executor(tmp_path, '', str(blocked / 'serving'), V1, name='blocked')
  assert 'No version pushed to' in text and 'id="metrics-table"' in text
  assert any('No history record of pushed version' in r.getMessage() and
             r.levelname == 'WARNING' for r in caplog.records)

  def unreadable(base_dir):
    raise OSError(f'{base_dir}: permission denied')

  monkeypatch.setattr(history, 'read_history', unreadable)
  text, _ = _run_executor(tmp_path, '', str(tmp_path / 'serving'), None, name='denied')
  assert 'id="history-error"' in text and 'permission denied' in text
  assert 'id="metrics-table"' in text


def test_the_component_carries_the_serving_directory():
  evaluation = types.Channel(type=artifacts.RetrievalEvaluation)
  properties = component.RunReport(evaluation, serving_model_dir='gs://b/serving').exec_properties
  assert properties[executor.SERVING_MODEL_DIR_KEY] == 'gs://b/serving'
  assert component.RunReport(evaluation).exec_properties.get(
      executor.SERVING_MODEL_DIR_KEY) is None
