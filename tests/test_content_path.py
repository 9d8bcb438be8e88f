"""The content path that embeds cold items: its loss terms by hand, which rows it replaces, and
what fitting it on a trained model's warm items gives."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
import tensorflow as tf

from contract import features
from evaluation import protocol
from models import content_path
from models import hparams
from models import student
from models import teacher
from models import towers
from models import training
from models import two_tower
import tiny_models

SETTINGS = hparams.ContentPathHParams(
    epochs=150, batch_size=8, queries=16, hidden_units=16, content_dim=8, learning_rate=0.01,
    level_weight=1.0, embedding_weight=0.1, calibration_users=10,
    temperature_scale=1.0, level_from_eval=True)


def test_the_loss_terms_by_hand():
  # One query; two warm items whose towers' part is 2 wide, then an item-to-item column.
  queries = tf.constant([[1.0, 0.0, 1.0]])
  candidates = tf.constant([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
  content = tf.constant([[0.5, 0.0], [0.0, 0.0]])
  terms = content_path.losses(queries, candidates, content, width=2)
  # The towers' scores 1 and 0 (the item-to-item column left out); content scores 0.5 and 0.
  p = np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum()
  log_q = np.array([0.5, 0.0]) - np.log(np.exp(0.5) + 1.0)
  assert float(terms['ranking']) == pytest.approx(-(p * log_q).sum(), rel=1e-5)
  assert float(terms['level']) == pytest.approx(
      (np.log(np.exp(0.5) + 1.0) - np.log(np.exp(1.0) + 1.0))**2, rel=1e-5)
  # Squared distances 0.25 and 1 over squared norms 1 and 1.
  assert float(terms['embedding']) == pytest.approx(0.625, rel=1e-5)


def test_the_calibrated_temperature_maximises_the_eval_targets_likelihood():
  # One user, items 0..3, item 3 seen; targets 0 and 1. Over the unseen items, scores 2 0 0:
  # the mean log-likelihood x − log(e^2x + 2) (x = 1/T) peaks at e^2x = 2, T = 2 / ln 2 = 2.885;
  # the spread is the std of 2 0 0 5, 2.046, and of the grid, 2^0.5 · 2.046 = 2.894 is nearest.
  scores = np.array([[2.0, 0.0, 0.0, 5.0]])
  eval_data = protocol.EvalData(
      split=features.EVAL_SPLIT, items=pd.Index([1, 2, 3, 4]), users=pd.Index([0]),
      seen=sparse.csr_matrix([[0, 0, 0, 1]]), targets=sparse.csr_matrix([[1, 1, 0, 0]]),
      num_targets=np.array([2]))
  spread = np.std(scores)
  temperature = content_path.calibrated_temperature(scores, eval_data)
  assert temperature == pytest.approx(2**0.5 * spread)
  likelihood = lambda t: 1 / t - np.log(np.exp(2 / t) + 2)
  assert all(likelihood(temperature) >= likelihood(factor * spread)
             for factor in content_path.TEMPERATURES)


def test_the_calibrated_level_gives_cold_items_their_share_of_the_eval_picks():
  # The user above (warm unseen scores 2 0 0, two warm targets) and two cold items scored 0 0,
  # the first a target. At T = 1 the likelihood peaks where the cold items' chance is the cold
  # share of the targets, 1/3: 2e^b / (e^2 + 2 + 2e^b) = 1/3, e^b = (e^2 + 2) / 4.
  eval_data = protocol.EvalData(
      split=features.EVAL_SPLIT, items=pd.Index([1, 2, 3, 4]), users=pd.Index([0]),
      seen=sparse.csr_matrix([[0, 0, 0, 1]]), targets=sparse.csr_matrix([[1, 1, 0, 0]]),
      num_targets=np.array([3]))
  warm = np.array([[2.0, 0.0, 0.0, 5.0]])
  cold = np.array([[0.0, 0.0]])
  picked = sparse.csr_matrix([[1, 0]])
  level = lambda shifts, temperature=1.0: content_path.calibrated_level(
      warm, cold, np.array(shifts), eval_data, picked, temperature)
  expected = np.log((np.e**2 + 2) / 4)
  assert level([1.0]) == pytest.approx(expected, abs=1e-3)
  assert level([2.0]) == pytest.approx(expected / 2, abs=1e-3)  # the query moves twice as far
  assert level([1.0], temperature=2.0) == pytest.approx(  # 2e^(b/2) / (e + 2 + 2e^(b/2)) = 1/3
      2 * np.log((np.e + 2) / 4), abs=1e-3)
  # Nobody picked a cold item: as low as allowed; no target at all: no offset.
  assert content_path.calibrated_level(warm, cold, np.ones(1), eval_data,
                                       sparse.csr_matrix((1, 2)), 1.0) == pytest.approx(
                                           -content_path.MAX_LEVEL, abs=1e-2)
  no_targets = dataclasses.replace(eval_data, targets=sparse.csr_matrix((1, 4)))
  assert content_path.calibrated_level(warm, cold, np.ones(1), no_targets,
                                       sparse.csr_matrix((1, 2)), 1.0) == 0.0


def test_the_percentile_of_each_pick_among_the_other_items():
  scores = np.array([[3.0, 1.0, 2.0], [1.0, 1.0, 0.0]])
  # User 0's first item is above both others (1); user 1's first ties one and beats one (0.75).
  np.testing.assert_allclose(
      content_path.percentiles(scores, sparse.csr_matrix([[1, 0, 0], [1, 0, 0]])), [1.0, 0.75])
  np.testing.assert_allclose(
      content_path.percentiles(scores, sparse.csr_matrix([[0, 1, 0], [0, 0, 0]])), [0.0])
  assert content_path.percentiles(scores, sparse.csr_matrix((2, 3))).shape == (0,)


def _calibration(cold_targets: sparse.csr_matrix) -> content_path.Calibration:
  return content_path.Calibration(eval_queries=None, cold_items={}, cold_targets=cold_targets)


def test_the_path_is_dropped_only_where_the_tower_orders_the_cold_picks_clearly_better():
  # Four users, three cold items, each user's pick is item 0.
  picks = sparse.csr_matrix(np.tile([1, 0, 0], (4, 1)))
  first, last = [3.0, 2.0, 1.0], [1.0, 2.0, 3.0]
  keeps = lambda content, tower: content_path._keeps_the_path(  # pylint: disable=protected-access
      np.array(content), np.array(tower), _calibration(picks), 'model')
  # The tower puts every pick first, the path every pick last: a loss of 1 with no spread.
  assert not keeps([last] * 4, [first] * 4)
  assert keeps([first] * 4, [last] * 4)
  assert keeps([first] * 4, [first] * 4)
  # The tower wins on three picks, loses on one: differences 1, 1, 1, -1 (mean 0.5, standard
  # error 0.5): within two standard errors, the path stays.
  assert keeps([last, last, last, first], [first, first, first, last])
  # No cold pick: nothing tells against the path.
  assert content_path._keeps_the_path(  # pylint: disable=protected-access
      np.zeros((4, 3)), np.zeros((4, 3)), _calibration(sparse.csr_matrix((4, 3))), 'model')

def test_tokens_of_a_single_warm_item_are_dropped():
  # Token 3 is in two items (twice in the first: counted once), 5 in one, 4 in none.
  titles = np.array([[3, 3, 5], [3, 0, 0], [1, 0, 0], [1, 2, 0]])
  keep = content_path.shared_tokens(titles, vocabulary_size=6)
  np.testing.assert_array_equal(keep, [0, 1, 0, 1, 0, 0])
  layer = content_path.SharedTokens(6)
  layer.build(None)
  layer.set_weights([keep])
  np.testing.assert_array_equal(layer(tf.constant([[3, 5, 1], [4, 2, 0]], tf.int64)).numpy(),
                                [[3, 0, 1], [0, 0, 0]])


def test_only_the_towers_columns_of_cold_items_are_replaced():
  year = tf.keras.Input(shape=(), name=features.YEAR_Z)
  path = tf.keras.Model(year, tf.stack([year, 2 * year], axis=1))
  replace = content_path.ContentCandidates(path, first_oov_index=11, width=2)
  inputs_ = {features.ITEM_INDEX: tf.constant([3, 11, 12], tf.int64),
             features.YEAR_Z: tf.constant([7.0, 0.5, -1.0])}
  candidates = tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
  np.testing.assert_allclose(replace(inputs_, candidates).numpy(),
                             [[1, 2, 3], [0.5, 1, 6], [-1, -2, 9]])


def _content_only_student() -> two_tower.TwoTowerModel:
  """A tiny trained-looking student whose candidates depend on their content alone (its item
  table is 0), so that a content path can reproduce them."""
  tf.keras.utils.set_random_seed(5)
  core = student.build_core(tiny_models.VOCAB, tiny_models.STUDENT_SIZE, tiny_models.TRANSFORM,
                            3.5)
  table = core.get_layer('item_embedding')
  table.set_weights([np.zeros_like(table.get_weights()[0])])
  return two_tower.TwoTowerModel(core, tiny_models.TRAINING, tiny_models.STATS)


def _train_batches() -> tf.data.Dataset:
  rng = np.random.default_rng(0)
  histories = rng.integers(0, tiny_models.NUM_CATALOGUE_ITEMS + 1, size=(16, 4))
  batch = {**tiny_models.batch(), features.HISTORY_INDICES: tf.constant(histories, tf.int64)}
  batch = {name: tf.repeat(values[:1], 16, axis=0) if name != features.HISTORY_INDICES else values
           for name, values in batch.items()}
  return tf.data.Dataset.from_tensors(batch)


def test_fitted_on_warm_items_it_scores_them_as_the_model_does():
  model = _content_only_student()
  fitted = content_path.fit(model, _train_batches(), tiny_models.CATALOGUE, tiny_models.VOCAB,
                            tiny_models.TRANSFORM, SETTINGS, seed=0)
  assert fitted.candidates.path is fitted.path  # kept: no calibration to refuse it
  assert fitted.candidates.width == tiny_models.STUDENT_SIZE.embedding_dim
  assert fitted.candidates.first_oov_index == tiny_models.VOCAB.items - 1
  catalogue = {name: tf.constant(values) for name, values in tiny_models.CATALOGUE.items()
               if name != features.ITEM_ID}
  queries = model.embed_queries(next(iter(_train_batches()))).numpy()
  scores = queries @ model.embed_candidates(catalogue).numpy().T
  content_scores = queries @ fitted.path(
      {name: catalogue[name] for name in fitted.path.input_names}).numpy().T
  for row, content_row in zip(scores, content_scores):
    assert np.corrcoef(row, content_row)[0, 1] > 0.9
  # On the model's scale: the same log-partition of the warm items, query by query.
  np.testing.assert_allclose(np.log(np.exp(content_scores).sum(axis=1)),
                             np.log(np.exp(scores).sum(axis=1)), atol=0.1)


def test_a_path_started_from_an_earlier_one_trains_only_its_warm_epochs():
  model = _content_only_student()
  fit = lambda **start: content_path.fit(model, _train_batches(), tiny_models.CATALOGUE,
                                         tiny_models.VOCAB, tiny_models.TRANSFORM, SETTINGS,
                                         seed=1, **start)
  earlier = fit().path.get_weights()
  started = lambda path: path.set_weights(earlier) is None
  unchanged = fit(start=started, warm_epochs=0).path.get_weights()
  for weight, kept in zip(unchanged, earlier):
    np.testing.assert_array_equal(weight, kept)
  moved = fit(start=started, warm_epochs=1).path.get_weights()
  assert any(not np.array_equal(weight, kept) for weight, kept in zip(moved, earlier))
  # A start that finds nothing to start from: `SETTINGS.epochs` from the path's initial weights.
  initial = []
  nothing = lambda path: initial.extend(w.copy() for w in path.get_weights()) or False
  trained = fit(start=nothing, warm_epochs=0).path.get_weights()
  assert any(not np.array_equal(weight, first) for weight, first in zip(trained, initial))


def test_attached_the_model_embeds_cold_items_with_it_and_warm_ones_as_before():
  model = _content_only_student()
  cold = {features.ITEM_ID: np.array(['new']), features.ITEM_INDEX: np.array([11]),
          features.GENRE_INDICES: np.array([[1, 2]]), features.TITLE_INDICES: np.array([[1, 2, 3]]),
          features.YEAR_Z: np.array([0.0], np.float32)}
  data = dataclasses.replace(
      training.TrainingData(_train_batches(), _train_batches(), None, None,
                            tiny_models.TRANSFORM, tiny_models.VOCAB, tiny_models.STATS),
      cold_items=cold)
  catalogue = {name: tf.constant(values) for name, values in data.catalogue.items()
               if name != features.ITEM_ID}
  before = model.embed_candidates(catalogue).numpy()
  assert training.attach_content_path('student', model, data,
                                      dataclasses.replace(SETTINGS, epochs=0), seed=0) is None
  assert model.content_candidates is None  # 0 epochs: no content path
  path = training.attach_content_path('student', model, data,
                                      dataclasses.replace(SETTINGS, epochs=2), seed=0)
  assert model.content_candidates.path is path
  after = model.embed_candidates(catalogue).numpy()
  np.testing.assert_array_equal(after[:-1], before[:-1])
  assert not np.allclose(after[-1], before[-1])
  np.testing.assert_array_equal(model.embed_candidates(catalogue, training=True).numpy(), before)


def test_without_cold_items_nothing_is_fitted():
  model = _content_only_student()
  data = training.TrainingData(_train_batches(), _train_batches(), None, None,
                               tiny_models.TRANSFORM, tiny_models.VOCAB, tiny_models.STATS)
  training.attach_content_path('student', model, data, SETTINGS, seed=0)
  assert model.content_candidates is None


# The tiny vocabulary and settings with item text: 4 text tokens (+ padding and OOV rows).
TEXT_VOCAB = dataclasses.replace(tiny_models.VOCAB, item_text_tokens=6)
TEXT_TRANSFORM = dataclasses.replace(tiny_models.TRANSFORM, item_text_columns=('description',),
                                     max_item_text_tokens=3)


def test_the_towers_do_not_read_the_item_text():
  for build in (lambda vocab: student.build_core(vocab, tiny_models.STUDENT_SIZE,
                                                 TEXT_TRANSFORM, 3.5),
                lambda vocab: teacher.build_core(vocab, tiny_models.teacher_size(),
                                                 TEXT_TRANSFORM, 3.5)):
    tf.keras.utils.set_random_seed(5)
    plain = build(tiny_models.VOCAB)
    tf.keras.utils.set_random_seed(5)
    with_text = build(TEXT_VOCAB)
    assert with_text.input_names == plain.input_names
    assert features.ITEM_TEXT_INDICES not in with_text.input_names
    for mine, theirs in zip(with_text.get_weights(), plain.get_weights()):
      np.testing.assert_array_equal(mine, theirs)
  assert features.ITEM_TEXT_INDICES not in towers.CANDIDATE_FEATURES
  assert features.ITEM_TEXT_INDICES in content_path.build(
      TEXT_VOCAB, TEXT_TRANSFORM, 8, 4, 4).input_names
  assert features.ITEM_TEXT_INDICES not in content_path.build(
      tiny_models.VOCAB, TEXT_TRANSFORM, 8, 4, 4).input_names


def test_items_that_only_their_text_tells_apart_get_different_content_embeddings():
  # Every warm item has the same genres, title and year; the model embeds the first half one
  # way and the second half another (their id rows), and only their text tells the halves apart.
  model = _content_only_student()
  half = tiny_models.NUM_CATALOGUE_ITEMS // 2
  table = model.core.get_layer('item_embedding')
  rows = np.zeros_like(table.get_weights()[0])
  rows[1:half + 1] = np.linspace(0.5, 1.0, rows.shape[1])
  rows[half + 1:tiny_models.NUM_CATALOGUE_ITEMS + 1] = -np.linspace(0.5, 1.0, rows.shape[1])
  table.set_weights([rows])
  first = np.arange(tiny_models.NUM_CATALOGUE_ITEMS) < half
  same = lambda values: np.repeat(values[:1], tiny_models.NUM_CATALOGUE_ITEMS, axis=0)
  catalogue = {
      **tiny_models.CATALOGUE,
      features.GENRE_INDICES: same(tiny_models.CATALOGUE[features.GENRE_INDICES]),
      features.TITLE_INDICES: same(tiny_models.CATALOGUE[features.TITLE_INDICES]),
      features.YEAR_Z: same(tiny_models.CATALOGUE[features.YEAR_Z]),
      # 'quiet drama' and 'loud action', say.
      features.ITEM_TEXT_INDICES: np.where(first[:, None], [[1, 2, 0]], [[3, 4, 0]]),
  }
  queries = model.embed_queries(next(iter(_train_batches()))).numpy()
  model_scores = queries @ model.embed_candidates(towers.item_features(catalogue)).numpy().T

  def content_embeddings(vocab):
    fitted = content_path.fit(model, _train_batches(), catalogue, vocab, TEXT_TRANSFORM,
                              SETTINGS, seed=0)
    return fitted.path({name: tf.constant(catalogue[name])
                        for name in fitted.path.input_names}).numpy()

  with_text = content_embeddings(TEXT_VOCAB)
  np.testing.assert_allclose(with_text[first], with_text[:1].repeat(half, axis=0), atol=1e-5)
  np.testing.assert_allclose(with_text[~first], with_text[-1:].repeat(half, axis=0), atol=1e-5)
  assert np.linalg.norm(with_text[0] - with_text[-1]) > 1.0  # the halves' norms: about 1.4-2.5
  # And scored about as the model scores them (scores of -0.9 to 1.2).
  np.testing.assert_allclose(queries @ with_text.T, model_scores, atol=0.15)
  # Without the text, the content path cannot tell them apart.
  without_text = content_embeddings(tiny_models.VOCAB)
  np.testing.assert_allclose(without_text, without_text[:1].repeat(len(without_text), axis=0),
                             atol=1e-5)
