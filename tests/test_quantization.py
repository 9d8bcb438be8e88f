"""Int8 row-wise tables and index, QAT on the student's Dense layers, the TFLite export."""
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from models import quantization
from models import student
from models import tflite_export
from models import two_tower
import tiny_models


def test_round_trip_error_is_at_most_half_a_scale_step():
  table = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
  table[3] = 0.0  # an all-zero row must not divide by zero
  values, scales = quantization.quantize_rows(table)
  assert values.dtype == np.int8 and scales.shape == (50, 1)
  error = np.abs(quantization.dequantize_rows(values, scales) - table)
  assert np.all(error <= scales / 2 + 1e-7)
  assert np.all(np.abs(values).max(axis=1)[np.any(table != 0, axis=1)] == 127)


def test_int8_embedding_looks_up_dequantized_rows():
  layer = tf.keras.layers.Embedding(10, 4)
  layer.build(None)
  quantized = quantization.Int8Embedding.from_embedding(layer)
  ids = tf.constant([[1, 2], [9, 0]])
  values, scales = quantization.quantize_rows(layer.get_weights()[0])
  np.testing.assert_allclose(quantized(ids).numpy(),
                             quantization.dequantize_rows(values, scales)[ids.numpy()])
  assert quantized.int8_embeddings.dtype == tf.int8


def test_int8_index_scores_like_the_dequantized_candidates():
  candidates = np.random.default_rng(1).normal(size=(20, 8)).astype(np.float32)
  queries = tf.constant(np.random.default_rng(2).normal(size=(3, 8)).astype(np.float32))
  index = quantization.Int8BruteForce(k=5)
  index.index(tf.constant(candidates))
  scores, ids = index(queries)
  dequantized = quantization.dequantize_rows(*quantization.quantize_rows(candidates))
  expected = queries.numpy() @ dequantized.T
  np.testing.assert_allclose(scores.numpy(), np.sort(expected, axis=1)[:, ::-1][:, :5], rtol=1e-5)
  np.testing.assert_array_equal(ids.numpy()[:, 0], np.argmax(expected, axis=1))


def test_int8_index_excludes_like_brute_force_over_the_dequantized_candidates():
  rng = np.random.default_rng(3)
  queries = tf.constant(rng.normal(size=(4, 8)).astype(np.float32))
  exclusions = tf.constant([[101, 0], [102, 103], [0, 0], [119, 104]])
  index = quantization.Int8BruteForce(k=7)
  reference = tfrs.layers.factorized_top_k.BruteForce(k=7)
  for rows in (20, 30):  # indexing again replaces the index
    candidates = rng.normal(size=(rows, 8)).astype(np.float32)
    identifiers = tf.range(100, 100 + rows)
    index.index(tf.constant(candidates), identifiers)
    reference.index(tf.constant(quantization.dequantize_rows(
        *quantization.quantize_rows(candidates))), identifiers)
    scores, ids = index.query_with_exclusions(queries, exclusions, k=5)
    expected_scores, expected_ids = reference.query_with_exclusions(queries, exclusions, k=5)
    np.testing.assert_array_equal(ids.numpy(), expected_ids.numpy())
    np.testing.assert_allclose(scores.numpy(), expected_scores.numpy(), rtol=1e-5)
    assert index.is_exact()


