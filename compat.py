"""The project's version-fragile calls, in one place: each reaches past a public API of the
pinned stack (TensorFlow 2.15, Keras 2.15, TFMOT 0.8, TFMA 0.46, TFRS 0.7) for a reason given
beside it.
`tests/test_compat.py` pins the versions these were written for and fails clearly on others, so
an upgrade starts here.

Nothing else of the project is imported: every layer may use this module.
"""
import contextlib
import os
from typing import Callable, Iterator, List, Tuple

# The versions every function below was written and tested against.
WRITTEN_FOR = {
    'tensorflow': '2.15.1',
    'keras': '2.15.0',
    'tensorflow_model_optimization': '0.8.1',
    'tensorflow_model_analysis': '0.46.0',
    'tensorflow_recommenders': '0.7.3',
}


def import_tfmot():
  """`tensorflow_model_optimization`, imported without leaving `TF_USE_LEGACY_KERAS` set.

  TFMOT sets TF_USE_LEGACY_KERAS=1 when imported, so TensorFlow's lazy Keras loaders initialised
  after that (TFMOT's own import touches `tf.keras`, TensorFlow's `tf.compat.v1.keras`) load the
  separate `tf_keras` package, whose classes then shadow Keras 2's in deserialization and break
  `quantize_apply` on `tf.keras` models. Initialise both loaders first and put the setting back
  afterwards.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  legacy_keras = os.environ.get('TF_USE_LEGACY_KERAS')
  _ = tf.keras.layers, tf.compat.v1.keras.layers
  import tensorflow_model_optimization as tfmot  # pylint: disable=import-outside-toplevel
  if legacy_keras is None:
    os.environ.pop('TF_USE_LEGACY_KERAS', None)
  else:
    os.environ['TF_USE_LEGACY_KERAS'] = legacy_keras
  return tfmot


@contextlib.contextmanager
def keras_saves_no_traces() -> Iterator[None]:
  """Within the block, `tf.saved_model.save` writes no Keras per-layer call traces.

  What `model.save(..., save_traces=False)` does for a Keras model, for a `tf.Module` that holds
  Keras layers: only its signatures are served, and hundreds of traced layer functions made the
  SavedModel slow to write and to load. Keras 2.15 has no public switch for `tf.saved_model`.
  """
  from keras.src.saving.legacy.saved_model import utils  # pylint: disable=import-outside-toplevel
  with utils.keras_option_scope(save_traces=False):
    yield


def session_callable(session, options) -> Callable:
  """`session`'s callable for `options` (a `CallableOptions`): numpy arrays in and out.

  Runs through TF_SessionRunCallable, as Keras' backend does; the public `Session.make_callable`
  with feeds falls back to `Session.run` and its per-call feed and fetch handling (0.4 ms a
  request on the local server).
  """
  return session._make_callable_from_options(options)  # pylint: disable=protected-access


def tfma_keras():
  """The Keras TFMA uses (tf_keras when installed, else tf.keras): TFMA accepts custom metrics
  only as subclasses of its own Keras's metrics, and names it in an internal module only."""
  from tensorflow_model_analysis.utils import keras_lib  # pylint: disable=import-outside-toplevel
  return keras_lib.tf_keras


def keras_producer(tensor) -> Tuple[object, int]:
  """The layer that outputs a functional Keras model's symbolic `tensor`, and the index of that
  layer's inbound node (call) that does.

  Keras 2.15 records it only in the tensor's private `_keras_history`: the public graph API goes
  from a layer to its tensors (`layer.inbound_nodes`, `get_output_at`), not back.
  """
  history = tensor._keras_history  # pylint: disable=protected-access
  return history.layer, history.node_index


def quantized_weights(wrapper) -> List[Tuple[object, object]]:
  """(weight, what the layer applies) of each weight a TFMOT `QuantizeWrapperV2` quantizes: the
  wrapped layer's variable and its fake-quantized value at inference.

  The wrapper keeps its (weight, quantizer, quantizer variables) only in the private
  `_weight_vars`; at inference it sets the wrapped layer's attribute (e.g. `kernel`) to the
  quantized tensor of its latest call, so the public attributes do not lead to the variable.
  """
  return [(weight, quantizer(weight, False, weights=quantizer_vars))
          for weight, quantizer, quantizer_vars
          in wrapper._weight_vars]  # pylint: disable=protected-access


def brute_force_candidates(index):
  """The candidate matrix a TFRS `BruteForce` index scores queries against (what `index()`
  copied into it): TFRS keeps it in the private `_candidates` and has no public accessor."""
  return index._candidates  # pylint: disable=protected-access
