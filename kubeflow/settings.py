"""Settings of the Kubeflow runners, read from the environment when the pipeline is compiled.

    PIPELINE_ROOT   where components write their artefacts, e.g. gs://bucket/recsys-distill
    DATA_ROOT       prepared examples, <DATA_ROOT>/{train,eval,test}/ (default <PIPELINE_ROOT>/data)
    SERVING_ROOT    where Pusher writes <SERVING_ROOT>/student/<version>/ (default
                    <PIPELINE_ROOT>/serving)
    PIPELINE_IMAGE  the container image every component runs in (built from ./Dockerfile)
    BEAM_RUNNER     DirectRunner (default), DataflowRunner, FlinkRunner, SparkRunner or
                    PortableRunner
    BEAM_ARGS       extra Beam arguments appended as given, e.g. '--max_num_workers=4'
    PVC_NAME        (KFP v1 only) a PersistentVolumeClaim mounted into every step at
                    PVC_MOUNT_PATH (default /mnt/recsys-distill), for paths on a volume

DataflowRunner also reads GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_REGION; the portable runners
read BEAM_JOB_ENDPOINT, BEAM_ENVIRONMENT_TYPE and BEAM_ENVIRONMENT_CONFIG. Without
PIPELINE_ROOT and PIPELINE_IMAGE, the defaults follow the TFX templates: the bucket that
Kubeflow Pipelines on Google Cloud creates for GOOGLE_CLOUD_PROJECT, and an image in its
Container Registry.
"""
import os
import shlex
from typing import List

from pipeline import configs
from pipeline import pipeline

PIPELINE_NAME = configs.PIPELINE_NAME

GOOGLE_CLOUD_PROJECT = os.environ.get('GOOGLE_CLOUD_PROJECT', '')
GOOGLE_CLOUD_REGION = os.environ.get('GOOGLE_CLOUD_REGION', 'us-central1')

DIRECT_RUNNER = 'DirectRunner'
DATAFLOW_RUNNER = 'DataflowRunner'
PORTABLE_RUNNERS = ('FlinkRunner', 'SparkRunner', 'PortableRunner')


def _setting(name: str, default: str = '', hint: str = '') -> str:
  """The environment variable `name`, else `default`; an error when both are empty."""
  value = os.environ.get(name) or default
  if not value:
    raise ValueError(f'Set the environment variable {name}{hint}.')
  return value


# The Google Cloud defaults exist only when GOOGLE_CLOUD_PROJECT is set.
_PROJECT_HINT = ' (or GOOGLE_CLOUD_PROJECT for the Google Cloud default)'
PIPELINE_ROOT = _setting(
    'PIPELINE_ROOT',
    GOOGLE_CLOUD_PROJECT and (f'gs://{GOOGLE_CLOUD_PROJECT}-kubeflowpipelines-default/'
                              f'tfx_pipeline_output/{PIPELINE_NAME}'),
    _PROJECT_HINT)
DATA_ROOT = os.environ.get('DATA_ROOT', os.path.join(PIPELINE_ROOT, 'data'))
SERVING_ROOT = os.environ.get('SERVING_ROOT', os.path.join(PIPELINE_ROOT, 'serving'))
PIPELINE_IMAGE = _setting(
    'PIPELINE_IMAGE', GOOGLE_CLOUD_PROJECT and f'gcr.io/{GOOGLE_CLOUD_PROJECT}/{PIPELINE_NAME}',
    _PROJECT_HINT)

PVC_NAME = os.environ.get('PVC_NAME', '')
PVC_MOUNT_PATH = os.environ.get('PVC_MOUNT_PATH', f'/mnt/{PIPELINE_NAME}')

BEAM_RUNNER = os.environ.get('BEAM_RUNNER', DIRECT_RUNNER)
BEAM_ARGS = shlex.split(os.environ.get('BEAM_ARGS', ''))


def beam_pipeline_args() -> List[str]:
  """Beam arguments of every Beam-based component: BEAM_RUNNER's, then BEAM_ARGS."""
  if BEAM_RUNNER == DIRECT_RUNNER:
    # The step's pod runs the Beam job itself, one worker process per CPU it sees.
    args = ['--direct_running_mode=multi_processing', '--direct_num_workers=0']
  elif BEAM_RUNNER == DATAFLOW_RUNNER:
    # Workers run in the pipeline image (its entrypoint is Beam's boot), so they have TFX and
    # this project without staging packages.
    args = [f'--project={_setting("GOOGLE_CLOUD_PROJECT")}',
            f'--region={GOOGLE_CLOUD_REGION}',
            f'--temp_location={os.path.join(PIPELINE_ROOT, "beam", "tmp")}',
            f'--sdk_container_image={PIPELINE_IMAGE}']
  elif BEAM_RUNNER in PORTABLE_RUNNERS:
    args = [f'--job_endpoint={_setting("BEAM_JOB_ENDPOINT")}',
            f'--environment_type={os.environ.get("BEAM_ENVIRONMENT_TYPE", "EXTERNAL")}',
            f'--environment_config={os.environ.get("BEAM_ENVIRONMENT_CONFIG", "localhost:50000")}']
  else:
    raise ValueError(f'Unknown BEAM_RUNNER {BEAM_RUNNER!r}; use one of '
                     f'{", ".join((DIRECT_RUNNER, DATAFLOW_RUNNER) + PORTABLE_RUNNERS)}.')
  return [f'--runner={BEAM_RUNNER}'] + args + BEAM_ARGS


def create_pipeline(kfp_v2: bool = False):
  """The pipeline on the cluster's roots with its Beam arguments and the `configs` values (what
  both runners compile)."""
  return pipeline.create_pipeline(
      pipeline_name=PIPELINE_NAME,
      pipeline_root=PIPELINE_ROOT,
      examples_dir=DATA_ROOT,
      serving_model_dir=os.path.join(SERVING_ROOT, configs.MODEL_NAME),
      teacher_serving_model_dir=os.path.join(SERVING_ROOT, configs.TEACHER_MODEL_NAME),
      beam_pipeline_args=beam_pipeline_args(),
      kfp_v2=kfp_v2,
      **configs.pipeline_arguments())
