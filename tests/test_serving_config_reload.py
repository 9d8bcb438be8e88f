"""Config edits while serving (--model_config_file_poll_wait_seconds): a label moves, a label
appears, a model is added and another removed, a broken file changes nothing."""
import time

import grpc
import pytest

import serving_fixtures
from serving import client as client_lib


def _wait_for(predicate, timeout_s=60.0):
  deadline = time.time() + timeout_s
  while True:
    try:
      if predicate():
        return
    except client_lib.ServingClientError:
      pass
    assert time.time() < deadline, 'timed out'
    time.sleep(0.2)


def _version(server, model, **pin):
  with server.client(model, retries=0, **pin) as client:
    return client.recommend('alice', k=2).version


@pytest.mark.parametrize('kind', serving_fixtures.server_kinds())
def test_config_edits_apply_without_a_restart(kind, tmp_path):
  for version in (1, 2):
    serving_fixtures.save_tiny_model(str(tmp_path / 'tiny'), version)
  serving_fixtures.save_tiny_model(str(tmp_path / 'extra'), 1)
  models = {'tiny': tmp_path / 'tiny'}
  policies = {'tiny': 'latest { num_versions: 2 }'}
  config = serving_fixtures.write_config(str(tmp_path / 'models.config'), models,
                                         labels={'tiny': {'stable': 1}}, policies=policies)
  with serving_fixtures.running_server(
      kind, config, ['tiny'], extra_args=['--model_config_file_poll_wait_seconds=1']) as server:
    assert _version(server, 'tiny', version_label='stable') == 1
    with pytest.raises(client_lib.ServingClientError) as error:
      _version(server, 'tiny', version_label='canary')
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT

    time.sleep(1.1)  # a new modification time, whatever the file system's resolution
    serving_fixtures.write_config(config, models, labels={'tiny': {'stable': 2, 'canary': 2}},
                                  policies=policies)
    _wait_for(lambda: _version(server, 'tiny', version_label='stable') == 2)
    assert _version(server, 'tiny', version_label='canary') == 2

    time.sleep(1.1)
    with open(config, 'w') as broken:
      broken.write('model_config_list { config { name: ')
    time.sleep(3)
    assert _version(server, 'tiny', version_label='stable') == 2

    time.sleep(1.1)
    serving_fixtures.write_config(config, {'extra': tmp_path / 'extra'})
    _wait_for(lambda: _version(server, 'extra') == 1)
    _wait_for(lambda: _is_not_found(server, 'tiny'))
    server.check_alive()


def _is_not_found(server, model):
  try:
    _version(server, model)
  except client_lib.ServingClientError as error:
    return error.code == grpc.StatusCode.NOT_FOUND
  return False
