"""Warm start: a new run's models start from the weights of the latest blessed run's.

A Trainer run saves, beside the candidate's SavedModel in the `model` artifact
(`layout.WARM_START_DIR`), the weights of the models that later runs start from (the teacher,
the fp32 student and the fitted content paths, kept or not: `save`) and the raw ids of every
vocabulary their tables are indexed by. A run that starts from them (`load`, then
`WarmStart.apply` to each newly built core) copies every layer's weights by layer name, and
maps the rows of the vocabulary-indexed tables (`TABLES`) by raw id, so that the vocabularies can change between
runs: a user, item, genre or title token known to both keeps its row, a new one keeps the row
the new model was initialised with, and one that left the data is dropped. Padding and OOV rows
map to themselves. Weights whose shapes changed otherwise (another embedding width) start fresh,
as do the item-to-item component's tables, which every run fits on its own train split and
chooses on its eval split (`models.item_item`: as the window grows, the best factorisation, L2
weight, rank and window change; a warm run searches from the earlier run's choice), and the
hybrid mix: the towers train without the component, as in a cold run, and the mix is chosen
after. Such a run trains on `WarmStart.sample` of its train split (a share of it, and every
example of a user or item the saved run did not know).

Warm runs drift from what a cold retrain on the same window would learn as the window grows
away from the data their models were first trained on (docs/results.md: on generated data whose
window grows 3.2× in ten spans, the int8 student's NDCG@10 fell from within 1 % of the cold
retrain's to 4–7 % below it once the window held twice the examples). So every run records the
train examples of the last cold training its models descend from (`COLD_EXAMPLES`,
`lineage_settings`), and a run whose train split has grown past
`TrainingHParams.warm_start_max_growth` times that retrains cold (`refresh_due`).
"""
import dataclasses
import io
import json
import os
from typing import Any, Dict, List, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from contract import features
from models import inputs

WEIGHTS_FILE = '{}.npz'  # a model's weights, by model name
VOCABULARIES_FILE = 'vocabularies.json'
SETTINGS_FILE = 'settings.json'  # what the run chose that the next one may keep
# The setting that holds the train examples of the last cold training of a run's models.
COLD_EXAMPLES = 'cold_train_examples'

# Vocabulary-indexed tables, by layer name: (the vocabulary, the rows before the vocabulary's:
# the padding row of item-like tables). Rows after the vocabulary's are OOV buckets.
TABLES = {
    'item_embedding': (features.ITEM_VOCAB, 1),
    'item_bias': (features.ITEM_VOCAB, 1),
    'user_embedding': (features.USER_VOCAB, 0),
    'user_bias': (features.USER_VOCAB, 0),
    'gender_embedding': (features.GENDER_VOCAB, 0),
    'occupation_embedding': (features.OCCUPATION_VOCAB, 0),
    'zip_embedding': (features.ZIP_VOCAB, 0),
    'genre_embedding': (features.GENRE_VOCAB, 1),
    'title_embedding': (features.TITLE_VOCAB, 1),
}
# Fitted or chosen anew by every run, never carried over: the item-to-item component
# (`models.item_item`) and the hybrid mix, which its towers train without (`towers.HybridMix`
# at its initial weights) and which is chosen after they have trained.
REFITTED_PREFIXES = ('item_item', 'hybrid_mix')


def tokens(tf_transform_output, vocabulary: str) -> List[str]:
  """The raw tokens of one vocabulary, in row order."""
  return [token.decode() if isinstance(token, bytes) else str(token)
          for token in tf_transform_output.vocabulary_by_name(vocabulary)]


def vocabularies(tf_transform_output) -> Dict[str, List[str]]:
  """The raw tokens of every vocabulary `TABLES` index by, in row order."""
  return {name: tokens(tf_transform_output, name)
          for name in sorted({vocabulary for vocabulary, _ in TABLES.values()})}


def row_keys(tokens: List[str], rows: int, leading: int) -> List[str]:
  """The key of every row of a table of `rows` rows over the vocabulary `tokens`: '' then the
  tokens for the `leading` padding row; the tokens; then '#oov<k>' for its OOV buckets."""
  keys = [f'#pad{k}' for k in range(leading)] + list(tokens)
  return keys + [f'#oov{k}' for k in range(rows - len(keys))]


def save(cores: Dict[str, tf.keras.Model], tf_transform_output, directory: str,
         settings: Optional[Dict[str, Any]] = None) -> None:
  """Writes each core's weights (by model name), the vocabularies' raw ids and the run's
  `settings` (JSON values) to `directory`."""
  tf.io.gfile.makedirs(directory)
  for name, core in cores.items():
    arrays = {f'{layer.name}/{index}': weight
              for layer in core.layers if not layer.name.startswith(REFITTED_PREFIXES)
              for index, weight in enumerate(layer.get_weights())}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with tf.io.gfile.GFile(os.path.join(directory, WEIGHTS_FILE.format(name)), 'wb') as f:
      f.write(buffer.getvalue())
  with tf.io.gfile.GFile(os.path.join(directory, SETTINGS_FILE), 'w') as f:
    json.dump(settings or {}, f)
  with tf.io.gfile.GFile(os.path.join(directory, VOCABULARIES_FILE), 'w') as f:
    json.dump(vocabularies(tf_transform_output), f)


