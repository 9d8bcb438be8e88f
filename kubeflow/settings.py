"""Settings of the Kubeflow runners, read from the environment when the pipeline is compiled.

    PIPELINE_ROOT   where components write their artefacts, e.g. gs://bucket/recsys-distill
    DATA_ROOT       the raw data RawExampleGen reads: a directory holding interactions.csv (and
                    optional users.csv, items.csv) or MovieLens-100K's u.data (u.item, u.user),
                    or one .csv file (default <PIPELINE_ROOT>/data); or dated drops named with
                    a span spec, e.g. gs://bucket/logs/span-{SPAN}, of which each run reads
                    the latest SPAN_WINDOW (read by `pipeline.configs`; 0, the default: all)
                    and warm-starts from the model blessed on the earlier ones
    SCHEMA_FILE     the curated schema, a path in the image or a bucket (default the
                    repository's pipeline/schema/schema.pbtxt in the image)
    SERVING_ROOT    where Pusher writes <SERVING_ROOT>/student/<version>/ (default
                    <PIPELINE_ROOT>/serving)
    PIPELINE_IMAGE  the container image every component runs in (built from ./Dockerfile)
    BEAM_RUNNER     DirectRunner (default), DataflowRunner, FlinkRunner, SparkRunner or
                    PortableRunner
    BEAM_ARGS       extra Beam arguments appended as given, e.g. '--max_num_workers=4'
    PVC_NAME        (KFP v1 only) a PersistentVolumeClaim mounted into every step at
                    PVC_MOUNT_PATH (default /mnt/recsys-distill), for paths on a volume
    TRAINER_CPU, TRAINER_MEMORY, TRAINER_GPUS, TRAINER_GPU_TYPE
                    the Trainer step's CPUs, memory (e.g. 16G), GPUs (default 0) and, for KFP v2
                    / Vertex AI, the accelerator type (e.g. NVIDIA_TESLA_T4)
    BEAM_STEP_CPU, BEAM_STEP_MEMORY
                    CPUs and memory of the Beam steps' pods (RawExampleGen, StatisticsGen,
                    Transform, Evaluator), where the DirectRunner's workers run; distributed
                    runners' workers are set with BEAM_ARGS (e.g. --machine_type)
    FEEDBACK        the kind of feedback in DATA_ROOT: explicit (ratings, the default) or
                    implicit (no rating column, or one rating value: retrieval only, no
                    Evaluator); compiling does not read the data, so 'auto' is refused
    DISTILL_RESULTS (optional, read by `pipeline.configs`) a distillation benchmark's JSON
                    results in a bucket, drawn as the frontier in the run report; the
                    RunReport step reads it when it runs (a changed file under the same path
                    needs a run without the cache to show)

DataflowRunner also reads GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_REGION; the portable runners
read BEAM_JOB_ENDPOINT, BEAM_ENVIRONMENT_TYPE and BEAM_ENVIRONMENT_CONFIG. Without
PIPELINE_ROOT and PIPELINE_IMAGE, the defaults follow the TFX templates: the bucket that
Kubeflow Pipelines on Google Cloud creates for GOOGLE_CLOUD_PROJECT, and an image in its
Container Registry.
"""
import os
import shlex
from typing import Callable, List, Optional

from kfp import dsl
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx

from contract import features
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
FEEDBACK = os.environ.get('FEEDBACK', features.EXPLICIT)
# The image installs the repository at /pipeline (Dockerfile).
IMAGE_REPOSITORY_ROOT = '/pipeline'
SCHEMA_FILE = os.environ.get('SCHEMA_FILE', os.path.join(
    IMAGE_REPOSITORY_ROOT, os.path.relpath(configs.SCHEMA_FILE, os.path.dirname(
        os.path.dirname(os.path.abspath(configs.__file__))))))
PIPELINE_IMAGE = _setting(
    'PIPELINE_IMAGE', GOOGLE_CLOUD_PROJECT and f'gcr.io/{GOOGLE_CLOUD_PROJECT}/{PIPELINE_NAME}',
    _PROJECT_HINT)

PVC_NAME = os.environ.get('PVC_NAME', '')
PVC_MOUNT_PATH = os.environ.get('PVC_MOUNT_PATH', f'/mnt/{PIPELINE_NAME}')

