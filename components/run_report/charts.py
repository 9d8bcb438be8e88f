"""The run report's charts, drawn with matplotlib (Agg backend) into PNG files.

Each function takes plain JSON-ready data (the retrieval evaluation's metrics.json, the
Trainer's training_summary.json, the pushed versions' history), writes one PNG into `out_dir`
and returns its file name, or returns None when there is nothing to draw.
"""
import os
from typing import Dict, List, Mapping, Optional

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from components.run_report import history as history_lib  # pylint: disable=g-import-not-at-top

RECALL_CURVES = 'recall_curves.png'
SCORE_SCATTER = 'score_scatter.png'
SIZE_LATENCY = 'size_latency.png'
FRONTIER = 'frontier.png'
TRAINING_LOSS = 'training_loss.png'
VERSION_HISTORY = 'version_history.png'
_HISTORY_SPAN = 0.1  # the least height of a version history panel, relative to its mean
_DPI = 100


def _save(figure, out_dir: str, name: str) -> str:
  figure.tight_layout()
  figure.savefig(os.path.join(out_dir, name), dpi=_DPI)
  plt.close(figure)
  return name


def recall_curves(curves: Mapping[str, List[float]], out_dir: str) -> Optional[str]:
  """Recall@K against K for every model."""
  if not curves:
    return None
  figure, axes = plt.subplots(figsize=(6.5, 4))
  for name, values in curves.items():
    axes.plot(range(1, len(values) + 1), values, label=name)
  axes.set(xlabel='K', ylabel='Recall@K', title='Recall@K on the test split')
  axes.grid(alpha=0.3)
  axes.legend()
  return _save(figure, out_dir, RECALL_CURVES)


def score_scatter(sample: Optional[Mapping[str, object]], candidate: str,
                  out_dir: str) -> Optional[str]:
  """The candidate's scores against the teacher's on the same sampled (user, item) pairs."""
  if not sample or not sample.get('reference'):
    return None
  figure, axes = plt.subplots(figsize=(5, 5))
  axes.scatter(sample['reference'], sample['candidate'], s=4, alpha=0.4)
  pearson = sample.get('pearson')
  title = 'Retrieval scores of sampled (user, item) pairs'
  if pearson is not None:
    title += f'\nPearson r = {pearson:.3f}'
  axes.set(xlabel='teacher score', ylabel=f'{candidate} score', title=title)
  axes.grid(alpha=0.3)
  return _save(figure, out_dir, SCORE_SCATTER)


def size_and_latency(models: Mapping[str, Mapping[str, Optional[float]]],
                     out_dir: str) -> Optional[str]:
  """SavedModel bytes and single-request latency (mean, p99) of every exported model."""
  exported = {name: m for name, m in models.items() if m.get('bytes') is not None}
  if not exported:
    return None
  names = list(exported)
  figure, (size_axes, latency_axes) = plt.subplots(1, 2, figsize=(10, 4))
  size_axes.bar(names, [exported[n]['bytes'] / 2**20 for n in names], color='tab:blue')
  size_axes.set(ylabel='MiB', title='SavedModel variables')
  positions = range(len(names))
  width = 0.4
  latency_axes.bar([p - width / 2 for p in positions],
                   [exported[n].get('latency_mean_ms') or 0 for n in names], width, label='mean')
  latency_axes.bar([p + width / 2 for p in positions],
                   [exported[n].get('latency_p99_ms') or 0 for n in names], width, label='p99')
  latency_axes.set_xticks(list(positions), names)
  latency_axes.set(ylabel='ms', title='Single-request latency (serving_default)')
  latency_axes.legend()
  for axes in (size_axes, latency_axes):
    axes.grid(axis='y', alpha=0.3)
  return _save(figure, out_dir, SIZE_LATENCY)


