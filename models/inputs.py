"""Datasets of transformed examples for training, and what the trainer learns from one pass."""
import dataclasses
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf
from tfx_bsl.public import tfxio

from contract import features
from models import hparams
from models import towers


def transformed_dataset(file_patterns: List[str], data_accessor, tf_transform_output,
                        training: hparams.TrainingHParams,
                        shuffle: bool = True) -> tf.data.Dataset:
  """One pass over transformed examples as dicts of dense tensors."""
  return data_accessor.tf_dataset_factory(
      file_patterns,
      tfxio.TensorFlowDatasetOptions(
          batch_size=training.batch_size, shuffle=shuffle,
          shuffle_buffer_size=training.shuffle_buffer_size, shuffle_seed=training.seed,
          num_epochs=1),
      tf_transform_output.transformed_metadata.schema).map(flatten_scalars)


def model_inputs(batches: tf.data.Dataset) -> tf.data.Dataset:
  """`batches` without the features that only the catalogue scan reads (the content path's,
  `towers.CONTENT_PATH_FEATURES`): what the models train on, held in memory or cached."""
  return batches.map(lambda batch: {name: values for name, values in batch.items()
                                    if name not in towers.CONTENT_PATH_FEATURES})


@dataclasses.dataclass(frozen=True)
class Sample:
  """A random `share` of a split's examples, drawn per batch from `seed` and the batch's
  position (passes over the same batches in the same order keep the same examples), plus every
  example whose index feature has a value marked in `always` (by feature name: a bool per index
  value; values beyond it are not marked)."""
  share: float
  seed: int
  always: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def apply(self, batches: tf.data.Dataset) -> tf.data.Dataset:
    """The sampled examples of `batches` (dicts of tensors, the batch first), in smaller
    batches."""
    marked = {name: tf.constant(np.append(values, False)) for name, values in self.always.items()}

    def kept(position, batch):
      size = tf.shape(next(iter(batch.values())))[0]
      keep = tf.random.stateless_uniform(
          [size], seed=tf.stack([tf.constant(self.seed, tf.int64), position])) < self.share
      for name, values in marked.items():
        index = tf.minimum(tf.cast(batch[name], tf.int32), len(values) - 1)
        keep = keep | tf.gather(values, index)
      return {name: tf.boolean_mask(values, keep) for name, values in batch.items()}

    return batches.enumerate().map(kept)


def in_memory(batches: tf.data.Dataset, batch_size: int, seed: int) -> tf.data.Dataset:
  """The examples of one pass over `batches` (dicts of dense tensors), held in memory and served
  in `batch_size` batches, in a new random order every epoch (drawn from `seed`).

  Where a data set read from files is parsed and shuffled example by example every epoch, an
  epoch here is one gather per batch: on the 2-core machine a test-bed epoch (78,741 examples)
  of a student takes half the time."""
  columns: Dict[str, List[np.ndarray]] = {}
  for batch in batches:
    for name, values in batch.items():
      columns.setdefault(name, []).append(values.numpy())
  if not columns:
    return batches
  held = {name: tf.constant(np.concatenate(parts)) for name, parts in columns.items()}
  count = int(next(iter(held.values())).shape[0])
  return (tf.data.Dataset.range(count)
          .shuffle(count, seed=seed, reshuffle_each_iteration=True)
          .batch(batch_size)
          .map(lambda rows: {name: tf.gather(values, rows) for name, values in held.items()},
               num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))


