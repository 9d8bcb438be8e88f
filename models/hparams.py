"""Typed settings records passed from `pipeline/configs.py` to the pipeline's components.

The values live in `pipeline/configs.py` only; `pipeline.create_pipeline` hands each component
the records it reads. The Trainer receives its records through `custom_config` (so Kubeflow
runs get them and the TFX cache keys on them): `to_dict` of a `TrainerHParams`, which `run_fn`
rebuilds with `TrainerHParams.from_config`.
"""
import dataclasses
from typing import Any, Dict, Sequence, Tuple, Type, TypeVar

from contract import features

T = TypeVar('T')


@dataclasses.dataclass(frozen=True)
class DataHParams:
  """How the raw data is split and checked before Transform (the pipeline's data stages).

  `eval_fraction` and `test_fraction`: each user's share of interactions in the eval and test
  splits (RawExampleGen). `rating_range`: (low, high) of explicit ratings, the schema's rating
  domain (ImportSchemaGen). `rating_drift_threshold`: the largest Jensen-Shannon divergence of
  the test split's rating distribution from the train split's that the data gate lets through.
  `span_window`: for data given as spans (`DATA/span-{SPAN}`), how many of the latest spans a
  run trains on (0: all), split per user over them (RawExampleGen).
  """
  eval_fraction: float
  test_fraction: float
  rating_range: Tuple[float, float]
  rating_drift_threshold: float
  span_window: int = 0


@dataclasses.dataclass(frozen=True)
class TransformHParams:
  """How raw features become model inputs.

  `item_text_columns`: the free-text columns of items.csv (a description, tags, ...) that
  RawExampleGen keeps, joined by spaces, as the optional `features.ITEM_TEXT`; Transform makes
  its lower-cased word tokens `features.ITEM_TEXT_INDICES` (the first `max_item_text_tokens`,
  over a vocabulary of the `item_text_vocab_size` most frequent train tokens), which the
  content path that embeds cold items reads. Empty: no item text (nor the feature)."""
  history_length: int
  item_oov_buckets: int
  user_oov_buckets: int
  max_genres: int
  max_title_tokens: int
  title_vocab_size: int
  zip_prefix_length: int
  item_text_columns: Sequence[str] = ()
  max_item_text_tokens: int = 32
  item_text_vocab_size: int = 10_000

  def __post_init__(self):
    # A tuple whatever it came as (`from_dict` of a JSON list), so records compare equal.
    object.__setattr__(self, 'item_text_columns', tuple(self.item_text_columns))


@dataclasses.dataclass(frozen=True)
class TowerHParams:
  """Size of one two-tower model (teacher or student).

  `history_encoder` is 'mean' (masked mean of item embeddings) or 'transformer'
  (`attention_layers` self-attention blocks with `attention_heads` heads and recency embeddings).
  `item_item`: also score items with the item-to-item component (`models.item_item`) fitted
  on the train split, the towers learning on top of it (the hybrid teacher); a student with
  `item_item` inherits its teacher's component, truncated to `item_item_rank` (0: the
  teacher's rank), with the teacher's weight on its score.
  `item_id_dropout`: the share of training candidates whose item id the candidate tower sees as
  unknown (an OOV bucket), so that it learns to embed items from their content alone, as it
  must for items without train interactions (`towers.IdDropout`); `user_id_dropout` likewise
  the share of training queries whose user id the query tower sees as unknown, so that it
  learns to answer a new user from their history and side features.
  """
  embedding_dim: int
  hidden_units: int
  rating_hidden_units: int
  history_encoder: str
  attention_layers: int
  attention_heads: int
  dropout: float
  item_id_dropout: float = 0.0
  item_item: bool = False  # the hybrid teacher: the item-to-item component (`ItemItemHParams`)
  attention_window: int = 0  # the latest history items the towers read (0: all)
  item_item_rank: int = 0  # a student's rank of the inherited component (0: the teacher's)
  user_id_dropout: float = 0.0


