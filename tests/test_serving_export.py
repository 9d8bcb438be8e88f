"""Real exports (the teacher and the int8 student, trained and exported by test_export's
fixtures) served over gRPC: each answers `recommend` and `recommend_with_reasons` as the
SavedModel does in process.

The export directories are copied as version 1 of two base directories, with warmup requests,
and served together by the local server.
"""
import shutil

import numpy as np
import tensorflow as tf

import serving_fixtures
from contract import features
from serving import client as client_lib
from contract import signatures
from contract import warmup
from exported_models import TOP_K
from models import layout

K = 5


# pylint: disable-next=redefined-outer-name
def test_real_exports_answer_over_grpc_as_in_process(trained, export_dirs, tmp_path):
  frame, catalogue = trained['frame'], trained['stats'].catalogue
  users = frame[features.USER_ID].iloc[:3].tolist() + ['no-such-user']
  histories = [frame[features.ITEM_ID].iloc[:n].tolist() for n in (0, 2, 4, 4)]
  for name, path in export_dirs.items():
    version_dir = tmp_path / name / '1'
    shutil.copytree(path, version_dir)
    warmup.write_warmup_requests(str(version_dir), users, histories, with_reasons=True)
  config = serving_fixtures.write_config(str(tmp_path / 'models.config'),
                                         {name: tmp_path / name for name in export_dirs})

  with serving_fixtures.running_server('local', config, list(export_dirs)) as server:
    for name, path in export_dirs.items():
      with server.client(name) as client:
        served = client.recommend_batch(users, histories, k=K)
        with_reasons = client.recommend_batch(users, histories, k=K, reasons=True)
        ratings = client.score(users[0], catalogue[features.ITEM_ID][:3].tolist(), histories[1])
      model = tf.saved_model.load(path)
      padded = [history + [''] * (4 - len(history)) for history in histories]
      expected = model.signatures[signatures.RECOMMEND](
          user_id=tf.constant(users), history=tf.constant(padded))
      assert expected['item_ids'].shape == (len(users), TOP_K)  # the fixed export top-K
      np.testing.assert_array_equal([result.item_ids for result in served],
                                    expected['item_ids'].numpy().astype(str)[:, :K],
                                    err_msg=name)
      np.testing.assert_allclose([result.scores for result in served],
                                 expected['scores'].numpy()[:, :K], rtol=1e-5, err_msg=name)
      assert all(result.reason_item_ids is None for result in served)  # not asked for
      # Why each item: the same items, and the same history item over gRPC as in process, one
      # of the user's own.
      assert [result.item_ids for result in with_reasons] == [
          result.item_ids for result in served], name
      reasons = [result.reason_item_ids for result in with_reasons]
      in_process = model.signatures[signatures.RECOMMEND_WITH_REASONS](
          user_id=tf.constant(users), history=tf.constant(padded))
      np.testing.assert_array_equal(
          reasons, in_process[signatures.REASON_ITEM_IDS].numpy().astype(str)[:, :K],
          err_msg=name)
      for history, row in zip(histories, reasons):
        assert set(row) <= set(history) | {''}, (name, row)
      assert set(reasons[0]) == {''}  # no history, no reason
      if name == layout.STUDENT_INT8:  # its pooled history gives reasons (test_export)
        assert set(reasons[2]) - {''}
      assert not set(served[2].item_ids) & set(histories[2])
      assert len(ratings) == 3 and np.all(np.isfinite(ratings))


# pylint: disable-next=redefined-outer-name
def test_cli_recommends_to_an_unknown_user_from_their_history(trained, export_dirs, tmp_path,
                                                              capsys):
  """The client CLI's `recommend` for a user id the model has never seen, over the local
  server: the id falls into the OOV bucket and the history carries the query."""
  frame = trained['frame']
  user = 'never-seen-user'
  assert user not in set(frame[features.USER_ID])
  items = frame[features.ITEM_ID].drop_duplicates().tolist()
  histories = [items[:4], items[-4:]]
  name = layout.STUDENT_INT8
  shutil.copytree(export_dirs[name], tmp_path / name / '1')
  config = serving_fixtures.write_config(str(tmp_path / 'models.config'),
                                         {name: tmp_path / name})
  outputs = []
  with serving_fixtures.running_server('local', config, [name]) as server:
    for history in histories:
      assert client_lib.main(['--target', server.target, '--model', name, 'recommend', user,
                              '--history', *history, '-k', str(K), '--reasons']) == 0
      outputs.append(capsys.readouterr().out.splitlines())
  model = tf.saved_model.load(export_dirs[name])
  given = []
  for history, lines in zip(histories, outputs):
    assert lines[0] == f'{name} version 1: top {K} for user {user}'
    ranked = [line.split()[:3] for line in lines[1:]]
    # "because you watched <id>" (no titles asked for): the model's reason for that result, one
    # of this history's items; none where no history item raises the score.
    reasons = [line.split('because you watched ')[1] if 'because you watched ' in line else ''
               for line in lines[1:]]
    with_reasons = model.signatures[signatures.RECOMMEND_WITH_REASONS](
        user_id=tf.constant([user]), history=tf.constant([history]))
    assert reasons == with_reasons[signatures.REASON_ITEM_IDS].numpy().astype(str)[0, :K].tolist()
    assert set(reasons) <= set(history) | {''}, lines
    given.extend(reason for reason in reasons if reason)
    assert [int(rank) for rank, _, _ in ranked] == list(range(1, K + 1))
    expected = model.signatures[signatures.RECOMMEND](
        user_id=tf.constant([user]), history=tf.constant([history]))
    served = [item for _, item, _ in ranked]
    assert served == expected['item_ids'].numpy().astype(str)[0, :K].tolist()
    assert not set(served) & set(history)
  assert given  # the pooled history gives reasons (the rare items of the second may not)
  # The history is what the answer depends on: another history, other recommendations.
  assert outputs[0][1:] != outputs[1][1:]