@dataclasses.dataclass
class WarmStart:
  """The saved weights of a run's models (`save`), its vocabularies and settings."""
  directory: str
  vocabularies: Dict[str, List[str]]
  settings: Dict[str, Any]

  def has(self, name: str) -> bool:
    return tf.io.gfile.exists(os.path.join(self.directory, WEIGHTS_FILE.format(name)))

  def new_rows(self, table: str, tf_transform_output) -> np.ndarray:
    """bool per row of the `TABLES` table `table` up to its vocabulary's end: the tokens of this
    run's vocabulary that the saved run's did not have (padding rows are not new)."""
    vocabulary, leading = TABLES[table]
    known = set(self.vocabularies[vocabulary])
    return np.array([False] * leading + [token not in known for token in
                                         tokens(tf_transform_output, vocabulary)])

  def sample(self, share: float, seed: int, tf_transform_output) -> inputs.Sample:
    """The train examples a warm run trains on: a random `share` (from `seed`), and every
    example of a user or an item that the saved run did not know (their rows are fresh)."""
    return inputs.Sample(share, seed, {
        features.USER_INDEX: self.new_rows('user_embedding', tf_transform_output),
        features.ITEM_INDEX: self.new_rows('item_embedding', tf_transform_output)})

  def apply(self, name: str, core: tf.keras.Model, tf_transform_output) -> Dict[str, int]:
    """Sets `core`'s weights from the saved model `name`'s (see the module docstring); returns
    counts: the weights copied, the table rows kept (known to both runs) and new, the weights
    left fresh."""
    with tf.io.gfile.GFile(os.path.join(self.directory, WEIGHTS_FILE.format(name)), 'rb') as f:
      saved = dict(np.load(io.BytesIO(f.read())))
    new_vocabularies = vocabularies(tf_transform_output)
    counts = dict(copied=0, rows_kept=0, rows_new=0, fresh=0)
    for layer in core.layers:
      if layer.name.startswith(REFITTED_PREFIXES) or not layer.weights:
        continue
      weights = layer.get_weights()
      for index, weight in enumerate(weights):
        old = saved.get(f'{layer.name}/{index}')
        if old is not None and layer.name in TABLES and old.shape[1:] == weight.shape[1:]:
          vocabulary, leading = TABLES[layer.name]
          new_keys = row_keys(new_vocabularies[vocabulary], len(weight), leading)
          old_rows = {key: row for row, key in enumerate(
              row_keys(self.vocabularies[vocabulary], len(old), leading))}
          found = np.array([old_rows.get(key, -1) for key in new_keys])
          kept = found >= 0
          weight[kept] = old[found[kept]]
          counts['rows_kept'] += int(kept.sum())
          counts['rows_new'] += int((~kept).sum())
          counts['copied'] += 1
        elif old is not None and old.shape == weight.shape:
          weights[index] = old
          counts['copied'] += 1
        else:
          counts['fresh'] += 1
      layer.set_weights(weights)
    logging.info('Warm start of %s from %s: %s', name, self.directory, counts)
    return counts


def refresh_due(warm: WarmStart, train_examples: int, max_growth: float) -> bool:
  """Whether a run of `train_examples` train examples retrains cold rather than start from
  `warm`: its train split holds more than `max_growth` times the examples of the last cold
  training `warm`'s models descend from (always when `warm` does not record them, saved before
  runs did; never when `max_growth` is 0)."""
  if max_growth <= 0:
    return False
  cold_examples = warm.settings.get(COLD_EXAMPLES)
  grown = cold_examples is None or train_examples > max_growth * cold_examples
  if grown:
    logging.info('Warm start from %s skipped: %d train examples, more than %g times the %s of '
                 'its last cold training: training cold', warm.directory, train_examples,
                 max_growth, 'unrecorded number' if cold_examples is None else cold_examples)
  return grown


def lineage_settings(warm: Optional[WarmStart], train_examples: int) -> Dict[str, Any]:
  """The settings that carry `COLD_EXAMPLES` on: `warm`'s, or a cold run's own
  `train_examples`."""
  return {COLD_EXAMPLES: train_examples if warm is None else warm.settings.get(COLD_EXAMPLES)}


def load(directory: str) -> Optional[WarmStart]:
  """The warm start saved in `directory`, or None when there is none."""
  path = os.path.join(directory, VOCABULARIES_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    vocabularies_by_name = json.load(f)
  settings = os.path.join(directory, SETTINGS_FILE)
  if not tf.io.gfile.exists(settings):  # saved before runs recorded their settings
    return WarmStart(directory, vocabularies_by_name, {})
  with tf.io.gfile.GFile(settings) as f:
    return WarmStart(directory, vocabularies_by_name, json.load(f))
