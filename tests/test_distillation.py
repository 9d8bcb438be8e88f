"""The distillation model: its losses by hand, which variables a train step moves, and the training
API's distillation phases."""
import dataclasses
import glob
import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from contract import features
from models import distiller
from models import eval_split
from models import hparams
from models import inputs
from models import item_item
from models import layout
from models import quantization
from models import student
from models import teacher
from models import towers
from models import training
from models import two_tower
from models import warm_start
import tiny_models


def test_kd_loss_matches_a_hand_computed_3x3_example():
  teacher_scores = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 1.0]])
  student_scores = np.array([[1.0, 1.0, 0.0], [0.5, 2.0, 0.0], [2.0, 0.0, 1.0]])
  temperature = 2.0

  def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)

  p = softmax(teacher_scores / temperature)
  q = softmax(student_scores / temperature)
  expected = temperature**2 * np.sum(p * np.log(p / q))
  got = distiller.kd_loss(tf.constant(teacher_scores), tf.constant(student_scores), temperature)
  assert float(got) == pytest.approx(expected, rel=1e-6)
  # By hand, row by row: KL = 0.03099, 0.04035, 0.08166 nats; × T² = 4 → 0.61198.
  assert float(got) == pytest.approx(0.61198, abs=1e-4)


def test_kd_loss_is_zero_when_the_student_matches_the_teacher():
  scores = tf.constant([[1.0, -2.0, 0.5]])
  assert float(distiller.kd_loss(scores, scores, 3.0)) == pytest.approx(0.0, abs=1e-7)
  # Scores shifted by a constant per row give the same distribution.
  assert float(distiller.kd_loss(scores, scores + 4.0, 3.0)) == pytest.approx(0.0, abs=1e-6)


def test_distillation_loss_adds_the_weighted_rating_term_by_hand():
  # KL(softmax([0, 0]) ‖ softmax([0, ln 3])) = ½ ln(½ / ¼) + ½ ln(½ / ¾) = ½ ln(4/3) = 0.14384;
  # the ratings' MSE: ((4 − 3)² + 0²) / 2 = 0.5, weighted 2 → 1.0.
  teacher_outputs = {'scores': tf.constant([[0.0, 0.0]]), 'rating': tf.constant([3.0, 4.0])}
  student_outputs = {'scores': tf.constant([[0.0, np.log(3.0)]], tf.float32),
                     'rating': tf.constant([4.0, 4.0])}
  loss, terms = distiller.DistillationLoss(rating_weight=2.0)(teacher_outputs, student_outputs,
                                                               1.0)
  assert float(terms['kd_loss']) == pytest.approx(0.5 * np.log(4 / 3), rel=1e-6)
  assert float(terms['rating_distillation_loss']) == pytest.approx(0.5)
  assert float(loss) == pytest.approx(0.14384 + 1.0, abs=1e-5)
  # A model without a rating head: no rating term.
  loss, terms = distiller.DistillationLoss(rating_weight=2.0)(
      teacher_outputs, {'scores': student_outputs['scores']}, 1.0)
  assert float(terms['rating_distillation_loss']) == 0.0
  assert float(loss) == pytest.approx(0.14384, abs=1e-5)


def test_student_loss_is_the_loss_the_student_trains_on_without_a_teacher():
  tf.keras.utils.set_random_seed(0)
  model = two_tower.TwoTowerModel(
      student.build_core(tiny_models.VOCAB, tiny_models.STUDENT_SIZE, tiny_models.TRANSFORM, 3.5),
      dataclasses.replace(tiny_models.TRAINING, rating_weight=2.0), tiny_models.STATS)
  batch = tiny_models.batch()
  loss, terms = distiller.StudentLoss()(model, batch, model(batch), False)
  assert float(loss) == pytest.approx(float(model.compute_loss(batch)), rel=1e-6)
  assert float(loss) == pytest.approx(
      float(terms['retrieval_loss']) + 2.0 * float(terms['rating_loss']), rel=1e-6)
  rating = model(batch)['rating'].numpy()
  assert float(terms['rating_loss']) == pytest.approx(
      np.mean((rating - batch[features.LABEL].numpy())**2), rel=1e-5)


