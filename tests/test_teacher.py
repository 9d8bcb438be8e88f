"""The multi-task teacher on a tiny batch: forward pass, both losses, history encoders."""
import numpy as np
import pytest
import tensorflow as tf

from contract import features
from models import hparams
from models import inputs
from models import teacher
from models import towers
from models import training
from models import two_tower
import tiny_models

VOCAB, TRANSFORM, TRAINING, STATS = (tiny_models.VOCAB, tiny_models.TRANSFORM,
                                     tiny_models.TRAINING, tiny_models.STATS)
_size = tiny_models.teacher_size
_batch = tiny_models.batch


def _model(encoder='transformer', **training) -> two_tower.TwoTowerModel:
  tf.keras.utils.set_random_seed(0)
  config = hparams.from_dict(hparams.TrainingHParams, {**hparams.to_dict(TRAINING), **training})
  return two_tower.TwoTowerModel(
      teacher.build_core(VOCAB, _size(encoder), TRANSFORM, STATS.mean_rating), config, STATS)


def test_forward_pass_shapes_and_rating_starts_at_the_mean():
  outputs = _model()(_batch())
  assert outputs['queries'].shape == (3, 8) and outputs['candidates'].shape == (3, 8)
  assert outputs['rating'].shape == (3,)
  assert np.all(np.abs(outputs['rating'].numpy() - STATS.mean_rating) < 2.0)


def test_retrieval_loss_is_in_batch_softmax():
  model = _model(rating_weight=0.0)
  batch = _batch()
  outputs = model(batch)
  logits = tf.matmul(outputs['queries'], outputs['candidates'], transpose_b=True).numpy()
  expected = -np.sum(np.diag(logits) - np.log(np.exp(logits).sum(axis=1)))
  assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-4)


def test_rating_loss_is_mean_squared_error():
  model = _model(retrieval_weight=0.0)
  batch = _batch()
  rating = model(batch)['rating'].numpy()
  expected = np.mean((rating - batch[features.LABEL].numpy())**2)
  assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-4)


# Item index i has been seen i times in training.
COUNTS = np.arange(1, VOCAB.items + 1)


def _counted_model(encoder: str, **training) -> two_tower.TwoTowerModel:
  """A retrieval-only model (seed 0) trained on data whose item counts are `COUNTS`."""
  stats = inputs.TrainStats(catalogue=STATS.catalogue, item_counts=COUNTS, mean_rating=3.5)
  config = hparams.from_dict(hparams.TrainingHParams, {
      **hparams.to_dict(TRAINING), 'rating_weight': 0.0, **training})
  tf.keras.utils.set_random_seed(0)
  return two_tower.TwoTowerModel(
      teacher.build_core(VOCAB, _size(encoder), TRANSFORM, stats.mean_rating), config, stats)


def test_popularity_correction_changes_the_retrieval_loss():
  corrected = _counted_model('transformer', popularity_correction=1.0)
  assert float(corrected.compute_loss(_batch())) != pytest.approx(
      float(_model(rating_weight=0.0).compute_loss(_batch())))


def test_catalogue_softmax_loss_by_hand():
  # Row 0: scores [1, 0, 1], target position 0; row 1: scores [0, 1, 1], target position 2;
  # row 2's item (index 9) is not in the 3-item catalogue and counts 0.
  loss = two_tower.catalogue_softmax_loss(
      tf.constant([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]),
      tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), tf.constant([1, 3, 9], tf.int64))
  e = np.e
  assert float(loss) == pytest.approx(2 * np.log((2 * e + 1) / e), rel=1e-6)


def _log_softmax_of_targets(logits: np.ndarray, targets: np.ndarray) -> float:
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  return float(log_p[np.arange(len(targets)), targets].sum())


def test_small_catalogues_train_on_a_softmax_over_every_item():
  model = _model(rating_weight=0.0, catalogue_softmax_max_items=tiny_models.NUM_CATALOGUE_ITEMS)
  batch = _batch()
  queries = model(batch)['queries'].numpy()
  catalogue = model.embed_candidates(
      {name: tf.constant(values) for name, values in STATS.catalogue.items()
       if name in model.candidate_tower.input_names}).numpy()
  targets = batch[features.ITEM_INDEX].numpy() - 1
  expected = -_log_softmax_of_targets(queries @ catalogue.T, targets)
  assert model.full_catalogue
  assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-4)


