"""The training API: the teacher, the students, quantization and the exports of one Trainer run.

`models.run_fn` calls it in this order (the scale benchmark and the tests' session fixtures call
the same functions):

    data = read_data(train_files, eval_files, item_files, data_accessor, tf_transform_output,
                     transform, training)
    tables = fit_item_item(data, teacher_size, item_item)
    teacher = train_teacher(data, teacher_size, training, log, tables)
    with teacher_outputs(data, teacher, training) as distillation_data:
      student_fp32 = distil(distillation_data, teacher, student_size, training, distillation, log)
      student_int8 = quantize(distillation_data, teacher, student_fp32, training, distillation,
                              log)
    export_models(models_by_name, data, export, model_run_dir, serving_model_dir)

1. The teacher (`models.teacher`) trains on the ground truth (retrieval + rating); the hybrid
   teacher on top of an item-to-item component fitted first (`models.item_item`).
2. The student (`models.student`) is distilled from the frozen teacher (`models.distiller`);
   `train_student` trains it without the teacher instead, as a reference.
3. Its Dense layers are fine-tuned with quantization-aware training, continuing the
   distillation loss, then folded (int8-grid kernels); its embedding tables and index are
   stored as int8 (`models.quantization`).

Every training phase logs a line per epoch, writes TensorBoard logs and records its seconds and
loss history in a `TrainingLog`, under the model's name (`models.layout`).
"""
import bisect
import contextlib
import dataclasses
import functools
import math
import os
import shutil
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from contract import features
from evaluation import metrics as metrics_lib
from models import content_path
from models import distiller
from models import eval_split
from models import export
from models import grid_search
from models import hparams
from models import inputs
from models import item_item
from models import layout
from models import quantization
from models import student
from models import teacher
from models import tflite_export
from models import towers
from models import two_tower
from models import warm_start


@dataclasses.dataclass(frozen=True)
class TrainingData:
  """The transformed splits the models train on, and what they are built and exported from.

  Attributes:
    train: the train split in batches, reshuffled every epoch.
    train_in_order: the train split in batches, in file order (one pass each: the train
      statistics, the teacher's outputs, the seen items of the eval-split queries).
    eval: the eval split in batches (validation after every epoch), or None.
    tf_transform_output: the Transform output (vocabularies, the exports' raw feature spec).
    transform: how Transform made the features.
    vocab: the vocabulary sizes of the embedding tables.
    stats: what one pass over the train split told (catalogue, item counts, mean rating).
    cold_items: the items known without a train interaction (`inputs.scan_cold_items`), or None.
    train_sample: the examples of the train split that `train` serves (a warm run's sample:
      `warm_start.WarmStart.sample`), or None for all; `train_in_order` is always all.
    warm: the earlier run whose models these start from (`models.warm_start`), or None: a cold
      run (without a base model, or with a refresh due: `warm_start.refresh_due`).
  """
  train: tf.data.Dataset
  train_in_order: tf.data.Dataset
  eval: Optional[tf.data.Dataset]
  tf_transform_output: Any
  transform: hparams.TransformHParams
  vocab: towers.Vocabularies
  stats: inputs.TrainStats
  cold_items: Optional[Dict[str, np.ndarray]] = None
  train_sample: Optional[inputs.Sample] = None
  warm: Optional[warm_start.WarmStart] = None
  # The eval-split queries collected so far, by user count: copies (`dataclasses.replace`)
  # share them, as their batches are of the same examples (`teacher_outputs`); a copy with
  # other splits would be given `_eval_queries={}`.
  _eval_queries: Dict[int, eval_split.EvalQueries] = dataclasses.field(
      default_factory=dict, repr=False, compare=False)
  _calibrations: Dict[int, content_path.Calibration] = dataclasses.field(
      default_factory=dict, init=False, repr=False, compare=False)

  def eval_queries(self, max_users: int) -> eval_split.EvalQueries:
    """The first `max_users` eval users' queries (`eval_split.collect`), collected once (or
    the first of more users' collected before): every hybrid model's mix is chosen on them, and
    content paths calibrated. Requires an eval split."""
    if max_users not in self._eval_queries:
      more = [count for count in self._eval_queries if count > max_users]
      self._eval_queries[max_users] = (
          self._eval_queries[min(more)].first(max_users) if more else eval_split.collect(
              self.train_in_order, self.eval, len(self.stats.catalogue[features.ITEM_ID]),
              max_users))
    return self._eval_queries[max_users]

  def content_path_calibration(self, max_users: int) -> content_path.Calibration:
    """The first `max_users` eval users' queries and targets, warm and cold, on which content
    paths are calibrated, collected once. Requires an eval split and cold items."""
    if max_users not in self._calibrations:
      eval_queries = self.eval_queries(max_users)
      self._calibrations[max_users] = content_path.Calibration(
          eval_queries, self.cold_items, eval_split.items_targets(
              self.eval, eval_queries.eval_data.users, self.cold_items[features.ITEM_ID]))
    return self._calibrations[max_users]

  @property
  def train_examples(self) -> int:
    """The train split's examples (all of them, sampled or not)."""
    return int(self.stats.item_counts.sum())

  @property
  def has_cold_items(self) -> bool:
    """Whether the catalogue has items without train interactions."""
    return self.cold_items is not None and len(self.cold_items[features.ITEM_ID]) > 0

  @functools.cached_property
  def catalogue(self) -> Dict[str, np.ndarray]:
    """Every item the exported models rank: the train vocabulary's (`stats.catalogue`, which
    training samples from), then the cold items, which their content embeds."""
    if self.cold_items is None:
      return self.stats.catalogue
    return inputs.with_items(self.stats.catalogue, self.cold_items)


