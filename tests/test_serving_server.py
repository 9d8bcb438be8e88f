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


@pytest.fixture(scope='module')
def models_base(tmp_path_factory):
  """The served models' directory: versions 1 and 2 of 'tiny', version 7 of 'other'."""
  base = tmp_path_factory.mktemp('models')
  for version in (1, 2):
    serving_fixtures.save_tiny_model(str(base / 'tiny'), version)
  serving_fixtures.save_tiny_model(str(base / 'other'), 7)
  return base


@pytest.fixture(scope='module', params=serving_fixtures.server_kinds())
def server(request, models_base):
  base = models_base
  config = serving_fixtures.write_config(
      str(base / 'models.config'), {'tiny': base / 'tiny', 'other': base / 'other'},
      labels={'tiny': {'stable': 1, 'canary': 2}},
      policies={'tiny': 'latest { num_versions: 2 }'})
  with serving_fixtures.running_server(request.param, config, ['tiny', 'other']) as running:
    yield running


@pytest.fixture(scope='module')
def latest_tiny(models_base):
  """The SavedModel the server answers 'tiny' requests with (its latest version), in process."""
  return tf.saved_model.load(str(models_base / 'tiny' / '2'))


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


def _example(**values: str) -> bytes:
  example = tf.train.Example()
  for name, value in values.items():
    example.features.feature[name].bytes_list.value.append(value.encode())
  return example.SerializeToString()


def test_score_rates_each_item(server, latest_tiny):
  # The served ratings are the latest version's `score` called in process on the same examples.
  items = ['item1', 'item2', 'item3']
  with server.client('tiny') as client:
    ratings = client.score('alice', items)
    rated = client.score('alice', items, ['item4', 'item5'], [5, 1.5])
  score = latest_tiny.signatures['score']
  for served, history, history_ratings in ((ratings, '', ''), (rated, 'item4 item5', '5 1.5')):
    examples = [_example(user_id='alice', item_id=item, history=history,
                         history_ratings=history_ratings) for item in items]
    expected = score(examples=tf.constant(examples))['rating'].numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-6)
  assert len(set(ratings)) == len(items)  # a rating of each item, not one per request


def test_recommend_with_features(server, latest_tiny):
  # The served answer is the latest version's signature called in process on the same inputs.
  inputs = {'user_id': np.array([b'alice', b'nobody'], dtype=object),
            'history': np.array([[b'item1', b''], [b'item2', b'item3']], dtype=object),
            'age': np.array([30, 60], np.int64), 'gender': np.array([b'F', b'M'], dtype=object),
            'occupation': np.array([b'artist', b'writer'], dtype=object),
            'zip_code': np.array([b'12345', b'54321'], dtype=object)}
  with server.client('tiny') as client:
    response = client.predict('recommend_with_features', inputs)
  expected = latest_tiny.signatures['recommend_with_features'](
      **{name: tf.constant(value) for name, value in inputs.items()})
  np.testing.assert_array_equal(tf.make_ndarray(response.outputs['item_ids']),
                                expected['item_ids'].numpy())
  np.testing.assert_allclose(tf.make_ndarray(response.outputs['scores']),
                             expected['scores'].numpy(), rtol=1e-6)
  assert expected['scores'].shape == (2, serving_fixtures.TOP_K)


def test_metadata_describes_the_contract_signatures(server):
  with server.client('tiny') as client:
    signatures = client.signatures()
    assert client.metadata().model_spec.version.value == 2
  assert set(signatures) == {'serving_default', 'recommend', 'recommend_with_features',
                             'recommend_with_reasons', 'score'}
  recommend = signatures['recommend']
  assert {name: info.dtype for name, info in recommend.inputs.items()} == {
      'user_id': types_pb2.DT_STRING, 'history': types_pb2.DT_STRING}
  assert set(recommend.outputs) == {'item_ids', 'scores'}
  with_reasons = signatures['recommend_with_reasons']
  assert set(with_reasons.inputs) == set(recommend.inputs)
  assert set(with_reasons.outputs) == {'item_ids', 'scores', 'reason_item_ids'}


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
