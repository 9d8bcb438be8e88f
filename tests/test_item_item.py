"""The hybrid teacher's item-to-item component: EASE tuned on the eval split, factorised into
two tables, and scored inside the teacher as a dot product."""
import dataclasses
import types

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from contract import features
from evaluation import baselines
from evaluation import metrics as metrics_lib
from evaluation import protocol
from models import eval_split
from models import hparams
from models import item_item
from models import quantization
from models import student
from models import teacher
from models import towers
from models import training
from models import two_tower
from pipeline import configs
import tiny_models

# 6 users over item indices 1..5 (0 is padding, 6 the OOV bucket): two groups, {1, 2, 3} and
# {4, 5}, so that EASE links items within a group.
USERS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5])
ITEMS = np.array([1, 2, 3, 1, 2, 1, 2, 3, 4, 5, 4, 5, 2, 3])
NUM_INDICES = 7


def _eval_queries(histories, targets) -> eval_split.EvalQueries:
  histories = np.array(histories)
  """Eval queries over the catalogue of item indices 1..5 (column c is item c + 1)."""
  shape = (len(histories), 5)
  rows = np.repeat(np.arange(len(histories)), [len(t) for t in targets])
  columns = np.concatenate(targets) - 1
  seen_rows = np.repeat(np.arange(len(histories)), [np.count_nonzero(h) for h in histories])
  seen_columns = np.concatenate([h[h > 0] for h in histories]) - 1
  data = protocol.EvalData(
      split=features.EVAL_SPLIT, items=pd.Index(np.arange(1, 6)), users=pd.Index(np.arange(
          len(histories))), seen=protocol.binary_matrix(seen_rows, seen_columns, shape),
      targets=protocol.binary_matrix(rows, columns, shape),
      num_targets=np.array([len(t) for t in targets]))
  return eval_split.EvalQueries({features.HISTORY_INDICES: np.array(histories)}, data)


def _params(**values) -> hparams.ItemItemHParams:
  return hparams.ItemItemHParams(**{'l2_values': (1.0,), 'ranks': (5,), 'windows': (3,),
                                    'popularity_exponents': (0.0,), 'max_items': 100,
                                    'eval_users': 10, **values})


def test_full_rank_tables_reproduce_ease_scores():
  tables = item_item.fit(USERS, ITEMS, NUM_INDICES, 3, None, _params())
  train = protocol.binary_matrix(USERS, ITEMS - 1, (6, 5))
  weights = baselines.ease_weights(train, 1.0)
  scores = tables.history[1:6] @ tables.candidates[1:6].T
  off_diagonal = ~np.eye(5, dtype=bool)  # an item scoring itself is never ranked
  np.testing.assert_allclose(scores[off_diagonal], weights[off_diagonal], atol=1e-4)
  for row in (0, 6):  # padding and OOV score nothing
    assert not tables.history[row].any() and not tables.candidates[row].any()


def test_max_items_keeps_the_most_popular_items():
  tables = item_item.fit(USERS, ITEMS, NUM_INDICES, 3, None, _params(max_items=3))
  kept = np.flatnonzero(np.abs(tables.history).sum(axis=1) > 0)
  np.testing.assert_array_equal(kept, [1, 2, 3])  # 5, 5 and 4 interactions


def test_l2_and_rank_are_chosen_on_the_eval_queries():
  # Users who saw item 4 want item 5 and the reverse: the group link must survive; a rank-1
  # factorisation keeps only the larger group and loses it.
  queries = _eval_queries([[4, 0, 0], [5, 0, 0]], [[5], [4]])
  tables = item_item.fit(USERS, ITEMS, NUM_INDICES, 3, queries,
                         _params(l2_values=(0.5, 1e6), ranks=(1, 5)))
  assert tables.rank == 5 and tables.l2 == 0.5 and tables.eval_ndcg == 1.0