@dataclasses.dataclass
class TrainingLog:
  """Where the training phases report.

  Attributes:
    tensorboard_dir: TensorBoard logs go to `<tensorboard_dir>/<phase>`.
    records: by model name, the seconds, the loss history and the epoch whose weights it kept
      ('train_s', 'history', 'best_epoch') of its
      training, in training order.
  """
  tensorboard_dir: str
  records: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)


class EpochLogger(tf.keras.callbacks.Callback):
  """Logs one line per epoch so that a pipeline run shows training move."""

  def __init__(self, name: str):
    super().__init__()
    self.name = name

  def on_epoch_end(self, epoch, logs=None):
    metrics = ', '.join(f'{key}={value:.4f}' for key, value in sorted((logs or {}).items()))
    logging.info('%s epoch %d/%d: %s', self.name, epoch + 1, self.params['epochs'], metrics)


@contextlib.contextmanager
def logged_phase(description: str, level: int = logging.INFO) -> Iterator[None]:
  """Logs how long the work in the block took, so that a run shows its phases move (at absl's
  `level`: details at DEBUG show only in verbose runs)."""
  started = time.time()
  yield
  logging.log(level, '%s: %.1f s', description, time.time() - started)


def _fits_in_memory(data: TrainingData, training: hparams.TrainingHParams) -> bool:
  return data.train_examples <= training.in_memory_max_examples


def read_data(train_files: List[str], eval_files: List[str], item_files: List[str],
              data_accessor, tf_transform_output, transform: hparams.TransformHParams,
              training: hparams.TrainingHParams,
              warm: Optional[warm_start.WarmStart] = None) -> TrainingData:
  """The transformed splits in `training.batch_size` batches, scanned (see `scan_data`), the
  train split held in memory up to `training.in_memory_max_examples` examples
  (`inputs.in_memory`); no eval split when `eval_files` is empty, and a catalogue of the train
  items only when `item_files` (the `features.ITEMS_SPLIT`) is. With `warm` (an earlier run's
  models to start from), unless the train split has grown too far since their last cold
  training (`warm_start.refresh_due`), the models train on its sample of the train split
  (`TrainingData.warm`, `TrainingData.train_sample`), otherwise on all of it."""
  train = inputs.transformed_dataset(train_files, data_accessor, tf_transform_output, training)
  eval_split = (inputs.transformed_dataset(eval_files, data_accessor, tf_transform_output,
                                           training, shuffle=False) if eval_files else None)
  train_in_order = inputs.transformed_dataset(train_files, data_accessor, tf_transform_output,
                                              training, shuffle=False)
  data = scan_data(train, train_in_order, eval_split, tf_transform_output, transform)
  if warm is not None and warm_start.refresh_due(warm, data.train_examples,
                                                 training.warm_start_max_growth):
    warm = None
  train_sample = None if warm is None else warm.sample(
      training.warm_start_sample, training.seed, tf_transform_output)
  sampled = train_sample.apply if train_sample else lambda batches: batches
  if _fits_in_memory(data, training):
    with logged_phase('Held the train split in memory', logging.DEBUG):
      train = inputs.in_memory(sampled(inputs.model_inputs(train_in_order)),
                               training.batch_size, training.seed)
  elif train_sample:
    train = sampled(train).unbatch().batch(training.batch_size)
  data = dataclasses.replace(data, train=train, train_sample=train_sample, warm=warm)
  if not item_files:
    return data
  with logged_phase('Scanned the items split', logging.DEBUG):
    cold_items = inputs.scan_cold_items(
        inputs.transformed_dataset(item_files, data_accessor, tf_transform_output, training,
                                   shuffle=False),
        len(data.stats.catalogue[features.ITEM_ID]))
  logging.info('Catalogue: %d train items and %d items without train interactions',
               len(data.stats.catalogue[features.ITEM_ID]), len(cold_items[features.ITEM_ID]))
  return dataclasses.replace(data, cold_items=cold_items)


