"""The one place for the pipeline's names, paths, hyper-parameters and thresholds.

The runners (`pipeline/local_runner.py`, `kubeflow/`, `benchmarks/`) pass these values to
`pipeline.create_pipeline`. Paths can be overridden from the environment (`make run DATA=...
OUTPUT=...` sets them; DISTILL_RESULTS adds a distillation benchmark's results to the report),
so the same definitions serve the local runner, the tests and the Kubeflow runners.
"""
import os
from typing import Any, Dict

from components import gates
from contract import signatures
from contract import split_rules
from evaluation import baselines
from models import hparams

PIPELINE_NAME = 'recsys-distill'
MODEL_NAME = 'student'  # the name TF Serving serves the pushed student under
TEACHER_MODEL_NAME = 'teacher'  # ... and the teacher, pushed beside it

# Where the pipeline writes. OUTPUT_DIR holds everything a run produces.
OUTPUT_DIR = os.environ.get('OUTPUT', os.path.join(os.getcwd(), 'outputs'))
# A name, a directory or a CSV file; or dated drops named with a span spec, `DIR/span-{SPAN}`
# (`{SPAN:2}` for span-01, span-02, ...), of which a run reads the latest SPAN_WINDOW (0: all).
DATA_SOURCE = os.environ.get('DATA', 'movielens-100k')
SPAN_WINDOW = int(os.environ.get('SPAN_WINDOW', '0'))
# A distillation benchmark's JSON rows (`make bench-distill`'s BENCH_OUT) that the run report
# draws as the frontier; '' for none. A path the RunReport step can read.
DISTILL_RESULTS = os.environ.get('DISTILL_RESULTS', '')
DOWNLOAD_CACHE_DIR = os.environ.get(
    'DATA_CACHE', os.path.join(os.path.expanduser('~'), '.cache', 'recsys-distill'))

# Dotted paths of the installed package (no module_file copies in pipeline_root).
PREPROCESSING_FN = 'models.preprocessing.preprocessing_fn'
RUN_FN = 'models.run_fn.run_fn'

# The kind of feedback the data is (`FEEDBACK=` in the environment): 'explicit' (ratings),
# 'implicit' (clicks, views, purchases: no rating column, or one constant value) or 'auto', which
# the local runner resolves from the data before the pipeline starts
# (`ingest.loaders.resolve_feedback`). Implicit runs train retrieval only (no rating head, no
# rating distillation), and the retrieval gates bless alone (no TFMA Evaluator).
FEEDBACK = os.environ.get('FEEDBACK', 'auto')

HISTORY_LENGTH = signatures.HISTORY_LENGTH  # latest items kept in each example's history

# The curated schema ExampleValidator checks the examples against; any anomaly stops the run
# before Transform (`make schema` writes the schema inferred from a run beside it to compare).
SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'schema', 'schema.pbtxt')
# Data protocol: per-user chronological split (fractions of each user's latest interactions).
# Explicit ratings are bounded to `rating_range` (MovieLens' 0.5-5 stars), the schema's rating
# domain (`components/schema_import.py`). Data on another scale (0-1, 1-10, thumbs down/up as
# 0/1) sets `rating_range`, and GATES' `liked_rating` and RMSE bounds below, on its scale.
# DataGate stops the run beyond `rating_drift_threshold`, the Jensen-Shannon divergence of the
# test split's rating distribution from the train split's (ML-100K: 0.011; ratings drift slowly).
RAW_DATA = hparams.DataHParams(eval_fraction=split_rules.EVAL_FRACTION,
                               test_fraction=split_rules.TEST_FRACTION, rating_range=(0.5, 5.0),
                               rating_drift_threshold=0.1, span_window=SPAN_WINDOW)

# Free-text columns of items.csv (README, Input data) that RawExampleGen keeps, joined, as the
# item text; Transform makes word tokens of it (the first `max_item_text_tokens`, over the
# `item_text_vocab_size` most frequent ones), which only the content path that embeds cold items
# reads (models/content_path.py). Each is optional: data without them runs as before.
ITEM_TEXT_COLUMNS = ('description', 'tags')
TRANSFORM = hparams.TransformHParams(
    history_length=HISTORY_LENGTH, item_oov_buckets=1, user_oov_buckets=1, max_genres=6,
    max_title_tokens=8, title_vocab_size=5000, zip_prefix_length=2,
    item_text_columns=ITEM_TEXT_COLUMNS, max_item_text_tokens=32, item_text_vocab_size=10_000)

# Models.
# User-id dropout (`user_id_dropout`, both models): a tenth of the train examples' user ids are
# replaced by the OOV id, so that the query towers answer a new user from history and side
# features. 3 seeds each: new users' NDCG@10 from 0.895x to 0.927x the known users' for the int8
# student on the generated data, 0.980x to 0.983x on ML-100K, 0.983x (teacher) on the test bed,
# at -0.5 %, +0.3 % and (teacher) +1.6 % of NDCG@10 overall (docs/results.md).
USER_ID_DROPOUT = 0.1
TEACHER = hparams.TowerHParams(
    embedding_dim=64, hidden_units=128, rating_hidden_units=64, history_encoder='transformer',
    attention_layers=2, attention_heads=2, dropout=0.1, item_id_dropout=0.0, item_item=True,
    attention_window=20, user_id_dropout=USER_ID_DROPOUT)