def _distiller(alpha=0.5, temperature=2.0, full_catalogue=False) -> distiller.Distiller:
  tf.keras.utils.set_random_seed(0)
  build = lambda module, size: two_tower.TwoTowerModel(
      module.build_core(tiny_models.VOCAB, size, tiny_models.TRANSFORM, 3.5),
      tiny_models.TRAINING, tiny_models.STATS)
  model = distiller.Distiller(build(teacher, tiny_models.teacher_size()),
                              build(student, tiny_models.STUDENT_SIZE),
                              tiny_models.CATALOGUE, num_sampled_negatives=4, seed=1,
                              full_catalogue=full_catalogue)
  model.compile(optimizer=tf.keras.optimizers.Adam(0.05), student_loss_fn=distiller.StudentLoss(),
                distillation_loss_fn=distiller.DistillationLoss(), alpha=alpha,
                temperature=temperature)
  return model


def _labelled(model: distiller.Distiller) -> dict:
  """The tiny batch with `model`'s teacher's outputs, as the Distiller trains on it."""
  return distiller.labelled(model.teacher, tiny_models.batch())


def test_a_train_step_moves_the_student_only():
  model = _distiller()
  batch = _labelled(model)
  model.distillation_losses(batch, training=False)  # builds every variable
  teacher_before = [v.numpy().copy() for v in model.teacher.variables]
  student_before = [v.numpy().copy() for v in model.student.trainable_variables]
  logs = model.train_step(batch)
  assert set(logs) == set(distiller.LOSS_NAMES)
  for before, after in zip(teacher_before, model.teacher.variables):
    np.testing.assert_array_equal(before, after.numpy())
  changed = [not np.array_equal(b, a.numpy())
             for b, a in zip(student_before, model.student.trainable_variables)]
  assert all(changed[:3]) and sum(changed) >= len(changed) // 2


def test_full_catalogue_soft_labels_compare_both_models_on_every_item():
  model = _distiller(full_catalogue=True)
  batch = _labelled(model)
  losses = model.distillation_losses(batch, training=False)
  teacher_scores = (model.teacher(batch)['queries'].numpy()
                    @ model.teacher.embed_candidates(model.catalogue).numpy().T)
  student_scores = (model.student(batch)['queries'].numpy()
                    @ model.student.embed_candidates(model.catalogue).numpy().T)
  assert teacher_scores.shape[1] == len(tiny_models.CATALOGUE[features.ITEM_ID])
  expected = distiller.kd_loss(tf.constant(teacher_scores), tf.constant(student_scores), 2.0)
  assert float(losses['kd_loss']) == pytest.approx(float(expected), rel=1e-5)
  # Every item is a soft label: no sampling, so two calls agree.
  assert float(model.distillation_losses(batch, training=False)['kd_loss']) == pytest.approx(
      float(losses['kd_loss']), rel=1e-6)


def _hybrid_pair(teacher_mix):
  """A hybrid teacher (rank-3 component, mix `teacher_mix`) and a student inheriting it."""
  tf.keras.utils.set_random_seed(0)
  tables = item_item.ItemItemTables(
      np.random.default_rng(0).normal(size=(tiny_models.VOCAB.items, 3)).astype(np.float32),
      np.random.default_rng(1).normal(size=(tiny_models.VOCAB.items, 3)).astype(np.float32),
      l2=1.0, window=2)
  teacher_core = teacher.build_core(
      tiny_models.VOCAB, dataclasses.replace(tiny_models.teacher_size(), item_item=True),
      tiny_models.TRANSFORM, 3.5, tables)
  teacher_core.get_layer('hybrid_mix').mix.assign(teacher_mix)
  size = dataclasses.replace(tiny_models.STUDENT_SIZE, item_item=True)
  student_core = student.build_core(tiny_models.VOCAB, size, tiny_models.TRANSFORM, 3.5,
                                    student.inherit(size, teacher_core))
  return [two_tower.TwoTowerModel(core, tiny_models.TRAINING, tiny_models.STATS)
          for core in (teacher_core, student_core)]


