"""The Trainer's `run_fn` (referenced by dotted path): trains the teacher and the student, exports.

The student is what the pipeline pushes (`fn_args.serving_model_dir`); the teacher's SavedModel,
with the same signatures, is written under `fn_args.model_run_dir`/teacher.
"""
import json
import os
import time
from typing import Any, Dict

from absl import logging
import tensorflow as tf
import tensorflow_transform as tft

from models import export
from models import features
from models import hparams
from models import inputs
from models import towers
from models import two_tower

TEACHER_DIR = 'teacher'
SUMMARY_FILE = 'training_summary.json'  # in model_run_dir: per model, parameters and train time


class EpochLogger(tf.keras.callbacks.Callback):
  """Logs one line per epoch so that a pipeline run shows training move."""

  def __init__(self, name: str):
    super().__init__()
    self.name = name

  def on_epoch_end(self, epoch, logs=None):
    metrics = ', '.join(f'{key}={value:.4f}' for key, value in sorted((logs or {}).items()))
    logging.info('%s epoch %d/%d: %s', self.name, epoch + 1, self.params['epochs'], metrics)


def train(name: str, size: hparams.TowerHParams, config: Dict[str, Any], vocab, datasets,
          stats: inputs.TrainStats, summary: Dict[str, Any]):
  """Builds and fits one two-tower model on the transformed train split; adds its parameter
  count and training seconds to `summary`."""
  training = hparams.from_dict(hparams.TrainingHParams, config['training'])
  transform = hparams.from_dict(hparams.TransformHParams, config['transform'])
  tf.keras.utils.set_random_seed(training.seed)
  model = two_tower.TwoTowerModel(vocab, size, training, transform, stats)
  model.compile(optimizer=tf.keras.optimizers.Adam(training.learning_rate))
  logging.info('Training %s for %d epochs', name, training.epochs)
  started = time.time()
  history = model.fit(datasets['train'], validation_data=datasets['eval'],
                      epochs=training.epochs, verbose=0, callbacks=[EpochLogger(name)])
  summary[name] = {'params': int(model.count_params()), 'train_s': time.time() - started,
                   'history': {key: [float(v) for v in values]
                               for key, values in history.history.items()}}
  return model


def run_fn(fn_args) -> None:
  """TFX Trainer entry point."""
  config = fn_args.custom_config
  training = hparams.from_dict(hparams.TrainingHParams, config['training'])
  transform = hparams.from_dict(hparams.TransformHParams, config['transform'])
  top_k = hparams.from_dict(hparams.ExportHParams, config['export']).top_k
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  vocab = towers.Vocabularies.from_transform_output(
      tf_transform_output, transform.item_oov_buckets, transform.user_oov_buckets)

  def dataset(files, shuffle=True):
    return inputs.transformed_dataset(files, fn_args.data_accessor, tf_transform_output,
                                      training, shuffle)

  datasets = {'train': dataset(fn_args.train_files), 'eval': dataset(fn_args.eval_files, False)}
  stats = inputs.scan_train_data(
      dataset(fn_args.train_files, shuffle=False),
      tf_transform_output.vocabulary_by_name(features.ITEM_VOCAB), vocab.items)
  summary = {}
  teacher = train('teacher', hparams.from_dict(hparams.TowerHParams, config['teacher']), config,
                  vocab, datasets, stats, summary)
  student = train('student', hparams.from_dict(hparams.TowerHParams, config['student']), config,
                  vocab, datasets, stats, summary)
  export.export_saved_model(teacher, tf_transform_output, stats.catalogue, top_k,
                            transform.history_length,
                            os.path.join(fn_args.model_run_dir, TEACHER_DIR))
  export.export_saved_model(student, tf_transform_output, stats.catalogue, top_k,
                            transform.history_length, fn_args.serving_model_dir)
  with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, SUMMARY_FILE), 'w') as f:
    json.dump(summary, f, indent=2)
