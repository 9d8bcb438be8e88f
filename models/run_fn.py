"""The Trainer's `run_fn` (referenced by dotted path): teacher → distilled student → quantized
student, their SavedModels and the training summary (the steps: `models.training`).

Outputs: the int8 student is the model the pipeline evaluates and pushes
(`fn_args.serving_model_dir`); under `fn_args.model_run_dir` (laid out as `models.layout` says):
the teacher's and the fp32 student's SavedModels (same signatures; a warm run fits the fp32
student's content path and writes its SavedModel only with `ExportHParams.warm_fp32_student`),
the student as TFLite, TensorBoard logs per training phase, and `training_summary.json`
(parameters, bytes, train seconds, loss history and eval-split metrics of every model, fidelity
of the students to the teacher; and the feedback kind it was trained for).

Warm start: the teacher's and the fp32 student's weights, and every fitted content path's (kept
or not), with the vocabularies' raw ids, are saved beside the candidate in the `model` artifact
(`layout.WARM_START_DIR`); given a base model (the Trainer's `base_model`: the latest blessed run
on earlier data, wired for data given as spans), the run starts them from those weights, rows
mapped by raw id (`models.warm_start`), and trains them for `TrainingHParams.warm_start_epochs`
on a sample of the train split (`WarmStart.sample`: a `warm_start_sample` share, and every
example of a new user or item); a content path for that share of its epochs. The saved settings
hold the choices its searches start from (the item-to-item component's, each model's mix) and
carry the train examples of the lineage's last cold training on; a run whose train split has
grown past `TrainingHParams.warm_start_max_growth` times them retrains cold
(`warm_start.refresh_due`).

Implicit feedback (`TrainerHParams.feedback`, a log without ratings) trains retrieval only:
`retrieval_only` sets the rating weight and the rating distillation weight to 0, so no model
runs its rating head, and the exports' `score` returns the retrieval score (`models.export`).
"""
import dataclasses
import json
import os
from typing import Dict, Optional

from absl import logging
import tensorflow as tf
import tensorflow_transform as tft

from contract import features
from evaluation import metrics as metrics_lib
from evaluation import saved_models
from models import eval_split
from models import hparams
from models import layout
from models import training
from models import two_tower
from models import warm_start

EVAL_USERS = 1000  # eval-split users scored for the summary


def retrieval_only(params: hparams.TrainerHParams) -> hparams.TrainerHParams:
  """`params` for the kind of feedback they name: for implicit feedback, the rating terms
  weighted 0 (no rating head loss, no rating distillation); explicit ones as they are."""
  if params.feedback not in features.FEEDBACK_KINDS:
    raise ValueError(f'feedback {params.feedback!r}: expected one of {features.FEEDBACK_KINDS}')
  if params.feedback == features.EXPLICIT:
    return params
  return dataclasses.replace(
      params, training=dataclasses.replace(params.training, rating_weight=0.0),
      distillation=dataclasses.replace(params.distillation, rating_distillation_weight=0.0))


def base_warm_start(fn_args, training_hparams: hparams.TrainingHParams
                    ) -> Optional[warm_start.WarmStart]:
  """The warm start saved by the Trainer's base model, if it has one and warm starts are on."""
  base_model = getattr(fn_args, 'base_model', None)
  if not base_model or training_hparams.warm_start_epochs <= 0:
    return None
  if not 0.0 < training_hparams.warm_start_sample <= 1.0:
    raise ValueError(f'warm_start_sample {training_hparams.warm_start_sample}: the share of the '
                     'train split a warm run trains on, above 0 and at most 1')
  warm = warm_start.load(os.path.join(os.path.dirname(base_model), layout.WARM_START_DIR))
  if warm is None:
    logging.info('The base model %s has no warm start: training cold', base_model)
  return warm


