"""The cold items' ceiling on generated data (`benchmarks.cold_ceiling`): the orders' recall
among the cold items, from the generator's own draws."""
import pytest

from benchmarks import cold_ceiling


@pytest.fixture(scope='module')
def results():
  return cold_ceiling.ceiling(users=300, items=200, arriving=20, seed=1,
                              interactions_per_user=(15, 40))


def test_every_order_is_measured_at_every_depth(results):
  assert set(results) == {'random', 'factors', 'factors and popularity', 'data'}
  for name in ('random', 'factors', 'factors and popularity'):
    recalls = [results[name][f'recall@{k}'] for k in cold_ceiling.KS]
    assert all(0.0 <= recall <= 1.0 for recall in recalls)
    assert recalls == sorted(recalls)  # more places find more
  data = results['data']
  assert data['cold items'] >= 20 and data['catalogue'] == 220
  assert data['random cold-item recall@100'] == pytest.approx(100 / 220)


def test_what_the_generator_drew_ranks_the_cold_items_better_than_chance(results):
  random = results['random']['recall@10']
  assert results['factors']['recall@10'] > random
  assert results['factors and popularity']['recall@10'] > results['factors']['recall@10']


def test_the_table_has_a_row_per_order(results):
  lines = cold_ceiling.table(results).splitlines()
  assert len(lines) == 2 + 3 and lines[2].startswith('| random |')
  assert '×' in lines[3]