def scan_data(train: tf.data.Dataset, train_in_order: tf.data.Dataset,
              eval_split: Optional[tf.data.Dataset], tf_transform_output,
              transform: hparams.TransformHParams) -> TrainingData:
  """The splits with their vocabulary sizes and the statistics of one pass over the train
  split (`inputs.scan_train_data`)."""
  vocab = towers.Vocabularies.from_transform_output(
      tf_transform_output, transform.item_oov_buckets, transform.user_oov_buckets)
  with logged_phase('Scanned the train split', logging.DEBUG):
    stats = inputs.scan_train_data(
        train_in_order, tf_transform_output.vocabulary_by_name(features.ITEM_VOCAB), vocab.items)
  return TrainingData(train, train_in_order, eval_split, tf_transform_output, transform, vocab,
                      stats)


def _fit(model: tf.keras.Model, data: TrainingData, epochs: int, name: str, phase: str,
         log: TrainingLog, patience: int = 0) -> None:
  """Fits `model` (the training `phase` of model `name`) on `data.train`, validating on
  `data.eval`, with progress logs and TensorBoard logs in `<log.tensorboard_dir>/<phase>`;
  with a `patience` > 0 and an eval split, stops early and keeps the best epoch's weights
  (`TrainingHParams.early_stopping_patience`). Records its seconds, loss history and best epoch
  as `log.records[name]`. A warm run's phases (`data.train_sample`) are not validated: their
  epochs are a sample's, which a pass over the eval split would cost as much as (its metrics
  are in the training summary)."""
  logging.info('%s: training %s for %d epochs', phase, name, epochs)
  started = time.time()
  callbacks = [EpochLogger(phase), tf.keras.callbacks.TensorBoard(
      os.path.join(log.tensorboard_dir, phase), profile_batch=0)]
  validation = None if data.train_sample else data.eval
  if patience and validation is not None:
    callbacks.append(tf.keras.callbacks.EarlyStopping(
        monitor='val_loss', patience=patience, restore_best_weights=True))
  history = model.fit(data.train, validation_data=validation, epochs=epochs, verbose=0,
                      callbacks=callbacks)
  losses = history.history.get('val_loss')
  best_epoch = int(np.argmin(losses)) + 1 if patience and losses else len(history.epoch)
  if best_epoch != len(history.epoch):
    logging.info('%s: stopped after epoch %d, weights of epoch %d (lowest eval loss)', phase,
                 len(history.epoch), best_epoch)
  log.records[name] = {'train_s': time.time() - started, 'best_epoch': best_epoch,
                       'history': {key: [float(v) for v in values]
                                   for key, values in history.history.items()}}


def _train_on_labels(core: tf.keras.Model, data: TrainingData,
                     training: hparams.TrainingHParams, learning_rate: float, epochs: int,
                     name: str, log: TrainingLog,
                     mix_eval_users: int = 1000) -> two_tower.TwoTowerModel:
  """A two-tower model of `core`, trained on the ground truth alone (its phase is its name);
  a hybrid core's towers train alone, then its mix is chosen on `mix_eval_users` eval users
  (`choose_hybrid_mix`)."""
  model = two_tower.TwoTowerModel(core, training, data.stats)
  model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate))
  _fit(model, data, epochs, name, name, log, training.early_stopping_patience)
  if is_hybrid(model):
    choose_hybrid_mix(model, data, mix_eval_users, _earlier_share(data, name))
  return model


def fit_item_item(data: TrainingData, size: hparams.TowerHParams,
                  params: hparams.ItemItemHParams) -> Optional[item_item.ItemItemTables]:
  """The hybrid teacher's item-to-item tables (`models.item_item`), fitted on the train split
  with their factorisation, L2 weight, rank, window and popularity exponent chosen on the eval
  split, or in a warm run kept from the earlier run (the warm start setting `ITEM_ITEM_CHOICE`);
  None when `size.item_item` is off."""
  if not size.item_item:
    return None
  with logged_phase('Fitted the item-to-item component'):
    eval_queries = None if data.eval is None else data.eval_queries(params.eval_users)
    return item_item.fit(*data.stats.pairs, data.vocab.items, data.transform.history_length,
                         eval_queries, params,
                         None if data.warm is None else data.warm.settings.get(ITEM_ITEM_CHOICE))


# The warm start setting (`warm_start.save`) that holds the teacher's item-to-item choice
# (`item_item.ItemItemTables.choice`), where a warm run's choice starts from.
ITEM_ITEM_CHOICE = 'item_item'


# The warm start setting (`warm_start.save`) that holds the student's size
# (`student_size_setting`).
STUDENT_SIZE = 'student_size'


