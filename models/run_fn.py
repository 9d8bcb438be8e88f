"""The Trainer's `run_fn` (referenced by dotted path): teacher → distilled student → quantized
student, and their SavedModels.

1. The teacher (`models.teacher`) trains on the ground truth (retrieval + rating).
2. The student (`models.student`) is distilled from the frozen teacher (`models.distiller`).
3. Its Dense layers are fine-tuned with quantization-aware training, continuing the
   distillation loss; its embedding tables and index are stored as int8 (`models.quantization`).

Outputs: the int8 student is the model the pipeline evaluates and pushes
(`fn_args.serving_model_dir`); under `fn_args.model_run_dir`: the teacher's and the fp32
student's SavedModels (same signatures), the student as TFLite, TensorBoard logs per training
phase, and `training_summary.json` (parameters, bytes, train seconds, loss history and eval-split
metrics of every model, fidelity of the students to the teacher).
"""
import contextlib
import json
import os
import shutil
import tempfile
import time
from typing import Any, Dict

from absl import logging
import tensorflow as tf
import tensorflow_transform as tft

from models import distiller
from models import eval_split
from models import evaluation
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

TEACHER_DIR = 'teacher'
STUDENT_SCRATCH_DIR = 'student_scratch'
STUDENT_FP32_DIR = 'student_fp32'
TFLITE_FILE = 'student_int8.tflite'
TENSORBOARD_DIR = 'tensorboard'
SUMMARY_FILE = 'training_summary.json'
EVAL_USERS = 1000  # eval-split users scored for the summary


class EpochLogger(tf.keras.callbacks.Callback):
  """Logs one line per epoch so that a pipeline run shows training move."""

  def __init__(self, name: str):
    super().__init__()
    self.name = name

  def on_epoch_end(self, epoch, logs=None):
    metrics = ', '.join(f'{key}={value:.4f}' for key, value in sorted((logs or {}).items()))
    logging.info('%s epoch %d/%d: %s', self.name, epoch + 1, self.params['epochs'], metrics)


def fit(name: str, phase: str, model: tf.keras.Model, datasets, epochs: int, model_run_dir: str,
        summary: Dict[str, Any]) -> None:
  """Fits `model` (the training `phase` of model `name`) with progress logs and TensorBoard
  logs in `tensorboard/<phase>`; records time and loss history under `summary[name]`."""
  logging.info('%s: training %s for %d epochs', phase, name, epochs)
  started = time.time()
  history = model.fit(
      datasets['train'], validation_data=datasets['eval'], epochs=epochs, verbose=0,
      callbacks=[EpochLogger(phase), tf.keras.callbacks.TensorBoard(
          os.path.join(model_run_dir, TENSORBOARD_DIR, phase), profile_batch=0)])
  summary[name] = {'train_s': time.time() - started,
                   'history': {key: [float(v) for v in values]
                               for key, values in history.history.items()}}


@contextlib.contextmanager
def logged_phase(description: str):
  """Logs how long the work in the block took, so that a run shows its phases move."""
  started = time.time()
  yield
  logging.info('%s: %.1f s', description, time.time() - started)


def saved_model_bytes(path: str) -> int:
  """Bytes of a SavedModel's variables (what serving keeps in memory)."""
  variables = os.path.join(path, 'variables')
  return sum(tf.io.gfile.stat(os.path.join(variables, name)).length
             for name in tf.io.gfile.listdir(variables))


