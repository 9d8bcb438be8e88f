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


def test_the_summary_covers_the_incremental_days_only():
  def row(span, seconds, cold_seconds, ndcg, cold_ndcg):
    return {'span': span, 'trainer_s': seconds, 'pipeline_s': 2 * seconds,
            'cold_trainer_s': cold_seconds, 'cold_pipeline_s': 3 * cold_seconds,
            'ndcg@10': ndcg, 'cold_ndcg@10': cold_ndcg, 'recall@100': 0.5,
            'cold_recall@100': 0.4}
  assert simulate_days.summary([row(1, 100, 100, 0.2, 0.2)]) is None
  figures = simulate_days.summary([row(1, 500, 100, 0.9, 0.1), row(2, 10, 40, 0.18, 0.2),
                                   row(3, 20, 50, 0.20, 0.2)])
  assert figures['days'] == 2
  assert figures['trainer_share'] == pytest.approx(30 / 90)
  assert figures['pipeline_share'] == pytest.approx(60 / 270)
  assert figures['ndcg@10'] == pytest.approx(0.19)
  assert figures['ndcg@10_change'] == pytest.approx(0.19 / 0.2 - 1)
  assert figures['recall@100_change'] == pytest.approx(0.25)
  assert figures['ndcg@10_change_std'] == pytest.approx(0.05)  # days at -10 % and 0 %
  assert figures['recall@100_change_std'] == pytest.approx(0.0)
  assert '2 incremental days: Trainer 0.33x and pipeline 0.22x' in (
      simulate_days.format_summary(figures))


def test_the_summary_counts_days_retrained_cold_and_times_the_warm_started_ones_apart():
  def row(span, seconds, cold_seconds, warm_started=True):
    return {'span': span, 'trainer_s': seconds, 'pipeline_s': seconds, 'ndcg@10': 0.2,
            'cold_trainer_s': cold_seconds, 'cold_pipeline_s': cold_seconds,
            'cold_ndcg@10': 0.2, 'recall@100': 0.5, 'cold_recall@100': 0.5,
            'warm_started': warm_started}
  figures = simulate_days.summary([row(1, 100, 100, False), row(2, 10, 40),
                                   row(3, 60, 60, False), row(4, 20, 50)])
  assert (figures['days'], figures['refreshes']) == (3, 1)
  assert figures['trainer_share'] == pytest.approx(90 / 150)
  assert figures['warm_trainer_share'] == pytest.approx(30 / 90)
  assert '(1 retrained cold; the warm-started days 0.33x and 0.33x)' in (
      simulate_days.format_summary(figures))
  assert simulate_days.summary([row(1, 1, 1), row(2, 5, 5, False)])['warm_trainer_share'] is None