def student_size_setting(size: hparams.TowerHParams) -> Dict[str, Any]:
  """What a warm run keeps of `student_size`'s choice, as the warm start setting
  `STUDENT_SIZE`: the embedding dimension, which its weights are shaped by."""
  return {'embedding_dim': size.embedding_dim}


def train_teacher(data: TrainingData, size: hparams.TowerHParams,
                  training: hparams.TrainingHParams, log: TrainingLog,
                  item_item_tables: Optional[item_item.ItemItemTables] = None,
                  mix_eval_users: int = 1000) -> two_tower.TwoTowerModel:
  """The teacher, trained on the ground truth for `training.epochs` from `training.seed` (the
  seed of every training phase after it too); hybrid with `item_item_tables`
  (`fit_item_item`): its towers train alone, then the mix of both scores is chosen on
  `mix_eval_users` eval users (`choose_hybrid_mix`). With `data.warm`, it starts from the
  weights of that run's teacher and trains for `training.warm_start_epochs`."""
  tf.keras.utils.set_random_seed(training.seed)
  core = teacher.build_core(data.vocab, size, data.transform, data.stats.mean_rating,
                            item_item_tables)
  counts = _warm_start(layout.TEACHER, core, data)
  learning_rate, epochs = _schedule(training, training.learning_rate, training.epochs, counts)
  model = _train_on_labels(core, data, training, learning_rate, epochs, layout.TEACHER, log,
                           mix_eval_users)
  _record_warm_start(log, layout.TEACHER, data, counts)
  return model


def _warm_start(name: str, core: tf.keras.Model, data: TrainingData) -> Optional[Dict[str, int]]:
  """Sets `core`'s weights from `data.warm`'s model `name` when it has one; the counts of
  `WarmStart.apply`, or None (a cold start)."""
  if data.warm is None or not data.warm.has(name):
    return None
  return data.warm.apply(name, core, data.tf_transform_output)


def _schedule(training: hparams.TrainingHParams, learning_rate: float, epochs: int,
              warm_counts: Optional[Dict[str, int]]) -> Tuple[float, int]:
  """The learning rate and epochs of a phase: as given, or for a warm start (`warm_counts`),
  `training`'s warm-start ones."""
  if warm_counts is None:
    return learning_rate, epochs
  return learning_rate * training.warm_start_learning_rate_scale, training.warm_start_epochs


def _record_warm_start(log: TrainingLog, name: str, data: TrainingData,
                       counts: Optional[Dict[str, int]]) -> None:
  log.records[name]['warm_start'] = (None if counts is None else {
      'from': data.warm.directory, **counts, 'train_sample': data.train_sample.share})


# The item-to-item component's share of the score: at most 0.9, so that the towers always rank
# the items the component cannot score (items without train interactions, beyond `max_items`).
HYBRID_SHARES = np.linspace(0.0, 0.9, 10)


def is_hybrid(model: two_tower.TwoTowerModel) -> bool:
  """Whether `model` scores with an item-to-item component (`towers.with_item_item`)."""
  return any(layer.name == 'hybrid_mix' for layer in model.core.layers)


def choose_hybrid_mix(model: two_tower.TwoTowerModel, data: TrainingData,
                      eval_users: int, start: Optional[float] = None) -> None:
  """Sets a hybrid model's mix (`towers.HybridMix`) to the one of (1 − s, s · r) for s in
  `HYBRID_SHARES` that ranks the first `eval_users` eval users best (NDCG@10), r making both
  parts' score spreads equal; without an eval split, s = 0.5. With `start` (a warm run's: the
  share chosen before), s is searched from the share nearest it, step by step
  (`grid_search.best_point`), rather than among every share."""
  mix = model.core.get_layer('hybrid_mix').mix
  rank = model.core.get_layer('item_item_candidate').output_dim
  mix.assign([1.0, 1.0])
  ratio, share = 1.0, 0.5
  if data.eval is not None:
    catalogue = {name: tf.constant(values) for name, values in data.stats.catalogue.items()
                 if name in model.candidate_tower.input_names}
    candidates = model.embed_candidates(catalogue).numpy()
    eval_queries = data.eval_queries(eval_users)
    queries = model.embed_queries({name: tf.constant(values)
                                   for name, values in eval_queries.queries.items()}).numpy()
    eval_data = eval_queries.eval_data
    towers_scores = queries[:, :-rank] @ candidates[:, :-rank].T
    item_item_scores = queries[:, -rank:] @ candidates[:, -rank:].T
    ratio = float(towers_scores.std(axis=1).mean() / max(item_item_scores.std(axis=1).mean(),
                                                         1e-12))

    def ndcg(point: Tuple[float]) -> float:
      value = metrics_lib.ranking_metrics(
          (1 - point[0]) * towers_scores + point[0] * ratio * item_item_scores, eval_data,
          ks=(metrics_lib.CUTOFF,))['ndcg@10']  # top 10 only
      logging.debug('Hybrid %s, item-to-item share %.1f: eval NDCG@10 %.4f', model.core.name,
                    point[0], value)
      return value

    shares = HYBRID_SHARES.tolist()
    share, = grid_search.best_point(
        [shares], ndcg, None if start is None else (min(shares, key=lambda s: abs(s - start)),))
  mix.assign([1.0 - share, share * ratio])
  logging.info('Hybrid %s: item-to-item share %.1f of the score (mix %s)', model.core.name,
               share, mix.numpy())


