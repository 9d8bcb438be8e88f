"""Session fixtures: a teacher trained on the synthetic data set, distilled into an int8 student,
both exported with the serving contract (and the student as TFLite). Shared by the export and
serving tests, so the models are trained once per test session."""
import numpy as np
import pytest
import tensorflow as tf

from models import distiller
from models import export
from contract import features
from models import hparams
from models import inputs
from models import quantization
from models import student
from models import teacher
from models import tflite_export
from models import towers
from models import two_tower
from pipeline.data import split
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
TRAINING = hparams.TrainingHParams(epochs=1, batch_size=64, shuffle_buffer_size=100,
                                   learning_rate=0.01,
                                   retrieval_weight=1.0, rating_weight=0.5,
                                   popularity_correction=True, seed=1)
TOP_K = 10



@pytest.fixture(scope='session')
def trained(tmp_path_factory, synthetic_dataset):
  """A teacher trained on the synthetic data set, and what exporting needs."""
  directory = tmp_path_factory.mktemp('export')
  frame = prepare_reference.join_side_features(synthetic_dataset)
  frame = split.add_history(frame.iloc[split.chronological_order(frame)].reset_index(drop=True),
                            TRANSFORM.history_length)
  transformed, tf_transform_output = tft_helpers.analyze_and_transform(
      tft_helpers.rows_from_frame(frame), TRANSFORM, str(directory / 'transform'))
  columns = {name: np.stack([np.squeeze(np.asarray(row[name])) for row in transformed])
             for name in transformed[0]}
  dataset = tf.data.Dataset.from_tensor_slices(columns).batch(TRAINING.batch_size)
  vocab = towers.Vocabularies.from_transform_output(
      tf_transform_output, TRANSFORM.item_oov_buckets, TRANSFORM.user_oov_buckets)
  stats = inputs.scan_train_data(
      dataset, tf_transform_output.vocabulary_by_name(features.ITEM_VOCAB), vocab.items)
  model = two_tower.TwoTowerModel(
      teacher.build_core(vocab, SIZE, TRANSFORM, stats.mean_rating), TRAINING, stats)
  model.compile(optimizer=tf.keras.optimizers.Adam(TRAINING.learning_rate))
  model.fit(dataset, epochs=TRAINING.epochs, verbose=0)
  return {'directory': directory, 'frame': frame, 'columns': columns, 'dataset': dataset,
          'vocab': vocab, 'stats': stats, 'teacher': model,
          'tf_transform_output': tf_transform_output}


def _int8_student(trained) -> two_tower.TwoTowerModel:
  """The teacher distilled into a student for one epoch, with QAT wrappers and int8 tables."""
  fp32 = two_tower.TwoTowerModel(
      student.build_core(trained['vocab'], STUDENT_SIZE, TRANSFORM, trained['stats'].mean_rating),
      TRAINING, trained['stats'])
  model = distiller.Distiller(trained['teacher'], fp32, trained['stats'].catalogue, 16)
  model.compile(optimizer=tf.keras.optimizers.Adam(TRAINING.learning_rate))
  model.fit(trained['dataset'], epochs=1, verbose=0)
  qat = quantization.quantize_dense_layers(fp32.core, student.CUSTOM_OBJECTS)
  return two_tower.TwoTowerModel(quantization.int8_embeddings(qat, student.CUSTOM_OBJECTS),
                                 TRAINING, trained['stats'])


@pytest.fixture(scope='session')
def export_dirs(trained):
  """The teacher and the int8 student exported with the same contract (SavedModel directories
  by name); the student also as TFLite, at `tflite_path`."""
  dirs = {}
  student_int8 = _int8_student(trained)
  for name, model, int8 in (('teacher', trained['teacher'], False),
                            ('student_int8', student_int8, True)):
    dirs[name] = str(trained['directory'] / name)
    export.export_saved_model(model, trained['tf_transform_output'], trained['stats'].catalogue,
                              TOP_K, TRANSFORM.history_length, dirs[name], int8_index=int8)
  tflite_export.export_tflite(student_int8, trained['stats'].catalogue, TRANSFORM.history_length,
                              TOP_K, tflite_path(trained))
  return dirs


def tflite_path(trained) -> str:
  """Where `export_dirs` writes the int8 student as TFLite."""
  return str(trained['directory'] / 'student.tflite')