@pytest.mark.parametrize('full_catalogue', [True, False])
def test_a_student_inheriting_the_component_learns_the_teachers_towers(full_catalogue):
  hybrid_teacher, hybrid_student = _hybrid_pair([0.4, 0.7])
  model = distiller.Distiller(hybrid_teacher, hybrid_student, tiny_models.CATALOGUE,
                              num_sampled_negatives=4, seed=1, full_catalogue=full_catalogue)
  batch = distiller.labelled(hybrid_teacher, tiny_models.batch())
  model.sampler.reset_from_seed(3)
  teacher_scores, student_scores = model._soft_label_scores(  # pylint: disable=protected-access
      {'queries': batch['teacher_queries'], 'candidates': batch['teacher_candidates']},
      hybrid_student(batch), training=False)
  # The teacher's towers alone: its first embedding_dim columns, the query's 0.4 undone.
  dim = tiny_models.teacher_size().embedding_dim
  queries = batch['teacher_queries'].numpy()[:, :dim] / 0.4
  catalogue = hybrid_teacher.embed_candidates(model.catalogue).numpy()[:, :dim]
  if full_catalogue:
    expected = queries @ catalogue.T
  else:
    model.sampler.reset_from_seed(3)
    sampled = model.sampler.uniform([4], 0, model.num_items, tf.int64).numpy()
    candidates = batch['teacher_candidates'].numpy()[:, :dim]
    expected = queries @ np.concatenate([candidates, catalogue[sampled]]).T
  np.testing.assert_allclose(teacher_scores.numpy(), expected, rtol=1e-5, atol=1e-5)
  assert student_scores.shape == teacher_scores.shape
  # Unless set otherwise, or when the teacher's towers do not weigh in (share 1): its whole score.
  assert distiller.Distiller(hybrid_teacher, hybrid_student, tiny_models.CATALOGUE, 4,
                             teacher_towers_only=False).teacher_part is None
  hybrid_teacher.core.get_layer('hybrid_mix').mix.assign([0.0, 1.0])
  assert distiller.TowersPart.of_teacher(hybrid_teacher, hybrid_student) is None


def test_loss_mixes_hard_and_soft_terms_with_alpha():
  for alpha in (0.0, 0.3, 1.0):
    model = _distiller(alpha=alpha)
    losses = model.distillation_losses(_labelled(model), training=False)
    expected = alpha * losses['hard_loss'] + (1 - alpha) * losses['soft_loss']
    assert float(losses['loss']) == pytest.approx(float(expected), rel=1e-5)


def test_distillation_lowers_the_kd_term():
  model = _distiller(alpha=0.0)
  batch = _labelled(model)
  model.sampler.reset_from_seed(3)
  before = float(model.distillation_losses(batch, training=False)['kd_loss'])
  model.fit(tf.data.Dataset.from_tensors(batch).repeat(30), epochs=1, verbose=0)
  model.sampler.reset_from_seed(3)
  assert float(model.distillation_losses(batch, training=False)['kd_loss']) < before


def test_compile_rejects_bad_alpha_and_temperature():
  for alpha, temperature in ((1.5, 1.0), (0.5, 0.0)):
    with pytest.raises(ValueError, match='alpha'):
      _distiller(alpha=alpha, temperature=temperature)


def test_batches_without_the_teacher_outputs_are_refused():
  with pytest.raises(ValueError, match='with_teacher_outputs'):
    _distiller().distillation_losses(tiny_models.batch(), training=False)