def hybrid_share(model: two_tower.TwoTowerModel) -> Optional[float]:
  """The item-to-item share s of a hybrid model's chosen mix (`choose_hybrid_mix`), None for a
  model without the component."""
  return 1.0 - float(model.core.get_layer('hybrid_mix').mix[0]) if is_hybrid(model) else None


# The warm start setting (`warm_start.save`) that holds each model's item-to-item share
# (`hybrid_share`, by model name), where a warm run's choice of the mix starts from.
HYBRID_SHARE = 'hybrid_share'


def _earlier_share(data: TrainingData, name: str) -> Optional[float]:
  """The item-to-item share that model `name` of `data.warm`'s run chose, or None."""
  return None if data.warm is None else data.warm.settings.get(HYBRID_SHARE, {}).get(name)


def load_teacher(data: TrainingData, size: hparams.TowerHParams,
                 training: hparams.TrainingHParams, weights: str,
                 item_item_tables: Optional[item_item.ItemItemTables] = None
                 ) -> two_tower.TwoTowerModel:
  """A teacher of `size` with the weights a trained one saved with `core.save_weights`."""
  core = teacher.build_core(data.vocab, size, data.transform, data.stats.mean_rating,
                            item_item_tables)
  core.load_weights(weights).expect_partial()
  return two_tower.TwoTowerModel(core, training, data.stats)


MIN_INHERITED_RANK = 16  # the steps of a student's inherited rank; below it, no component


def student_size(data: TrainingData, teacher_model: two_tower.TwoTowerModel,
                 size: hparams.TowerHParams,
                 distillation: hparams.DistillationHParams) -> hparams.TowerHParams:
  """`size`, with what it leaves 0 chosen so that the student's int8 SavedModel takes at most
  `distillation.size_budget` of the teacher's (float32) bytes (`quantization.exported_bytes`
  and `saved_model_overhead`),
  so that it follows the catalogue and the teacher and the size gate refuses only a student
  that is really too big:
  - a student that inherits the teacher's item-to-item component (`size.item_item`) with
    `item_item_rank` 0 keeps the largest rank, a multiple of `MIN_INHERITED_RANK` up to the
    teacher's, that fits at its smallest embedding dimension (on sparse logs the component
    carries most of the teacher's quality); when none fits, it inherits nothing;
  - `embedding_dim` 0: the widest of `distillation.student_dims` that fits (the smallest when
    none does).
  With `data.warm`, the embedding dimension that run chose (`student_size_setting`), whose
  weights it starts from, and the rank chosen anew for this run's teacher."""
  chosen = None if data.warm is None else data.warm.settings.get(STUDENT_SIZE)
  if chosen is not None:
    size = dataclasses.replace(size, embedding_dim=chosen['embedding_dim'])
  catalogue = len(data.catalogue[features.ITEM_ID])
  # The student's SavedModel within its share of the teacher's, whatever its overhead.
  teacher_bytes = quantization.exported_bytes(teacher_model.core, catalogue, int8=False)
  budget = (distillation.size_budget * teacher_bytes
            - quantization.saved_model_overhead(catalogue))
  inherited = student.inherit(size, teacher_model.core)
  dims = sorted(distillation.student_dims)

  def fits(sized: hparams.TowerHParams) -> bool:
    core = student.build_core(data.vocab, sized, data.transform, data.stats.mean_rating,
                              inherited if sized.item_item else None)
    return quantization.exported_bytes(core, catalogue, int8=True) <= budget

  if inherited is not None and not size.item_item_rank:
    smallest = size.embedding_dim or dims[0]
    ranks = range(MIN_INHERITED_RANK, inherited.rank + 1, MIN_INHERITED_RANK)
    # Bytes grow with the rank: the ranks that fit are the first ones, found by bisection.
    fitting = bisect.bisect_left(ranks, True, key=lambda rank: not fits(
        dataclasses.replace(size, embedding_dim=smallest, item_item_rank=rank)))
    size = (dataclasses.replace(size, item_item_rank=ranks[fitting - 1]) if fitting
            else dataclasses.replace(size, item_item=False))
  if not size.embedding_dim:
    size = next((dataclasses.replace(size, embedding_dim=dim) for dim in reversed(dims)
                 if fits(dataclasses.replace(size, embedding_dim=dim))),
                dataclasses.replace(size, embedding_dim=dims[0]))
  logging.info("Student size: embedding dimension %d, %s (int8 within %.0f%% of the teacher's "
               '%d bytes, or the smallest of %s)', size.embedding_dim,
               f'the item-to-item component at rank {size.item_item_rank}' if size.item_item
               else 'no item-to-item component', 100 * distillation.size_budget, teacher_bytes,
               dims)
  return size