def test_a_warm_fit_keeps_the_earlier_choice_and_ranks_no_other_point(monkeypatch):
  queries = _eval_queries([[4, 0, 0], [5, 0, 0]], [[5], [4]])
  params = _params(l2_values=(0.5, 1e6), ranks=(1, 5))
  every = item_item.fit(USERS, ITEMS, NUM_INDICES, 3, queries, params)
  ranked = []
  original = item_item._eval_ndcg
  monkeypatch.setattr(item_item, '_eval_ndcg',
                      lambda *args: ranked.append(args) or original(*args))
  # From an L2 weight off the grid: its nearest point (1e6), whose eigen rank 1 loses the group
  # link (NDCG@10 0.43), where ranking every point finds 1.0: it is kept all the same.
  kept = item_item.fit(USERS, ITEMS, NUM_INDICES, 3, queries, params,
                       dict(factorisation=item_item.EIGEN, l2=2e5, rank=1, window=3))
  assert kept.choice() == dict(factorisation=item_item.EIGEN, l2=1e6, rank=1, window=3,
                               popularity=0.0)
  assert len(ranked) == 1 and kept.eval_ndcg < every.eval_ndcg == 1.0
  ranked.clear()
  svd = dict(factorisation=item_item.SVD, l2=0.5, rank=5, window=3, popularity=0.0)
  kept = item_item.fit(USERS, ITEMS, NUM_INDICES, 3, queries, params, svd)
  assert kept.choice() == svd and kept.row_scales is None and len(ranked) == 1


# Item 1's users went on to item 2 twice and to item 3 once; item 2 is popular (8 train
# interactions, with item 4), item 3 rare (1): for a history of item 1 EASE ranks item 2 first,
# and with its candidate rows times (1 + count)^-0.5, item 3.
POPULAR_USERS = np.array([0, 0, 1, 1, 2, 2] + [user for user in range(3, 9) for _ in range(2)])
POPULAR_ITEMS = np.array([1, 2, 1, 2, 1, 3] + [2, 4] * 6)


def test_popularity_scaled_tables_scale_each_candidate_row_by_its_count():
  counts = np.bincount(POPULAR_ITEMS, minlength=6)
  eigen = item_item.fit(POPULAR_USERS, POPULAR_ITEMS, 6, 3, None, _params())
  two_tables = dataclasses.replace(eigen, row_scales=None, column_weights=None)
  for tables in (eigen, two_tables):
    assert tables.popularity == 0.0
    scaled = tables.popularity_scaled(counts, -0.5)
    assert scaled.popularity == -0.5
    np.testing.assert_allclose(scaled.history, tables.history, rtol=1e-6)
    np.testing.assert_allclose(scaled.candidates,
                               tables.candidates / np.sqrt(1.0 + counts)[:, None], rtol=1e-6)
    scores = scaled.history[1] @ scaled.candidates.T
    assert scores[3] > scores[2]  # the rare item first
    again = scaled.popularity_scaled(counts, 0.0)  # back to EASE's ranking
    np.testing.assert_allclose(again.candidates, tables.candidates, rtol=1e-5)
    unknown = dataclasses.replace(tables, popularity=float('nan'))  # as `from_core` reads it
    with pytest.raises(ValueError, match='unknown'):
      unknown.popularity_scaled(counts, -0.5)
    if tables is eigen:  # still one table and two scalings
      np.testing.assert_allclose(
          scaled.candidates * scaled.row_scales[:, None] * scaled.column_weights,
          tables.history, rtol=1e-5, atol=1e-7)


def test_the_popularity_exponent_is_chosen_on_the_eval_queries():
  def chosen(target: int) -> float:
    queries = _eval_queries([[1, 0, 0]], [[target]])
    return item_item.fit(POPULAR_USERS, POPULAR_ITEMS, 6, 3, queries,
                         _params(popularity_exponents=(-0.5, 0.0))).popularity

  assert chosen(3) == -0.5  # the rare item wanted: popular items lowered
  assert chosen(2) == 0.0  # the popular one: EASE's ranking