# The hybrid teacher's item-to-item component (models/item_item.py): EASE over the 20k most
# popular train items (n³ time, n² memory), factorised; L2 weight, rank and history window
# chosen on the eval split, over the same L2 weights as the EASE baseline; they, and the hybrid
# mix, on the first 4,000 eval users: on wide-short 1,000 chose a rank-64 SVD, 4,000 the rank-256
# eigen tables, lifting the teacher from 0.97x to 1.02x EASE's NDCG@10 (docs/results.md).
ITEM_ITEM = hparams.ItemItemHParams(l2_values=baselines.EASE_L2_VALUES, ranks=(64, 128, 256),
                                    windows=(20, 50, HISTORY_LENGTH),
                                    popularity_exponents=(-0.3, -0.2, -0.15, -0.1, -0.05, 0.0,
                                                          0.05),
                                    max_items=20_000, eval_users=4000)
# The student: id embeddings and a pooled history, one Dense layer per tower (models/student.py),
# and the teacher's item-to-item component inherited (`item_item`), which on the sparse test bed
# is where the quality is (docs/results.md).
# Item-id dropout (`item_id_dropout`) is off: at 0.1 it raised ML-100K's cold-item Recall@100 from
# 0.2x to 1.1-1.3x a random ranking's but cost 1-3% of the warm items' quality (docs/results.md).
# Its inherited rank and embedding dimension (0) follow the catalogue and the teacher
# (`training.student_size`): the largest rank, then the widest of DISTILLATION.student_dims, whose
# int8 SavedModel fits the size gate's share of the teacher.
STUDENT = hparams.TowerHParams(
    embedding_dim=0, hidden_units=0, rating_hidden_units=16, history_encoder='mean',
    attention_layers=0, attention_heads=0, dropout=0.0, item_id_dropout=0.0, item_item=True,
    item_item_rank=0, user_id_dropout=USER_ID_DROPOUT)
STUDENT_MAX_SIZE_RATIO = 0.10  # of the teacher's bytes: the size gate (GATES.retrieval)
# The retrieval loss is summed over the batch, the rating loss averaged: hence the rating weight.
# `popularity_correction`: the share of the in-batch softmax's logQ correction (its negatives
# are drawn by popularity). Less of it leaves the towers less of the popularity that the
# item-to-item component already scores: 3 seeds, the int8 student at 0.5 and 0 against 1 on the
# sparse test bed, NDCG@10 +1.0 % and +0.6 %, long-tail Recall@100 0.166 and 0.190 against 0.138
# (EASE 0.143; 0.153 at 1 since a student's component exponent is chosen at its rank,
# `inherited_popularity_shifts`); on ML-100K NDCG@10 -5.0 % and -9.9 %; generated data -0.7 %
# and -1.8 %, Recall@100 -3.4 % and -8 % (docs/results.md). The whole correction stays the default:
# POPULARITY_CORRECTION=0.5 is for sparse catalogues whose long tail matters.
# Early stopping on the eval loss is off: on ML-100K it stopped the teacher after epoch 2 (eval
# loss lowest) and cost 12% of the towers' eval NDCG@10 (0.1817 against 0.2069 after 5 epochs):
# the loss of the in-batch softmax is not the ranking of the catalogue (docs/results.md).
# Warm runs (data given as spans) retrain cold once the window holds 1.25 times the examples of
# their models' last cold training: without refreshes a warm chain over ten generated weeks fell
# 4-7 % below cold retrains once its window passed twice its first. Over nine incremental weeks,
# NDCG@10 and Recall@100 against cold retrains: at 1.25, generated -0.2 % and -0.9 % (three weeks
# retrained cold), ML-100K -0.1 % and -0.3 % (two); at 1.5, -0.7 % and -0.9 % (two), ML-100K
# -1.1 % and -1.1 % (none: it drifted from its seventh week on) (docs/results.md).
# `warm_start_learning_rate_scale` 0.1: a warm day's int8 student stays nearer its base, and nearer
# a cold retrain: 3 seeds, Recall@100 against cold retrains on a generated day -0.7 % at 0.1,
# -1.1 % at 0.3, -1.7 % at 1; on ML-100K's last week -0.5 % at 0.1, -0.9 % at 0.3 (docs/results.md).
TRAINING = hparams.TrainingHParams(
    epochs=5, batch_size=512, shuffle_buffer_size=100_000, learning_rate=0.002,
    retrieval_weight=1.0, rating_weight=100.0,
    popularity_correction=float(os.environ.get('POPULARITY_CORRECTION', '1.0')), seed=42,
    early_stopping_patience=0,
    catalogue_softmax_max_items=0, mixed_negatives=0, in_memory_max_examples=1_000_000,
    warm_start_epochs=int(os.environ.get('WARM_START_EPOCHS', '1')),
    warm_start_learning_rate_scale=0.1,
    warm_start_sample=float(os.environ.get('WARM_START_SAMPLE', '0.25')),
    warm_start_max_growth=float(os.environ.get('WARM_START_MAX_GROWTH', '1.25')))
