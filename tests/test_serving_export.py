"""A real exported model (trained and exported as in test_export) served over gRPC.

The export contract's fixture trains a small two-tower model on generated data; its SavedModel
is re-saved as version 1 of a base directory with warmup requests, served by the local server,
and must answer `recommend` exactly as the SavedModel does in process.
"""
import numpy as np
import pytest
import tensorflow as tf

import serving_fixtures
from models import export
from models import features
from serving import warmup
from test_export import TOP_K, exported  # pylint: disable=unused-import


# Checked before the fixture trains anything.
EXPORT_HAS_K = any(spec.name == 'k' for spec in export.ServingModule.recommend.input_signature)


@pytest.mark.skipif(not EXPORT_HAS_K, reason='the export has no k input yet (the contract adds it)')
# pylint: disable-next=redefined-outer-name
def test_a_real_export_answers_over_grpc_as_in_process(exported, tmp_path):
  model, frame, catalogue = exported
  recommend = model.signatures[export.RECOMMEND_SIGNATURE]
  version_dir = tmp_path / 'student' / '1'
  tf.saved_model.save(model, str(version_dir), signatures=dict(model.signatures))
  users = frame[features.USER_ID].iloc[:3].tolist()
  histories = [frame[features.ITEM_ID].iloc[:n].tolist() for n in (0, 2, 4)]
  warmup.write_warmup_requests(str(version_dir), users, histories, TOP_K)
  config = serving_fixtures.write_config(str(tmp_path / 'models.config'),
                                         {'student': tmp_path / 'student'})

  with serving_fixtures.running_server('local', config, ['student']) as server:
    with server.client('student') as client:
      served = client.recommend_batch(users + ['no-such-user'], histories + [histories[2]],
                                      k=5)
      ratings = client.score(users[0], catalogue[features.ITEM_ID][:3].tolist(), histories[1])

  padded = [history + [''] * (4 - len(history)) for history in histories + [histories[2]]]
  expected = recommend(user_id=tf.constant(users + ['no-such-user']),
                       history=tf.constant(padded), k=tf.constant(5))
  np.testing.assert_array_equal([result.item_ids for result in served],
                                expected['item_ids'].numpy().astype(str))
  np.testing.assert_allclose([result.scores for result in served], expected['scores'].numpy(),
                             rtol=1e-5)
  assert not set(served[2].item_ids) & set(histories[2])
  assert len(ratings) == 3 and np.all(np.isfinite(ratings))
