"""The grid search that a run's choices (the item-to-item component, the hybrid mix) use."""
from models import grid_search

AXES = ([0, 1, 2, 3, 4], ['a', 'b'])
# Two hills along the first axis: a low one at 1 and the highest at 4.
HEIGHTS = {0: 1.0, 1: 2.0, 2: 0.5, 3: 3.0, 4: 4.0}


def _score(calls):
  def score(point):
    calls.append(point)
    return HEIGHTS[point[0]] + (0.1 if point[1] == 'b' else 0.0)
  return score


def test_every_point_is_scored_once_without_a_start():
  calls = []
  assert grid_search.best_point(AXES, _score(calls)) == (4, 'b')
  assert sorted(calls) == sorted((x, y) for x in AXES[0] for y in AXES[1])


def test_a_tie_keeps_the_earlier_point():
  assert grid_search.best_point([[0, 1, 2]], lambda point: 1.0) == (0,)


def test_the_search_climbs_from_its_start_to_a_local_best():
  calls = []
  # From (0, 'a'): (1, 'a') and (0, 'b') are better, (1, 'a') best; then (1, 'b'); from there
  # every neighbour ranks lower (2 is a valley), so the search stops below the highest point.
  assert grid_search.best_point(AXES, _score(calls), (0, 'a')) == (1, 'b')
  assert sorted(calls) == [(0, 'a'), (0, 'b'), (1, 'a'), (1, 'b'), (2, 'a'), (2, 'b')]
  assert grid_search.best_point(AXES, _score([]), (3, 'a')) == (4, 'b')


def test_a_start_that_is_best_is_kept():
  calls = []
  assert grid_search.best_point(AXES, _score(calls), (4, 'b')) == (4, 'b')
  assert sorted(calls) == [(3, 'b'), (4, 'a'), (4, 'b')]