def run_fn(fn_args) -> None:
  """TFX Trainer entry point."""
  config = fn_args.custom_config
  training = hparams.from_dict(hparams.TrainingHParams, config['training'])
  transform = hparams.from_dict(hparams.TransformHParams, config['transform'])
  distillation = hparams.from_dict(hparams.DistillationHParams, config['distillation'])
  top_k = hparams.from_dict(hparams.ExportHParams, config['export']).top_k
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  vocab = towers.Vocabularies.from_transform_output(
      tf_transform_output, transform.item_oov_buckets, transform.user_oov_buckets)
  model_run_dir = fn_args.model_run_dir

  def dataset(files, shuffle=True):
    return inputs.transformed_dataset(files, fn_args.data_accessor, tf_transform_output,
                                      training, shuffle)

  datasets = {'train': dataset(fn_args.train_files), 'eval': dataset(fn_args.eval_files, False)}
  with logged_phase('Scanned the train split'):
    stats = inputs.scan_train_data(
        dataset(fn_args.train_files, shuffle=False),
        tf_transform_output.vocabulary_by_name(features.ITEM_VOCAB), vocab.items)
  summary = {}

  tf.keras.utils.set_random_seed(training.seed)
  teacher_model = two_tower.TwoTowerModel(
      teacher.build_core(vocab, hparams.from_dict(hparams.TowerHParams, config['teacher']),
                         transform, stats.mean_rating), training, stats)
  teacher_model.compile(optimizer=tf.keras.optimizers.Adam(training.learning_rate))
  fit('teacher', 'teacher', teacher_model, datasets, training.epochs, model_run_dir, summary)

  # The frozen teacher's outputs, computed once for both distillation phases.
  cache_dir = tempfile.mkdtemp(prefix='teacher_outputs_')
  in_memory = stats.item_counts.sum() <= distillation.teacher_outputs_in_memory_max_examples
  distillation_datasets = {
      'train': distiller.with_teacher_outputs(
          dataset(fn_args.train_files, shuffle=False), teacher_model, training.batch_size,
          training.shuffle_buffer_size, training.seed,
          cache_file='' if in_memory else os.path.join(cache_dir, 'train')),
      'eval': datasets['eval']}

  def distil(name: str, phase: str, core: tf.keras.Model, epochs: int, learning_rate: float):
    student_model = two_tower.TwoTowerModel(core, training, stats)
    model = distiller.Distiller(teacher_model, student_model, stats.catalogue,
                                distillation.num_sampled_negatives, seed=training.seed)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate), alpha=distillation.alpha,
                  temperature=distillation.temperature, kd_weight=distillation.kd_weight,
                  rating_distillation_weight=distillation.rating_distillation_weight)
    fit(name, phase, model, distillation_datasets, epochs, model_run_dir, summary)
    return student_model

  def student_core():
    return student.build_core(vocab, hparams.from_dict(hparams.TowerHParams, config['student']),
                              transform, stats.mean_rating)

  models = {}
  if config.get('train_student_scratch'):
    # The reference the distilled student is measured against: same student, no teacher.
    scratch = two_tower.TwoTowerModel(student_core(), training, stats)
    scratch.compile(optimizer=tf.keras.optimizers.Adam(distillation.learning_rate))
    fit('student_scratch', 'student_scratch', scratch, datasets, distillation.epochs,
        model_run_dir, summary)
    models['student_scratch'] = (scratch, os.path.join(model_run_dir, STUDENT_SCRATCH_DIR), False)

  student_fp32 = distil('student_fp32', 'distillation', student_core(), distillation.epochs,
                        distillation.learning_rate)
  student_qat = distil(
      'student_int8', 'quantization_aware_training',
      quantization.quantize_dense_layers(student_fp32.core, student.CUSTOM_OBJECTS),
      distillation.qat_epochs, distillation.qat_learning_rate)
  student_int8 = two_tower.TwoTowerModel(
      quantization.int8_embeddings(student_qat.core, student.CUSTOM_OBJECTS), training, stats)
  shutil.rmtree(cache_dir, ignore_errors=True)

  models.update({
      'teacher': (teacher_model, os.path.join(model_run_dir, TEACHER_DIR), False),
      'student_fp32': (student_fp32, os.path.join(model_run_dir, STUDENT_FP32_DIR), False),
      'student_int8': (student_int8, fn_args.serving_model_dir, True),
  })
  for name, (model, directory, int8) in models.items():
    with logged_phase(f'Exported the {name} SavedModel'):
      export.export_saved_model(model, tf_transform_output, stats.catalogue, top_k,
                                transform.history_length, directory, int8_index=int8)
  with logged_phase('Exported the student_int8 TFLite model'):
    tflite_export.export_tflite(student_int8, stats.catalogue, transform.history_length, top_k,
                                os.path.join(model_run_dir, TFLITE_FILE))

  with logged_phase('Collected the eval-split queries'):
    eval_queries = eval_split.collect(dataset(fn_args.train_files, shuffle=False),
                                      datasets['eval'], len(stats.catalogue[features.ITEM_ID]),
                                      EVAL_USERS)
  tops = {}
  for name, (model, directory, int8) in sorted(models.items(), key=lambda m: m[0] != 'teacher'):
    with logged_phase(f'Evaluated {name} on the eval split'):
      metrics, tops[name] = eval_split.ranking(model, eval_queries, stats.catalogue, int8)
      summary[name] = {
          **summary.get(name, {}),
          'params': int(model.core.count_params()),
          'bytes': saved_model_bytes(directory),
          'eval': {**metrics, 'rmse': eval_split.rmse(model, datasets['eval']),
                   'fidelity@10': evaluation.fidelity(tops[name], tops['teacher'])},
      }
    logging.info('%s: %s', name, json.dumps(summary[name]['eval']))
  with tf.io.gfile.GFile(os.path.join(model_run_dir, SUMMARY_FILE), 'w') as f:
    json.dump(summary, f, indent=2)
