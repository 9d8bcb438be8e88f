"""A choice over a grid of settings, ranked on the eval split: every point, or a local search
from a start: the item-to-item component's from its best point at exponent 0 and a student's
popularity shift from 0 (`models.item_item`), and in a warm run the hybrid mix from the earlier
run's (`training.choose_hybrid_mix`), which follows the mix as the window moves without ranking
every point again (docs/results.md).
"""
import itertools
from typing import Callable, Hashable, Optional, Sequence, Tuple

Point = Tuple[Hashable, ...]


def best_point(axes: Sequence[Sequence[Hashable]], score: Callable[[Point], float],
               start: Optional[Point] = None) -> Point:
  """The point of the grid `axes` (one value per axis) that `score`s highest: of every point,
  in the order of `itertools.product`, or with `start` (a grid point) of a local search that
  moves to its best neighbour (one step along one axis) while that scores higher. `score` is
  called once at most per point; ties keep the earlier point."""
  scores = {}

  def scored(point: Point) -> float:
    if point not in scores:
      scores[point] = score(point)
    return scores[point]

  def best_of(points, best: Optional[Point]) -> Optional[Point]:
    for point in points:
      best = point if best is None or scored(point) > scored(best) else best
    return best

  if start is None:
    return best_of(itertools.product(*axes), None)
  best = tuple(start)
  while True:
    positions = [list(axis).index(value) for axis, value in zip(axes, best)]
    neighbours = [best[:a] + (axis[i],) + best[a + 1:] for a, axis in enumerate(axes)
                  for i in (positions[a] - 1, positions[a] + 1) if 0 <= i < len(axis)]
    moved = best_of(neighbours, best)
    if moved == best:
      return best
    best = moved
