"""Serving over real gRPC: recommend, score, metadata, status, version labels and pins.

Runs against `serving.server` and, where it is on PATH, against `tensorflow_model_server`, with
the same client: the two must be interchangeable.
"""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_status_pb2

import serving_fixtures
from serving import client as client_lib

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


@pytest.fixture(scope='module', params=serving_fixtures.server_kinds())
def server(request, tmp_path_factory):
  base = tmp_path_factory.mktemp('models')
  for version in (1, 2):
    serving_fixtures.save_tiny_model(str(base / 'tiny'), version)
  serving_fixtures.save_tiny_model(str(base / 'other'), 7)
  config = serving_fixtures.write_config(
      str(base / 'models.config'), {'tiny': base / 'tiny', 'other': base / 'other'},
      labels={'tiny': {'stable': 1, 'canary': 2}},
      policies={'tiny': 'latest { num_versions: 2 }'})
  with serving_fixtures.running_server(request.param, config, ['tiny', 'other']) as running:
    yield running


def test_recommend_answers_from_the_latest_version_without_history_items(server):
  with server.client('tiny') as client:
    result = client.recommend('alice', ['item1', 'item2'], k=5)
  assert result.version == 2
  assert len(result.item_ids) == 5 == len(set(result.item_ids))
  assert not {'item1', 'item2'} & set(result.item_ids)
  assert set(result.item_ids) <= set(serving_fixtures.ITEMS)
  assert result.scores == sorted(result.scores, reverse=True)


def test_batches_keep_one_answer_per_user_and_unknown_users_get_one(server):
  with server.client('tiny') as client:
    batch = client.recommend_batch(['alice', 'nobody'], [['item3'], []], k=3)
    alone = client.recommend('alice', ['item3'], k=3)
  assert [len(result.item_ids) for result in batch] == [3, 3]
  assert batch[0].item_ids == alone.item_ids


@pytest.mark.parametrize('pin, version', [
    ({'version_label': 'stable'}, 1), ({'version_label': 'canary'}, 2), ({'version': 1}, 1)])
def test_labels_and_version_numbers_pick_the_version(server, pin, version):
  with server.client('tiny', **pin) as client:
    result = client.recommend('bob', k=4)
  assert result.version == version
  # Versions differ by their marker, so the scores say which model answered.
  assert result.scores[0] == pytest.approx(
      _scores_of_version(server, version)[0], abs=1e-5)


def _scores_of_version(server, version):
  with server.client('tiny', version=version) as client:
    return client.recommend('bob', k=4).scores


def test_serving_default_takes_serialized_examples(server):
  example = tf.train.Example()
  example.features.feature['user_id'].bytes_list.value.append(b'carol')
  example.features.feature['history'].bytes_list.value.append(b'item4 item5')
  with server.client('tiny') as client:
    response = client.predict('serving_default', {
        'examples': np.array([example.SerializeToString()], dtype=object)})
    direct = client.recommend('carol', ['item4', 'item5'], k=serving_fixtures.TOP_K)
  item_ids = tf.make_ndarray(response.outputs['item_ids']).astype(str)
  assert item_ids.shape == (1, serving_fixtures.TOP_K)
  assert list(item_ids[0]) == direct.item_ids


def test_score_rates_each_item(server):
  with server.client('tiny') as client:
    ratings = client.score('alice', ['item1', 'item2', 'item3'])
    rated = client.score('alice', ['item1', 'item2', 'item3'], ['item4', 'item5'], [5, 1.5])
  assert len(ratings) == 3 and all(np.isfinite(ratings))
  assert len(rated) == 3 and all(np.isfinite(rated))


def test_recommend_with_features(server):
  with server.client('tiny') as client:
    response = client.predict('recommend_with_features', {
        'user_id': np.array([b'alice'], dtype=object),
        'history': np.array([[b'item1']], dtype=object),
        'age': np.array([30], np.int64), 'gender': np.array([b'F'], dtype=object),
        'occupation': np.array([b'artist'], dtype=object),
        'zip_code': np.array([b'12345'], dtype=object)})
  assert tf.make_ndarray(response.outputs['scores']).shape == (1, serving_fixtures.TOP_K)


def test_metadata_describes_the_contract_signatures(server):
  with server.client('tiny') as client:
    signatures = client.signatures()
    assert client.metadata().model_spec.version.value == 2
  assert set(signatures) == {'serving_default', 'recommend', 'recommend_with_features', 'score'}
  recommend = signatures['recommend']
  assert {name: info.dtype for name, info in recommend.inputs.items()} == {
      'user_id': types_pb2.DT_STRING, 'history': types_pb2.DT_STRING}
  assert set(recommend.outputs) == {'item_ids', 'scores'}


def test_status_lists_the_loaded_versions(server):
  with server.client('tiny') as client:
    states = {status.version: status.state for status in client.status().model_version_status}
  assert states == {1: AVAILABLE, 2: AVAILABLE}
  with server.client('other', version=7) as client:
    [status] = client.status().model_version_status
  assert (status.version, status.state) == (7, AVAILABLE)


def test_unknown_versions_in_status_are_not_found(server):
  with server.client('tiny', version=99) as client:
    with pytest.raises(client_lib.ServingClientError, match='version 99') as error:
      client.status()
  assert error.value.code.name == 'NOT_FOUND'
