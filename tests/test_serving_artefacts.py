"""The deployment artefacts agree with each other, and TF Serving accepts them where installed."""
import os
import re
import shutil

import pytest
import yaml

import serving_fixtures
from serving import batching
from serving import config as config_lib

SERVING_DIR = os.path.join(serving_fixtures.REPO_ROOT, 'serving')


def _read_yaml(*parts):
  with open(os.path.join(SERVING_DIR, *parts)) as manifest:
    return yaml.safe_load(manifest)


def _flags(args):
  return dict(arg.lstrip('-').split('=', 1) for arg in args)


def test_compose_and_kubernetes_run_tf_serving_with_the_same_flags():
  compose = _read_yaml('docker-compose.yml')['services']['tf-serving']
  deployment = _read_yaml('k8s', 'deployment.yaml')
  container = deployment['spec']['template']['spec']['containers'][0]
  compose_flags, k8s_flags = _flags(compose['command']), _flags(container['args'])
  assert compose['image'] == container['image']
  # Batching is on: switched by an environment variable in compose (default on), on in k8s.
  assert compose_flags.pop('enable_batching') == '${ENABLE_BATCHING:-true}'
  assert k8s_flags.pop('enable_batching') == 'true'
  assert compose_flags == k8s_flags
  assert compose_flags['allow_version_labels_for_unavailable_models'] == 'true'
  # Every config file a flag names is shipped, mounted in compose and in the ConfigMap.
  config_files = {os.path.basename(value) for value in compose_flags.values()
                  if value.startswith('/config/')}
  mounted = {os.path.basename(volume.split(':')[1]) for volume in compose['volumes']}
  generated = set(_read_yaml('kustomization.yaml')['configMapGenerator'][0]['files'])
  assert config_files <= mounted and config_files == generated
  for name in config_files:
    assert os.path.isfile(os.path.join(SERVING_DIR, name))


def test_batching_parameters_suit_the_contract_and_the_container():
  options = batching.load_parameters(os.path.join(SERVING_DIR, 'batching_parameters.txt'))
  container = _read_yaml('k8s', 'deployment.yaml')['spec']['template']['spec']['containers'][0]
  assert options.num_batch_threads == int(container['resources']['requests']['cpu'])
  assert 32 <= options.max_batch_size <= 128 and options.batch_timeout_micros <= 2000
  # Padding would fill `history` with another request's first item id.
  assert not options.pad_variable_length_inputs


def test_kubernetes_probe_and_service_match_the_served_models():
  config = config_lib.load_config_file(os.path.join(SERVING_DIR, 'models.config'))
  names = {model.name for model in config.model_config_list.config}
  deployment = _read_yaml('k8s', 'deployment.yaml')
  container = deployment['spec']['template']['spec']['containers'][0]
  probe_model = re.fullmatch(r'/v1/models/(\w+)/metadata',
                             container['readinessProbe']['httpGet']['path']).group(1)
  assert probe_model in names
  assert container['resources']['requests']['cpu'] and container['resources']['requests']['memory']
  labels = deployment['spec']['template']['metadata']['labels']
  assert deployment['spec']['selector']['matchLabels'] == labels
  service = _read_yaml('k8s', 'service.yaml')
  assert service['spec']['selector'] == labels
  assert {port['targetPort'] for port in service['spec']['ports']} == {
      port['name'] for port in container['ports']}
  for model in config.model_config_list.config:
    assert model.base_path.startswith('/models/')  # the mounted serving directory


@pytest.mark.skipif(shutil.which('tensorflow_model_server') is None,
                    reason='tensorflow_model_server is not on PATH')
def test_tf_serving_starts_with_the_shipped_configs(tmp_path):
  for name in ('student', 'teacher'):
    serving_fixtures.save_tiny_model(str(tmp_path / name), 1)
  with open(os.path.join(SERVING_DIR, 'models.config')) as shipped:
    text = shipped.read().replace('"/models/', f'"{tmp_path}/')
  config_path = tmp_path / 'models.config'
  config_path.write_text(text)
  extra = [f'--monitoring_config_file={SERVING_DIR}/monitoring.config', '--enable_batching=true',
           f'--batching_parameters_file={SERVING_DIR}/batching_parameters.txt',
           f'--rest_api_port={serving_fixtures.free_port()}']
  with serving_fixtures.running_server('tensorflow_model_server', str(config_path),
                                       ['student', 'teacher'], extra_args=extra) as server:
    with server.client('teacher') as client:
      assert len(client.recommend('alice', k=3).item_ids) == 3