def test_int8_index_in_a_saved_model_scores_like_the_dequantized_candidates(tmp_path):
  """In a graph the index scores against its float cache, filled by the first call after
  loading (in TF2 and in a TF1 session, as TF Serving runs it) and saved empty."""
  rng = np.random.default_rng(4)
  candidates = rng.normal(size=(40, 8)).astype(np.float32)
  queries = rng.normal(size=(3, 8)).astype(np.float32)
  expected = queries @ quantization.dequantize_rows(*quantization.quantize_rows(candidates)).T
  expected_top = np.sort(expected, axis=1)[:, ::-1][:, :5]

  class Module(tf.Module):
    def __init__(self):
      super().__init__()
      self.index = quantization.Int8BruteForce(k=5)
      self.index.index(tf.constant(candidates), tf.range(1, 41))

    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32)])
    def top(self, queries):
      scores, ids = self.index(queries)
      return {'scores': scores, 'ids': ids}

  module = Module()
  for _ in range(2):  # fills the cache, then reads it
    np.testing.assert_allclose(module.top(queries)['scores'].numpy(), expected_top, rtol=1e-5)
  module.index.clear_cache()
  path = str(tmp_path / 'index')
  tf.saved_model.save(module, path, signatures={'serving_default': module.top})
  reader = tf.train.load_checkpoint(path + '/variables/variables')
  saved = {name.split('/')[1]: reader.get_tensor(name)
           for name in reader.get_variable_to_shape_map() if name.startswith('index/')}
  assert saved['_dequantized'].shape == (8, 0) and not saved['_filled']
  loaded = tf.saved_model.load(path).signatures['serving_default']
  graph = tf.Graph()
  session = tf.compat.v1.Session(graph=graph)
  with graph.as_default():
    signature = tf.compat.v1.saved_model.loader.load(session, ['serve'], path).signature_def[
        'serving_default']
  for _ in range(2):
    np.testing.assert_allclose(loaded(queries=tf.constant(queries))['scores'].numpy(),
                               expected_top, rtol=1e-5)
    scores, ids = session.run([signature.outputs['scores'].name, signature.outputs['ids'].name],
                              {signature.inputs['queries'].name: queries})
    np.testing.assert_allclose(scores, expected_top, rtol=1e-5)
    np.testing.assert_array_equal(ids[:, 0], np.argmax(expected, axis=1) + 1)


def test_int8_index_reads_a_shared_tables_columns_from_it_and_saves_them_once(tmp_path):
  rng = np.random.default_rng(5)
  embedding = tf.keras.layers.Embedding(12, 3)
  embedding.build(None)
  embedding.set_weights([rng.normal(size=(12, 3)).astype(np.float32)])
  table = quantization.Int8Embedding.from_embedding(embedding)
  rows = rng.integers(0, 12, size=20)
  own = rng.normal(size=(20, 5)).astype(np.float32)
  candidates = np.concatenate([own, table(tf.constant(rows)).numpy()], axis=1)
  full = np.concatenate([quantization.dequantize_rows(*quantization.quantize_rows(own)),
                         table(tf.constant(rows)).numpy()], axis=1)
  queries = rng.normal(size=(3, 8)).astype(np.float32)
  expected = queries @ full.T

  class Module(tf.Module):
    def __init__(self):
      super().__init__()
      self.table = table
      self.index = quantization.Int8BruteForce(k=5)
      self.index.index(tf.constant(candidates), tf.range(1, 21), shared_table=table,
                       shared_rows=rows)

    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32)])
    def top(self, queries):
      scores, ids = self.index(queries)
      return {'scores': scores, 'ids': ids, 'rows': self.index.candidate_rows(ids - 1),
              'queried_rows': self.index.queried_rows(ids - 1)}

  module = Module()
  assert module.index._int8_candidates.shape == (20, 5)  # the shared columns are not stored
  outputs = module.top(queries)
  np.testing.assert_allclose(outputs['scores'].numpy(),
                             np.sort(expected, axis=1)[:, ::-1][:, :5], rtol=1e-5)
  np.testing.assert_allclose(outputs['rows'].numpy(), full[outputs['ids'].numpy() - 1],
                             rtol=1e-6)
  # The row cache the query filled holds the same values, bit for bit.
  np.testing.assert_array_equal(outputs['queried_rows'].numpy(), outputs['rows'].numpy())
  module.index.clear_cache()
  path = str(tmp_path / 'index')
  tf.saved_model.save(module, path, signatures={'serving_default': module.top})
  names = tf.train.load_checkpoint(path + '/variables/variables').get_variable_to_shape_map()
  assert sum('int8_embeddings' in name for name in names) == 1
  assert module.index._dequantized_rows.numpy().shape == (0, 8)  # saved empty, as the other
  loaded = tf.saved_model.load(path).signatures['serving_default']
  answer = loaded(queries=tf.constant(queries))  # the first call after loading fills the caches
  np.testing.assert_allclose(answer['scores'].numpy(),
                             np.sort(expected, axis=1)[:, ::-1][:, :5], rtol=1e-5)
  np.testing.assert_array_equal(answer['queried_rows'].numpy(), answer['rows'].numpy())
  with pytest.raises(ValueError, match='not the rows'):
    quantization.Int8BruteForce(k=5).index(tf.constant(candidates), shared_table=table,
                                           shared_rows=(rows + 1) % 12)