def test_a_students_popularity_shift_is_chosen_on_the_eval_queries_from_the_teachers():
  counts = np.bincount(POPULAR_ITEMS, minlength=6)
  fitted = item_item.fit(POPULAR_USERS, POPULAR_ITEMS, 6, 3, None, _params())
  inherited = dataclasses.replace(fitted, popularity=float('nan'))  # as `from_core` reads it

  def shifted(target: int) -> item_item.ItemItemTables:
    return item_item.best_popularity_shift(inherited, counts, _eval_queries([[1, 0, 0]],
                                                                            [[target]]),
                                           (-0.5, 0.5))

  rare_wanted = shifted(3)  # popular items lowered: the same tables as the exponent 0.5 lower
  np.testing.assert_allclose(rare_wanted.candidates,
                             fitted.popularity_scaled(counts, -0.5).candidates, rtol=1e-6)
  np.testing.assert_allclose(rare_wanted.history, fitted.history, rtol=1e-6)
  assert np.isnan(rare_wanted.popularity)  # the teacher's exponent stays unknown
  assert shifted(2) is inherited  # the popular one: the teacher's exponent, shift 0
  known = item_item.best_popularity_shift(fitted, counts, _eval_queries([[1, 0, 0]], [[3]]),
                                          (-0.5, 0.5))
  assert known.popularity == -0.5


def test_a_student_holds_the_tables_at_its_rank_with_the_shift_chosen_when_it_can_be():
  counts = np.bincount(POPULAR_ITEMS, minlength=6)
  fitted = item_item.fit(POPULAR_USERS, POPULAR_ITEMS, 6, 3, None, _params())
  size = dataclasses.replace(tiny_models.STUDENT_SIZE, item_item=True, item_item_rank=2)
  queries = _eval_queries([[1, 0, 0]], [[3]])
  data = types.SimpleNamespace(eval='the eval split', stats=types.SimpleNamespace(
      item_counts=counts), eval_queries=lambda users: queries)
  shifts = dataclasses.replace(configs.DISTILLATION, inherited_popularity_shifts=(-0.5, 0.0))
  held = training.inherited_tables(data, size, fitted, shifts, 10)
  np.testing.assert_allclose(held.candidates,
                             fitted.truncated(2).popularity_scaled(counts, -0.5).candidates)
  teachers = dataclasses.replace(shifts, inherited_popularity_shifts=(0.0,))
  for unshifted in (training.inherited_tables(data, size, fitted, teachers, 10),
                    training.inherited_tables(types.SimpleNamespace(eval=None), size, fitted,
                                              shifts, 10)):
    np.testing.assert_array_equal(unshifted.candidates, fitted.truncated(2).candidates)
  assert training.inherited_tables(data, size, None, shifts, 10) is None


