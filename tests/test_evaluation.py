"""Tests of the offline evaluation: the protocol, the metrics, the reference baselines, what is
asked of SavedModels, the evaluation of a run, and the Trainer's eval-split summary."""

import numpy as np
import pytest
from scipy import sparse
import tensorflow as tf

from contract import features
from contract import signatures
from contract import split_rules
from evaluation import baselines
from evaluation import evaluate
from evaluation import metrics as metrics_lib
from evaluation import protocol
from evaluation import saved_models
from models import eval_split
from ingest import loaders, synthetic, tables

TRAIN, EVAL, TEST = features.SPLITS
# (user, item, rating, split). Catalogue: a..e (train items); 'z' is a test item outside it.
# u2's eval 'a' is seen when evaluating test; u4 and u5 have no test interactions.
TINY_ROWS = (
    ('u1', 'a', 5.0, TRAIN),
    ('u1', 'b', 3.0, TRAIN),
    ('u1', 'c', 2.0, TEST),
    ('u1', 'd', 5.0, TEST),
    ('u2', 'c', 4.0, TRAIN),
    ('u2', 'a', 1.0, EVAL),
    ('u2', 'b', 4.0, TEST),
    ('u2', 'z', 3.0, TEST),
    ('u3', 'd', 4.0, TRAIN),
    ('u3', 'e', 4.0, TRAIN),
    ('u3', 'a', 4.0, TEST),
    ('u4', 'a', 4.0, TRAIN),
    ('u4', 'b', 4.0, TRAIN),
    ('u5', 'a', 4.0, TRAIN),
)
# Rows u1..u3, columns a..e. Seen items get the highest scores, so the unseen rankings are:
# u1: d e c (targets c, d at ranks 1 and 3); u2: e b d (target b at rank 2, 'z' unreachable);
# u3: b c a (target a at rank 3).
TINY_SCORES = np.array([
    [9.0, 8.0, 1.0, 3.0, 2.0],
    [8.0, 4.0, 9.0, 3.0, 5.0],
    [1.0, 3.0, 2.0, 9.0, 8.0],
])
TINY_RANKINGS = [['a', 'b', 'd', 'e', 'c'], ['c', 'a', 'e', 'b', 'd'], ['d', 'e', 'b', 'c', 'a']]


def tiny_frame():
  users, items, ratings, names = zip(*TINY_ROWS)
  frame = tables.interactions_frame(users, items, ratings, range(len(TINY_ROWS)))
  return frame, list(names)


@pytest.fixture(name='tiny')
def fixture_tiny() -> protocol.EvalData:
  return protocol.build_eval_data(*tiny_frame())


def test_eval_data_follows_the_protocol(tiny):
  assert tiny.items.tolist() == ['a', 'b', 'c', 'd', 'e']
  assert tiny.users.tolist() == ['u1', 'u2', 'u3']
  np.testing.assert_array_equal(tiny.seen.toarray(), [
      [1, 1, 0, 0, 0],
      [1, 0, 1, 0, 0],
      [0, 0, 0, 1, 1],
  ])
  np.testing.assert_array_equal(tiny.targets.toarray(), [
      [0, 0, 1, 1, 0],
      [0, 1, 0, 0, 0],
      [1, 0, 0, 0, 0],
  ])
  np.testing.assert_array_equal(tiny.num_targets, [2, 2, 1])
  assert tiny.train_matrix.shape == (5, 5)
  assert tiny.train_matrix.sum() == 8


def test_eval_split_sees_only_train():
  data = protocol.build_eval_data(*tiny_frame(), split=EVAL)
  assert data.users.tolist() == ['u2']
  np.testing.assert_array_equal(data.seen.toarray(), [[0, 0, 1, 0, 0]])
  np.testing.assert_array_equal(data.targets.toarray(), [[1, 0, 0, 0, 0]])


def test_default_splits_are_the_project_split():
  dataset = synthetic.generate()
  default = protocol.build_eval_data(dataset.interactions)
  explicit = protocol.build_eval_data(dataset.interactions,
                                      split_rules.assign_splits(dataset.interactions))
  assert default.users.equals(explicit.users)
  assert (default.seen != explicit.seen).nnz == 0
  assert (default.targets != explicit.targets).nnz == 0


def test_catalogue_items_join_the_catalogue_and_their_cold_targets_can_be_hit(tiny):
  # 'q' is known but never interacted with; 'z', u2's test item, has no train interaction.
  data = protocol.build_eval_data(*tiny_frame(), catalogue_items=['z', 'q', 'a'])
  assert data.items.tolist() == ['a', 'b', 'c', 'd', 'e', 'q', 'z']
  assert data.users.equals(tiny.users)
  np.testing.assert_array_equal(data.seen.toarray()[:, :5], tiny.seen.toarray())
  assert data.seen[:, 5:].nnz == 0
  np.testing.assert_array_equal(data.targets.toarray()[:, :5], tiny.targets.toarray())
  np.testing.assert_array_equal(data.targets.toarray()[:, 5:], [[0, 0], [0, 1], [0, 0]])
  np.testing.assert_array_equal(data.num_targets, tiny.num_targets)
  assert data.train_matrix.shape == (5, 7)
  assert data.train_matrix[:, 5:].nnz == 0 and data.train_matrix.sum() == 8
  # z scores highest and q lowest: unseen rankings u1 z d e c q, u2 z e b d q, u3 z b c a q.
  scores = np.hstack([TINY_SCORES, np.tile([[0.0, 10.0]], (3, 1))])
  metrics = metrics_lib.ranking_metrics(scores, data, ks=(1, 2, 10))
  assert metrics['recall@1'] == pytest.approx((0 + 1 / 2 + 0) / 3)
  assert metrics['recall@2'] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
  assert metrics['recall@10'] == 1.0  # u2's z is now hit
  assert metrics['coverage@10'] == 1.0


