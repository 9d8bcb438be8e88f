"""Runs the pipeline locally with BeamDagRunner and an SQLite MLMD store.

    python -m pipeline.local_runner --data movielens-100k --output outputs

Resolves the data source (a dataset name is downloaded once into the cache), checks the
interactions file's header and first row, runs every component from the raw files
(RawExampleGen reads them; unchanged inputs hit the TFX cache), copies the run report to
<output>/report/ and prints where the pushed model and the report are. Bad input and data anomalies stop the run with one
line naming the problem. `--distill-results FILE` (default: $DISTILL_RESULTS) adds a
distillation benchmark's results (`benchmarks/distill.py`) to the report as the frontier.
"""
import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

from absl import logging
from tfx import v1 as tfx
from tfx.orchestration import metadata
from tfx.orchestration.beam import beam_dag_runner

from components import artifacts
from components import raw_example_gen
from components import data_gate
from components import pusher
from components import gates as gates_lib
from components.retrieval_evaluator import executor as retrieval_executor
from components.run_report import executor as report_executor
from contract import features
from contract import versions
from pipeline import configs
from pipeline import pipeline
from pipeline import progress
from ingest import errors
from ingest import loaders
from models import hparams


def output_paths(output_dir: str) -> dict:
  """Where one local pipeline installation keeps its files."""
  return {
      'pipeline_root': os.path.join(output_dir, 'pipeline_root'),
      'metadata': os.path.join(output_dir, 'metadata.sqlite'),
      'serving': os.path.join(output_dir, 'serving'),
      'report': os.path.join(output_dir, 'report', report_executor.REPORT_FILE),
  }


def latest_version(model_dir: str) -> Optional[str]:
  """The newest numeric version directory of a TF Serving model directory, if any."""
  return versions.latest_version_dir(model_dir)


@contextlib.contextmanager
def _latest_run(metadata_path: str) -> Iterator[Tuple[Any, Optional[Any]]]:
  """The metadata store at `metadata_path` and its latest pipeline run's context (None: no
  run)."""
  with metadata.Metadata(
      tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)) as handle:
    runs = handle.store.get_contexts_by_type('pipeline_run')
    yield handle.store, max(runs, key=lambda context: context.id) if runs else None


def latest_run_outputs(metadata_path: str, type_names: List[str]) -> Dict[str, str]:
  """URIs of the artifacts of `type_names` that the latest pipeline run produced or reused from
  the cache (cached executions attribute their outputs to the run too)."""
  with _latest_run(metadata_path) as (store, latest):
    if latest is None:
      return {}
    type_ids = {t.id: t.name for t in store.get_artifact_types() if t.name in type_names}
    found = {}
    for artifact in sorted(store.get_artifacts_by_context(latest.id), key=lambda a: a.id):
      if artifact.type_id in type_ids:
        found[type_ids[artifact.type_id]] = artifact.uri
    return found


def _finished(store, run) -> bool:
  """Whether pipeline run `run` got to its RunReport (a run that was killed did not)."""
  report_types = {t.id for t in store.get_artifact_types()
                  if t.name == artifacts.RunReport.TYPE_NAME}
  return any(a.type_id in report_types for a in store.get_artifacts_by_context(run.id))


def pushed_version(metadata_path: str, model_dir: str) -> Optional[str]:
  """The version directory under `model_dir` that the latest pipeline run pushed, or None.

  A Pusher execution cached from a run that finished pushed nothing new; one cached from a run
  that was killed before it finished did push for this one, which resumed it."""
  with _latest_run(metadata_path) as (store, latest):
    if latest is None:
      return None
    pushed_types = {t.id for t in store.get_artifact_types()
                    if t.name == tfx.types.standard_artifacts.PushedModel.TYPE_NAME}
    for artifact in store.get_artifacts_by_context(latest.id):
      if artifact.type_id not in pushed_types:
        continue
      properties = artifact.custom_properties
      destination = properties[pusher.PUSHED_DESTINATION].string_value
      if (properties[pusher.PUSHED].int_value != 1
          or os.path.dirname(destination) != model_dir.rstrip('/')):
        continue
      earlier = [run for run in store.get_contexts_by_artifact(artifact.id)
                 if run.type_id == latest.type_id and run.id != latest.id]
      if any(_finished(store, run) for run in earlier):
        return None
      return destination
    return None


