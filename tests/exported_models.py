"""Session fixtures: a teacher trained on the synthetic data set, distilled into an int8 student,
both exported with the serving contract (and the student as TFLite), with the training API of
`models.run_fn`. Shared by the export and serving tests, so the models are trained once per test
session."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from contract import split_rules
from models import hparams
from models import layout
from models import training
from ingest import history
from pipeline import configs
import prepare_reference
import tft_helpers

TRANSFORM = hparams.TransformHParams(
    history_length=5, item_oov_buckets=1, user_oov_buckets=1, max_genres=3, max_title_tokens=4,
    title_vocab_size=100, zip_prefix_length=2)
SIZE = hparams.TowerHParams(
    embedding_dim=8, hidden_units=0, rating_hidden_units=8, history_encoder='transformer',
    attention_layers=1, attention_heads=2, dropout=0.0)
STUDENT_SIZE = hparams.TowerHParams(
    embedding_dim=8, hidden_units=0, rating_hidden_units=8, history_encoder='mean',
    attention_layers=0, attention_heads=0, dropout=0.0)
# The pipeline's training settings, sized down (a new setting reaches the tests as configured).
TRAINING = dataclasses.replace(configs.TRAINING, epochs=1, batch_size=64, shuffle_buffer_size=100,
                               learning_rate=0.01, retrieval_weight=1.0, rating_weight=0.5,
                               popularity_correction=1.0, seed=1, early_stopping_patience=0,
                               catalogue_softmax_max_items=0, mixed_negatives=0)
DISTILLATION = hparams.DistillationHParams(
    epochs=1, learning_rate=0.01, alpha=0.5, temperature=1.0, rating_distillation_weight=1.0,
    num_sampled_negatives=16, kd_catalogue_max_items=1000, qat_epochs=1,
    qat_learning_rate=0.001, warm_start_qat_epochs=0, student_dims=(8,), size_budget=0.1,
    teacher_towers_only=True, inherited_popularity_shifts=(0.0,))
TOP_K = 10


@pytest.fixture(scope='session')
def trained(tmp_path_factory, synthetic_dataset):
  """A teacher trained on the synthetic data set, and what exporting needs."""
  directory = tmp_path_factory.mktemp('export')
  frame = prepare_reference.join_side_features(synthetic_dataset)
  frame = history.add_history(
      frame.iloc[split_rules.chronological_order(frame)].reset_index(drop=True),
      TRANSFORM.history_length)
  transformed, tf_transform_output = tft_helpers.analyze_and_transform(
      tft_helpers.rows_from_frame(frame), TRANSFORM, str(directory / 'transform'))
  columns = {name: np.stack([np.squeeze(np.asarray(row[name])) for row in transformed])
             for name in transformed[0]}
  dataset = tf.data.Dataset.from_tensor_slices(columns).batch(TRAINING.batch_size)
  data = training.scan_data(dataset, dataset, None, tf_transform_output, TRANSFORM)
  log = training.TrainingLog(str(directory / layout.TENSORBOARD_DIR))
  return {'directory': directory, 'frame': frame, 'columns': columns, 'data': data, 'log': log,
          'stats': data.stats, 'teacher': training.train_teacher(data, SIZE, TRAINING, log)}


@pytest.fixture(scope='session')
def export_dirs(trained):
  """The teacher and the int8 student (distilled for one epoch, one QAT epoch) exported with the
  same contract (SavedModel directories by name); the student also as TFLite, at
  `tflite_path`."""
  data, teacher, log = trained['data'], trained['teacher'], trained['log']
  with training.teacher_outputs(data, teacher, TRAINING) as distillation_data:
    student_fp32 = training.distil(distillation_data, teacher, STUDENT_SIZE, TRAINING,
                                   DISTILLATION, log)
    student_int8 = training.quantize(distillation_data, teacher, student_fp32, TRAINING,
                                     DISTILLATION, log)
  directory = str(trained['directory'])
  return training.export_models({layout.TEACHER: teacher, layout.STUDENT_INT8: student_int8},
                                data, dataclasses.replace(configs.EXPORT, top_k=TOP_K), directory,
                                str(trained['directory'] / layout.CANDIDATE))


def tflite_path(trained) -> str:
  """Where `export_dirs` writes the int8 student as TFLite."""
  return str(trained['directory'] / layout.TFLITE_FILE)