def test_without_other_items_the_catalogue_is_the_train_items(tiny):
  frame, names = tiny_frame()
  for catalogue_items in (None, [], ['b', 'a']):
    data = protocol.build_eval_data(frame, names, catalogue_items=catalogue_items)
    assert data.items.equals(tiny.items) and data.users.equals(tiny.users)
    for name in ('seen', 'targets', 'train_matrix'):
      assert (getattr(data, name) != getattr(tiny, name)).nnz == 0, name
    np.testing.assert_array_equal(data.num_targets, tiny.num_targets)


def test_ranking_metrics_by_hand(tiny):
  metrics = metrics_lib.ranking_metrics(TINY_SCORES, tiny, ks=(1, 2, 10))
  assert metrics['recall@1'] == pytest.approx((1 / 2 + 0 + 0) / 3)
  assert metrics['recall@2'] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
  # u2's target 'z' is outside the catalogue: it counts in the denominator but is never hit.
  assert metrics['recall@10'] == pytest.approx((1 + 1 / 2 + 1) / 3)
  ideal_of_two = 1 + 1 / np.log2(3)
  expected_ndcg = ((1 + 1 / np.log2(4)) / ideal_of_two + (1 / np.log2(3)) / ideal_of_two +
                   (1 / np.log2(4)) / 1) / 3
  assert metrics['ndcg@10'] == pytest.approx(expected_ndcg)
  assert metrics['coverage@10'] == 1.0


def test_default_keys(tiny):
  metrics = metrics_lib.ranking_metrics(TINY_SCORES, tiny)
  assert list(metrics) == metrics_lib.METRIC_KEYS
  # The catalogue has 5 items, so every cutoff ranks all unseen items.
  assert metrics['recall@10'] == metrics['recall@50'] == metrics['recall@100']


def test_seen_items_never_count():
  frame = tables.interactions_frame(['u', 'u', 'u', 'v'], ['a', 'a', 'b', 'b'], [1.0] * 4,
                                    range(4))
  data = protocol.build_eval_data(frame, [TRAIN, TEST, TEST, TRAIN])
  # 'a' is both seen and a target and has the top score: it is masked, and 'b' comes first.
  metrics = metrics_lib.ranking_metrics(np.array([[10.0, 1.0]]), data, ks=(1, 10))
  assert metrics['recall@1'] == metrics['recall@10'] == 0.5
  assert metrics['coverage@10'] == 0.5


def test_topk_metrics_match_the_score_metrics(tiny):
  from_topk = metrics_lib.ranking_metrics_from_topk(TINY_RANKINGS, tiny, ks=(1, 2, 10))
  assert from_topk == pytest.approx(
      metrics_lib.ranking_metrics(TINY_SCORES, tiny, ks=(1, 2, 10)))


def test_topk_coverage_counts_catalogue_items(tiny):
  metrics = metrics_lib.ranking_metrics_from_topk([['d', 'e'], ['e', 'e'], ['z', 'e']], tiny)
  assert metrics['coverage@10'] == 2 / 5
  assert metrics['recall@10'] == pytest.approx((1 / 2 + 0 + 0) / 3)


def test_topk_metrics_match_on_generated_data():
  dataset = synthetic.generate()
  data = protocol.build_eval_data(dataset.interactions)
  scores = np.random.RandomState(0).uniform(size=(len(data.users), len(data.items)))
  rankings = [data.items[np.argsort(-row)].tolist() for row in scores]  # seen items included
  assert metrics_lib.ranking_metrics_from_topk(rankings, data) == pytest.approx(
      metrics_lib.ranking_metrics(scores, data))


def test_top_from_scores_and_from_ids_agree(tiny):
  expected = [[3, 4, 2], [4, 1, 3], [1, 2, 0]]  # u1: d e c; u2: e b d; u3: b c a
  np.testing.assert_array_equal(metrics_lib.top_from_scores(TINY_SCORES, tiny, 3), expected)
  np.testing.assert_array_equal(metrics_lib.top_from_ids(TINY_RANKINGS, tiny, 3), expected)
  # Deeper than the unseen items: the extra places hold no item.
  deep = metrics_lib.top_from_scores(TINY_SCORES, tiny, 6)
  assert (deep[:, 3:] == metrics_lib.NOT_IN_CATALOGUE).all()
  # UTF-8 bytes, as exported models return ids, map to the same columns.
  as_bytes = [np.array([item.encode() for item in ranking], object) for ranking in TINY_RANKINGS]
  np.testing.assert_array_equal(metrics_lib.top_from_ids(as_bytes, tiny, 3), expected)