@pytest.mark.parametrize('in_file', [False, True])
def test_teacher_outputs_added_to_the_data_are_the_teacher_outputs(tmp_path, in_file):
  model = _distiller()
  batch = tiny_models.batch()
  cache_file = str(tmp_path / 'teacher_outputs') if in_file else ''
  labelled = list(distiller.with_teacher_outputs(
      tf.data.Dataset.from_tensors(batch), model.teacher, cache_file=cache_file))[0]
  assert bool(tf.io.gfile.glob(str(tmp_path / '*'))) == in_file  # a full pass wrote the file
  np.testing.assert_array_equal(labelled[features.ITEM_INDEX], batch[features.ITEM_INDEX])
  outputs = model.teacher(batch, training=False)
  for key, name in distiller.TEACHER_OUTPUTS.items():
    np.testing.assert_allclose(labelled[name], outputs[key], rtol=1e-6)


def _distillation_hparams():
  return hparams.DistillationHParams(
      epochs=2, learning_rate=0.01, alpha=0.5, temperature=1.0, rating_distillation_weight=1.0,
      num_sampled_negatives=4,
      kd_catalogue_max_items=0, qat_epochs=1, qat_learning_rate=0.001, warm_start_qat_epochs=0,
      student_dims=(8,), size_budget=0.1, teacher_towers_only=True, inherited_popularity_shifts=(0.0,))


def _training_data() -> training.TrainingData:
  batches = tf.data.Dataset.from_tensors(tiny_models.batch())
  return training.TrainingData(batches, batches, batches, None, tiny_models.TRANSFORM,
                               tiny_models.VOCAB, tiny_models.STATS)


def test_eval_queries_are_collected_once_per_data_and_user_count(monkeypatch):
  data = _training_data()
  collected = []
  collect = eval_split.collect
  monkeypatch.setattr(eval_split, 'collect',
                      lambda *args: collected.append(args[-1]) or collect(*args))
  first = data.eval_queries(2)
  assert data.eval_queries(2) is first
  # Fewer users: the first of those collected, as collecting them would give.
  fewer, fresh = data.eval_queries(1), collect(data.train_in_order, data.eval,
                                               tiny_models.NUM_CATALOGUE_ITEMS, 1)
  assert collected == [2]
  for name, values in fresh.queries.items():
    np.testing.assert_array_equal(fewer.queries[name], values)
  for matrix in ('seen', 'targets'):
    np.testing.assert_array_equal(getattr(fewer.eval_data, matrix).toarray(),
                                  getattr(fresh.eval_data, matrix).toarray())
  np.testing.assert_array_equal(fewer.eval_data.num_targets, fresh.eval_data.num_targets)
  assert list(fewer.eval_data.users) == list(fresh.eval_data.users) == [0]
  # The teacher's outputs on the same examples (`teacher_outputs`) keep those collected; a copy
  # given other splits collects its own.
  with training.teacher_outputs(data, _hybrid_teacher(rank=4), tiny_models.TRAINING) as labelled:
    assert labelled.eval_queries(2) is first
  assert dataclasses.replace(data, _eval_queries={}).eval_queries(2) is not first
  np.testing.assert_array_equal(first.eval_data.users, [0, 1])  # the first two users


@pytest.mark.parametrize('beyond_the_limit', [False, True])
def test_teacher_outputs_go_to_a_temporary_file_beyond_the_in_memory_limit(
    tmp_path, monkeypatch, beyond_the_limit):
  monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
  train_examples = int(tiny_models.STATS.item_counts.sum())
  training_hparams = dataclasses.replace(
      tiny_models.TRAINING, in_memory_max_examples=train_examples - int(beyond_the_limit))
  with training.teacher_outputs(_training_data(), _distiller().teacher,
                                training_hparams) as data:
    (cache_dir,) = glob.glob(str(tmp_path / 'teacher_outputs_*'))
    labelled = list(data.train) + list(data.eval)
    assert sorted(os.listdir(cache_dir)) == (['eval.data-00000-of-00001', 'eval.index',
                                              'train.data-00000-of-00001', 'train.index']
                                             if beyond_the_limit else [])
  for batch in labelled:  # train and eval alike
    assert set(distiller.TEACHER_OUTPUTS.values()) <= set(batch)
  assert not os.path.exists(cache_dir)


