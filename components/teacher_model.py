"""TeacherModel: the Trainer's teacher SavedModel as a `Model` artifact.

The Trainer's `model` output is the student that the gates judge; the teacher's SavedModel lives
in its `model_run` directory. This component hands it to a standard Pusher, so that TF Serving
serves the teacher beside the student from the same base directory (`serving/models.config`).
"""
import os

import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import standard_artifacts
from tfx.utils import io_utils
from tfx.utils import path_utils

from models import layout


@tfx.dsl.components.component
def TeacherModel(  # pylint: disable=invalid-name
    model_run: tfx.dsl.components.InputArtifact[standard_artifacts.ModelRun],
    model: tfx.dsl.components.OutputArtifact[standard_artifacts.Model]) -> None:
  """Copies `<model_run>/teacher` to the serving path of the output `model`."""
  source = os.path.join(model_run.uri, layout.SAVED_MODEL_DIRS[layout.TEACHER])
  if not tf.io.gfile.exists(os.path.join(source, 'saved_model.pb')):
    raise FileNotFoundError(f'no teacher SavedModel in {source}')
  io_utils.copy_dir(source, path_utils.serving_model_path(model.uri))