def test_top_from_ids_drops_repeats_and_keeps_the_places_of_unknown_ids(tiny):
  # u1: d d x x e -> d, x (unknown: a place, no column), e: a repeated id counts once, an
  # unknown one too. u2: y b y e -> y, b, e. u3 ranks nothing.
  unknown = metrics_lib.NOT_IN_CATALOGUE
  rankings = [['d', 'd', 'x', 'x', 'e'], ['y', 'b', 'y', 'e'], []]
  # Seen items (u1's a) are dropped without taking a place.
  rankings[0].insert(1, 'a')
  expected = [[3, unknown, 4], [unknown, 1, 4], [unknown] * 3]
  for ids in (rankings, [[item.encode() for item in ranking] for ranking in rankings]):
    np.testing.assert_array_equal(metrics_lib.top_from_ids(ids, tiny, 3), expected)


def test_users_ranked_block_by_block_rank_as_all_at_once(tiny, monkeypatch):
  expected = metrics_lib.top_from_scores(TINY_SCORES, tiny, 6)
  monkeypatch.setattr(metrics_lib, 'USER_BLOCK', 2)  # 3 users: a block of 2, then 1
  np.testing.assert_array_equal(metrics_lib.top_from_scores(TINY_SCORES, tiny, 6), expected)


def test_recall_curve_by_hand(tiny):
  top = metrics_lib.top_from_scores(TINY_SCORES, tiny, 3)
  curve = metrics_lib.recall_curve(top, tiny)
  np.testing.assert_allclose(curve, [1 / 6, 1 / 3, 5 / 6])
  metrics = metrics_lib.metrics_of_top(top, tiny, ks=(1, 2, 3))
  assert [metrics[f'recall@{k}'] for k in (1, 2, 3)] == pytest.approx(curve.tolist())


def test_novelty_by_hand(tiny):
  # 5 train users; a is seen by 3 of them, b by 2, c, d and e by 1.
  top = metrics_lib.top_from_scores(TINY_SCORES, tiny, 3)  # top 2: d e, e b, b c
  expected = (4 * np.log2(5) + 2 * np.log2(5 / 2)) / 6
  assert metrics_lib.novelty(top, tiny, cutoff=2) == pytest.approx(expected)
  # Popular items carry less information.
  popular = np.array([[0, 1], [0, 1], [0, 1]])
  assert metrics_lib.novelty(popular, tiny, cutoff=2) < expected


def test_novelty_needs_a_recommended_item(tiny):
  with pytest.raises(ValueError, match='no catalogue item'):
    metrics_lib.novelty(np.full((3, 2), metrics_lib.NOT_IN_CATALOGUE), tiny)


def test_fidelity_is_the_mean_top_overlap():
  reference = np.array([[0, 1, 2], [3, 4, 5]])
  assert metrics_lib.fidelity(reference, reference, cutoff=3) == 1.0
  top = np.array([[2, 9, 0], [7, 8, metrics_lib.NOT_IN_CATALOGUE]])
  assert metrics_lib.fidelity(top, reference, cutoff=3) == pytest.approx((2 / 3 + 0) / 2)
  assert metrics_lib.fidelity(top, reference, cutoff=1) == 0.0
  with pytest.raises(ValueError, match='same users'):
    metrics_lib.fidelity(top[:1], reference)


def test_rmse():
  assert metrics_lib.rmse([1.0, 2.0], [2.0, 4.0]) == pytest.approx(np.sqrt(5 / 2))
  with pytest.raises(ValueError):
    metrics_lib.rmse([1.0], [1.0, 2.0])


def test_mean_rating_rmse():
  train = tiny_frame()[0].iloc[[i for i, row in enumerate(TINY_ROWS) if row[3] == TRAIN]]
  test_ratings = [row[2] for row in TINY_ROWS if row[3] == TEST]
  # The train mean is 4; the test ratings are 2, 5, 4, 3, 4.
  assert baselines.mean_rating_rmse(train, test_ratings) == pytest.approx(np.sqrt(6 / 5))


def test_popularity_ranks_by_train_count(tiny):
  frame, names = tiny_frame()
  scores = baselines.popularity_scores(frame[np.array(names) == TRAIN], tiny)
  np.testing.assert_array_equal(scores, np.tile([3, 2, 1, 1, 1], (3, 1)))


def test_ease_weights_solve_the_constrained_ridge_regression():
  train_matrix = (np.random.RandomState(0).uniform(size=(8, 5)) < 0.5).astype(np.float64)
  l2 = 2.0
  weights = baselines.ease_weights(sparse.csr_matrix(train_matrix), l2)
  np.testing.assert_array_equal(np.diag(weights), 0.0)
  for column in range(5):
    others = [j for j in range(5) if j != column]
    inputs = train_matrix[:, others]
    direct = np.linalg.solve(inputs.T @ inputs + l2 * np.eye(4), inputs.T @ train_matrix[:, column])
    np.testing.assert_allclose(weights[others, column], direct, atol=1e-12)