def _teacher_fp32_int8(data: training.TrainingData, distillation: hparams.DistillationHParams,
                       tensorboard_dir: str):
  """The training API's teacher, distillation and quantization on `data`: (their log, the fp32
  student, the int8 student)."""
  log = training.TrainingLog(tensorboard_dir)
  teacher_model = training.train_teacher(data, tiny_models.teacher_size(), tiny_models.TRAINING,
                                         log)
  with training.teacher_outputs(data, teacher_model,
                                tiny_models.TRAINING) as distillation_data:
    student_fp32 = training.distil(distillation_data, teacher_model, tiny_models.STUDENT_SIZE,
                                   tiny_models.TRAINING, distillation, log)
    student_int8 = training.quantize(distillation_data, teacher_model, student_fp32,
                                     tiny_models.TRAINING, distillation, log)
  return log, student_fp32, student_int8


def test_distil_and_quantize_record_their_phases(tmp_path):
  log, _, student_int8 = _teacher_fp32_int8(_training_data(), _distillation_hparams(),
                                            str(tmp_path / layout.TENSORBOARD_DIR))
  assert [(name, len(record['history']['loss'])) for name, record in log.records.items()] == [
      (layout.TEACHER, 1), (layout.STUDENT_FP32, 2), (layout.STUDENT_INT8, 1)]
  assert set(distiller.LOSS_NAMES) <= set(log.records[layout.STUDENT_INT8]['history'])
  assert sorted(os.listdir(tmp_path / layout.TENSORBOARD_DIR)) == [
      'distillation', 'quantization_aware_training', 'teacher']
  assert student_int8(tiny_models.batch())['rating'].shape == (3,)


@pytest.mark.parametrize('warm_start_qat_epochs', [0, 1])
def test_a_warm_run_quantizes_its_student_with_its_own_qat_epochs(tmp_path,
                                                                   warm_start_qat_epochs):
  """A warm run (a sample of the train split) trains `warm_start_qat_epochs` QAT epochs; with 0,
  the fp32 student's kernels are put on their own int8 grids, untrained."""
  log, student_fp32, student_int8 = _teacher_fp32_int8(
      dataclasses.replace(_training_data(), train_sample=inputs.Sample(share=1.0, seed=0)),
      dataclasses.replace(_distillation_hparams(), qat_epochs=3,
                          warm_start_qat_epochs=warm_start_qat_epochs),
      str(tmp_path / layout.TENSORBOARD_DIR))
  record = log.records[layout.STUDENT_INT8]
  if warm_start_qat_epochs:
    assert len(record['history']['loss']) == 1 and 'post_training_quantization' not in record
    return
  assert record['history'] == {} and record['post_training_quantization']
  assert 'quantization_aware_training' not in os.listdir(tmp_path / layout.TENSORBOARD_DIR)
  for name in ('query_output', 'candidate_output'):
    kernel = student_fp32.core.get_layer(name).kernel.numpy()
    step = np.abs(kernel).max() / 127
    np.testing.assert_allclose(student_int8.core.get_layer(name).kernel.numpy(),
                               np.round(kernel / step) * step, atol=1e-6)