@dataclasses.dataclass(frozen=True)
class ItemItemHParams:
  """How the hybrid teacher's item-to-item component is fitted (`models.item_item`): EASE over
  the `max_items` most popular train items, factorised; the L2 weight, the rank, the history
  window and the popularity exponent of the candidate rows are chosen on the eval split's first
  `eval_users` users (a warm run keeps the earlier run's choice)."""
  l2_values: Sequence[float]
  ranks: Sequence[int]
  windows: Sequence[int]  # how many of the latest history items the query sums
  # β: candidate rows times (1 + train interactions)^β; 0 is EASE's ranking (`models.item_item`)
  popularity_exponents: Sequence[float]
  max_items: int
  eval_users: int


@dataclasses.dataclass(frozen=True)
class TrainingHParams:
  """How a model is trained. With `early_stopping_patience` > 0, every training phase with an
  eval split stops after that many epochs without a lower eval loss and keeps its best epoch's
  weights (`epochs` is then the most it trains); 0 trains for `epochs`.

  The retrieval loss's negatives (`models.two_tower`): every catalogue item (a full softmax)
  when the catalogue has at most `catalogue_softmax_max_items` items; beyond, the batch's
  candidates plus `mixed_negatives` items drawn uniformly from the catalogue (0: the batch's
  alone), each score less `popularity_correction` (a share: 1 the whole logQ correction, 0 none)
  times the log of its expected count among the negatives.

  A train split of at most `in_memory_max_examples` examples is held in memory and served in a
  new random order every epoch (`inputs.in_memory`), as are the teacher's outputs on it for
  distillation; a larger one is read from its files every epoch, shuffled in a buffer of
  `shuffle_buffer_size` examples, and the teacher's outputs go to temporary files.

  A run that starts from an earlier run's models (`models.warm_start`: data given as spans,
  whose previous window was blessed) trains its teacher and distils its student for
  `warm_start_epochs` each, at their learning rates times `warm_start_learning_rate_scale`
  (a fresh optimizer on trained weights), on a sample of the train split drawn once from `seed`
  (a `warm_start_sample` share, and every example of a user or item new since the earlier run:
  `warm_start.WarmStart.sample`), which the teacher's outputs are computed on too; 0 epochs
  retrains them cold, as a run without a previous one does. A warm run whose train split holds
  more than `warm_start_max_growth` times the examples of the last cold training its models
  descend from retrains cold instead (a refresh: `warm_start.refresh_due`); 0 never does."""
  epochs: int
  batch_size: int
  shuffle_buffer_size: int  # examples are written grouped by user: shuffle across users
  learning_rate: float
  retrieval_weight: float
  rating_weight: float
  popularity_correction: float  # the share of the logQ correction of the negatives' sampling bias
  seed: int
  early_stopping_patience: int
  catalogue_softmax_max_items: int
  mixed_negatives: int
  in_memory_max_examples: int
  warm_start_epochs: int
  warm_start_learning_rate_scale: float
  warm_start_sample: float
  warm_start_max_growth: float


@dataclasses.dataclass(frozen=True)
class DistillationHParams:
  """How the student learns from the teacher, then is fine-tuned with quantization.

  loss = alpha · hard + (1 − alpha) · soft (see `models.distiller`); the hard loss uses the
  student's `TrainingHParams` weights. The soft loss is the KL term at `temperature`, plus the
  MSE to the teacher's ratings weighted by `rating_distillation_weight`. The KL term's soft
  labels span the whole catalogue when it has at most `kd_catalogue_max_items` items, else the
  batch's candidates and `num_sampled_negatives` uniformly sampled items. `qat_*`:
  quantization-aware fine-tuning that continues the distillation loss, for `qat_epochs`, or in a
  warm run (`TrainingHParams.warm_start_epochs`) for `warm_start_qat_epochs` over its sample; 0
  epochs: post-training quantization (the kernels' int8 ranges from one forward pass). The
  teacher's outputs on the train and eval splits are computed once (held in memory or in
  temporary files, as `TrainingHParams.in_memory_max_examples` says).
  A student size with `embedding_dim` 0 takes the widest of `student_dims` whose int8
  SavedModel takes at most `size_budget` of the teacher's bytes (`training.student_size`).
  A student that inherits its hybrid teacher's item-to-item component learns, with
  `teacher_towers_only`, the teacher's towers' scores in the KL term (`distiller.TowersPart`),
  else the teacher's whole score; the popularity exponent of the component's candidate rows
  moves, at the student's rank, by the one of `inherited_popularity_shifts` that ranks the eval
  split best (`models.item_item.best_popularity_shift`; (0.0,): the teacher's).
  """
  epochs: int
  learning_rate: float
  alpha: float
  temperature: float
  rating_distillation_weight: float
  num_sampled_negatives: int
  kd_catalogue_max_items: int
  qat_epochs: int
  qat_learning_rate: float
  warm_start_qat_epochs: int
  student_dims: Sequence[int]
  size_budget: float
  teacher_towers_only: bool
  inherited_popularity_shifts: Sequence[float]