def test_symmetrise_upper_copies_the_upper_triangle_block_by_block():
  matrix = np.random.RandomState(0).normal(size=(7, 7))
  expected = np.triu(matrix) + np.triu(matrix, 1).T
  baselines._symmetrise_upper(matrix, block=3)  # pylint: disable=protected-access
  np.testing.assert_array_equal(matrix, expected)


def test_ease_beats_random_on_generated_data():
  data = protocol.build_eval_data(synthetic.generate().interactions)
  random_scores = np.random.RandomState(0).uniform(size=(len(data.users), len(data.items)))
  ease = metrics_lib.ranking_metrics(baselines.ease_scores(data, l2=10.0), data)
  assert ease['recall@10'] > metrics_lib.ranking_metrics(random_scores, data)['recall@10']


def test_baselines_score_cold_items_zero_and_novelty_stays_finite():
  frame, names = tiny_frame()
  data = protocol.build_eval_data(frame, names, catalogue_items=['q', 'z'])  # all-zero columns
  popularity = baselines.popularity_scores(frame[np.array(names) == TRAIN], data)
  np.testing.assert_array_equal(popularity, np.tile([3, 2, 1, 1, 1, 0, 0], (3, 1)))
  ease = baselines.ease_scores(data, l2=1.0)
  assert np.isfinite(ease).all()
  np.testing.assert_array_equal(ease[:, 5:], 0.0)
  # Without the cold columns, the warm items' EASE scores are the same.
  np.testing.assert_allclose(ease[:, :5], baselines.ease_scores(
      protocol.build_eval_data(frame, names), l2=1.0), atol=1e-12)
  # A cold item counts as an item of one of the 5 train users: top 2 z a, q b, z d.
  top = np.array([[6, 0], [5, 1], [6, 3]])
  expected = (4 * np.log2(5) + np.log2(5 / 3) + np.log2(5 / 2)) / 6
  assert metrics_lib.novelty(top, data, cutoff=2) == pytest.approx(expected)


def test_movielens_reference_figures(shared_movielens):
  # Their speed is a benchmark figure: `python -m benchmarks.protocol_speed`.
  frame = loaders.load_movielens_100k(shared_movielens).interactions
  splits = split_rules.assign_splits(frame)
  data = protocol.build_eval_data(frame, splits)
  popularity = metrics_lib.ranking_metrics(
      baselines.popularity_scores(frame[splits == TRAIN], data), data)
  ease = metrics_lib.ranking_metrics(baselines.ease_scores(data, l2=300.0), data)
  assert popularity['recall@10'] == pytest.approx(0.072, abs=0.02)
  assert popularity['recall@100'] == pytest.approx(0.329, abs=0.05)
  assert popularity['ndcg@10'] == pytest.approx(0.081, abs=0.02)
  assert ease['recall@10'] == pytest.approx(0.136, abs=0.02)
  assert ease['recall@100'] == pytest.approx(0.565, abs=0.05)
  assert ease['ndcg@10'] == pytest.approx(0.148, abs=0.02)


def test_first_rows_of_new_users_in_row_order():
  users = np.array([7, 5, 7, 9, 5, 8])
  np.testing.assert_array_equal(eval_split.first_rows(users, np.array([], np.int64), 10),
                                [0, 1, 3, 5])
  np.testing.assert_array_equal(eval_split.first_rows(users, np.array([5]), 2), [0, 3])


def _index_batches(rows, batch_size):
  """A dataset of transformed-feature batches from (user index, item index) rows; row r's
  query features are r (AGE_Z) and [r, r + 10] (HISTORY_INDICES)."""
  users, items = (np.array(column, dtype=np.int64) for column in zip(*rows))
  positions = np.arange(len(rows))
  columns = {features.USER_INDEX: users, features.ITEM_INDEX: items,
             features.AGE_Z: positions.astype(np.float32),
             features.HISTORY_INDICES: np.stack([positions, positions + 10], axis=1),
             features.GENDER_INDEX: positions, features.OCCUPATION_INDEX: positions,
             features.ZIP_INDEX: positions}
  return tf.data.Dataset.from_tensor_slices(columns).batch(batch_size)


