"""`make bench-serving` on the tiny test models with very short phases: the JSON's shape and
finite numbers (not the timings)."""
import json
import math
import shutil

import serving_fixtures
from benchmarks import serving as bench


def test_benchmark_writes_rows_for_every_model_server_and_batching_mode(tmp_path):
  for name in bench.MODELS:
    serving_fixtures.save_tiny_model(str(tmp_path / name), 1)
  out = tmp_path / 'results.json'
  assert bench.main(['--serving-dir', str(tmp_path), '--bench-out', str(out), '--requests', '20',
                     '--warmup', '5', '--seconds', '0.2', '--threads', '8']) == 0
  result = json.loads(out.read_text())
  kinds = ['local'] + (['tfs'] if shutil.which('tensorflow_model_server') else [])
  assert [(row['server'], row['model'], row['batching']) for row in result['rows']] == [
      (kind, model, batching) for kind in kinds for model in (bench.FLOOR, *bench.MODELS)
      for batching in (False, True)]
  numbers = ['p50_ms', 'p99_ms', 'cpu_ms_c1', 'rps_c8', 'rps_c32', 'cpu_ms_c8', 'cpu_ms_c32',
             'rss_mib']
  for row in result['rows']:
    assert all(math.isfinite(row[name]) and row[name] >= 0 for name in numbers), row
    assert row['rps_c8'] > 0 and row['rps_c32'] > 0 and row['failed_c32'] == 0, row
    assert row['k'] == (0 if row['model'] == bench.FLOOR else serving_fixtures.TOP_K)
  assert set(result['in_process_p50_ms']) == set(bench.MODELS)
  assert all(math.isfinite(value) for value in result['in_process_p50_ms'].values())
  assert len(result['targets']) == 3 * len(kinds)
  for target in result['targets'].values():
    assert isinstance(target['met'], bool)
    assert math.isfinite(target['value']) and math.isfinite(target['limit'])