def component_seconds(metadata_path: str) -> Dict[str, float]:
  """Wall seconds of each component's execution in the latest pipeline run, by component id
  (a cached component's: its cache lookup)."""
  with _latest_run(metadata_path) as (store, latest):
    if latest is None:
      return {}
    in_run = {execution.id for execution in store.get_executions_by_context(latest.id)}
    seconds = {}
    for node in store.get_contexts_by_type('node'):
      for execution in store.get_executions_by_context(node.id):
        if execution.id in in_run:
          seconds[node.name.split('.', 1)[-1]] = (
              execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
    return seconds


def gate_failures(evaluation_dir: str) -> Dict[str, List[str]]:
  """The failed release gates recorded in a RetrievalEvaluator output: their reasons
  ('gate_failures') and the settings that move each (`gates.SETTINGS`, 'gate_settings')."""
  with open(os.path.join(evaluation_dir, retrieval_executor.METRICS_FILE)) as f:
    failed = [d for d in json.load(f)['gates']['decisions'] if not d['passed']]
  return {'gate_failures': [d['reason'] for d in failed],
          'gate_settings': [f"{d['gate']}: {gates_lib.SETTINGS[d['gate']]}" for d in failed]}


def resolve_inputs(data_source: str) -> Tuple[str, loaders.InputFiles]:
  """What the pipeline reads (`source`) and the input files of `data_source`, or of its latest
  span for a span source (`loaders.locate_inputs`: a dataset name is downloaded once into the
  cache). The interactions' header and first row are checked here, so a wrong source fails at
  once with a `DataError` (RawExampleGen checks every row and the side tables)."""
  if raw_example_gen.is_span_source(data_source):
    spans = raw_example_gen.present_spans(data_source)
    if not spans:
      raise errors.DataError(data_source, "no span holds files")
    files = loaders.locate_inputs(raw_example_gen.span_source(data_source, spans[-1]))
    source = _local_path(data_source)
  else:
    files = loaders.locate_inputs(data_source, cache_dir=configs.DOWNLOAD_CACHE_DIR)
    source = files.source
  next(loaders.read_interactions(files.interactions, files.movielens))
  return source, files


class OrphanedOutputsError(Exception):
  """The output directory holds a run's component outputs but not the metadata that records
  them."""


def check_outputs(paths: dict) -> None:
  """Raises `OrphanedOutputsError` when `paths['pipeline_root']` holds outputs of earlier runs
  but their metadata database is gone: a run with a fresh database numbers its executions from
  1 again and writes into the old runs' directories (Transform stops on them half way)."""
  root = paths['pipeline_root']
  if not os.path.exists(paths['metadata']) and os.path.isdir(root) and os.listdir(root):
    raise OrphanedOutputsError(
        f"{root} holds earlier runs' outputs, but their metadata ({paths['metadata']}) is "
        'gone, so a new run would write into them: remove that directory as well, or choose '
        'another output directory')


def _stopping_error(error: BaseException) -> Optional[Exception]:
  """The DataError or DataAnomaliesError that failed a component, if that is what `error`
  (as the orchestrator re-raised it) comes from."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, (errors.DataError, data_gate.DataAnomaliesError)):
      return error
    error = error.__cause__ or error.__context__
  return None


def run(data_source: str, output_dir: str, enable_cache: bool = True,
        gates: gates_lib.Gates = configs.GATES, train_student_scratch: bool = False,
        distill_results: str = configs.DISTILL_RESULTS,
        feedback: str = configs.FEEDBACK,
        training: hparams.TrainingHParams = configs.TRAINING,
        content_path: hparams.ContentPathHParams = configs.CONTENT_PATH) -> dict:
  """Runs the pipeline on the raw data with the `configs` values, but for the `gates`, the
  distillation results and the `training` and `content_path` settings given here (see
  `pipeline.create_pipeline`)
  and the `feedback` setting ('auto': the data tells); returns the paths, the pushed version
  and the feedback kind.

  Raises `DataError` for bad input (file, row, column) and `DataAnomaliesError` when the data
  has anomalies against the curated schema, `OrphanedOutputsError` when `output_dir` holds
  component outputs without their metadata (`check_outputs`): then nothing is trained or
  pushed."""
  source, files = resolve_inputs(data_source)
  feedback = loaders.resolve_feedback(feedback, files)
  logging.info('Raw data: %s (%s feedback)', source, feedback)
  paths = output_paths(os.path.abspath(output_dir))
  check_outputs(paths)
  serving_model_dir = os.path.join(paths['serving'], configs.MODEL_NAME)
  try:
    _run_pipeline(source, paths, serving_model_dir, enable_cache, gates,
                  train_student_scratch, _local_path(distill_results), feedback, training,
                  content_path)
  except Exception as error:  # pylint: disable=broad-except
    stopping = _stopping_error(error)
    if stopping is None:
      raise
    raise stopping from error
  after = latest_version(serving_model_dir)
  outputs = latest_run_outputs(paths['metadata'], [artifacts.RunReport.TYPE_NAME,
                                                   artifacts.RetrievalEvaluation.TYPE_NAME])
  report_dir = os.path.dirname(paths['report'])
  shutil.rmtree(report_dir, ignore_errors=True)
  shutil.copytree(outputs[artifacts.RunReport.TYPE_NAME], report_dir)
  return {**paths, 'pushed': pushed_version(paths['metadata'], serving_model_dir), 'latest': after,
          'feedback': feedback,
          'retrieval_evaluation': outputs[artifacts.RetrievalEvaluation.TYPE_NAME],
          **gate_failures(outputs[artifacts.RetrievalEvaluation.TYPE_NAME])}


def _local_path(path: str) -> str:
  """`path` made absolute when it is a local one ('' and URLs stay as they are)."""
  return path if not path or '://' in path else os.path.abspath(path)


def _run_pipeline(source: str, paths: dict, serving_model_dir: str, enable_cache: bool,
                  gates: gates_lib.Gates, train_student_scratch: bool, distill_results: str,
                  feedback: str, training: hparams.TrainingHParams,
                  content_path: hparams.ContentPathHParams) -> None:
  beam_dag_runner.BeamDagRunner().run(pipeline.create_pipeline(
      pipeline_name=configs.PIPELINE_NAME,
      pipeline_root=paths['pipeline_root'],
      data_source=source,
      schema_file=configs.SCHEMA_FILE,
      serving_model_dir=serving_model_dir,
      teacher_serving_model_dir=os.path.join(paths['serving'], configs.TEACHER_MODEL_NAME),
      train_student_scratch=train_student_scratch,
      feedback=feedback,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          paths['metadata']),
      beam_pipeline_args=configs.LOCAL_BEAM_PIPELINE_ARGS,
      enable_cache=enable_cache,
      **{**configs.pipeline_arguments(), 'gates': gates, 'distill_results': distill_results,
         'training': training, 'content_path': content_path}))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data', default=configs.DATA_SOURCE,
                      help='"movielens-100k", a MovieLens directory, or an interactions CSV')
  parser.add_argument('--output', default=configs.OUTPUT_DIR, help='directory for all outputs')
  parser.add_argument('--distill-results', default=configs.DISTILL_RESULTS, metavar='FILE',
                      help="a distillation benchmark's JSON results (benchmarks/distill.py) to "
                           'show as the frontier in the report (default: $DISTILL_RESULTS)')
  feedback_kinds = (loaders.AUTO_FEEDBACK,) + features.FEEDBACK_KINDS
  parser.add_argument('--feedback', default=configs.FEEDBACK, choices=feedback_kinds,
                      help='the kind of feedback the data is: auto (the data tells: no rating '
                           'column or one rating value is implicit), explicit or implicit '
                           '(default: $FEEDBACK, else auto)')
  parser.add_argument('--no-cache', action='store_true', help='re-run every component')
  parser.add_argument('--verbose', action='store_true', help="show TFX's full INFO logs")
  args = parser.parse_args(argv)
  if args.feedback not in feedback_kinds:  # a default from $FEEDBACK is not checked by argparse
    parser.error(f'FEEDBACK={args.feedback!r}: use one of {", ".join(feedback_kinds)}')
  progress.install(verbose=args.verbose,
                   reported=(errors.DataError, data_gate.DataAnomaliesError))

  started = time.time()
  try:
    result = run(args.data, args.output, enable_cache=not args.no_cache,
                 distill_results=args.distill_results, feedback=args.feedback)
  except (errors.DataError, data_gate.DataAnomaliesError, OrphanedOutputsError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  print(f'Pipeline finished in {time.time() - started:.0f} s')
  if result.get('feedback'):
    print(f'Feedback: {result["feedback"]}')
  if result['pushed']:
    print(f'Pushed model: {result["pushed"]}')
  elif result['gate_failures']:
    print('No new model pushed: ' + '; '.join(result['gate_failures']) + '. '
          f'Latest pushed model: {result["latest"]}')
    print('Settings to change (pipeline/configs.py): ' + '; '.join(result['gate_settings']))
  else:
    print(f'No new model pushed (cached run). Latest pushed model: {result["latest"]}')
  print(f'Report: {result["report"]}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