def flatten_scalars(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """[batch, 1] scalar features → [batch] (sequence features keep their length)."""
  return {name: tf.squeeze(value, axis=1) if value.shape.rank == 2 and value.shape[1] == 1
          else value for name, value in batch.items()}


# The raw item side features the transformed examples carry for the exports' catalogue file
# (`models.preprocessing`, `contract.catalogue`): the catalogue keeps them beside the candidate
# features. A Transform output written before they were carried has none; the catalogue then
# holds the ids alone.
ITEM_METADATA = (features.TITLE, features.GENRES, features.YEAR)


def catalogue_columns(batch: Dict[str, tf.Tensor]) -> List[str]:
  """The features of `batch` that the catalogue keeps: the candidate tower's, the content
  path's it carries (the item text's indices), then the item metadata it carries."""
  return sorted(towers.CANDIDATE_FEATURES) + [
      name for name in sorted(towers.CONTENT_PATH_FEATURES) + list(ITEM_METADATA)
      if name in batch]


def id_strings(ids) -> np.ndarray:
  """Raw ids (bytes from tensors or vocabularies, or str) as a str array."""
  return np.array([i.decode() if isinstance(i, bytes) else str(i) for i in ids], dtype=str)


@dataclasses.dataclass(frozen=True)
class TrainStats:
  """What one streaming pass over the transformed train split tells the trainer.

  Attributes:
    catalogue: candidate-tower features of every vocabulary item in vocabulary order, plus
      the content path's features the examples carry (`towers.CONTENT_PATH_FEATURES`),
      `features.ITEM_ID`, the raw ids that the index returns, and the `ITEM_METADATA` the
      examples carry.
    item_counts: train interactions per item index (index 0 is padding).
    mean_rating: the mean train rating.
    pairs: (user indices, item indices) of every train interaction, in file order (the
      item-to-item component's fit, `models.item_item.fit`).
  """
  catalogue: Dict[str, np.ndarray]
  item_counts: np.ndarray
  mean_rating: float
  pairs: Tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.int64))


def scan_train_data(dataset: tf.data.Dataset, item_ids: List, num_item_indices: int) -> TrainStats:
  """Streams the dataset once, keeping one row per item and two indices per example."""
  rows = {}
  counts = np.zeros(num_item_indices, dtype=np.int64)
  rating_sum, examples = 0.0, 0
  users, items = [], []
  for batch in dataset:
    columns = {name: batch[name].numpy() for name in catalogue_columns(batch)}
    users.append(batch[features.USER_INDEX].numpy())
    items.append(columns[features.ITEM_INDEX])
    counts += np.bincount(columns[features.ITEM_INDEX], minlength=num_item_indices)
    rating_sum += float(tf.reduce_sum(batch[features.LABEL]))
    examples += len(columns[features.ITEM_INDEX])
    indices, positions = np.unique(columns[features.ITEM_INDEX], return_index=True)
    for index, position in zip(indices, positions):
      if index not in rows:
        rows[index] = {name: column[position] for name, column in columns.items()}
  # Vocabulary entry i has index i + 1; items never seen as a target keep only their id.
  blank = {name: np.zeros_like(value) for name, value in next(iter(rows.values())).items()}
  ordered = [rows.get(i + 1, {**blank, features.ITEM_INDEX: i + 1}) for i in range(len(item_ids))]
  catalogue = {name: np.stack([row[name] for row in ordered]) for name in blank}
  catalogue[features.ITEM_ID] = id_strings(item_ids)
  return TrainStats(catalogue, counts, rating_sum / max(examples, 1),
                    (np.concatenate(users), np.concatenate(items)))


def scan_cold_items(items: tf.data.Dataset, num_vocabulary_items: int) -> Dict[str, np.ndarray]:
  """The catalogue columns (`catalogue_columns`) and `features.ITEM_ID` of the items of the
  transformed `features.ITEMS_SPLIT` whose item index is outside the vocabulary's
  `num_vocabulary_items` (items without a train interaction: their index is an OOV bucket),
  sorted by id."""
  columns = {}
  for batch in items:
    cold = batch[features.ITEM_INDEX].numpy() > num_vocabulary_items
    for name in catalogue_columns(batch) + [features.ITEM_ID]:
      columns.setdefault(name, []).append(batch[name].numpy()[cold])
  cold_items = {name: np.concatenate(values) for name, values in columns.items()}
  cold_items[features.ITEM_ID] = id_strings(cold_items[features.ITEM_ID])
  order = np.argsort(cold_items[features.ITEM_ID], kind='stable')
  return {name: values[order] for name, values in cold_items.items()}


def with_items(catalogue: Dict[str, np.ndarray],
               more_items: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """`catalogue` with the rows of `more_items` after its own (same columns)."""
  return {name: np.concatenate([values, more_items[name]]) for name, values in catalogue.items()}
