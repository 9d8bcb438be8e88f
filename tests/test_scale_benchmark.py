"""`make bench-scale` on a tiny generated data set: every stage runs, the JSON holds the stages'
times and memory, and the summary prints (not timing)."""
import json
import math

from benchmarks import scale


def test_benchmark_runs_every_stage_and_prints_its_summary(tmp_path, capsys):
  out = tmp_path / 'scale.json'
  assert scale.main(['--users', '60', '--items', '40', '--interactions', '1500',
                     '--workers', '1', '--batch-size', '256', '--output', str(tmp_path / 'run'),
                     '--bench-out', str(out)]) == 0
  result = json.loads(out.read_text())
  assert [stage['name'] for stage in result['stages']] == [
      'generate', 'tfx_data_components', 'train_statistics_pass', 'item_item_fit',
      'teacher_epoch']
  for stage in result['stages']:
    assert stage['seconds'] >= 0 and stage['peak_rss_gib'] > 0, stage
  assert result['rows'] > 0 and sum(result['examples'].values()) > 0
  assert result['training']['train_examples'] > 0
  assert math.isfinite(result['training']['teacher_loss'])
  printed = capsys.readouterr().out
  assert '60 users, 40 items' in printed and 'teacher_epoch' in printed
