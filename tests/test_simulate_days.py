"""`make simulate-days`' cut of a log into spans: the last periods one span each, everything
before them the first, empty periods skipped, side tables kept."""
import pandas as pd
import pytest

from benchmarks import simulate_days
from contract import features
from ingest import tables

DAY = simulate_days.DAY_S


def _log(days):
  """One interaction at the end of each of `days` (0 = the latest day's end)."""
  end = 1_000 * DAY
  return tables.Dataset(pd.DataFrame({
      features.USER_ID: [f'u{n}' for n in range(len(days))],
      features.ITEM_ID: ['i'] * len(days),
      features.RATING: [1.0] * len(days),
      features.TIMESTAMP: [end - day * DAY for day in days]}),
      items=pd.DataFrame({features.TITLE: ['t']}, index=pd.Index(['i'], name=features.ITEM_ID)))


def _days(spans):
  return [sorted(((1_000 * DAY - span.interactions[features.TIMESTAMP]) // DAY).tolist())
          for span in spans]


def test_the_last_periods_are_one_span_each_and_the_rest_the_first():
  # Periods of 7 days back from the latest interaction: days 0-6, 7-13, 14-20; 3 spans.
  spans = simulate_days.cut(_log([0, 6, 7, 13, 14, 30, 100]), spans=3, span_days=7)
  assert _days(spans) == [[14, 30, 100], [7, 13], [0, 6]]
  assert all(span.items is not None and list(span.items.index) == ['i'] for span in spans)


def test_an_empty_period_is_skipped_and_bad_settings_refused():
  assert _days(simulate_days.cut(_log([0, 20, 30]), spans=3, span_days=7)) == [[20, 30], [0]]
  assert _days(simulate_days.cut(_log([0, 1]), spans=1, span_days=7)) == [[0, 1]]
  with pytest.raises(ValueError, match='at least 1'):
    simulate_days.cut(_log([0]), spans=0, span_days=7)