def test_mixed_negatives_add_uniform_items_corrected_by_their_expected_counts():
  model = _counted_model('mean', popularity_correction=1.0, mixed_negatives=4)
  batch = _batch()
  outputs = model(batch)
  # The model's sampler draws these catalogue positions first.
  sampled = tf.random.Generator.from_seed(TRAINING.seed).uniform(
      [4], 0, tiny_models.NUM_CATALOGUE_ITEMS, tf.int64).numpy()
  negatives = model.embed_candidates(
      {name: tf.gather(tf.constant(values), sampled) for name, values in STATS.catalogue.items()
       if name in model.candidate_tower.input_names}).numpy()
  items = np.concatenate([batch[features.ITEM_INDEX].numpy(), sampled + 1])
  candidates = np.concatenate([outputs['candidates'].numpy(), negatives])
  expected_counts = 3 * COUNTS[items] / COUNTS.sum() + 4 / tiny_models.NUM_CATALOGUE_ITEMS
  logits = outputs['queries'].numpy() @ candidates.T - np.log(expected_counts)[None, :]
  targets = np.arange(3)
  for row, target in enumerate(batch[features.ITEM_INDEX].numpy()):  # accidental hits
    logits[row, (items == target) & (np.arange(len(items)) != row)] = -1e9
  assert float(model.compute_loss(batch)) == pytest.approx(
      -_log_softmax_of_targets(logits, targets), rel=1e-4)


def test_a_share_of_the_popularity_correction_subtracts_that_share_of_log_q():
  model = _counted_model('mean', popularity_correction=0.5)
  batch = _batch()
  outputs = model(batch)
  items = batch[features.ITEM_INDEX].numpy()
  logits = (outputs['queries'].numpy() @ outputs['candidates'].numpy().T
            - 0.5 * np.log(COUNTS[items] / COUNTS.sum())[None, :])
  for row, target in enumerate(items):  # accidental hits
    logits[row, (items == target) & (np.arange(len(items)) != row)] = -1e9
  assert float(model.compute_loss(batch)) == pytest.approx(
      -_log_softmax_of_targets(logits, np.arange(len(items))), rel=1e-4)


def test_a_correction_share_outside_0_to_1_is_refused():
  with pytest.raises(ValueError, match='popularity_correction 1.5'):
    _model(popularity_correction=1.5)


def test_transformer_sees_order_and_mean_pooling_does_not():
  forward = _batch(history=((1, 2, 3, 0),))
  backward = _batch(history=((3, 2, 1, 0),))
  for encoder, order_matters in (('transformer', True), ('mean', False)):
    model = _model(encoder)
    same = np.allclose(model.embed_queries(forward), model.embed_queries(backward), atol=1e-6)
    assert same != order_matters, encoder


def test_train_teacher_is_reproducible_from_the_seed(tmp_path):
  batches = tf.data.Dataset.from_tensors(_batch()).repeat(3)
  data = training.TrainingData(batches, batches, None, None, TRANSFORM, VOCAB, STATS)
  histories = []
  for run in range(2):
    log = training.TrainingLog(str(tmp_path / str(run)))
    training.train_teacher(data, _size(), TRAINING, log)
    histories.append(log.records['teacher']['history'])
  assert histories[0] == histories[1] and histories[0]['loss']


def test_a_train_step_lowers_the_loss():
  model = _model()
  model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
  batch = _batch()
  before = float(model.compute_loss(batch))
  for _ in range(20):
    model.train_step(batch)
  assert float(model.compute_loss(batch)) < before


def test_rating_drift_follows_recent_ratings_and_ignores_unrated_positions():
  drift = towers.RatingDrift(length=4, units=2, mean_rating=3.0)
  no_bias = tf.zeros([3, 4, 1])
  values = drift(tf.constant([[5.0, 5.0, 5.0, 0.0],  # rated above the mean
                              [1.0, 1.0, 0.0, 0.0],  # below it
                              [0.0, 0.0, 0.0, 0.0]]),  # nothing rated
                 no_bias).numpy()
  assert values.shape == (3, 2)
  assert np.all(values[0] > 0) and np.all(values[1] < 0) and np.all(values[2] == 0)
  # Shrunk towards 0: a mean of residuals +2, but less than 2 with a prior weight.
  assert np.all(values[0] < 2.0)
  # The item's usual rating is subtracted: 5-star ratings of items that always get 5 are no drift.
  assert np.allclose(drift(tf.constant([[5.0, 0.0, 0.0, 0.0]]), tf.fill([1, 4, 1], 2.0)), 0.0)