def train_student(data: TrainingData, size: hparams.TowerHParams,
                  training: hparams.TrainingHParams, distillation: hparams.DistillationHParams,
                  log: TrainingLog,
                  item_item_tables: Optional[item_item.ItemItemTables] = None,
                  mix_eval_users: int = 1000) -> two_tower.TwoTowerModel:
  """The student trained on the ground truth alone, for as long as distillation and at its
  learning rate: the reference the distilled student is measured against. A student with
  `size.item_item` gets the item-to-item component the teacher would (`item_item_tables`,
  `fit_item_item`, which needs no teacher) as the distilled student inherits it
  (`inherited_tables`) and as the teacher does: its towers train alone, then the mix is chosen
  on the eval split (`choose_hybrid_mix`)."""
  core = student.build_core(data.vocab, size, data.transform, data.stats.mean_rating,
                            inherited_tables(data, size, item_item_tables, distillation,
                                             mix_eval_users))
  return _train_on_labels(core, data, training, distillation.learning_rate, distillation.epochs,
                          layout.STUDENT_SCRATCH, log, mix_eval_users)


def inherited_tables(data: TrainingData, size: hparams.TowerHParams,
                     tables: Optional[item_item.ItemItemTables],
                     distillation: hparams.DistillationHParams,
                     eval_users: int) -> Optional[item_item.ItemItemTables]:
  """The item-to-item `tables` (the teacher's) as a student of `size` holds them: at its rank,
  their popularity exponent shifted by the one of `distillation.inherited_popularity_shifts`
  that ranks the first `eval_users` eval users best (`item_item.best_popularity_shift`; as they
  are without an eval split). None without `tables`."""
  if tables is None:
    return None
  tables = tables.truncated(size.item_item_rank or tables.rank)
  if data.eval is None or set(distillation.inherited_popularity_shifts) <= {0.0}:
    return tables
  return item_item.best_popularity_shift(tables, data.stats.item_counts,
                                         data.eval_queries(eval_users),
                                         distillation.inherited_popularity_shifts)


@contextlib.contextmanager
def teacher_outputs(data: TrainingData, teacher_model: two_tower.TwoTowerModel,
                    training: hparams.TrainingHParams) -> Iterator[TrainingData]:
  """`data` whose train and eval batches carry the frozen teacher's outputs, which the
  `Distiller` reads (`distiller.with_teacher_outputs`): computed in one pass for both
  distillation phases, the train examples reshuffled every epoch; held in memory up to
  `training.in_memory_max_examples` train examples (`inputs.in_memory`), beyond in temporary
  files that are removed on leaving the block."""
  cache_dir = tempfile.mkdtemp(prefix='teacher_outputs_')
  # The examples the models train on (`TrainingData.train_sample`), in file order.
  in_order = inputs.model_inputs(data.train_in_order)
  if data.train_sample:
    in_order = data.train_sample.apply(in_order)
  try:
    if _fits_in_memory(data, training):
      # One labelling pass, held by `in_memory` alone (no `with_teacher_outputs` cache besides).
      train = inputs.in_memory(
          in_order.map(
              functools.partial(distiller.labelled, teacher_model)),
          training.batch_size, training.seed)
      cache = lambda split: ''
    else:
      cache = lambda split: os.path.join(cache_dir, split)
      train = (distiller.with_teacher_outputs(in_order, teacher_model, cache('train'))
               .unbatch().shuffle(training.shuffle_buffer_size, seed=training.seed,
                                  reshuffle_each_iteration=True).batch(training.batch_size))
    # The same examples, with the teacher's outputs: the eval-split queries collected so far
    # (every hybrid model's mix is chosen on them) are shared.
    yield dataclasses.replace(data, train=train, eval=None if data.eval is None else
                              distiller.with_teacher_outputs(data.eval, teacher_model,
                                                             cache('eval')))
  finally:
    shutil.rmtree(cache_dir, ignore_errors=True)