def _student() -> two_tower.TwoTowerModel:
  tf.keras.utils.set_random_seed(0)
  return two_tower.TwoTowerModel(
      student.build_core(tiny_models.VOCAB, tiny_models.STUDENT_SIZE, tiny_models.TRANSFORM, 3.5),
      tiny_models.TRAINING, tiny_models.STATS)


def test_qat_wraps_only_dense_layers_and_keeps_the_weights():
  fp32 = _student()
  qat = quantization.quantize_dense_layers(fp32.core, student.CUSTOM_OBJECTS)
  # TFMOT also quantizes the outputs feeding a quantized layer (Concatenate, Add): weightless.
  # A wrapper holds its layer's kernel itself (the wrapped layer keeps only the bias).
  wrapped = [layer.layer for layer in qat.layers if hasattr(layer, 'quantize_config')
             and layer.trainable_weights]
  assert wrapped and all(isinstance(layer, tf.keras.layers.Dense) for layer in wrapped)
  dense = [layer for layer in fp32.core.layers if isinstance(layer, tf.keras.layers.Dense)]
  assert len(wrapped) == len(dense)
  batch = tiny_models.batch()
  outputs = two_tower.TwoTowerModel(qat, tiny_models.TRAINING, tiny_models.STATS)(batch)
  # Fake-quantization changes the numbers a little, not the model.
  np.testing.assert_allclose(outputs['rating'].numpy(), fp32(batch)['rating'].numpy(), atol=0.2)


def test_kernel_ranges_set_without_training_put_each_kernel_on_its_own_int8_grid():
  fp32 = _student()
  qat_core = quantization.quantize_dense_layers(fp32.core, student.CUSTOM_OBJECTS)
  names = ('query_output', 'candidate_output', 'rating_hidden')

  def applied(name):
    return quantization.applied_kernel(qat_core.get_layer(f'quant_{name}')).numpy()

  def own_grid(name):  # symmetric, narrow range: 127 steps each side of 0
    kernel = fp32.core.get_layer(name).kernel.numpy()
    step = np.abs(kernel).max() / 127
    return np.round(kernel / step) * step

  untrained = {name: applied(name) for name in names}  # TFMOT's initial range, ±6
  quantization.set_kernel_ranges(
      two_tower.TwoTowerModel(qat_core, tiny_models.TRAINING, tiny_models.STATS),
      tiny_models.batch())
  for name in names:
    assert not np.allclose(untrained[name], own_grid(name), atol=1e-6)
    np.testing.assert_allclose(applied(name), own_grid(name), atol=1e-6)
  for before, after in zip(fp32.core.get_weights(), qat_core.get_weights()):
    if before.shape == after.shape:  # the wrappers' ranges aside, no weight moved
      np.testing.assert_array_equal(before, after)