def test_eval_split_collects_the_first_users_by_hand():
  # Catalogue items 1..4. User 7's item 0 and user 9's item 5 are outside it: they count in
  # num_targets but have no column. User 5's repeated 3 is one target. User 8 comes fourth.
  eval_rows = [(7, 2), (5, 3), (7, 4), (9, 1), (5, 3), (7, 0), (8, 2), (9, 5)]
  train_rows = [(5, 1), (5, 1), (7, 3), (8, 4), (9, 6), (9, 2)]
  collected = eval_split.collect(_index_batches(train_rows, 4), _index_batches(eval_rows, 3), 4,
                                 max_users=3)
  data = collected.eval_data
  assert data.users.tolist() == [7, 5, 9]
  assert data.items.tolist() == [1, 2, 3, 4]
  np.testing.assert_array_equal(data.targets.toarray(), [[0, 1, 0, 1], [0, 0, 1, 0], [1, 0, 0, 0]])
  np.testing.assert_array_equal(data.num_targets, [3, 1, 2])
  np.testing.assert_array_equal(data.seen.toarray(), [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]])
  # Each user's query is their first eval row: rows 0, 1 and 3.
  np.testing.assert_array_equal(collected.queries[features.AGE_Z], [0.0, 1.0, 3.0])
  np.testing.assert_array_equal(collected.queries[features.HISTORY_INDICES],
                                [[0, 10], [1, 11], [3, 13]])
  assert data.train_matrix is None
  # Items by score: 3 1 2 4. Unseen: user 7 ranks 1 2 4 (targets 2, 4 and 0), user 5 ranks
  # 3 2 4 (target 3), user 9 ranks 3 1 4 (targets 1 and 5).
  scores = np.tile([3.0, 2.0, 4.0, 1.0], (3, 1))
  metrics = metrics_lib.ranking_metrics(scores, data, ks=(1, 2))
  assert metrics['recall@1'] == pytest.approx((0 + 1 + 0) / 3)
  assert metrics['recall@2'] == pytest.approx((1 / 3 + 1 + 1 / 2) / 3)
  with pytest.raises(ValueError, match='train matrix'):
    metrics_lib.novelty(metrics_lib.top_from_scores(scores, data, 2), data)


def test_eval_split_takes_every_user_under_the_cap():
  collected = eval_split.collect(_index_batches([(1, 1)], 2), _index_batches([(2, 1), (1, 2)], 1),
                                 2, max_users=10)
  assert collected.eval_data.users.tolist() == [2, 1]
  np.testing.assert_array_equal(collected.eval_data.seen.toarray(), [[0, 0], [1, 0]])
  np.testing.assert_array_equal(collected.queries[features.AGE_Z], [0.0, 1.0])


def test_eval_split_rmse_over_every_example_in_large_batches(monkeypatch):
  # 7 examples in batches of 2 (the last one short), re-batched 3 by 3: the model predicts
  # each row's AGE_Z (its position); labels are 1, so the errors are 0 + 1 + 2 + ... + 6 - 1.
  monkeypatch.setattr(eval_split, 'RMSE_BATCH', 3)
  rows = _index_batches([(1, 1)] * 7, 2).unbatch().map(
      lambda row: {**row, features.LABEL: tf.constant(1.0)}).batch(2)
  calls = []

  def model(batch):
    calls.append(int(tf.shape(batch[features.AGE_Z])[0]))
    return {'rating': batch[features.AGE_Z]}

  errors = np.arange(7) - 1.0
  assert eval_split.rmse(model, rows) == pytest.approx(np.sqrt(np.mean(errors**2)))
  assert calls == [3, 3, 1]


class _FixedScoresModel(tf.Module):
  """A SavedModel with the serving contract that scores every catalogue item the same for every
  user (`item_scores`, items a..e) and predicts a rating of 4 for every example. With
  `known_users`, users outside them (which a real model puts in its OOV bucket) get the negated
  scores."""

  def __init__(self, item_scores, known_users=(), items='abcde'):
    super().__init__()
    self.item_scores = tf.Variable(item_scores, dtype=tf.float32)
    self.items = tf.constant(list(items))
    self.known_users = tf.constant(list(known_users), dtype=tf.string)

  def _top(self, batch_size, known=None):
    scores = tf.tile(self.item_scores[tf.newaxis], [batch_size, 1])
    if known is not None:
      scores = tf.where(known[:, tf.newaxis], scores, -scores)
    order = tf.argsort(scores, direction='DESCENDING', stable=True)
    return {signatures.ITEM_IDS: tf.gather(self.items, order),
            signatures.SCORES: tf.gather(scores, order, batch_dims=1)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                tf.TensorSpec([None, None], tf.string),
                                tf.TensorSpec([None], tf.int64)] +
               [tf.TensorSpec([None], tf.string)] * 3 + [tf.TensorSpec([], tf.int32)])
  def rank_catalogue(self, user_id, history, age, gender, occupation, zip_code, depth):
    del history, age, gender, occupation, zip_code
    known = tf.reduce_any(user_id[:, tf.newaxis] == self.known_users[tf.newaxis, :], axis=1)
    if self.known_users.shape[0] == 0:
      known = tf.ones_like(known)
    return {name: values[:, :depth]
            for name, values in self._top(tf.shape(user_id)[0], known).items()}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def serve(self, examples):
    return self._top(tf.shape(examples)[0])

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def score(self, examples):
    return {signatures.RATING: tf.fill([tf.shape(examples)[0]], 4.0)}


def _save_fixed_scores_model(directory, item_scores, known_users=(), items='abcde') -> str:
  model = _FixedScoresModel(item_scores, known_users, items)
  tf.saved_model.save(model, str(directory), signatures={
      signatures.SERVING_DEFAULT: model.serve.get_concrete_function(),
      signatures.SCORE: model.score.get_concrete_function()})
  return str(directory)


