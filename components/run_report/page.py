"""The run report's HTML page: one self-contained file beside its PNG charts.

`render` takes the report's content as plain data (see its docstring) and returns the page; it
does no I/O, so the page can be tested from a dictionary.
"""
import html
from typing import Dict, List, Mapping, Optional, Sequence

from components.run_report import history as history_lib
from contract import features
from evaluation import metrics as metrics_lib
from evaluation import protocol

# Columns of the metrics table: (key in a model's metrics, header, format).
METRIC_COLUMNS = (
    ('recall@10', 'Recall@10', '{:.4f}'),
    ('recall@50', 'Recall@50', '{:.4f}'),
    ('recall@100', 'Recall@100', '{:.4f}'),
    ('ndcg@10', 'NDCG@10', '{:.4f}'),
    ('coverage@10', 'coverage@10', '{:.4f}'),
    ('novelty@10', 'novelty@10 (bits)', '{:.3f}'),
    ('fidelity@10', 'fidelity@10', '{:.3f}'),
    ('rmse', 'RMSE', '{:.4f}'),
    ('bytes', 'bytes', '{:,.0f}'),
    ('latency_mean_ms', 'latency mean (ms)', '{:.2f}'),
    ('latency_p99_ms', 'latency p99 (ms)', '{:.2f}'),
)
# What each slice of the slices table (a row per slice metric) holds.
SLICE_DESCRIPTIONS = {
    protocol.COLD_ITEMS: 'targets whose item has no train interaction',
    protocol.WARM_ITEMS: 'targets whose item has train interactions',
    protocol.NEW_USERS: 'every query, asked with an unknown user id (history and side features '
                        'kept)',
    protocol.SHORT_HISTORY: (f'users with at most {protocol.SHORT_HISTORY_MAX_TRAIN} train '
                             'interactions'),
    protocol.LONG_TAIL: (f'targets whose item is not among the {protocol.HEAD_SHARE:.0%} most '
                         'popular train items'),
}
CHART_TITLES = {
    'recall_curves': 'Recall@K curves',
    'score_scatter': 'Teacher vs student scores',
    'size_latency': 'Size and latency',
    'training_loss': 'Training loss',
}
_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 75em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
th { background: #f3f3f3; }
.pass { color: #17692c; font-weight: bold; }
.fail { color: #b00020; font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 1.5em; }
"""


def _text(value) -> str:
  return html.escape(str(value))


def _cell(value, fmt: str) -> str:
  if value is None:
    return '<td>-</td>'
  try:
    return f'<td>{_text(fmt.format(value))}</td>'
  except (TypeError, ValueError):
    return f'<td>{_text(value)}</td>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], table_id: str = '') -> str:
  """A table from already-rendered <td> cells."""
  head = ''.join(f'<th>{_text(h)}</th>' for h in headers)
  body = ''.join(f'<tr>{"".join(row)}</tr>' for row in rows)
  attribute = f' id="{table_id}"' if table_id else ''
  return f'<table{attribute}><tr>{head}</tr>{body}</table>'


def _verdict(passed: Optional[bool]) -> str:
  if passed is None:
    return '<td class="text">-</td>'
  return ('<td class="text pass">PASS</td>' if passed else '<td class="text fail">FAIL</td>')


def _data_section(splits: Mapping[str, Mapping[str, object]],
                  feedback: Optional[str] = None) -> str:
  """Per split: examples, distinct users and items, and the mean rating, which implicit feedback
  does not have (its interactions all read as 1.0)."""
  if not splits:
    return '<p>No data statistics.</p>'
  rated = feedback != features.IMPLICIT
  rows = [[f'<td class="text">{_text(name)}</td>', _cell(s.get('examples'), '{:,}'),
           _cell(s.get('users'), '{:,}'), _cell(s.get('items'), '{:,}')]
          + ([_cell(s.get('mean_rating'), '{:.3f}')] if rated else [])
          for name, s in splits.items()]
  return _table(['split', 'examples', 'distinct users', 'distinct items']
                + (['mean rating'] if rated else []), rows, 'data-statistics')


FEEDBACK_TEXT = {
    features.EXPLICIT: 'explicit (ratings): the teacher and the students learn retrieval and '
                       'ratings, and the Evaluator gates the rating signature',
    features.IMPLICIT: 'implicit (no ratings): retrieval only, no rating head; the retrieval '
                       'gates bless alone (no Evaluator)',
}


def _feedback_line(feedback: Optional[str]) -> str:
  text = FEEDBACK_TEXT.get(feedback, 'not recorded') if feedback else 'not recorded'
  return f'<p id="feedback">Feedback: {_text(text)}.</p>'


def _metrics_section(retrieval: Mapping[str, object]) -> str:
  models: Dict[str, Mapping[str, object]] = retrieval.get('models') or {}
  if not models:
    return '<p>No retrieval metrics.</p>'
  candidate = retrieval.get('candidate')
  rows = []
  for name, metrics in models.items():
    label = f'{name} (pushed candidate)' if name == candidate else name
    rows.append([f'<td class="text">{_text(label)}</td>'] +
                [_cell(metrics.get(key), fmt) for key, _, fmt in METRIC_COLUMNS])
  intro = (f'<p>Split {_text(retrieval.get("split"))}: {_text(retrieval.get("users"))} users, '
           f'{_text(retrieval.get("catalogue_items"))} catalogue items; full-catalogue ranking '
           'with already-seen items excluded. Fidelity is the top-10 overlap with the teacher; '
           'bytes are the SavedModel variables.</p>')
  return intro + _table(['model'] + [header for _, header, _ in METRIC_COLUMNS], rows,
                        'metrics-table')


def _slices_section(retrieval: Mapping[str, object]) -> str:
  """A row per slice metric (`metrics.SLICE_METRIC_KEYS`), a column per model; '-' where a
  slice has no users or a model has no value."""
  models: Dict[str, Mapping[str, object]] = retrieval.get('models') or {}
  if not models:
    return '<p>No slice metrics.</p>'
  users = retrieval.get('slice_users') or {}
  rows = []
  for metric, name in metrics_lib.SLICE_METRICS:
    rows.append([f'<td class="text">{_text(metrics_lib.slice_key(metric, name))}</td>',
                 f'<td class="text">{_text(SLICE_DESCRIPTIONS.get(name, name))}</td>',
                 _cell(users.get(name), '{:,}')] +
                [_cell(metrics.get(metrics_lib.slice_key(metric, name)), '{:.4f}')
                 for metrics in models.values()])
  return _table(['slice metric', 'slice', 'users'] + list(models), rows, 'slices-table')


def _gates_section(retrieval: Mapping[str, object]) -> str:
  gates = retrieval.get('gates') or {}
  decisions: List[Mapping[str, object]] = gates.get('decisions') or []
  rows = [[f'<td class="text">{_text(d["gate"])}</td>', _verdict(d['passed']),
           f'<td class="text">{_text(d["reason"])}</td>'] for d in decisions]
  thresholds = ', '.join(f'{_text(k)} = {_text(v)}'
                         for k, v in sorted((gates.get('thresholds') or {}).items()))
  blessed = gates.get('blessed')
  outcome = ('<p class="pass">The candidate is blessed.</p>' if blessed else
             '<p class="fail">The candidate is NOT blessed: it is not pushed.</p>')
  return (f'<p>Thresholds: {thresholds or "-"}</p>' +
          _table(['gate', 'result', 'reason'], rows, 'gate-decisions') + outcome)


def _tfma_section(tfma: Optional[Mapping[str, object]], feedback: Optional[str] = None) -> str:
  if not tfma:
    if feedback == features.IMPLICIT:
      return '<p>No Evaluator: implicit feedback has no ratings to gate.</p>'
    return '<p>No Evaluator result.</p>'
  rows = [[f'<td class="text">{_text(name)}</td>', _cell(value, '{:.4f}')]
          for name, value in sorted((tfma.get('metrics') or {}).items())]
  parts = [_table(['metric (eval split, overall slice)', 'value'], rows, 'tfma-metrics')]
  validation_ok = tfma.get('validation_ok')
  if validation_ok is None:
    parts.append('<p>No validation result.</p>')
  elif validation_ok:
    parts.append('<p class="pass">Every TFMA threshold holds.</p>')
  else:
    failures = ''.join(f'<li>{_text(f)}</li>' for f in tfma.get('failures') or [])
    parts.append(f'<p class="fail">TFMA thresholds failed:</p><ul>{failures}</ul>')
  return ''.join(parts)


def _push_section(push: Optional[Mapping[str, object]],
                  retrieval: Mapping[str, object]) -> str:
  if push and push.get('pushed'):
    return (f'<p class="pass" id="push-outcome">Pushed version {_text(push.get("version"))}: '
            f'{_text(push.get("destination"))}</p>')
  failed = [d['reason'] for d in (retrieval.get('gates') or {}).get('decisions') or []
            if not d['passed']]
  why = '; '.join(failed) if failed else 'the model was not blessed'
  return f'<p class="fail" id="push-outcome">Not pushed: {_text(why)}.</p>'


def _gap(value) -> str:
  return '<td>-</td>' if value is None else _cell(value, '{:.0%}')


def _mean_std(row: Mapping[str, object], metric: str) -> str:
  return f'<td>{row[metric + "_mean"]:.4f} ± {row[metric + "_std"]:.4f}</td>'


def _distillation_section(distillation: Mapping[str, object]) -> str:
  """The distillation benchmark's frontier chart and rows (`benchmarks/distill.py`), or one line
  saying why its file could not be read."""
  path = _text(distillation.get('path'))
  if distillation.get('error') is not None:
    return (f'<p class="fail" id="frontier-error">Could not read the distillation results '
            f'{path}: {_text(distillation["error"])}</p>')
  rows: Sequence[Mapping[str, object]] = distillation.get('rows') or []
  seeds = sorted({row['seeds'] for row in rows if isinstance(row.get('seeds'), int)})
  over = f' over {"/".join(map(str, seeds))} seeds' if seeds else ''
  caption = (f'<p>From the distillation benchmark\'s results {path}: NDCG@10 (mean ± std{over}) '
             'against the SavedModel\'s bytes (log scale) of the students trained without the '
             'teacher (scratch), distilled, and distilled then int8-quantized, at every size; the '
             'teacher and EASE are horizontal lines. Gap recovered = (student − scratch) / '
             '(teacher − scratch) of the mean NDCG@10. * marks the pipeline\'s default '
             'student.</p>')
  chart = distillation.get('chart')
  image = (f'<img src="{_text(chart)}" alt="frontier">' if chart else
           '<p>No student row with bytes to plot.</p>')
  table = _table(
      ['model', 'dim', 'NDCG@10 (mean ± std)', 'Recall@100 (mean ± std)', 'bytes',
       'gap recovered'],
      [[f'<td class="text">{_text(row["model"])}{" *" if row.get("default") else ""}</td>',
        _cell(row['embedding_dim'], '{}'), _mean_std(row, 'ndcg@10'),
        _mean_std(row, 'recall@100'), _cell(row['bytes'], '{:,.0f}'),
        _gap(row['gap_recovered'])] for row in rows],
      'frontier-table')
  return caption + image + table


def _window(row: Mapping[str, object]) -> str:
  """The spans a version's run read: 'first-last' when consecutive, 'all' for data without
  spans, '-' without a record."""
  if 'window_spans' not in row:
    return '-'
  spans = row['window_spans']
  if not spans:
    return 'all'
  if len(spans) > 1 and list(spans) == list(range(spans[0], spans[-1] + 1)):
    return f'{spans[0]}-{spans[-1]}'
  return ', '.join(map(str, spans))


def _history_section(history: Mapping[str, object]) -> str:
  """The pushed versions' table, oldest first, and their NDCG@10 and Recall@100 chart; or one
  line saying why the base directory could not be read."""
  base_dir = _text(history.get('base_dir'))
  if history.get('error') is not None:
    return (f'<p class="fail" id="history-error">Could not read the pushed versions in '
            f'{base_dir}: {_text(history["error"])}</p>')
  rows: Sequence[Mapping[str, object]] = history.get('rows') or []
  if not rows:
    return f'<p>No version pushed to {base_dir} yet.</p>'
  columns = {key: (header, fmt) for key, header, fmt in METRIC_COLUMNS}
  metrics = (history_lib.NDCG, history_lib.RECALL, history_lib.BYTES)
  caption = (f'<p>The versions pushed to {base_dir}, oldest first: each one\'s candidate on '
             'the test split of its own run (its window of spans), so a change of window also '
             'moves the metrics; bytes are the SavedModel variables.</p>')
  table = _table(
      ['version', 'date', 'window (spans)'] + [columns[key][0] for key in metrics] + ['note'],
      [[f'<td class="text">{_text(row["version"])}</td>',
        f'<td class="text">{_text(row.get("date", "-"))}</td>',
        f'<td class="text">{_text(_window(row))}</td>'] +
       [_cell(row.get(key), columns[key][1]) for key in metrics] +
       [f'<td class="text">{_text(row.get("note") or "")}</td>'] for row in rows],
      'version-history')
  chart = history.get('chart')
  image = f'<img src="{_text(chart)}" alt="version_history">' if chart else ''
  return caption + table + image


def render(report: Mapping[str, object]) -> str:
  """The HTML page of a run report.

  Args:
    report: {'title': str, 'data': {split: {'examples', 'users', 'items', 'mean_rating'}},
      'retrieval': the RetrievalEvaluator's metrics.json, 'tfma': {'metrics': {name: value},
      'validation_ok': bool or None, 'failures': [str]} or None, 'push': {'pushed': bool,
      'version', 'destination'} or None, 'history': {'base_dir', 'rows': the pushed versions
      (`history.read_history`), 'chart': their chart's PNG name or None} or {'base_dir',
      'error': why it could not be read} or None (no section), 'charts': {chart key: PNG file
      name beside the page},
      'distillation': {'path', 'rows': the distillation benchmark's rows, 'chart': the frontier
      PNG's name or None} or {'path', 'error': why the file could not be read} or None (no
      section)}.
  """
  retrieval = report.get('retrieval') or {}
  charts = ''.join(
      f'<h3>{_text(CHART_TITLES.get(key, key))}</h3><img src="{_text(name)}" alt="{_text(key)}">'
      for key, name in (report.get('charts') or {}).items() if name)
  title = _text(report.get('title', 'Pipeline run report'))
  distillation = report.get('distillation')
  frontier = (f'<h2>Distillation frontier</h2>\n{_distillation_section(distillation)}\n'
              if distillation else '')
  history = report.get('history')
  versions = f'<h2>Pushed versions</h2>\n{_history_section(history)}\n' if history else ''
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{title}</h1>
<h2>Push</h2>
{_push_section(report.get('push'), retrieval)}
{versions}<h2>Data</h2>
{_feedback_line(retrieval.get('feedback'))}
{_data_section(report.get('data') or {}, retrieval.get('feedback'))}
<h2>Retrieval metrics</h2>
{_metrics_section(retrieval)}
<h2>Slices</h2>
{_slices_section(retrieval)}
<h2>Release gates</h2>
{_gates_section(retrieval)}
<h2>Evaluator (TFMA, rating signature)</h2>
{_tfma_section(report.get('tfma'), retrieval.get('feedback'))}
<h2>Charts</h2>
{charts or '<p>No charts.</p>'}
{frontier}</body></html>
"""