def _distiller(teacher_model: two_tower.TwoTowerModel, student_model: two_tower.TwoTowerModel,
               data: TrainingData, training: hparams.TrainingHParams,
               distillation: hparams.DistillationHParams,
               learning_rate: float) -> distiller.Distiller:
  """A compiled `Distiller` of `student_model` from `teacher_model`."""
  model = distiller.Distiller(teacher_model, student_model, data.stats.catalogue,
                              distillation.num_sampled_negatives, seed=training.seed,
                              full_catalogue=(len(data.stats.catalogue[features.ITEM_ID])
                                              <= distillation.kd_catalogue_max_items),
                              teacher_towers_only=distillation.teacher_towers_only)
  model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                student_loss_fn=distiller.StudentLoss(),
                distillation_loss_fn=distiller.DistillationLoss(
                    distillation.rating_distillation_weight),
                alpha=distillation.alpha, temperature=distillation.temperature)
  return model


def distil(data: TrainingData, teacher_model: two_tower.TwoTowerModel,
           size: hparams.TowerHParams, training: hparams.TrainingHParams,
           distillation: hparams.DistillationHParams, log: TrainingLog,
           mix_eval_users: int = 1000) -> two_tower.TwoTowerModel:
  """The student distilled from `teacher_model` for `distillation.epochs` (the fp32 student);
  `data` as `teacher_outputs` gives it. A student with `size.item_item` inherits the teacher's
  item-to-item component (`student.inherit`): its towers are distilled alone, then the mix is
  chosen on `mix_eval_users` eval users (`choose_hybrid_mix`), the component's popularity
  exponent before on the same users (`inherited_tables`). With `data.warm`, it starts from
  the weights of that run's fp32 student and trains for `training.warm_start_epochs`."""
  student_model = two_tower.TwoTowerModel(
      student.build_core(data.vocab, size, data.transform, data.stats.mean_rating,
                         inherited_tables(data, size, student.inherit(size, teacher_model.core),
                                          distillation, mix_eval_users)),
      training, data.stats)
  counts = _warm_start(layout.STUDENT_FP32, student_model.core, data)
  learning_rate, epochs = _schedule(training, distillation.learning_rate, distillation.epochs,
                                    counts)
  _fit(_distiller(teacher_model, student_model, data, training, distillation, learning_rate),
       data, epochs, layout.STUDENT_FP32, 'distillation', log, training.early_stopping_patience)
  _record_warm_start(log, layout.STUDENT_FP32, data, counts)
  if is_hybrid(student_model):
    choose_hybrid_mix(student_model, data, mix_eval_users,
                      _earlier_share(data, layout.STUDENT_FP32))
  return student_model


def quantize(data: TrainingData, teacher_model: two_tower.TwoTowerModel,
             student_fp32: two_tower.TwoTowerModel, training: hparams.TrainingHParams,
             distillation: hparams.DistillationHParams, log: TrainingLog,
             mix_eval_users: int = 1000) -> two_tower.TwoTowerModel:
  """The int8 student: `student_fp32`'s Dense layers fine-tuned with quantization-aware
  training for `distillation.qat_epochs` (a warm run's, `data.train_sample`:
  `warm_start_qat_epochs`), continuing the distillation from `teacher_model`, then its embedding
  tables stored as int8; with 0 epochs, its kernels put on int8's grid without training
  (`quantization.set_kernel_ranges`). `data` as `teacher_outputs` gives it. A hybrid student's
  towers are fine-tuned alone, as they were distilled, and the mix of the int8 model chosen
  again on `mix_eval_users` eval users."""
  qat_model = two_tower.TwoTowerModel(
      quantization.quantize_dense_layers(student_fp32.core, student.CUSTOM_OBJECTS), training,
      data.stats)
  if is_hybrid(qat_model):
    qat_model.core.get_layer('hybrid_mix').mix.assign([1.0, 0.0])
  epochs = distillation.warm_start_qat_epochs if data.train_sample else distillation.qat_epochs
  if epochs:
    _fit(_distiller(teacher_model, qat_model, data, training, distillation,
                    distillation.qat_learning_rate),
         data, epochs, layout.STUDENT_INT8, 'quantization_aware_training', log)
  else:
    started = time.time()
    quantization.set_kernel_ranges(qat_model, next(iter(data.train)))
    log.records[layout.STUDENT_INT8] = {'train_s': time.time() - started, 'best_epoch': 0,
                                        'history': {}, 'post_training_quantization': True}
  int8_model = two_tower.TwoTowerModel(
      quantization.int8_embeddings(qat_model.core, student.CUSTOM_OBJECTS), training, data.stats)
  if is_hybrid(int8_model):
    # A warm run searches from the fp32 student's share, which the int8 student's is near.
    choose_hybrid_mix(int8_model, data, mix_eval_users,
                      None if data.warm is None else hybrid_share(student_fp32))
  return int8_model