def _rating_example(rating: float) -> bytes:
  feature = {features.RATING: tf.train.Feature(float_list=tf.train.FloatList(value=[rating]))}
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_saved_models_rankings_ratings_and_size(tmp_path, monkeypatch):
  model = saved_models.load(_save_fixed_scores_model(tmp_path / 'model', [9, 8, 1, 3, 2]))
  assert saved_models.load(str(tmp_path / 'none')) is None
  monkeypatch.setattr(saved_models, 'BATCH_SIZE', 2)  # three users: two batches
  side = protocol.user_side_features(tiny_frame()[0], ['u1', 'u2', 'u3'])
  rankings, scores = saved_models.catalogue_rankings(
      model, ['u1', 'u2', 'u3'], [['a'], [], ['b', 'c']], side, [2, 5, 1], keep_scores=[2])
  assert [ranking.tolist() for ranking in rankings] == [
      [b'a', b'b'], [b'a', b'b', b'd', b'e', b'c'], [b'a']]
  assert scores == {2: {'a': 9.0, 'b': 8.0, 'c': 1.0, 'd': 3.0, 'e': 2.0}}
  with pytest.raises(ValueError, match='as many'):
    saved_models.catalogue_rankings(model, ['u1'], [], side, [1])
  np.testing.assert_array_equal(
      saved_models.predicted_ratings(model, [_rating_example(1.0)] * 3, batch_size=2), [4.0] * 3)
  assert saved_models.variables_bytes(str(tmp_path / 'model')) > 0
  with pytest.raises(FileNotFoundError):
    saved_models.variables_bytes(str(tmp_path / 'none'))
  latencies = saved_models.serving_latencies_ms({'a': model, 'b': model}, _rating_example(1.0),
                                                3, warmup=1)
  assert set(latencies) == {'a', 'b'}
  for latency in latencies.values():
    assert 0 < latency['latency_p50_ms'] <= latency['latency_p99_ms']
    assert latency['latency_mean_ms'] > 0
  with pytest.raises(ValueError, match='requests'):
    saved_models.serving_latencies_ms({'a': model}, _rating_example(1.0), 0)


def test_evaluate_exported_models_and_baselines(tiny, tmp_path):
  frame, names = tiny_frame()
  teacher_scores = [9.0, 8.0, 1.0, 3.0, 2.0]
  model_dirs = {
      'teacher': _save_fixed_scores_model(tmp_path / 'teacher', teacher_scores),
      'student': _save_fixed_scores_model(tmp_path / 'student',
                                          [2 * score + 1 for score in teacher_scores],
                                          known_users=['u1', 'u2', 'u3']),
  }
  test_ratings = [row[2] for row in TINY_ROWS if row[3] == TEST]
  result = evaluate.evaluate(frame, names, [_rating_example(r) for r in test_ratings], model_dirs,
                             candidate='student', reference='teacher', latency_requests=2)
  assert (result['split'], result['users'], result['catalogue_items']) == (TEST, 3, 5)
  assert list(result['models']) == ['teacher', 'student', evaluate.POPULARITY, evaluate.EASE]
  # rank_catalogue's rankings give the metrics of the same scores ranked in memory.
  expected = metrics_lib.ranking_metrics(np.tile(teacher_scores, (3, 1)), tiny)
  popularity = metrics_lib.ranking_metrics(
      baselines.popularity_scores(frame[np.array(names) == TRAIN], tiny), tiny)
  for name in ('teacher', 'student'):
    metrics = result['models'][name]
    assert {key: metrics[key] for key in metrics_lib.METRIC_KEYS} == pytest.approx(expected)
    assert metrics['fidelity@10'] == pytest.approx(3 / 10)  # the same 3 unseen items each
    assert metrics['rmse'] == pytest.approx(np.sqrt(6 / 5))  # 4 for test ratings 2 5 4 3 4
    assert metrics['bytes'] > 0 and metrics['latency_mean_ms'] > 0
  assert {key: result['models']['popularity'][key]
          for key in metrics_lib.METRIC_KEYS} == pytest.approx(popularity)
  assert result['models']['popularity']['rmse'] == pytest.approx(np.sqrt(6 / 5))
  assert 'rmse' not in result['models']['ease']
  assert all(len(curve) == evaluate.DEPTH for curve in result['recall_curves'].values())
  # Slices: u2's cold 'z' is never hit; every user has at most 5 train interactions. The student
  # ranks an unknown user by the negated scores; the others read no user id.
  negated = metrics_lib.top_from_scores(-np.tile(teacher_scores, (3, 1)), tiny, evaluate.DEPTH)
  expected_new_users = metrics_lib.metrics_of_top(negated, tiny)
  # The head (20% of the 5 train items) is a: u1's c and d and u2's b and z are in the tail.
  assert result['slice_users'] == {'cold_items': 1, 'warm_items': 3, 'new_users': 3,
                                   'short_history': 3, 'long_tail': 2}
  for name, metrics in result['models'].items():
    assert metrics['recall@100_cold_items'] == 0.0
    assert metrics['recall@100_warm_items'] == 1.0  # 5 items: every unseen one is ranked
    assert metrics['ndcg@10_short_history'] == pytest.approx(metrics['ndcg@10'])
    if name == 'student':
      assert metrics['ndcg@10_new_users'] == pytest.approx(expected_new_users['ndcg@10'])
      assert metrics['ndcg@10_new_users'] < metrics['ndcg@10']
    else:
      assert metrics['ndcg@10_new_users'] == pytest.approx(metrics['ndcg@10'])
      assert metrics['recall@100_new_users'] == pytest.approx(metrics['recall@100'])
  sample = result['score_sample']
  assert len(sample['reference']) == len(sample['candidate']) == 3 * 5
  assert sample['candidate'] == pytest.approx([2 * score + 1 for score in sample['reference']])
  assert sample['pearson'] == pytest.approx(1.0)
  with pytest.raises(ValueError, match='candidate'):
    evaluate.evaluate(frame, names, [b''], model_dirs, 'nobody', 'teacher', 1)


