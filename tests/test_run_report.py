"""Tests of the run report's page and charts, from plain data (no pipeline run)."""
import html
import os

from components.run_report import charts
from components.run_report import page

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
            {'gate': 'ndcg_floor', 'passed': True, 'reason': 'fine <script>'},
        ],
        'blessed': False,
    },
}
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
  assert slices.count('<tr>') == 1 + 5  # the header, a row per slice metric
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