def test_history_ratings_change_the_rating_but_not_the_query():
  model = _model()
  model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
  for _ in range(5):  # move the drift weights away from their zero start
    model.train_step(_batch())
  batch = _batch()
  unrated = {**batch, features.HISTORY_RATING_VALUES: tf.zeros_like(
      batch[features.HISTORY_RATING_VALUES])}
  assert not np.allclose(model(batch)['rating'], model(unrated)['rating'])
  assert np.allclose(model.embed_queries(batch), model.embed_queries(unrated))


def test_item_id_dropout_replaces_a_share_of_ids_by_oov_indices_in_training_only():
  layer = towers.IdDropout(rate=0.5, num_ids=12, oov_buckets=2)
  indices = tf.constant(np.tile(np.arange(0, 10), 1000), tf.int64)  # 0 is padding
  dropped = layer(indices, training=True).numpy()
  changed = dropped != indices.numpy()
  assert not changed[indices.numpy() == 0].any()
  assert set(np.unique(dropped[changed])) == {10, 11}  # the two OOV rows ending the table
  assert changed[indices.numpy() > 0].mean() == pytest.approx(0.5, abs=0.03)
  np.testing.assert_array_equal(layer(indices, training=False).numpy(), indices.numpy())
  # Without padding (user ids), index 0 is an id like the others.
  users = towers.IdDropout(rate=0.5, num_ids=12, oov_buckets=1, padding=False)
  changed = users(indices, training=True).numpy() != indices.numpy()
  assert changed[indices.numpy() == 0].mean() == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize('rate', [0.0, 0.5])
def test_with_item_id_dropout_the_oov_row_learns_and_cold_items_follow_their_content(rate):
  """A cold item (OOV index) is embedded from its content: with dropout, training moves the
  OOV row of the item table (it gets gradients), and cold items with other genres, titles and
  years get other embeddings."""
  size = hparams.from_dict(hparams.TowerHParams,
                           {**hparams.to_dict(_size()), 'item_id_dropout': rate})
  tf.keras.utils.set_random_seed(0)
  model = two_tower.TwoTowerModel(teacher.build_core(VOCAB, size, TRANSFORM, STATS.mean_rating),
                                  TRAINING, STATS)
  model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
  table = model.core.get_layer('item_embedding')
  oov = VOCAB.items - VOCAB.item_oov_buckets
  before = table.embeddings.numpy()[oov].copy()
  for _ in range(10):
    model.train_step(_batch())
  assert np.any(table.embeddings.numpy()[oov] != before) == (rate > 0)

  cold = {**_batch(), features.ITEM_INDEX: tf.constant([oov] * 3, tf.int64)}
  embeddings = model.embed_candidates(cold).numpy()
  assert not np.allclose(embeddings[0], embeddings[1])
  assert not np.allclose(embeddings[1], embeddings[2])


def test_in_memory_serves_every_example_once_an_epoch_in_a_new_order():
  ids = np.arange(10)
  batches = tf.data.Dataset.from_tensor_slices(
      {features.ITEM_INDEX: ids, features.TITLE: ids.astype(str).astype(object),
       features.HISTORY_INDICES: np.stack([ids, -ids], axis=1)}).batch(4)  # 4 + 4 + 2
  held = inputs.in_memory(batches, batch_size=3, seed=7)
  epochs = [list(held) for _ in range(2)]
  for epoch in epochs:
    assert [len(batch[features.ITEM_INDEX]) for batch in epoch] == [3, 3, 3, 1]
    order = np.concatenate([batch[features.ITEM_INDEX].numpy() for batch in epoch])
    assert sorted(order) == ids.tolist()
    for batch in epoch:  # the columns of a row stay together
      index = batch[features.ITEM_INDEX].numpy()
      np.testing.assert_array_equal(batch[features.TITLE].numpy().astype(str), index.astype(str))
      np.testing.assert_array_equal(batch[features.HISTORY_INDICES].numpy()[:, 1], -index)
  orders = [np.concatenate([b[features.ITEM_INDEX].numpy() for b in epoch]) for epoch in epochs]
  assert orders[0].tolist() != orders[1].tolist()  # reshuffled every epoch
  again = np.concatenate([b[features.ITEM_INDEX].numpy()
                          for b in inputs.in_memory(batches, batch_size=3, seed=7)])
  np.testing.assert_array_equal(again, orders[0])  # the seed fixes the orders