def test_evaluate_ranks_the_catalogue_items(tmp_path):
  frame, names = tiny_frame()
  model_dirs = {'teacher': _save_fixed_scores_model(tmp_path / 'teacher', [9, 8, 1, 3, 2]),
                'knows_z': _save_fixed_scores_model(tmp_path / 'knows_z', [9, 8, 1, 3, 2, 0],
                                                    items='abcdez')}
  test_ratings = [row[2] for row in TINY_ROWS if row[3] == TEST]
  result = evaluate.evaluate(frame, names, [_rating_example(r) for r in test_ratings], model_dirs,
                             candidate='teacher', reference='teacher', latency_requests=1,
                             catalogue_items=['z'])
  # Ranked last of six, z is within the top 100 and first of the cold items.
  assert result['models']['knows_z']['recall@100_cold_items'] == 1.0
  assert result['models']['knows_z'][evaluate.AMONG_COLD_ITEMS] == 1.0
  assert result['catalogue_items'] == 6 and result['slice_users']['cold_items'] == 1
  # u2's cold 'z' is in the catalogue: the baselines rank it (score 0) within their top 100; the
  # model knows a..e only.
  assert result['models']['teacher']['recall@100_cold_items'] == 0.0
  assert result['models']['teacher'][evaluate.AMONG_COLD_ITEMS] == 0.0  # z is not ranked
  for name in (evaluate.POPULARITY, evaluate.EASE):
    assert result['models'][name][evaluate.AMONG_COLD_ITEMS] is None
    assert result['models'][name]['recall@100_cold_items'] == 1.0
    assert result['models'][name]['recall@100'] == 1.0


def test_the_new_users_id_is_unknown():
  assert evaluate.unknown_user_id(['u1', 'u2']) == evaluate.NEW_USER_ID
  assert evaluate.unknown_user_id([evaluate.NEW_USER_ID, evaluate.NEW_USER_ID + '+']) == (
      evaluate.NEW_USER_ID + '++')


# Slices by hand. Catalogue a..g (train items); x and y have no train interaction (cold).
# v1 has 6 train interactions (not a short history), v2 2, v3 1. v2's eval 'd' is seen when
# evaluating test, so v2's warm target 'd' can never be hit.
SLICE_ROWS = (
    ('v1', 'a', TRAIN), ('v1', 'b', TRAIN), ('v1', 'c', TRAIN), ('v1', 'd', TRAIN),
    ('v1', 'e', TRAIN), ('v1', 'f', TRAIN), ('v1', 'g', TEST), ('v1', 'y', TEST),
    ('v2', 'a', TRAIN), ('v2', 'b', TRAIN), ('v2', 'd', EVAL), ('v2', 'c', TEST),
    ('v2', 'd', TEST), ('v2', 'x', TEST),
    ('v3', 'g', TRAIN), ('v3', 'a', TEST),
)
# The same item scores for every user: a 7, b 6, ... g 1; the new-user rankings reverse them.
SLICE_SCORES = np.tile(np.arange(7, 0, -1, dtype=np.float64), (3, 1))


def slice_frame():
  users, items, names = zip(*SLICE_ROWS)
  frame = tables.interactions_frame(users, items, [4.0] * len(users), range(len(users)))
  return frame, list(names)


def test_slices_follow_the_protocol():
  frame, names = slice_frame()
  data = protocol.build_eval_data(frame, names)
  assert data.items.tolist() == list('abcdefg')
  slices = protocol.build_slices(frame, names, data)
  assert list(slices) == list(protocol.SLICES)
  cold, warm = slices[protocol.COLD_ITEMS], slices[protocol.WARM_ITEMS]
  assert cold.rows.tolist() == [0, 1] and cold.eval_data.num_targets.tolist() == [1, 1]
  assert cold.eval_data.targets.nnz == 0  # x and y are outside the catalogue
  assert warm.rows.tolist() == [0, 1, 2] and warm.eval_data.num_targets.tolist() == [1, 2, 1]
  np.testing.assert_array_equal(warm.eval_data.targets.toarray(), data.targets.toarray())
  assert slices[protocol.SHORT_HISTORY].rows.tolist() == [1, 2]
  assert slices[protocol.NEW_USERS].rows.tolist() == [0, 1, 2]
  # Train counts a 2, b 2, the others 1: the head (20% of 7 items, rounded up) is a and b.
  tail = slices[protocol.LONG_TAIL]
  assert tail.rows.tolist() == [0, 1] and tail.eval_data.num_targets.tolist() == [2, 3]
  assert sorted(data.items[tail.eval_data.targets.indices]) == ['c', 'd', 'g']  # y, x: no column