def test_int8_student_stores_int8_tables_and_computes_the_same_model():
  fp32 = _student()
  qat = quantization.quantize_dense_layers(fp32.core, student.CUSTOM_OBJECTS)
  int8 = quantization.int8_embeddings(qat, student.CUSTOM_OBJECTS)
  tables = [layer for layer in int8.layers if isinstance(layer, quantization.Int8Embedding)]
  assert {layer.name for layer in tables} >= {'item_embedding', 'user_embedding'}
  assert not any(isinstance(layer, tf.keras.layers.Embedding) and layer.output_dim > 1
                 for layer in int8.layers)
  # The QAT layers are folded: plain Dense layers applying the kernels QAT fake-quantized.
  assert not any(isinstance(layer, quantization.tfmot.quantization.keras.QuantizeWrapperV2)
                 for layer in int8.layers)
  for name in ('query_output', 'candidate_output', 'rating_hidden'):
    kernel = int8.get_layer(name).kernel.numpy()
    np.testing.assert_array_equal(
        kernel, quantization.applied_kernel(qat.get_layer(f'quant_{name}')).numpy())
    assert len(np.unique(kernel)) <= 255  # int8's grid
  batch = tiny_models.batch()
  before = two_tower.TwoTowerModel(qat, tiny_models.TRAINING, tiny_models.STATS)(batch)
  after = two_tower.TwoTowerModel(int8, tiny_models.TRAINING, tiny_models.STATS)(batch)
  # The QAT model's outputs are on its activations' 8-bit grid, the folded model's are not:
  # they differ by up to half a step (untrained ranges here: wide steps).
  np.testing.assert_allclose(after['rating'].numpy(), before['rating'].numpy(), atol=0.1)
  # Without activation grids, it is the float model up to its weights' rounding.
  for output in ('queries', 'candidates'):
    np.testing.assert_allclose(after[output].numpy(), fp32(batch)[output].numpy(), atol=0.03)


def test_tflite_student_agrees_with_the_keras_int8_student(tmp_path):
  qat = quantization.quantize_dense_layers(_student().core, student.CUSTOM_OBJECTS)
  model = two_tower.TwoTowerModel(quantization.int8_embeddings(qat, student.CUSTOM_OBJECTS),
                                  tiny_models.TRAINING, tiny_models.STATS)
  path = str(tmp_path / 'student.tflite')
  tflite_export.export_tflite(model, tiny_models.CATALOGUE, tiny_models.NUM_CATALOGUE_ITEMS,
                              tiny_models.TRANSFORM.history_length, top_k=5, path=path)
  runner = tf.lite.Interpreter(path).get_signature_runner()
  batch = tiny_models.batch()
  for row in range(3):
    query = {name: batch[name].numpy()[row:row + 1] for name in model.query_tower.input_names}
    got = runner(**query)
    scores = (model.embed_queries({k: tf.constant(v) for k, v in query.items()}).numpy()
              @ model.embed_candidates({k: tf.constant(v) for k, v in
                                        tiny_models.CATALOGUE.items()}).numpy().T)[0]
    scores[query['history_indices'][0][query['history_indices'][0] > 0] - 1] = -np.inf
    expected = tiny_models.CATALOGUE['item_id'][np.argsort(-scores)[:5]]
    assert list(got['item_ids'][0].astype(str)[:3]) == list(expected[:3])


def test_native_output_of_the_tflite_converter_goes_to_the_log_not_the_terminal(capfd, caplog):
  caplog.set_level(logging.DEBUG, logger='absl')
  with tflite_export._native_output_logged():  # pylint: disable=protected-access
    os.write(1, b'Summary on the non-converted ops\n')
    os.write(2, b'native warning\n')
  with pytest.raises(RuntimeError):
    with tflite_export._native_output_logged():  # pylint: disable=protected-access
      os.write(2, b'conversion failed natively\n')
      raise RuntimeError('conversion failed')
  out, err = capfd.readouterr()
  assert 'non-converted' not in out + err and 'natively' not in out + err
  levels = {record.getMessage().splitlines()[-1]: record.levelno for record in caplog.records
            if record.getMessage().startswith('TFLite converter output')}
  assert levels == {'native warning': logging.DEBUG, 'conversion failed natively': logging.ERROR}