def test_without_a_rating_weight_the_rating_head_neither_runs_nor_learns():
  """Implicit feedback (`run_fn.retrieval_only`): retrieval only, the rating terms are 0 and no
  rating-head variable moves; the towers train as before."""
  tf.keras.utils.set_random_seed(0)
  retrieval_only = dataclasses.replace(tiny_models.TRAINING, rating_weight=0.0)
  build = lambda module, size: two_tower.TwoTowerModel(
      module.build_core(tiny_models.VOCAB, size, tiny_models.TRANSFORM, 3.5), retrieval_only,
      tiny_models.STATS)
  model = distiller.Distiller(build(teacher, tiny_models.teacher_size()),
                              build(student, tiny_models.STUDENT_SIZE), tiny_models.CATALOGUE,
                              num_sampled_negatives=4, seed=1)
  model.compile(optimizer=tf.keras.optimizers.Adam(0.05), student_loss_fn=distiller.StudentLoss(),
                distillation_loss_fn=distiller.DistillationLoss(rating_weight=0.0))
  batch = distiller.labelled(model.teacher, tiny_models.batch())
  assert distiller.TEACHER_OUTPUTS['rating'] not in batch
  assert set(model.student(batch)) == {'queries', 'candidates'}
  assert not model.student.predicts_ratings
  model.student.core(towers.select(batch, model.student.core))  # builds every core variable
  before = {v.name: v.numpy().copy() for v in model.student.core.trainable_variables}
  logs = model.train_step(batch)
  assert float(logs['rating_loss']) == 0.0 and float(logs['rating_distillation_loss']) == 0.0
  tower_variables = {v.name for v in model.student.query_tower.trainable_variables
                     + model.student.candidate_tower.trainable_variables}
  for variable in model.student.core.trainable_variables:
    moved = not np.array_equal(before[variable.name], variable.numpy())
    if variable.name not in tower_variables:
      assert not moved, f'{variable.name} of the rating head moved'
  assert any(not np.array_equal(before[v.name], v.numpy())
             for v in model.student.core.trainable_variables if v.name in tower_variables)


def test_early_stopping_keeps_the_epoch_of_the_lowest_eval_loss(tmp_path):
  """With a patience, a phase stops that many epochs after its lowest eval loss and keeps that
  epoch's weights; without one it trains every epoch (a learning rate this high makes the eval
  loss rise)."""
  data = _training_data()
  log = training.TrainingLog(str(tmp_path))
  distillation = dataclasses.replace(_distillation_hparams(), epochs=6, learning_rate=3.0)
  for patience in (0, 1):
    params = dataclasses.replace(tiny_models.TRAINING, early_stopping_patience=patience)
    model = training.train_student(data, tiny_models.STUDENT_SIZE, params, distillation, log)
    record = log.records[layout.STUDENT_SCRATCH]
    losses = record['history']['val_loss']
    assert record['best_epoch'] == (int(np.argmin(losses)) + 1 if patience else len(losses))
    if patience:
      assert len(losses) == record['best_epoch'] + patience < 6  # it stopped early
      kept = model.evaluate(data.eval, return_dict=True, verbose=0)['loss']
      assert kept == pytest.approx(min(losses), rel=1e-4)
    else:
      assert len(losses) == 6


def test_a_hybrid_student_keeps_the_inherited_component_through_qat_and_int8(tmp_path):
  data = dataclasses.replace(_training_data(), eval=None)  # no eval split: the mix is 1:1
  log = training.TrainingLog(str(tmp_path / layout.TENSORBOARD_DIR))
  rng = np.random.default_rng(0)
  tables = item_item.ItemItemTables(rng.normal(size=(tiny_models.VOCAB.items, 3)).astype('f4'),
                                    rng.normal(size=(tiny_models.VOCAB.items, 3)).astype('f4'),
                                    l2=1.0, window=2)
  size = dataclasses.replace(tiny_models.teacher_size(), item_item=True)
  core = teacher.build_core(tiny_models.VOCAB, size, tiny_models.TRANSFORM,
                            tiny_models.STATS.mean_rating, tables)
  core.get_layer('hybrid_mix').mix.assign([0.5, 2.0])
  teacher_model = two_tower.TwoTowerModel(core, tiny_models.TRAINING, tiny_models.STATS)
  student_size = dataclasses.replace(tiny_models.STUDENT_SIZE, item_item=True, item_item_rank=2)
  distillation = _distillation_hparams()
  with training.teacher_outputs(data, teacher_model,
                                tiny_models.TRAINING) as distillation_data:
    student_fp32 = training.distil(distillation_data, teacher_model, student_size,
                                   tiny_models.TRAINING, distillation, log)
    student_int8 = training.quantize(distillation_data, teacher_model, student_fp32,
                                     tiny_models.TRAINING, distillation, log)
  # Each mix set after its training (the towers trained with the component weighted 0).
  for model in (student_fp32, student_int8):
    np.testing.assert_allclose(model.core.get_layer('hybrid_mix').mix.numpy(), [0.5, 0.5])
  assert isinstance(student_int8.core.get_layer('item_item_history'),
                    quantization.Int8Embedding)
  np.testing.assert_allclose(
      quantization.dequantize_rows(*student_int8.core.get_layer('item_item_candidate')
                                   .get_weights()), tables.truncated(2).candidates,
      atol=0.02)