def test_slice_metrics_by_hand():
  frame, names = slice_frame()
  data = protocol.build_eval_data(frame, names)
  slices = protocol.build_slices(frame, names, data)
  top = metrics_lib.top_from_scores(SLICE_SCORES, data, 100)
  new_user_top = metrics_lib.top_from_scores(-SLICE_SCORES, data, 100)
  metrics = metrics_lib.slice_metrics(top, new_user_top, slices)
  assert list(metrics) == metrics_lib.SLICE_METRIC_KEYS == [
      'recall@100_cold_items', 'recall@100_warm_items', 'ndcg@10_new_users',
      'recall@100_new_users', 'ndcg@10_short_history', 'recall@100_long_tail']
  # Cold targets y (v1) and x (v2) cannot be ranked: 0, not left out.
  assert metrics['recall@100_cold_items'] == 0.0
  # Warm: v1 hits g of {g}, v2 c of {c, d} (d is seen), v3 a of {a}.
  assert metrics['recall@100_warm_items'] == pytest.approx((1 + 1 / 2 + 1) / 3)
  # Unseen rankings: v2 c e f g (targets c, d, x: c first), v3 a b c d e f (target a first).
  ideal_of_three = 1 + 1 / np.log2(3) + 1 / 2
  assert metrics['ndcg@10_short_history'] == pytest.approx((1 / ideal_of_three + 1) / 2)
  # Reversed: v1 ranks g (targets g, y), v2 g f e c (c 4th), v3 f e d c b a (a 6th).
  assert metrics['ndcg@10_new_users'] == pytest.approx(
      (1 / (1 + 1 / np.log2(3)) + (1 / np.log2(5)) / ideal_of_three + 1 / np.log2(7)) / 3)
  # Every reachable target is within the top 100: v1 1 of 2, v2 1 of 3, v3 1 of 1.
  assert metrics['recall@100_new_users'] == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)
  # Long tail: v1 hits g of {g, y}, v2 c of {c, d, x}; v3's only target (a) is in the head.
  assert metrics['recall@100_long_tail'] == pytest.approx((1 / 2 + 1 / 3) / 2)
  with pytest.raises(ValueError, match='same users'):
    metrics_lib.slice_metrics(top, new_user_top[:1], slices)


def test_cold_slice_with_a_catalogue_of_the_cold_items():
  frame, names = slice_frame()
  # 'h' is known but never interacted with; the cold x and y are in the catalogue.
  data = protocol.build_eval_data(frame, names, catalogue_items=['y', 'x', 'h'])
  assert data.items.tolist() == list('abcdefghxy')
  slices = protocol.build_slices(frame, names, data)
  cold, warm = slices[protocol.COLD_ITEMS], slices[protocol.WARM_ITEMS]
  assert cold.rows.tolist() == [0, 1] and cold.eval_data.num_targets.tolist() == [1, 1]
  np.testing.assert_array_equal(cold.eval_data.targets.toarray(),
                                [[0] * 9 + [1], [0] * 8 + [1, 0]])  # v1 y, v2 x
  assert warm.rows.tolist() == [0, 1, 2] and warm.eval_data.num_targets.tolist() == [1, 2, 1]
  assert warm.eval_data.targets[:, 7:].nnz == 0
  # Scores x 8, a 7 .. g 1, y 0.5, h 0. Unseen rankings: v1 x g y h, v2 x c e f g y h,
  # v3 x a b c d e f y h.
  scores = np.tile(np.r_[np.arange(7, 0, -1), 0.0, 8.0, 0.5], (3, 1))
  top = metrics_lib.top_from_scores(scores, data, 100)
  # Cold: v1's y at rank 3, v2's x at rank 1.
  cold_metrics = metrics_lib.metrics_of_top(top[cold.rows], cold.eval_data, ks=(1, 3))
  assert (cold_metrics['recall@1'], cold_metrics['recall@3']) == (0.5, 1.0)
  # Warm: v1's g, v2's c and v3's a at rank 2; v2's d is seen.
  warm_metrics = metrics_lib.metrics_of_top(top[warm.rows], warm.eval_data, ks=(1, 2))
  assert warm_metrics['recall@1'] == 0.0
  assert warm_metrics['recall@2'] == pytest.approx((1 + 1 / 2 + 1) / 3)
  metrics = metrics_lib.slice_metrics(top, top, slices)
  assert metrics['recall@100_cold_items'] == 1.0
  assert metrics['recall@100_warm_items'] == pytest.approx((1 + 1 / 2 + 1) / 3)


def test_a_slice_without_users_is_none():
  frame, names = tiny_frame()
  data = protocol.build_eval_data(frame, names, split=EVAL)  # u2's eval 'a' is warm
  slices = protocol.build_slices(frame, names, data)
  assert not len(slices[protocol.COLD_ITEMS].rows)
  top = metrics_lib.top_from_scores(np.ones((1, 5)), data, 100)
  metrics = metrics_lib.slice_metrics(top, top, slices)
  assert metrics['recall@100_cold_items'] is None
  assert metrics['recall@100_warm_items'] == 1.0