def test_history_counts_sum_the_latest_window_of_each_history():
  histories = np.array([[3, 1, 3, 0], [2, 0, 0, 0], [0, 0, 0, 0]])
  counts = item_item.history_counts(histories, 2, 5).toarray()
  np.testing.assert_array_equal(counts, [[0, 1, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
  # The component's padding row is 0: counts · table is the sum of the latest rows.
  table = np.arange(10, dtype=np.float32).reshape(5, 2) * [[0], [1], [1], [1], [1]]
  np.testing.assert_array_equal(counts @ table,
                                table[item_item.latest(histories, 2)].sum(axis=1))


def test_tables_round_trip(tmp_path):
  tables = item_item.fit(USERS, ITEMS, NUM_INDICES, 3, None, _params())
  tables.save(str(tmp_path))
  loaded = item_item.ItemItemTables.load(str(tmp_path))
  np.testing.assert_array_equal(loaded.history, tables.history)
  assert loaded.l2 == tables.l2 and loaded.eval_ndcg is None
  assert loaded.choice() == tables.choice()


def test_tuned_ease_picks_the_best_eval_ndcg_and_scores_the_evaluated_split():
  frame = pd.DataFrame({features.USER_ID: [str(u) for u in USERS],
                        features.ITEM_ID: [str(i) for i in ITEMS],
                        features.TIMESTAMP: np.arange(len(USERS))})
  train = protocol.build_eval_data(frame, ['train'] * 12 + ['eval'] * 2, features.EVAL_SPLIT)
  test = protocol.build_eval_data(frame, ['train'] * 12 + ['eval', 'test'], features.TEST_SPLIT)
  chosen, scores = baselines.tuned_ease(train, test, (0.5, 1e6))
  ndcg = {l2: metrics_lib.ranking_metrics(baselines.ease_scores(train, l2), train)['ndcg@10']
          for l2 in (0.5, 1e6)}
  assert ndcg[chosen] == max(ndcg.values())
  np.testing.assert_allclose(scores, baselines.ease_scores(test, chosen), rtol=1e-6)
  with pytest.raises(ValueError, match='different train matrices'):
    baselines.tuned_ease(train, protocol.build_eval_data(
        frame, ['train'] * 11 + ['eval', 'test', 'test'], features.TEST_SPLIT))


def test_latest_items_keeps_the_latest_of_right_padded_sequences():
  indices = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8], [9, 0, 0, 0, 0]])
  np.testing.assert_array_equal(towers.LatestItems(3)(tf.constant(indices)).numpy(),
                                [[1, 2, 3], [6, 7, 8], [9, 0, 0]])
  np.testing.assert_array_equal(item_item.latest(indices, 2),
                                [[0, 2, 3, 0, 0], [0, 0, 0, 7, 8], [9, 0, 0, 0, 0]])


