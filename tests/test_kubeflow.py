"""Compiles the Kubeflow runners with the tfx CLI and checks the workflows they produce."""
import importlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

import pytest
import yaml

from contract import signatures

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TFX_CLI = os.path.join(os.path.dirname(sys.executable), 'tfx')

PIPELINE_NAME = 'recsys-distill'
PIPELINE_ROOT = 'gs://test-bucket/recsys-distill/pipeline'
DATA_ROOT = 'gs://test-bucket/recsys-distill/raw'
SERVING_ROOT = 'gs://test-bucket/recsys-distill/serving'
DISTILL_RESULTS = 'gs://test-bucket/recsys-distill/distill.json'
PVC_NAME = 'recsys-distill-claim'
PVC_SERVING_ROOT = '/mnt/recsys-distill/serving'  # on the claim, at the default mount path
IMAGE = 'gcr.io/test-project/recsys-distill:test'
RESOLVER = 'latest_blessed_model_resolver'
COMPONENTS = ('RawExampleGen', 'StatisticsGen', 'ImportSchemaGen', 'ExampleValidator',
              'DataGate', 'Transform', 'Trainer', RESOLVER, 'Evaluator', 'RetrievalEvaluator', 'Pusher', 'TeacherModel',
              'TeacherPusher', 'RunReport')
UPSTREAM = {
    'RawExampleGen': set(),
    'StatisticsGen': {'RawExampleGen'},
    'ImportSchemaGen': set(),
    'ExampleValidator': {'StatisticsGen', 'ImportSchemaGen'},
    'DataGate': {'ExampleValidator', 'StatisticsGen', 'ImportSchemaGen'},
    'Transform': {'RawExampleGen', 'DataGate'},  # only after the data passed the gate
    'Trainer': {'Transform', 'DataGate'},
    RESOLVER: {'Trainer'},  # the candidate, which is never its own baseline
    'Evaluator': {'RawExampleGen', 'Trainer', RESOLVER},
    'RetrievalEvaluator': {'RawExampleGen', 'Trainer', 'Evaluator'},
    'Pusher': {'Trainer', 'RetrievalEvaluator'},
    'TeacherModel': {'Trainer'},
    'TeacherPusher': {'TeacherModel', 'RetrievalEvaluator'},
    'RunReport': {'StatisticsGen', 'Trainer', 'Evaluator', 'RetrievalEvaluator', 'Pusher'},
}
# KFP v2 compiles the resolver (TFX's LatestBlessedModelStrategy there) into two query tasks.
V2_BLESSING_RESOLVER = f'{RESOLVER}-model-blessing-resolver'
V2_MODEL_RESOLVER = f'{RESOLVER}-model-resolver'
V2_UPSTREAM = {
    **{name: upstream for name, upstream in UPSTREAM.items() if name != RESOLVER},
    'Evaluator': {'RawExampleGen', 'Trainer', V2_MODEL_RESOLVER},
    V2_BLESSING_RESOLVER: set(),
    V2_MODEL_RESOLVER: set(),  # reads the blessing query's output, without a task dependency
}
BEAM_COMPONENTS = ('RawExampleGen', 'StatisticsGen', 'Transform', 'Evaluator')
SETTINGS_VARIABLES = ('PIPELINE_ROOT', 'DATA_ROOT', 'SERVING_ROOT', 'PIPELINE_IMAGE', 'BEAM_RUNNER',
                      'BEAM_ARGS', 'GOOGLE_CLOUD_PROJECT', 'GOOGLE_CLOUD_REGION',
                      'BEAM_JOB_ENDPOINT', 'BEAM_ENVIRONMENT_TYPE', 'BEAM_ENVIRONMENT_CONFIG',
                      'PVC_NAME', 'PVC_MOUNT_PATH', 'PIPELINE_DEFINITION_FILE', 'SCHEMA_FILE',
                      'TRAINER_CPU', 'TRAINER_MEMORY', 'TRAINER_GPUS', 'TRAINER_GPU_TYPE',
                      'BEAM_STEP_CPU', 'BEAM_STEP_MEMORY', 'DISTILL_RESULTS')
IMAGE_SCHEMA_FILE = '/pipeline/pipeline/schema/schema.pbtxt'  # the repository in the image

needs_tfx_cli = pytest.mark.requires(os.path.exists(TFX_CLI), reason=f'no {TFX_CLI}')