def run_fn(fn_args) -> None:
  """TFX Trainer entry point."""
  params = retrieval_only(hparams.TrainerHParams.from_config(fn_args.custom_config))
  logging.debug('Feedback: %s', params.feedback)
  warm = base_warm_start(fn_args, params.training)
  # The Trainer's train splits are the train split, then the items split (`pipeline.pipeline`).
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  data = training.read_data(fn_args.train_files[:1], fn_args.eval_files, fn_args.train_files[1:],
                            fn_args.data_accessor, tf_transform_output, params.transform,
                            params.training, warm)
  log = training.TrainingLog(os.path.join(fn_args.model_run_dir, layout.TENSORBOARD_DIR))
  tables = training.fit_item_item(data, params.teacher, params.item_item)
  teacher = training.train_teacher(data, params.teacher, params.training, log, tables,
                                   params.item_item.eval_users)
  models = {layout.TEACHER: teacher}
  student_size = training.student_size(data, teacher, params.student, params.distillation)
  if params.train_student_scratch:
    models[layout.STUDENT_SCRATCH] = training.train_student(
        data, student_size, params.training, params.distillation, log,
        tables if student_size.item_item else None, params.item_item.eval_users)
  with training.teacher_outputs(data, teacher, params.training) as distillation_data:
    models[layout.STUDENT_FP32] = training.distil(
        distillation_data, teacher, student_size, params.training, params.distillation, log,
        params.item_item.eval_users)
    models[layout.STUDENT_INT8] = training.quantize(
        distillation_data, teacher, models[layout.STUDENT_FP32], params.training,
        params.distillation, log, params.item_item.eval_users)
  exported = training.exported(models, data, params.export)
  content_paths = {name: training.attach_content_path(name, model, data, params.content_path,
                                                      params.training.seed)
                   for name, model in exported.items()}
  if params.content_path.epochs and data.has_cold_items:
    logging.info('Content path (cold items): kept for %s',
                 ', '.join(name for name, model in exported.items()
                           if model.content_candidates is not None) or 'no model')
  directories = training.export_models(exported, data, params.export, fn_args.model_run_dir,
                                       fn_args.serving_model_dir)
  warm_start.save(warm_start_models(models, content_paths),
                  data.tf_transform_output,
                  os.path.join(os.path.dirname(fn_args.serving_model_dir), layout.WARM_START_DIR),
                  {training.STUDENT_SIZE: training.student_size_setting(student_size),
                   training.ITEM_ITEM_CHOICE: None if tables is None else tables.choice(),
                   training.HYBRID_SHARE: {name: training.hybrid_share(models[name])
                                           for name in (layout.TEACHER, layout.STUDENT_FP32)},
                   **warm_start.lineage_settings(data.warm, data.train_examples)})
  write_summary(models, directories, data, log, fn_args.model_run_dir, params.feedback)


def warm_start_models(models: Dict[str, two_tower.TwoTowerModel],
                      content_paths: Dict[str, Optional[tf.keras.Model]]
                      ) -> Dict[str, tf.keras.Model]:
  """What a later run starts from (`warm_start.save`): the teacher's and the fp32 student's
  cores, and every model's fitted content path, kept or not (`training.content_path_name`)."""
  return {**{name: models[name].core for name in (layout.TEACHER, layout.STUDENT_FP32)},
          **{training.content_path_name(name): path
             for name, path in content_paths.items() if path is not None}}


def write_summary(models: Dict[str, two_tower.TwoTowerModel], directories: Dict[str, str],
                  data: training.TrainingData, log: training.TrainingLog,
                  model_run_dir: str, feedback: str = features.EXPLICIT) -> None:
  """Writes `layout.SUMMARY_FILE`: by model, its training record (`log`), the `feedback` it
  was trained for, parameter count, SavedModel bytes (None for a model `directories` lacks: not
  exported) and eval-split metrics (`models.eval_split`
  on `EVAL_USERS` users, RMSE (None for a model that does not predict ratings), fidelity@10 to
  the teacher, which `models` must list first)."""
  with training.logged_phase('Collected the eval-split queries', logging.DEBUG):
    eval_queries = data.eval_queries(EVAL_USERS)
  summary, tops = dict(log.records), {}
  for name, model in models.items():
    with training.logged_phase(f'Evaluated {name} on the eval split', logging.DEBUG):
      metrics, tops[name] = eval_split.ranking(model, eval_queries, data.stats.catalogue,
                                               int8_index=name == layout.STUDENT_INT8)
      summary[name] = {
          **summary[name],
          'feedback': feedback,
          'params': int(model.core.count_params()),
          'bytes': (saved_models.variables_bytes(directories[name]) if name in directories
                    else None),
          'eval': {**metrics,
                   'rmse': eval_split.rmse(model, data.eval) if model.predicts_ratings else None,
                   'fidelity@10': metrics_lib.fidelity(tops[name], tops[layout.TEACHER])},
      }
    logging.info('%s: %s', name, json.dumps(summary[name]['eval']))
  with tf.io.gfile.GFile(os.path.join(model_run_dir, layout.SUMMARY_FILE), 'w') as f:
    json.dump(summary, f, indent=2)