def test_hybrid_teacher_scores_add_the_item_item_component():
  history = np.zeros((tiny_models.VOCAB.items, 3), np.float32)
  candidates = np.zeros((tiny_models.VOCAB.items, 3), np.float32)
  history[1:4] = np.eye(3)
  candidates[1:4] = 2 * np.eye(3)
  tables = item_item.ItemItemTables(history, candidates, l2=1.0, window=1)
  size = dataclasses.replace(tiny_models.teacher_size(), item_item=True, attention_window=2)
  core = teacher.build_core(tiny_models.VOCAB, size, tiny_models.TRANSFORM,
                            tiny_models.STATS.mean_rating, tables)
  model = two_tower.TwoTowerModel(core, tiny_models.TRAINING, tiny_models.STATS)
  batch = tiny_models.batch()
  mix = core.get_layer('hybrid_mix').mix
  np.testing.assert_array_equal(mix.numpy(), [1.0, 0.0])  # the towers train alone
  mix.assign([1.0, 1.0])
  outputs = model(batch)
  dim = size.embedding_dim
  queries, candidates_out = outputs['queries'].numpy(), outputs['candidates'].numpy()
  # The component's part: Σ_history rows · candidate row, over the latest `window` items.
  latest = item_item.latest(batch[features.HISTORY_INDICES].numpy(), tables.window)
  expected = history[latest].sum(axis=1)
  np.testing.assert_allclose(queries[:, dim:], expected, rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(candidates_out[:, dim:],
                             candidates[batch[features.ITEM_INDEX].numpy()])
  frozen = [w.name for w in core.non_trainable_weights]
  assert any('item_item_history' in name for name in frozen)
  assert any('item_item_candidate' in name for name in frozen)


def _hybrid_teacher_core(window: int = 2):
  history = np.zeros((tiny_models.VOCAB.items, 3), np.float32)
  candidates = np.zeros((tiny_models.VOCAB.items, 3), np.float32)
  history[1:8] = np.arange(21).reshape(7, 3) / 10
  candidates[1:11] = np.arange(30).reshape(10, 3)[::-1] / 10
  tables = item_item.ItemItemTables(history, candidates, l2=1.0, window=window)
  size = dataclasses.replace(tiny_models.teacher_size(), item_item=True)
  core = teacher.build_core(tiny_models.VOCAB, size, tiny_models.TRANSFORM,
                            tiny_models.STATS.mean_rating, tables)
  core.get_layer('hybrid_mix').mix.assign([0.6, 0.7])
  return core, tables


def test_tables_read_back_from_a_hybrid_core():
  core, tables = _hybrid_teacher_core(window=3)
  read = item_item.ItemItemTables.from_core(core)
  np.testing.assert_array_equal(read.history, tables.history)
  np.testing.assert_array_equal(read.candidates, tables.candidates)
  assert read.window == 3
  truncated = read.truncated(2)
  assert truncated.rank == 2
  # The best rank-2 approximation of the scores between distinct items (Eckart–Young: their 2
  # largest singular values), not of the whole product.
  scores = tables.history @ tables.candidates.T
  np.fill_diagonal(scores, 0.0)
  u, s, vt = np.linalg.svd(scores)
  np.testing.assert_allclose(truncated.history @ truncated.candidates.T,
                             (u[:, :2] * s[:2]) @ vt[:2], atol=1e-4)
  assert truncated.row_scales is None  # these tables are not of the eigen form
  assert not truncated.history[0].any() and not truncated.candidates[0].any()  # padding
  assert read.truncated(3) is read


def test_eigen_tables_truncate_to_their_leading_columns():
  # The eigen tables at a lower rank are the eigen factorisation at that rank (G's leading
  # eigenvectors), one table and two scalings as at full rank.
  tables = item_item.fit(USERS, ITEMS, NUM_INDICES, 3, None, _params())
  truncated = tables.truncated(2)
  at_rank_2 = item_item.fit(USERS, ITEMS, NUM_INDICES, 3, None, _params(ranks=(2,)))
  np.testing.assert_allclose(truncated.history @ truncated.candidates.T,  # eigenvectors' signs
                             at_rank_2.history @ at_rank_2.candidates.T, atol=1e-5)
  np.testing.assert_array_equal(truncated.row_scales, tables.row_scales)
  np.testing.assert_allclose(
      truncated.history,
      truncated.candidates * truncated.row_scales[:, None] * truncated.column_weights,
      atol=1e-6)
  assert not truncated.candidates[0].any() and not truncated.candidates[-1].any()
  assert truncated.truncated(1).column_weights.shape == (1,)


def test_a_student_of_eigen_tables_stores_one_table_of_the_component(tmp_path):
  tables = item_item.fit(USERS, ITEMS, NUM_INDICES, 3, None, _params())
  vocab = dataclasses.replace(tiny_models.VOCAB, items=NUM_INDICES)
  size = dataclasses.replace(tiny_models.STUDENT_SIZE, item_item=True)
  core = student.build_core(vocab, size, tiny_models.TRANSFORM, tiny_models.STATS.mean_rating,
                            tables.truncated(2))
  core.get_layer('hybrid_mix').mix.assign([0.0, 1.0])
  histories = tf.constant([[1, 2, 0], [4, 0, 0]], tf.int64)
  np.testing.assert_allclose(towers.item_item_history_rows(core, histories).numpy(),
                             tables.truncated(2).history[histories.numpy()], atol=1e-6)
  # Column weights, the pooling's recency logits, row scales and the one table.
  item_item_weights = [w for w in core.weights if 'item_item' in w.name]
  assert sorted(w.shape.as_list() for w in item_item_weights) == [
      [2], [tiny_models.TRANSFORM.history_length], [NUM_INDICES, 1], [NUM_INDICES, 2]]
  # int8: the one table quantized, the scales float; read back as the same tables.
  quantized = quantization.int8_embeddings(core, student.CUSTOM_OBJECTS)
  np.testing.assert_allclose(towers.item_item_history_rows(quantized, histories).numpy(),
                             tables.truncated(2).history[histories.numpy()], atol=0.02)


def test_a_large_catalogues_truncation_is_the_best_factorisation_without_the_diagonal():
  # Beyond twice the rank, the factorisation is randomised over the tables' products.
  rng = np.random.default_rng(3)
  spectrum = np.array([8.0, 6.0, 4.0, 0.5, 0.2, 0.1])
  tables = item_item.ItemItemTables(rng.normal(size=(300, 6)) * spectrum,
                                    rng.normal(size=(300, 6)), l2=1.0, window=2)
  scores = tables.history @ tables.candidates.T
  np.fill_diagonal(scores, 0.0)
  u, s, vt = np.linalg.svd(scores)
  truncated = tables.truncated(3)
  np.testing.assert_allclose(truncated.history @ truncated.candidates.T,
                             (u[:, :3] * s[:3]) @ vt[:3], rtol=1e-3, atol=1e-3)


def test_a_student_inherits_the_teachers_component_at_its_rank():
  core, tables = _hybrid_teacher_core()
  size = dataclasses.replace(tiny_models.STUDENT_SIZE, item_item=True, item_item_rank=2)
  student_core = student.build_core(tiny_models.VOCAB, size, tiny_models.TRANSFORM,
                                    tiny_models.STATS.mean_rating, student.inherit(size, core))
  mix = student_core.get_layer('hybrid_mix').mix
  np.testing.assert_array_equal(mix.numpy(), [1.0, 0.0])  # its towers train alone
  mix.assign([1.0, 0.7])
  batch = tiny_models.batch()
  outputs = two_tower.TwoTowerModel(student_core, tiny_models.TRAINING, tiny_models.STATS)(batch)
  dim = size.embedding_dim
  latest = item_item.latest(batch[features.HISTORY_INDICES].numpy(), tables.window)
  # The component's share of the score: 0.7 · Σ_latest history rows · candidate row, rank 2.
  rank_2 = tables.truncated(2)
  np.testing.assert_allclose(outputs['queries'].numpy()[:, dim:],
                             0.7 * rank_2.history[latest].sum(axis=1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(outputs['candidates'].numpy()[:, dim:],
                             rank_2.candidates[batch[features.ITEM_INDEX].numpy()])
  # Frozen, and int8 like the student's other tables, within the row-wise rounding.
  assert not any('item_item' in w.name for w in student_core.trainable_weights)
  quantized = two_tower.TwoTowerModel(
      quantization.int8_embeddings(student_core, student.CUSTOM_OBJECTS), tiny_models.TRAINING,
      tiny_models.STATS)(batch)
  np.testing.assert_allclose(quantized['queries'].numpy()[:, dim:],
                             outputs['queries'].numpy()[:, dim:], atol=0.05)


def test_a_student_with_item_item_needs_a_hybrid_teacher():
  plain = teacher.build_core(tiny_models.VOCAB, tiny_models.teacher_size(), tiny_models.TRANSFORM,
                             tiny_models.STATS.mean_rating)
  size = dataclasses.replace(tiny_models.STUDENT_SIZE, item_item=True)
  assert student.inherit(tiny_models.STUDENT_SIZE, plain) is None
  with pytest.raises(ValueError, match='hybrid teacher'):
    student.inherit(size, plain)


def test_a_warm_run_searches_the_mix_from_the_earlier_share(monkeypatch):
  core, _ = _hybrid_teacher_core()
  model = two_tower.TwoTowerModel(core, tiny_models.TRAINING, tiny_models.STATS)
  batches = tf.data.Dataset.from_tensors(tiny_models.batch())
  data = training.TrainingData(batches, batches, batches, None, tiny_models.TRANSFORM,
                               tiny_models.VOCAB, tiny_models.STATS)
  ranked = []
  ranking_metrics = metrics_lib.ranking_metrics
  monkeypatch.setattr(metrics_lib, 'ranking_metrics',
                      lambda *args, **kwargs: ranked.append(1) or ranking_metrics(*args, **kwargs))
  training.choose_hybrid_mix(model, data, 2)
  chosen = training.hybrid_share(model)
  assert len(ranked) == len(training.HYBRID_SHARES)
  assert chosen in training.HYBRID_SHARES.tolist()
  # From the share chosen before (any value, taken to the nearest share): that share and its
  # neighbours are ranked, and it is kept.
  del ranked[:]
  training.choose_hybrid_mix(model, data, 2, start=chosen + 0.02)
  assert training.hybrid_share(model) == pytest.approx(chosen)
  assert len(ranked) <= 3