def attach_content_path(name: str, model: two_tower.TwoTowerModel, data: TrainingData,
                        settings: hparams.ContentPathHParams,
                        seed: int) -> Optional[tf.keras.Model]:
  """Fits the content path of a trained `model` (named `name`) on its warm items and attaches it
  where it is kept (`models.content_path`), so that its exports embed the cold items of the
  catalogue with it; nothing when the catalogue has no cold item or `settings.epochs` is 0.
  Returns the fitted path, kept or not (where a later warm run's starts), or None. With
  `data.warm` holding that run's path of the model (`content_path_name`), the path starts from
  it and trains for the share of `settings.epochs` that the warm run's sample is of the train
  split."""

  def start(path: tf.keras.Model) -> bool:
    return _warm_start(content_path_name(name), path, data) is not None

  if not settings.epochs or not data.has_cold_items:
    return None
  share = data.train_sample.share if data.train_sample else 1.0
  with logged_phase(f'Fitted the {name} content path', logging.DEBUG):
    fitted = content_path.fit(
        model, data.train, data.stats.catalogue, data.vocab, data.transform, settings, seed,
        None if data.eval is None else data.content_path_calibration(
            settings.calibration_users),
        start, max(1, math.ceil(settings.epochs * share)))
  model.content_candidates = fitted.candidates
  return fitted.path


def content_path_name(name: str) -> str:
  """The name under which a warm start saves the content path of model `name`."""
  return f'{name}_content_path'


def fresh_items(data: TrainingData, max_interactions: int) -> np.ndarray:
  """bool per `data.catalogue` row: the items with at most `max_interactions` train
  interactions (the cold items, which follow the train vocabulary's, have none)."""
  counts = data.stats.item_counts[data.stats.catalogue[features.ITEM_INDEX]]
  cold = len(data.catalogue[features.ITEM_ID]) - len(counts)
  return np.concatenate([counts <= max_interactions, np.ones(cold, bool)])


def exported(models: Dict[str, two_tower.TwoTowerModel], data: TrainingData,
             export_hparams: hparams.ExportHParams) -> Dict[str, two_tower.TwoTowerModel]:
  """The `models` a run exports (`export_models`), with their content paths
  (`attach_content_path`): all of them, but a warm run's (`data.warm`) fp32 student unless
  `export_hparams.warm_fp32_student`, as the next warm start needs only its weights (the
  evaluators and the report leave it out; cold runs show what quantization costs)."""
  if data.warm is None or export_hparams.warm_fp32_student:
    return dict(models)
  logging.info('Warm run: no %s SavedModel (its weights are kept for the next warm start)',
               layout.STUDENT_FP32)
  return {name: model for name, model in models.items() if name != layout.STUDENT_FP32}


def export_model(model: two_tower.TwoTowerModel, data: TrainingData,
                 export_hparams: hparams.ExportHParams, directory: str,
                 int8_index: bool = False) -> None:
  """Writes `model`'s SavedModel with the serving signatures (`models.export`) over
  `data.catalogue` to `directory` (an int8 index with `int8_index`)."""
  export.export_saved_model(model, data.tf_transform_output, data.catalogue,
                            export_hparams.top_k, data.transform.history_length, directory,
                            int8_index=int8_index,
                            fresh=fresh_items(data, export_hparams.fresh_max_interactions),
                            fresh_slots=export_hparams.fresh_slots)


def export_models(models: Dict[str, two_tower.TwoTowerModel], data: TrainingData,
                  export_hparams: hparams.ExportHParams, model_run_dir: str,
                  serving_model_dir: str) -> Dict[str, str]:
  """Writes the SavedModel of every model (by `models.layout` name), all with the serving
  signatures of `models.export`: the candidate into `serving_model_dir`, the others into their
  `layout.SAVED_MODEL_DIRS` under `model_run_dir`; the int8 student's index is int8, and the
  int8 student is also written as TFLite (`layout.TFLITE_FILE`). Returns each model's
  SavedModel directory."""
  directories = {}
  for name, model in models.items():
    directories[name] = (serving_model_dir if name == layout.CANDIDATE else
                         os.path.join(model_run_dir, layout.SAVED_MODEL_DIRS[name]))
    with logged_phase(f'Exported the {name} SavedModel'):
      export_model(model, data, export_hparams, directories[name],
                   int8_index=name == layout.STUDENT_INT8)
  with logged_phase(f'Exported the {layout.STUDENT_INT8} TFLite model', logging.DEBUG):
    tflite_export.export_tflite(models[layout.STUDENT_INT8], data.catalogue,
                                len(data.stats.catalogue[features.ITEM_ID]),
                                data.transform.history_length, export_hparams.top_k,
                                os.path.join(model_run_dir, layout.TFLITE_FILE))
  return directories