# `teacher_towers_only`: the students' towers learn the hybrid teacher's towers, not its whole
# score (which holds the component they add back): 3 seeds, distilled NDCG@10 against the whole
# score, test bed 0.0987 against 0.0976, ML-100K 0.2008 against 0.1986, wide-short 0.0455
# against 0.0460 (docs/results.md). `warm_start_qat_epochs` 0: a warm run's int8 student is
# quantized without a QAT epoch over its sample: on eleven warm windows NDCG@10 −0.05 % (± 0.68 %)
# against the QAT epoch, in half the quantization phase's time (docs/results.md).
# `inherited_popularity_shifts`: a student's component, at its lower rank, has its popularity
# exponent moved from the teacher's by the step the eval split prefers: on the sparse test bed
# -0.1 at rank 176 of 256, int8 student NDCG@10 +1.9 %, long-tail Recall@100 0.153 against
# 0.138 (EASE 0.143), 3 seeds; ML-100K and the generated data keep the teacher's (docs/results.md).
DISTILLATION = hparams.DistillationHParams(
    epochs=5, learning_rate=0.005, alpha=0.5, temperature=1.0,
    rating_distillation_weight=100.0, num_sampled_negatives=512, kd_catalogue_max_items=50_000,
    qat_epochs=1, qat_learning_rate=0.0005, warm_start_qat_epochs=0,
    student_dims=(16, 32, 64, 128, 256), size_budget=STUDENT_MAX_SIZE_RATIO,
    teacher_towers_only=True,
    inherited_popularity_shifts=(-0.2, -0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2))
# The content path that embeds cold items (models/content_path.py), fitted on each model's warm
# items after it trained, is on: its level is learnt on the eval split (how often users picked
# items without train interactions there), and it is kept only where it orders those picks
# better than the candidate tower, so that it costs the warm items nothing where cold items are
# rarely picked (docs/results.md). CONTENT_PATH_EPOCHS=0 turns it off.
CONTENT_PATH = hparams.ContentPathHParams(
    epochs=int(os.environ.get('CONTENT_PATH_EPOCHS', '20')), batch_size=256, queries=4096,
    hidden_units=64, content_dim=16,
    learning_rate=0.005, level_weight=1.0, embedding_weight=0.1, calibration_users=1000,
    temperature_scale=1.0, level_from_eval=True)
# Fresh items (no train interaction) get no reserved slots: their content path's scores place them
# among the others (docs/results.md).
# A warm run exports the teacher and the candidate; the fp32 student only with
# `warm_fp32_student` (cold runs always: where the report shows what quantization costs).
EXPORT = hparams.ExportHParams(top_k=signatures.TOP_K, fresh_slots=0, fresh_max_interactions=0,
                               warm_fp32_student=False)

# Release gates (`components.gates.Gates`). The Evaluator: the student's rating signature must
# be at least this good on the eval split: RMSE, its increase over the latest blessed model's
# (the change threshold), and the ROC AUC of the predicted rating for "rating >= liked_rating"
# (a rating at or above it means the user liked the item). The retrieval gates: what the pushed
# candidate must reach on the test split, relative to the teacher (NDCG@10 ratio, bytes ratio)
# and to the popularity baseline (NDCG@10 ratio: at least as good as recommending the most
# popular items).
GATES = gates.Gates(
    rmse_upper_bound=1.5, rating_auc_lower_bound=0.6, rmse_max_increase=0.05, liked_rating=4.0,
    retrieval=gates.RetrievalGates(min_ndcg_ratio=0.95, max_size_ratio=STUDENT_MAX_SIZE_RATIO,
                                   min_popularity_ratio=1.0))
LATENCY_REQUESTS = 200  # timed single-request calls of each SavedModel's serving signature

# Beam for the local runner: in-process is fastest for data that fits one machine.
LOCAL_BEAM_PIPELINE_ARGS = ['--direct_running_mode=in_memory', '--direct_num_workers=1']


def pipeline_arguments() -> Dict[str, Any]:
  """`pipeline.create_pipeline`'s code paths and settings records as set here; each runner adds
  its data source, schema file, roots, metadata store and Beam arguments."""
  return dict(
      preprocessing_fn=PREPROCESSING_FN, run_fn=RUN_FN, data=RAW_DATA, transform=TRANSFORM,
      teacher=TEACHER, student=STUDENT, training=TRAINING, distillation=DISTILLATION,
      export=EXPORT, item_item=ITEM_ITEM, content_path=CONTENT_PATH, gates=GATES,
      latency_requests=LATENCY_REQUESTS,
      distill_results=DISTILL_RESULTS)