@dataclasses.dataclass(frozen=True)
class ContentPathHParams:
  """How the content path that embeds cold items is fitted on a trained model's warm items
  (`models.content_path`): `epochs` passes over the model's queries of `queries` train
  examples, in batches of `batch_size`, with Adam at `learning_rate`; the content embeddings
  are `content_dim` wide, the hidden layer `hidden_units`; the level and embedding terms are
  weighted `level_weight` and `embedding_weight` (the ranking term 1); the temperature of the
  model's scores is calibrated on the first `calibration_users` eval users, then multiplied by
  `temperature_scale`; with `level_from_eval`, the cold items' level is then learnt on those
  users' eval targets. 0 epochs: no content path (cold items embedded by the candidate
  tower)."""
  epochs: int
  batch_size: int
  queries: int
  hidden_units: int
  content_dim: int
  learning_rate: float
  level_weight: float
  embedding_weight: float
  calibration_users: int
  temperature_scale: float
  level_from_eval: bool


@dataclasses.dataclass(frozen=True)
class ExportHParams:
  """What the exported serving signatures return: the `top_k` best items, of which at least
  `fresh_slots` are fresh ones (with at most `fresh_max_interactions` train interactions,
  cold items included) where there are such items to show (`models.export`); and whether a
  warm run also writes the fp32 student's SavedModel (`warm_fp32_student`: its weights are
  saved for the next warm start either way, `models.training.exported`)."""
  top_k: int
  fresh_slots: int
  fresh_max_interactions: int
  warm_fp32_student: bool


@dataclasses.dataclass(frozen=True)
class TrainerHParams:
  """Everything `models.run_fn` is given: the Trainer's `custom_config` is its `to_dict`.

  `train_student_scratch` also trains the student without the teacher, as a reference for
  benchmarks (`student_scratch` in the Trainer's model run directory). `feedback` is the data's
  kind, `features.EXPLICIT` or `features.IMPLICIT`: implicit runs train
  retrieval only (`models.run_fn`).
  """
  transform: TransformHParams
  teacher: TowerHParams
  student: TowerHParams
  training: TrainingHParams
  distillation: DistillationHParams
  export: ExportHParams
  item_item: ItemItemHParams
  content_path: ContentPathHParams
  train_student_scratch: bool = False
  feedback: str = features.EXPLICIT

  @classmethod
  def from_config(cls, config: Dict[str, Any]) -> 'TrainerHParams':
    """The records of a Trainer's `custom_config`."""
    return cls(feedback=config.get('feedback', features.EXPLICIT),
               transform=from_dict(TransformHParams, config['transform']),
               teacher=from_dict(TowerHParams, config['teacher']),
               student=from_dict(TowerHParams, config['student']),
               training=from_dict(TrainingHParams, config['training']),
               distillation=from_dict(DistillationHParams, config['distillation']),
               export=from_dict(ExportHParams, config['export']),
               item_item=from_dict(ItemItemHParams, config['item_item']),
               content_path=from_dict(ContentPathHParams, config['content_path']),
               train_student_scratch=bool(config.get('train_student_scratch')))


def to_dict(record: Any) -> Dict[str, Any]:
  return dataclasses.asdict(record)


def from_dict(cls: Type[T], values: Dict[str, Any]) -> T:
  """Builds `cls` from `values`, rejecting unknown or missing keys with a clear error."""
  names = {field.name for field in dataclasses.fields(cls)}
  unknown = set(values) - names
  missing = names - set(values)
  if unknown or missing:
    raise ValueError(f'{cls.__name__}: unknown keys {sorted(unknown)}, '
                     f'missing keys {sorted(missing)}')
  return cls(**values)