def frontier(rows: List[Mapping[str, object]], out_dir: str, name: str = FRONTIER,
             title: str = 'Distillation frontier') -> Optional[str]:
  """NDCG@10 against the int8 SavedModel's bytes (log scale) of the distillation benchmark's
  rows (`benchmarks.distill`): scratch, distilled and int8 students as curves with one-std
  error bars, the teacher and EASE as horizontal lines."""
  students = [row for row in rows if row['model'].startswith('student_') and row.get('bytes')]
  if not students:
    return None
  figure, axes = plt.subplots(figsize=(7, 4.5))
  for model in sorted({row['model'] for row in students}):
    curve = sorted((row for row in students if row['model'] == model), key=lambda r: r['bytes'])
    axes.errorbar([row['bytes'] for row in curve], [row['ndcg@10_mean'] for row in curve],
                  yerr=[row['ndcg@10_std'] for row in curve], marker='o', capsize=3, label=model)
    for row in curve:
      axes.annotate(f"d={row['embedding_dim']}", (row['bytes'], row['ndcg@10_mean']),
                    textcoords='offset points', xytext=(4, -10), fontsize='x-small')
  for row, style in ((r, s) for r in rows for m, s in (('teacher', '-'), ('ease', '--'))
                     if r['model'] == m):
    axes.axhline(row['ndcg@10_mean'], color='black', linestyle=style, alpha=0.7,
                 label=f"{row['model']} ({row['ndcg@10_mean']:.3f})")
  axes.set_xscale('log')
  axes.set(xlabel='SavedModel variables (bytes, log scale)', ylabel='NDCG@10 (mean ± std)',
           title=title)
  axes.grid(alpha=0.3, which='both')
  axes.legend(fontsize='small')
  return _save(figure, out_dir, name)


# The curves of each training phase: the loss it minimises, the distillation's two parts of it
# (ground truth and teacher), and the loss on the eval split.
SHOWN_LOSSES = {'loss': 'train loss', 'hard_loss': 'train: ground truth (hard)',
                'soft_loss': 'train: teacher (soft)', 'val_loss': 'eval loss'}


def training_loss(summary: Mapping[str, Mapping[str, object]], out_dir: str) -> Optional[str]:
  """Per-epoch loss curves of every trained model, one chart each (`SHOWN_LOSSES`), the legend
  below the plot."""
  histories: Dict[str, Mapping[str, List[float]]] = {
      name: entry['history'] for name, entry in summary.items()
      if isinstance(entry, Mapping) and entry.get('history')}
  curves = {name: {key: history[key] for key in SHOWN_LOSSES if history.get(key)}
            for name, history in histories.items()}
  curves = {name: keys for name, keys in curves.items() if keys}
  if not curves:
    return None
  figure, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 4.2), squeeze=False)
  for axis, (name, keys) in zip(axes[0], curves.items()):
    for key, values in keys.items():
      axis.plot(range(1, len(values) + 1), values, marker='o', label=SHOWN_LOSSES[key])
    axis.set(xlabel='epoch', ylabel='loss', title=name)
    axis.grid(alpha=0.3)
    axis.legend(fontsize='small', loc='upper center', bbox_to_anchor=(0.5, -0.18), ncol=2,
                frameon=False)
  return _save(figure, out_dir, TRAINING_LOSS)


def version_history(rows: List[Mapping[str, object]], out_dir: str) -> Optional[str]:
  """NDCG@10 and Recall@100 of the pushed versions (`history.read_history`'s rows, oldest
  first) that have them, one panel each, its scale at least `_HISTORY_SPAN` of the mean high
  (a change of 1 % shows, one of 0.01 % does not); None under two such versions (no line to
  draw)."""
  shown = [row for row in rows
           if row.get(history_lib.NDCG) is not None or row.get(history_lib.RECALL) is not None]
  if len(shown) < 2:
    return None
  metrics = ((history_lib.NDCG, 'NDCG@10'), (history_lib.RECALL, 'Recall@100'))
  figure, axes = plt.subplots(1, len(metrics), figsize=(9, 3.8), squeeze=False)
  positions = list(range(len(shown)))
  for axis, (key, label) in zip(axes[0], metrics):
    values = [row.get(key) for row in shown]
    axis.plot(positions, [float('nan') if v is None else v for v in values], marker='o')
    known = [v for v in values if v is not None]
    if known:
      middle = (min(known) + max(known)) / 2
      half = 0.6 * max(max(known) - min(known), _HISTORY_SPAN * abs(sum(known) / len(known)),
                       1e-6)
      axis.set_ylim(middle - half, middle + half)
    axis.set_xticks(positions, [str(row['version']) for row in shown], rotation=30, ha='right',
                    fontsize='small')
    axis.set(xlabel='pushed version', title=label)
    axis.grid(alpha=0.3)
  axes[0][0].set_ylabel("the candidate on its run's test split")
  figure.suptitle('Pushed versions')
  return _save(figure, out_dir, VERSION_HISTORY)
