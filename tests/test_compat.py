"""compat.py: the versions its calls were written for are the installed ones, and each call still
does what the project relies on."""
import ast
import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import saved_model_pb2

import compat
import test_layering

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('package, expected', sorted(compat.WRITTEN_FOR.items()))
def test_installed_versions_are_the_ones_compat_was_written_for(package, expected):
  installed = importlib.metadata.version(package)
  assert installed == expected, (
      f'{package} {installed} is installed, but compat.py was written for {package} '
      f'{expected}: re-check every function in compat.py against {installed}, then update '
      f'compat.WRITTEN_FOR')


def test_import_tfmot_leaves_tf_use_legacy_keras_as_it_was():
  # A fresh interpreter: TFMOT changes the environment only when first imported.
  script = '\n'.join([
      'import os',
      'import compat',
      'tfmot = compat.import_tfmot()',
      'import tensorflow as tf',
      "print(os.environ.get('TF_USE_LEGACY_KERAS'))",
      'print(tf.keras.layers.Dense.__module__, tf.compat.v1.keras.layers.Dense.__module__)',
      'print(tfmot.quantization.keras.quantize_apply.__name__)',
  ])
  env = {name: value for name, value in os.environ.items() if name != 'TF_USE_LEGACY_KERAS'}
  env['PYTHONPATH'] = os.pathsep.join([REPO_ROOT, env.get('PYTHONPATH', '')])
  lines = subprocess.run([sys.executable, '-c', script], env=env, cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True).stdout.splitlines()
  legacy_keras, dense_modules, quantize_apply = lines[-3:]
  assert legacy_keras == 'None'
  # Both tf.keras and tf.compat.v1.keras are Keras 2, not the tf_keras package.
  assert [module.split('.')[0] for module in dense_modules.split()] == ['keras', 'keras'], (
      dense_modules)
  assert quantize_apply == 'quantize_apply'


class _KerasHolder(tf.Module):
  """A tf.Module serving a functional Keras model, as `models.export.ServingModule` does."""

  def __init__(self):
    super().__init__()
    inputs = tf.keras.Input([3])
    self.model = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(inputs))

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
  def serve(self, x):
    return self.model(x)


def _saved_functions(module: tf.Module, path: str) -> int:
  tf.saved_model.save(module, path, signatures={'serve': module.serve.get_concrete_function()})
  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(path, 'saved_model.pb'), 'rb') as f:
    saved_model.ParseFromString(f.read())
  return len(saved_model.meta_graphs[0].graph_def.library.function)


def test_keras_saves_no_traces_leaves_out_the_layer_call_functions(tmp_path):
  module = _KerasHolder()
  with_traces = _saved_functions(module, str(tmp_path / 'traces'))
  with compat.keras_saves_no_traces():
    without_traces = _saved_functions(module, str(tmp_path / 'no_traces'))
  assert without_traces < with_traces
  loaded = tf.saved_model.load(str(tmp_path / 'no_traces'))
  np.testing.assert_allclose(loaded.signatures['serve'](tf.ones([1, 3]))['output_0'].numpy(),
                             module.serve(tf.ones([1, 3])).numpy())


def test_session_callable_runs_a_graph_on_numpy_arrays():
  graph = tf.Graph()
  with graph.as_default():
    a = tf.compat.v1.placeholder(tf.float32, [None], name='a')
    b = tf.compat.v1.placeholder(tf.float32, [None], name='b')
    total = tf.add(a, b, name='total')
  with tf.compat.v1.Session(graph=graph) as session:
    run = compat.session_callable(session, config_pb2.CallableOptions(
        feed=[a.name, b.name], fetch=[total.name]))
    (result,) = run(np.array([1.0, 2.0], np.float32), np.array([10.0, 20.0], np.float32))
  np.testing.assert_array_equal(result, [11.0, 22.0])


def test_tfma_keras_is_a_keras_with_the_auc_metric():
  keras = compat.tfma_keras()
  assert issubclass(keras.metrics.AUC, keras.metrics.Metric)
  auc = keras.metrics.AUC()
  auc.update_state([0.0, 1.0], [0.2, 0.9])
  assert float(auc.result()) == pytest.approx(1.0)


def test_keras_producer_is_the_layer_and_call_that_output_a_tensor():
  inputs = tf.keras.Input([3])
  dense = tf.keras.layers.Dense(2)
  first, second = dense(inputs), dense(inputs)  # one layer, two calls (nodes)
  assert compat.keras_producer(first) == (dense, 0)
  assert compat.keras_producer(second) == (dense, 1)
  layer, node = compat.keras_producer(inputs)
  assert isinstance(layer, tf.keras.layers.InputLayer) and node == 0


def test_quantized_weights_are_what_a_quantize_wrapped_dense_applies():
  tfmot = compat.import_tfmot()
  inputs = tf.keras.Input([4])
  model = tfmot.quantization.keras.quantize_model(
      tf.keras.Model(inputs, tf.keras.layers.Dense(3, name='dense')(inputs)))
  wrapper = model.get_layer('quant_dense')
  [(weight, quantized)] = compat.quantized_weights(wrapper)  # a Dense's kernel only
  assert weight.name.endswith('kernel:0') and weight.shape == (4, 3)
  wrapper(tf.ones([1, 4]), training=False)  # sets the inner layer's kernel to what it applies
  np.testing.assert_array_equal(quantized.numpy(), wrapper.layer.kernel.numpy())
  assert not np.array_equal(quantized.numpy(), weight.numpy())  # rounded to 8 bits


def test_brute_force_candidates_are_the_indexed_rows():
  import tensorflow_recommenders as tfrs  # pylint: disable=import-outside-toplevel
  candidates = np.arange(12, dtype=np.float32).reshape(4, 3)
  index = tfrs.layers.factorized_top_k.BruteForce(k=2)
  index.index(tf.constant(candidates))
  np.testing.assert_array_equal(compat.brute_force_candidates(index).numpy(), candidates)


def _private_reads(source: str):
  """(line, expression) of each read of an attribute named with one leading underscore from
  anything but `self` or `cls`: a private attribute of another object."""
  for node in ast.walk(ast.parse(source)):
    if (isinstance(node, ast.Attribute) and node.attr.startswith('_')
        and not node.attr.startswith('__')
        and not (isinstance(node.value, ast.Name) and node.value.id in ('self', 'cls'))):
      yield node.lineno, ast.unparse(node)


def test_private_attributes_of_other_objects_are_read_in_compat_only():
  """The project's rule: where reaching past a public API is unavoidable, the call lives in
  compat.py, beside its reason, and is tested here."""
  found = [f'{path}:{line}: {expression}'
           for layer, path, source in test_layering.project_modules() if layer != 'compat'
           for line, expression in _private_reads(source)]
  assert not found, 'private attributes read outside compat.py:\n' + '\n'.join(found)
  assert list(_private_reads('x = tensor._keras_history\nself._own = index._candidates\n')) == [
      (1, 'tensor._keras_history'), (2, 'index._candidates')]