def compile_pipeline(engine: str, runner: str, cwd: str, **settings) -> str:
  """Runs `tfx pipeline compile` in `cwd` with only `settings` set; returns its output."""
  env = {name: value for name, value in os.environ.items() if name not in SETTINGS_VARIABLES}
  env.update(settings)
  # The CLI looks for kfp with the `pip` on PATH; PYTHONPATH stands in for `make`'s
  # `pip install -e .`, as the CLI puts only the runner's own directory on sys.path.
  env['PATH'] = os.pathsep.join([os.path.dirname(sys.executable), env.get('PATH', '')])
  env['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO_ROOT, env.get('PYTHONPATH')]))
  result = subprocess.run(
      [TFX_CLI, 'pipeline', 'compile', '--engine', engine,
       '--pipeline_path', os.path.join(REPO_ROOT, 'kubeflow', runner)],
      cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      timeout=300, check=False)
  assert result.returncode == 0, result.stdout
  return result.stdout


def assert_no_local_paths(text: str, cwd: str) -> None:
  """Fails if a path of this machine is written into a compiled pipeline."""
  local_paths = {REPO_ROOT, cwd, os.path.realpath(cwd), os.path.expanduser('~'), sys.prefix,
                 tempfile.gettempdir(), '/tmp', '/work'}
  for path in local_paths:
    path = path.rstrip('/')
    if path:  # A whole absolute path, not a piece of a URL such as gs://bucket/tmp.
      match = re.search(r'(?<![\w.:/@-])' + re.escape(path) + r'(?![\w.-])', text)
      assert not match, f'local path {path!r} in the compiled pipeline: {match}'


def node_ir(container):
  """The TFX IR of the one node that a KubeflowDagRunner container step runs."""
  args = container['args']
  ir = json.loads(args[args.index('--tfx_ir') + 1])
  (node,) = ir['nodes']
  return ir, node['pipelineNode']


def load_settings(monkeypatch, **environment):
  """`kubeflow.settings` imported afresh with exactly `environment` set."""
  for name in SETTINGS_VARIABLES:
    monkeypatch.delenv(name, raising=False)
  for name, value in environment.items():
    monkeypatch.setenv(name, value)
  monkeypatch.delitem(sys.modules, 'kubeflow.settings', raising=False)
  return importlib.import_module('kubeflow.settings')


@needs_tfx_cli
def test_kubeflow_v1_workflow(tmp_path):
  cwd = str(tmp_path)
  output = compile_pipeline(
      'kubeflow', 'runner.py', cwd, PIPELINE_ROOT=PIPELINE_ROOT, DATA_ROOT=DATA_ROOT,
      SERVING_ROOT=PVC_SERVING_ROOT, PVC_NAME=PVC_NAME, PIPELINE_IMAGE=IMAGE,
      BEAM_ARGS='--max_num_workers=3 --foo bar', TRAINER_CPU='6', TRAINER_MEMORY='24G',
      TRAINER_GPUS='1', BEAM_STEP_MEMORY='12G', DISTILL_RESULTS=DISTILL_RESULTS)
  package = re.search(r'^Pipeline package path: (.+)$', output, re.MULTILINE).group(1)
  assert package == os.path.join(cwd, f'{PIPELINE_NAME}.tar.gz')
  with tarfile.open(package) as archive:
    text = archive.extractfile('pipeline.yaml').read().decode()
  workflow = yaml.safe_load(text)
  assert_no_local_paths(text, cwd)

  assert workflow['kind'] == 'Workflow'
  assert workflow['spec']['arguments']['parameters'] == [
      {'name': 'pipeline-root', 'value': PIPELINE_ROOT}]
  assert 'sqlite' not in text.lower()
  templates = {template['name']: template for template in workflow['spec']['templates']}
  (dag,) = [template['dag'] for template in templates.values() if 'dag' in template]
  steps = {}  # component id -> (DAG task, its container, its IR, its pipeline node)
  for task in dag['tasks']:
    template = templates[task['template']]
    (volume,) = template['volumes']
    assert volume['persistentVolumeClaim'] == {'claimName': PVC_NAME}
    container = template['container']
    assert container['volumeMounts'] == [
        {'name': volume['name'], 'mountPath': '/mnt/recsys-distill'}]
    ir, node = node_ir(container)
    steps[node['nodeInfo']['id']] = (task, container, ir, node)
  assert sorted(steps) == sorted(COMPONENTS)
  component_of_task = {task['name']: component for component, (task, *_) in steps.items()}

  expected_beam_args = ['--runner=DirectRunner', '--direct_running_mode=multi_processing',
                        '--direct_num_workers=0', '--max_num_workers=3', '--foo', 'bar']
  for component, (task, container, ir, node) in steps.items():
    upstream = {component_of_task[name] for name in task.get('dependencies', [])}
    assert upstream == UPSTREAM[component], component
    assert container['image'] == IMAGE
    resources = container.get('resources')
    if component == 'Trainer':
      assert resources == {'requests': {'cpu': '6', 'memory': '24G'},
                           'limits': {'cpu': '6', 'memory': '24G', 'nvidia.com/gpu': '1'}}
    elif component in BEAM_COMPONENTS:
      assert resources == {'requests': {'cpu': '2', 'memory': '12G'},
                           'limits': {'cpu': '2', 'memory': '12G'}}, component
    else:
      assert resources is None, component
    if component == RESOLVER:
      assert 'LatestBlessedModelBeforeCandidateStrategy' in json.dumps(node)
      continue
    args = container['args']
    assert args[args.index('--pipeline_root') + 1] == '{{inputs.parameters.pipeline-root}}'
    # MLMD is the cluster's gRPC service, found through the metadata-grpc-configmap.
    assert 'METADATA_GRPC_SERVICE_HOST' in args[args.index('--kubeflow_metadata_config') + 1]
    assert ir['runtimeSpec']['pipelineRoot']['runtimeParameter']['defaultValue'] == {
        'stringValue': PIPELINE_ROOT}
    executor = ir['deploymentConfig']['executorSpecs'][component]
    if component in BEAM_COMPONENTS:
      assert executor['beamPipelineArgs'] == expected_beam_args, component
    else:
      assert 'beamPipelineArgs' not in executor, component
  parameters = {component: json.dumps(node.get('parameters', {}))
                for component, (*_, node) in steps.items()}
  # The first step reads the raw files in DATA_ROOT, with the data protocol's parameters.
  raw = steps['RawExampleGen'][3]['parameters']['parameters']
  assert raw['input_base']['fieldValue']['stringValue'] == DATA_ROOT
  assert '"pattern": "*"' in raw['input_config']['fieldValue']['stringValue']
  assert raw['history_length']['fieldValue']['intValue'] == str(signatures.HISTORY_LENGTH)
  assert raw['test_fraction']['fieldValue']['doubleValue'] == 0.1
  assert raw['span_window']['fieldValue']['intValue'] == '0'
  # Its own driver (spans: the window and its fingerprint) runs in the step.
  assert 'components.raw_example_gen.Driver' in json.dumps(steps['RawExampleGen'][2])
  assert IMAGE_SCHEMA_FILE in parameters['ImportSchemaGen']
  assert 'min_ndcg_ratio' in parameters['RetrievalEvaluator']
  assert f'{PVC_SERVING_ROOT}/student' in parameters['Pusher']
  assert f'{PVC_SERVING_ROOT}/teacher' in parameters['TeacherPusher']
  assert 'models.preprocessing.preprocessing_fn' in parameters['Transform']
  assert 'models.run_fn.run_fn' in parameters['Trainer']
  report = steps['RunReport'][3]['parameters']['parameters']
  assert report['distill_results']['fieldValue']['stringValue'] == DISTILL_RESULTS
  assert 'distill_results_fingerprint' not in report  # a bucket's file is not read at compile
  # The pushed versions' history is kept beside them.
  assert report['serving_model_dir']['fieldValue']['stringValue'] == f'{PVC_SERVING_ROOT}/student'


@needs_tfx_cli
def test_kubeflow_v2_pipeline_spec(tmp_path):
  cwd = str(tmp_path)
  compile_pipeline(
      'vertex', 'runner_v2.py', cwd, PIPELINE_ROOT=PIPELINE_ROOT, DATA_ROOT=DATA_ROOT,
      SERVING_ROOT=SERVING_ROOT, PIPELINE_IMAGE=IMAGE, BEAM_RUNNER='DataflowRunner',
      GOOGLE_CLOUD_PROJECT='test-project', GOOGLE_CLOUD_REGION='europe-west4',
      TRAINER_GPUS='1', TRAINER_GPU_TYPE='NVIDIA_TESLA_T4')
  assert os.listdir(cwd) == [f'{PIPELINE_NAME}_pipeline.json']
  with open(os.path.join(cwd, f'{PIPELINE_NAME}_pipeline.json')) as spec_file:
    text = spec_file.read()
  job = json.loads(text)
  assert_no_local_paths(text, cwd)

  assert job['runtimeConfig']['gcsOutputDirectory'] == PIPELINE_ROOT
  spec = job['pipelineSpec']
  assert spec['pipelineInfo']['name'] == PIPELINE_NAME
  tasks = spec['root']['dag']['tasks']
  assert sorted(tasks) == sorted(V2_UPSTREAM)
  for name, task in tasks.items():
    assert set(task.get('dependentTasks', [])) == V2_UPSTREAM[name], name

  expected_beam_args = ['--runner=DataflowRunner', '--project=test-project',
                        '--region=europe-west4', f'--temp_location={PIPELINE_ROOT}/beam/tmp',
                        f'--sdk_container_image={IMAGE}']
  executors = spec['deploymentSpec']['executors']
  for name, task in tasks.items():
    executor_label = spec['components'][task['componentRef']['name']]['executorLabel']
    if name in (V2_BLESSING_RESOLVER, V2_MODEL_RESOLVER):
      assert 'resolver' in executors[executor_label]
      continue
    container = executors[executor_label]['container']
    assert container['image'] == IMAGE
    if name == 'Trainer':
      assert container['resources'] == {
          'cpuLimit': 4.0, 'memoryLimit': 16.0,
          'accelerator': {'type': 'NVIDIA_TESLA_T4', 'count': '1'}}
    elif name in BEAM_COMPONENTS and name != 'RawExampleGen':
      assert container['resources'] == {'cpuLimit': 2.0, 'memoryLimit': 8.0}, name
    else:
      assert 'resources' not in container, name
    if name in ('ImportSchemaGen', 'DataGate'):
      continue  # not Beam components
    assert container['args'][-len(expected_beam_args):] == expected_beam_args, name
  parameters = {name: json.dumps(task.get('inputs', {}).get('parameters', {}))
                for name, task in tasks.items()}
  assert DATA_ROOT in parameters['RawExampleGen']
  assert f'{SERVING_ROOT}/student' in parameters['Pusher']
  assert 'distill_results' not in parameters['RunReport']  # none given: no parameter
  assert f'{SERVING_ROOT}/student' in parameters['RunReport']


@pytest.mark.parametrize('environment, expected', [
    ({'BEAM_RUNNER': 'DataflowRunner', 'GOOGLE_CLOUD_PROJECT': 'p', 'BEAM_ARGS': '--a=1'},
     ['--runner=DataflowRunner', '--project=p', '--region=us-central1',
      '--temp_location=gs://b/root/beam/tmp', f'--sdk_container_image={IMAGE}', '--a=1']),
    ({'BEAM_RUNNER': 'FlinkRunner', 'BEAM_JOB_ENDPOINT': 'flink:8099'},
     ['--runner=FlinkRunner', '--job_endpoint=flink:8099', '--environment_type=EXTERNAL',
      '--environment_config=localhost:50000']),
    ({'BEAM_RUNNER': 'PortableRunner', 'BEAM_JOB_ENDPOINT': 'spark:8099',
      'BEAM_ENVIRONMENT_TYPE': 'PROCESS', 'BEAM_ENVIRONMENT_CONFIG': '{"command": "boot"}'},
     ['--runner=PortableRunner', '--job_endpoint=spark:8099', '--environment_type=PROCESS',
      '--environment_config={"command": "boot"}']),
])
def test_beam_pipeline_args(monkeypatch, environment, expected):
  settings = load_settings(monkeypatch, PIPELINE_ROOT='gs://b/root', PIPELINE_IMAGE=IMAGE,
                           **environment)
  assert settings.beam_pipeline_args() == expected
  assert settings.DATA_ROOT == 'gs://b/root/data'
  assert settings.SERVING_ROOT == 'gs://b/root/serving'


@pytest.mark.parametrize('environment, message', [
    ({'PIPELINE_IMAGE': IMAGE}, 'PIPELINE_ROOT'),
    ({'PIPELINE_ROOT': 'gs://b/root'}, 'PIPELINE_IMAGE'),
    ({'PIPELINE_ROOT': 'gs://b/root', 'PIPELINE_IMAGE': IMAGE, 'BEAM_RUNNER': 'DataflowRunner'},
     'GOOGLE_CLOUD_PROJECT'),
    ({'PIPELINE_ROOT': 'gs://b/root', 'PIPELINE_IMAGE': IMAGE, 'BEAM_RUNNER': 'FlinkRunner'},
     'BEAM_JOB_ENDPOINT'),
    ({'PIPELINE_ROOT': 'gs://b/root', 'PIPELINE_IMAGE': IMAGE, 'BEAM_RUNNER': 'Direct'},
     'Unknown BEAM_RUNNER'),
])
def test_missing_settings_fail_compilation(monkeypatch, environment, message):
  with pytest.raises(ValueError, match=message):
    load_settings(monkeypatch, **environment).beam_pipeline_args()


def test_google_cloud_defaults(monkeypatch):
  settings = load_settings(monkeypatch, GOOGLE_CLOUD_PROJECT='p')
  assert settings.PIPELINE_ROOT == (
      'gs://p-kubeflowpipelines-default/tfx_pipeline_output/recsys-distill')
  assert settings.PIPELINE_IMAGE == 'gcr.io/p/recsys-distill'
  assert settings.beam_pipeline_args()[0] == '--runner=DirectRunner'