def _hybrid_teacher(rank: int) -> two_tower.TwoTowerModel:
  rng = np.random.default_rng(1)
  tables = item_item.ItemItemTables(
      rng.normal(size=(tiny_models.VOCAB.items, rank)).astype('f4'),
      rng.normal(size=(tiny_models.VOCAB.items, rank)).astype('f4'), l2=1.0, window=2)
  size = dataclasses.replace(tiny_models.teacher_size(), item_item=True)
  return two_tower.TwoTowerModel(
      teacher.build_core(tiny_models.VOCAB, size, tiny_models.TRANSFORM,
                         tiny_models.STATS.mean_rating, tables),
      tiny_models.TRAINING, tiny_models.STATS)


@pytest.mark.parametrize('budget, overhead_share, expected', [
    (10.0, 0.0, (8, 64, True)),  # everything fits: the teacher's rank, the widest dimension
    (0.17, 0.0, (4, 48, True)),  # the largest rank in steps of 16 that fits at the smallest dim
    (0.24, 0.07, (4, 48, True)),  # the same, once the SavedModel's overhead is taken out
    (0.1, 0.0, (4, 0, False)),  # no rank fits: no component, the widest dimension that fits
])
def test_student_size_fits_the_inherited_rank_then_the_width_to_the_budget(
    budget, overhead_share, expected, monkeypatch):
  teacher_model = _hybrid_teacher(rank=64)
  data = _training_data()
  teacher_bytes = quantization.exported_bytes(
      teacher_model.core, len(data.catalogue[features.ITEM_ID]), int8=False)
  # The tiny models' bytes are smaller than a real SavedModel's fixed overhead.
  monkeypatch.setattr(quantization, 'saved_model_overhead',
                      lambda catalogue: overhead_share * teacher_bytes)
  size = dataclasses.replace(tiny_models.STUDENT_SIZE, embedding_dim=0, item_item=True)
  distillation = dataclasses.replace(_distillation_hparams(), student_dims=(4, 8),
                                     size_budget=budget)
  chosen = training.student_size(data, teacher_model, size, distillation)
  assert (chosen.embedding_dim, chosen.item_item_rank if chosen.item_item else 0,
          chosen.item_item) == expected


def test_a_warm_run_keeps_the_student_width_and_chooses_its_rank_for_its_teacher(tmp_path):
  # The run it starts from chose width 8 and rank 16 for another teacher; everything fits this
  # one's budget: its whole rank 64, at the width the weights were trained at.
  teacher_model = _hybrid_teacher(rank=64)
  data = _training_data()
  size = dataclasses.replace(tiny_models.STUDENT_SIZE, embedding_dim=0, item_item=True)
  distillation = dataclasses.replace(_distillation_hparams(), student_dims=(4, 8, 16),
                                     size_budget=10.0)
  earlier = dataclasses.replace(size, embedding_dim=8, item_item_rank=16)
  warm = warm_start.WarmStart(str(tmp_path), {}, {
      training.STUDENT_SIZE: training.student_size_setting(earlier)})
  chosen = training.student_size(dataclasses.replace(data, warm=warm), teacher_model, size,
                                 distillation)
  assert (chosen.embedding_dim, chosen.item_item_rank, chosen.item_item) == (8, 64, True)
  assert training.student_size(data, teacher_model, size, distillation).embedding_dim == 16