BEAM_RUNNER = os.environ.get('BEAM_RUNNER', DIRECT_RUNNER)
BEAM_ARGS = shlex.split(os.environ.get('BEAM_ARGS', ''))

TRAINER = 'Trainer'
BEAM_STEPS = ('RawExampleGen', 'StatisticsGen', 'Transform', 'Evaluator')
TRAINER_CPU = os.environ.get('TRAINER_CPU', '4')
TRAINER_MEMORY = os.environ.get('TRAINER_MEMORY', '16G')
TRAINER_GPUS = int(os.environ.get('TRAINER_GPUS', '0'))
TRAINER_GPU_TYPE = os.environ.get('TRAINER_GPU_TYPE', '')
BEAM_STEP_CPU = os.environ.get('BEAM_STEP_CPU', '2')
BEAM_STEP_MEMORY = os.environ.get('BEAM_STEP_MEMORY', '8G')


def step_resources(step: str) -> Optional[dict]:
  """The CPUs, memory and GPUs of one step (a component id); None for the default."""
  if step == TRAINER:
    return {'cpu': TRAINER_CPU, 'memory': TRAINER_MEMORY, 'gpus': TRAINER_GPUS,
            'gpu_type': TRAINER_GPU_TYPE}
  if step in BEAM_STEPS:
    return {'cpu': BEAM_STEP_CPU, 'memory': BEAM_STEP_MEMORY, 'gpus': 0, 'gpu_type': ''}
  return None


def resource_operator_func() -> Callable[[dsl.ContainerOp], None]:
  """KFP v1: a `pipeline_operator_funcs` entry that sets each step's requests and limits."""

  # KFP names a step's ContainerOp after its component id, lower-cased ('_' as '-').
  by_op_name = {step.lower().replace('_', '-'): step for step in (TRAINER,) + BEAM_STEPS}

  def set_resources(container_op: dsl.ContainerOp) -> None:
    resources = step_resources(by_op_name.get(container_op.name, ''))
    if resources is None:
      return
    container = container_op.container
    container.set_cpu_request(resources['cpu']).set_cpu_limit(resources['cpu'])
    container.set_memory_request(resources['memory']).set_memory_limit(resources['memory'])
    if resources['gpus']:
      container.set_gpu_limit(str(resources['gpus']))

  return set_resources


def _memory_gib(memory: str) -> float:
  """'16G' / '16Gi' / '512M' as GiB (KFP v2's ResourceSpec takes a number)."""
  units = {'G': 1.0, 'Gi': 1.0, 'M': 1 / 1024, 'Mi': 1 / 1024, 'T': 1024.0, 'Ti': 1024.0}
  for unit in sorted(units, key=len, reverse=True):
    if memory.endswith(unit):
      return float(memory[:-len(unit)]) * units[unit]
  raise ValueError(f'memory {memory!r}: give a number with G, Gi, M, Mi, T or Ti')


def set_platform_configs(tfx_pipeline: tfx.dsl.Pipeline) -> tfx.dsl.Pipeline:
  """KFP v2: each step's resources as its platform config (a ResourceSpec).

  TFX 1.15's v2 compiler builds FileBasedExampleGens (RawExampleGen) without their platform
  config, so that step runs with the backend's default resources: give its Beam job a
  distributed runner (BEAM_RUNNER, BEAM_ARGS) for data that outgrows them."""
  resource_spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
  for component in tfx_pipeline.components:
    resources = step_resources(component.id)
    if resources is None:
      continue
    spec = resource_spec(cpu_limit=float(resources['cpu']),
                         memory_limit=_memory_gib(resources['memory']))
    if resources['gpus']:
      if not resources['gpu_type']:
        raise ValueError('Set TRAINER_GPU_TYPE (e.g. NVIDIA_TESLA_T4) with TRAINER_GPUS.')
      spec.accelerator.type = resources['gpu_type']
      spec.accelerator.count = resources['gpus']
    component.with_platform_config(spec)
  return tfx_pipeline


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
      data_source=DATA_ROOT,
      schema_file=SCHEMA_FILE,
      serving_model_dir=os.path.join(SERVING_ROOT, configs.MODEL_NAME),
      teacher_serving_model_dir=os.path.join(SERVING_ROOT, configs.TEACHER_MODEL_NAME),
      beam_pipeline_args=beam_pipeline_args(),
      kfp_v2=kfp_v2,
      feedback=FEEDBACK,
      **configs.pipeline_arguments())
