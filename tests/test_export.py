"""The export contract: signatures, top-k over the catalogue, history exclusion, unknown users."""
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

import exported_models
from exported_models import TOP_K
from contract import catalogue
from contract import features
from contract import signatures
from evaluation import saved_models
from models import export
from models import quantization
from models import student
from models import towers

def _serialized(row: dict) -> bytes:
  def feature(name, value):
    if name in features.INT_FEATURES:
      return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    if name in features.FLOAT_FEATURES:
      return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(value).encode()]))
  return tf.train.Example(features=tf.train.Features(
      feature={name: feature(name, value) for name, value in row.items()})).SerializeToString()


@pytest.fixture(scope='module', params=['teacher', 'student_int8'])
def exported(request, trained, export_dirs):
  """Each exported model, loaded."""
  return (tf.saved_model.load(export_dirs[request.param]), trained['frame'],
          trained['stats'].catalogue)


def test_signatures_are_exported(exported):
  model, _, _ = exported
  assert set(model.signatures) == set(signatures.SIGNATURES)
  assert callable(getattr(model, signatures.RANK_CATALOGUE))


def test_side_features_reach_the_query_tower(exported):
  model, frame, _ = exported
  history = [frame[features.ITEM_ID].iloc[:2].tolist()]
  recommend = model.signatures[signatures.RECOMMEND_WITH_FEATURES]
  def scores(age, gender):
    return recommend(user_id=tf.constant(['new-user']), history=tf.constant(history),
                     age=tf.constant([age], tf.int64), gender=tf.constant([gender]),
                     occupation=tf.constant(['artist']),
                     zip_code=tf.constant(['12345']))['scores'].numpy()
  assert scores(25, 'F').shape == (1, TOP_K)
  assert not np.allclose(scores(25, 'F'), scores(60, 'M'))


def test_serving_default_returns_top_k_without_history(exported):
  model, frame, catalogue = exported
  row = frame.iloc[-1]
  outputs = model.signatures[signatures.SERVING_DEFAULT](examples=tf.constant([
      _serialized({features.USER_ID: row[features.USER_ID],
                   features.HISTORY: row[features.HISTORY]})]))
  item_ids = outputs['item_ids'].numpy().astype(str)[0]
  scores = outputs['scores'].numpy()[0]
  assert len(item_ids) == TOP_K == len(set(item_ids))
  assert set(item_ids) <= set(catalogue[features.ITEM_ID])
  assert not set(item_ids) & set(row[features.HISTORY].split())
  assert np.all(np.diff(scores) <= 0)


def test_recommend_handles_unknown_users_and_padding(exported):
  model, frame, catalogue = exported
  history = frame[features.ITEM_ID].iloc[:4].tolist()
  outputs = model.signatures[signatures.RECOMMEND](
      user_id=tf.constant(['no-such-user', 'no-such-user']),
      history=tf.constant([history, history[:2] + ['', '']]))
  item_ids = outputs['item_ids'].numpy().astype(str)
  assert item_ids.shape == (2, TOP_K)
  assert not set(item_ids[0]) & set(history)
  assert not set(item_ids[1]) & set(history[:2])
  # Padding changes nothing: the same history with and without '' gives the same answer.
  again = model.signatures[signatures.RECOMMEND](
      user_id=tf.constant(['no-such-user']), history=tf.constant([history[:2]]))
  np.testing.assert_array_equal(again['item_ids'].numpy()[0], outputs['item_ids'].numpy()[1])


def _score(model, rows, **replaced) -> np.ndarray:
  """The `score` signature's ratings of frame rows sent as serialized raw examples."""
  examples = [_serialized({**{name: row[name] for name in features.RAW_FEATURES}, **replaced})
              for row in rows.to_dict('records')]
  return model.signatures[signatures.SCORE](examples=tf.constant(examples))['rating'].numpy()


def test_score_is_the_keras_models_rating(trained, export_dirs):
  """The teacher's exported `score` (raw examples parsed and transformed inside the SavedModel)
  predicts the rating its Keras model predicts from the same rows transformed by TF Transform in
  Beam (the fixture's training columns; the fixture keeps no Keras student to compare with)."""
  frame, columns, core = trained['frame'], trained['columns'], trained['teacher'].core
  rows = np.arange(0, len(frame), len(frame) // 20)  # a sample of 20 rows, histories included
  # The Beam output keeps the frame's row order.
  assert columns[features.ITEM_ID][rows].astype(str).tolist() == (
      frame[features.ITEM_ID].iloc[rows].tolist())
  expected = core([tf.constant(columns[name][rows]) for name in core.input_names],
                  training=False)[towers.RATING].numpy()
  got = _score(tf.saved_model.load(export_dirs['teacher']), frame.iloc[rows])
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  assert np.ptp(expected) > 0.01  # ratings of their own, not one constant


def test_score_reads_the_history_ratings(exported):
  """Both models' rating heads read the user's ratings of the history items (the rating drift,
  `towers.RatingDrift`): the same examples without their history ratings rate differently."""
  model, frame, _ = exported
  rated = frame[frame[features.HISTORY_RATINGS] != ''].iloc[::25][:5]
  with_ratings = _score(model, rated)
  without = _score(model, rated, **{features.HISTORY_RATINGS: ''})
  assert np.all(np.abs(with_ratings - without) > 1e-4), (with_ratings, without)


def test_rank_catalogue_ranks_every_item_consistently_with_recommend(exported):
  model, _, catalogue = exported
  query = {'user_id': tf.constant(['no-such-user']), 'history': tf.constant([['']]),
           'age': tf.constant([30], tf.int64), 'gender': tf.constant(['F']),
           'occupation': tf.constant(['artist']), 'zip_code': tf.constant(['12345'])}
  every_item = tf.constant(len(catalogue[features.ITEM_ID]) + 1)  # more than there are
  ranked = model.rank_catalogue(**query, depth=every_item)['item_ids'].numpy().astype(str)[0]
  assert sorted(ranked) == sorted(catalogue[features.ITEM_ID])
  top = model.signatures[signatures.RECOMMEND_WITH_FEATURES](**query)['item_ids']
  np.testing.assert_array_equal(top.numpy().astype(str)[0], ranked[:TOP_K])
  shallow = model.rank_catalogue(**query, depth=tf.constant(3))
  np.testing.assert_array_equal(shallow['item_ids'].numpy().astype(str)[0], ranked[:3])
  assert shallow['scores'].shape == (1, 3)


def test_recommend_excludes_exactly_the_latest_history_items(exported):
  model, _, catalogue = exported
  length = exported_models.TRANSFORM.history_length
  # Longer than the history the model keeps, with an unknown id last and padding after it.
  history = catalogue[features.ITEM_ID][:length + 3].tolist() + ['no-such-item', '', '']
  query = {'user_id': tf.constant(['no-such-user']), 'history': tf.constant([history]),
           'age': tf.constant([30], tf.int64), 'gender': tf.constant(['F']),
           'occupation': tf.constant(['artist']), 'zip_code': tf.constant(['12345'])}
  # rank_catalogue puts every history item last (the protocol's seen items): recommend ranks
  # the others alike, and of the history only the older items, never the latest.
  ranked = model.rank_catalogue(**query, depth=tf.constant(len(catalogue[features.ITEM_ID])))
  ranked = ranked['item_ids'].numpy().astype(str)[0]
  latest = set(history[:-2][-length:])  # the unknown id and the last length - 1 items
  older = set(history[:4])
  assert set(ranked[-(length + 3):]) == (latest - {'no-such-item'}) | older
  top = model.signatures[signatures.RECOMMEND_WITH_FEATURES](**query)
  top = top['item_ids'].numpy().astype(str)[0].tolist()
  assert not set(top) & latest and len(top) == TOP_K
  others = [item for item in top if item not in older]
  assert others == ranked[:len(others)].tolist()


def test_recommend_returns_the_fixed_top_k(exported):
  model, _, _ = exported
  for name in (signatures.RECOMMEND, signatures.SERVING_DEFAULT,
               signatures.RECOMMEND_WITH_FEATURES):
    outputs = model.signatures[name].structured_outputs
    assert set(outputs) == set(signatures.RECOMMENDATION_OUTPUTS), name  # no reasons
  assert set(model.signatures[signatures.RECOMMEND_WITH_REASONS].structured_outputs) == set(
      signatures.REASONS_OUTPUTS)
  query = {'user_id': tf.constant(['u1', 'u2', 'u3']), 'history': tf.constant([[''], [''], ['']])}
  outputs = model.signatures[signatures.RECOMMEND](**query)
  assert outputs['item_ids'].shape == outputs['scores'].shape == (3, TOP_K)
  outputs = model.signatures[signatures.RECOMMEND_WITH_REASONS](**query)
  assert outputs[signatures.REASON_ITEM_IDS].shape == (3, TOP_K)


@pytest.mark.parametrize('name', ['teacher', 'student_int8'])
def test_recommendations_with_reasons_name_the_history_item_that_led_to_them(export_dirs, name):
  """`recommend_with_reasons` answers as `recommend`, and names each result's reason. The
  student's pooled history is a sum over the history items: each result names one of the
  latest history items (or none); the fixture's teacher (attention, no item-to-item component)
  has no such sum and names none. Without a history, no reasons."""
  model = tf.saved_model.load(export_dirs[name])
  length = exported_models.TRANSFORM.history_length
  items = model.signatures[signatures.RECOMMEND](
      user_id=tf.constant(['u1']), history=tf.constant([['']]))['item_ids'].numpy().astype(str)
  # Longer than the history the model reads, with an unknown id (OOV) and padding.
  history = items[0, :length + 2].tolist() + ['no-such-item', '']
  queries = {'user_id': tf.constant(['u1', 'u1']),
             'history': tf.constant([history, [''] * len(history)])}
  answer = model.signatures[signatures.RECOMMEND_WITH_REASONS](**queries)
  plain = model.signatures[signatures.RECOMMEND](**queries)
  np.testing.assert_array_equal(answer[signatures.ITEM_IDS], plain[signatures.ITEM_IDS])
  np.testing.assert_array_equal(answer[signatures.SCORES], plain[signatures.SCORES])
  reasons = answer[signatures.REASON_ITEM_IDS].numpy().astype(str)
  assert reasons.shape == (2, TOP_K)
  assert set(reasons[1]) == {''}
  if name == 'teacher':
    assert set(reasons[0]) == {''}
  else:
    assert set(reasons[0]) - {''}, reasons[0]
    assert set(reasons[0]) <= set(history[:-1][-length:]) | {''}


def test_every_signature_input_is_batched_along_dimension_0(exported):
  """TF Serving's server-side batching merges requests along dimension 0: every input of every
  signature must have a rank >= 1 whose first dimension is the (unknown) batch size."""
  model, _, _ = exported
  for name in signatures.SIGNATURES:
    _, specs = model.signatures[name].structured_input_signature
    assert specs, name
    for key, spec in specs.items():
      assert spec.shape.rank is not None and spec.shape.rank >= 1, (name, key, spec)
      assert spec.shape[0] is None, (name, key, spec)  # the batch dimension
    outputs = model.signatures[name].structured_outputs
    for key, spec in outputs.items():
      assert spec.shape.rank >= 1 and spec.shape[0] is None, (name, key, spec)
  assert signatures.RECOMMEND in model.signatures  # the contract's inputs only: no `k`
  assert set(model.signatures[signatures.RECOMMEND].structured_input_signature[1]) == {
      signatures.USER_ID, signatures.HISTORY}


def _variable_dtypes(export_dir: str) -> dict:
  reader = tf.train.load_checkpoint(os.path.join(export_dir, 'variables', 'variables'))
  return reader.get_variable_to_dtype_map()


def test_exports_hold_the_inference_graph_only_and_the_student_is_int8(export_dirs):
  teacher_dtypes = _variable_dtypes(export_dirs['teacher'])
  student_dtypes = _variable_dtypes(export_dirs['student_int8'])
  for dtypes in (teacher_dtypes, student_dtypes):
    # No optimizer state (QAT wrappers' own `optimizer_step` counters are part of the graph).
    assert not [name for name in dtypes if 'optimizer/' in name]
  assert tf.int8 not in teacher_dtypes.values()
  int8_names = [name for name, dtype in student_dtypes.items() if dtype == tf.int8]
  # Checkpoint keys name object paths: the user, item and side-feature tables, and the index.
  assert sum('int8_embeddings' in name for name in int8_names) >= 4
  assert sum('int8_candidates' in name for name in int8_names) == 1
  # The index's float cache is filled after loading: saved empty.
  shapes = tf.train.load_checkpoint(
      os.path.join(export_dirs['student_int8'], 'variables', 'variables')
  ).get_variable_to_shape_map()
  assert [shape[1] for name, shape in shapes.items() if '/_dequantized/' in name] == [0]


def test_exported_bytes_estimate_the_saved_models_variables(export_dirs, trained):
  # What `training.student_size` budgets with: the variables without the checkpoint's fixed
  # overhead (20-30 kB, most of these tiny models' bytes) and the item ids.
  data = trained['data']
  catalogue = len(data.catalogue[features.ITEM_ID])
  student_core = student.build_core(data.vocab, exported_models.STUDENT_SIZE, data.transform,
                                    data.stats.mean_rating)
  for name, core, int8 in (('teacher', trained['teacher'].core, False),
                           ('student_int8', student_core, True)):
    estimate = quantization.exported_bytes(core, catalogue, int8=int8)
    real = saved_models.variables_bytes(export_dirs[name])
    assert real - quantization.saved_model_overhead(catalogue) <= estimate <= real, name


def test_tflite_student_agrees_with_its_saved_model(export_dirs, trained):
  saved_model = tf.saved_model.load(export_dirs['student_int8'])
  recommend = saved_model.signatures[signatures.RECOMMEND_WITH_FEATURES]
  runner = tf.lite.Interpreter(exported_models.tflite_path(trained)).get_signature_runner()
  dtypes = {name: detail['dtype'] for name, detail in runner.get_input_details().items()}
  frame, columns = trained['frame'], trained['columns']
  overlaps = []
  for row in range(0, len(frame), len(frame) // 20):  # a sample of 20 queries
    raw = frame.iloc[row]
    expected = recommend(
        user_id=tf.constant([raw[features.USER_ID]]),
        history=tf.constant([raw[features.HISTORY].split() or ['']]),
        age=tf.constant([raw[features.AGE]], tf.int64),
        gender=tf.constant([raw[features.GENDER]]),
        occupation=tf.constant([raw[features.OCCUPATION]]),
        zip_code=tf.constant([str(raw[features.ZIP_CODE])]))['item_ids'].numpy()[0][:10]
    got = runner(**{name: columns[name][row:row + 1].astype(dtype)
                    for name, dtype in dtypes.items()})['item_ids'][0][:10]
    overlaps.append(len(set(expected) & set(got)) / 10)
  assert np.mean(overlaps) >= 0.9, overlaps


def test_saved_model_cli_lists_the_signatures_without_custom_ops(export_dirs):
  cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  for name in ('teacher', 'student_int8'):
    shown = subprocess.run([cli, 'show', '--dir', export_dirs[name], '--all'],
                           capture_output=True, text=True, check=True).stdout
    for signature in signatures.SIGNATURES:
      assert f"signature_def['{signature}']" in shown
    # Every op is a stock TensorFlow op (what TF Serving links), none from an extra library.
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dirs[name], 'saved_model.pb'), 'rb') as f:
      saved_model.ParseFromString(f.read())
    graph = saved_model.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node} | {
        node.op for function in graph.library.function for node in function.node_def}
    functions = {function.signature.name for function in graph.library.function}
    assert not [op for op in ops - functions if op_def_registry.get(op) is None]


def test_exports_carry_the_catalogue_file_with_the_raw_item_table(export_dirs, trained):
  """Each SavedModel's assets.extra/ holds the id, title, year and genres of every item its
  index ranks, in index order, as the raw item table has them."""
  data, frame = trained['data'], trained['frame']
  items = frame.drop_duplicates(features.ITEM_ID).set_index(features.ITEM_ID)
  for name, directory in export_dirs.items():
    records = catalogue.read_catalogue(catalogue.catalogue_path(directory))
    assert list(records) == data.catalogue[features.ITEM_ID].tolist(), name
    assert all(records[item]['title'] for item in records), name  # the data has every title
    for item, record in records.items():
      raw = items.loc[item]
      assert record == catalogue.record(item, raw[features.TITLE], raw[features.GENRES],
                                        raw[features.YEAR]), (name, item)


def test_the_catalogue_ranks_cold_items_by_their_content_and_excludes_them_by_id(
    trained, tmp_path):
  """Items without train interactions share the OOV tower index: the export ranks each by its
  content and tells them apart by raw id (history exclusion, returned ids)."""
  data = trained['data']
  warm = data.stats.catalogue
  oov = data.vocab.items - data.vocab.item_oov_buckets
  cold = {name: values[:2].copy() for name, values in warm.items()}
  cold[features.ITEM_INDEX][:] = oov
  cold[features.GENRE_INDICES][1] = 0  # no genre: other content than cold-a's
  cold[features.ITEM_ID] = np.array(['cold-a', 'cold-b'])
  with_cold = dataclasses.replace(data, cold_items=cold)
  assert len(with_cold.catalogue[features.ITEM_ID]) == len(warm[features.ITEM_ID]) + 2
  directory = str(tmp_path / 'teacher')
  export.export_saved_model(trained['teacher'], data.tf_transform_output, with_cold.catalogue,
                            TOP_K, exported_models.TRANSFORM.history_length, directory)
  model = tf.saved_model.load(directory)

  def query(history):
    return dict(user_id=tf.constant(['no-such-user']), history=tf.constant([history]),
                age=tf.constant([30], tf.int64), gender=tf.constant(['F']),
                occupation=tf.constant(['artist']), zip_code=tf.constant(['12345']))

  def rank(history):
    result = model.rank_catalogue(
        **query(history), depth=tf.constant(len(with_cold.catalogue[features.ITEM_ID])))
    ids = result['item_ids'].numpy().astype(str)[0]
    return ids, dict(zip(ids, result['scores'].numpy()[0]))

  ranked, scores = rank([''])
  assert sorted(ranked) == sorted(with_cold.catalogue[features.ITEM_ID])
  assert scores['cold-a'] != pytest.approx(scores['cold-b'])  # other genres, other score
  # A cold item in the history is excluded from recommendations, the other one is not.
  recommend = model.signatures[signatures.RECOMMEND_WITH_FEATURES]
  everything = len(ranked) - exported_models.TRANSFORM.history_length
  top = recommend(**query(['cold-a']))['item_ids'].numpy().astype(str)[0]
  ranked_after, _ = rank(['cold-a'])
  assert top.tolist() == [item for item in ranked_after if item != 'cold-a'][:len(top)]
  assert 'cold-a' not in top and len(top) == min(TOP_K, everything)


def test_the_fresh_quota_by_hand():
  # Index numbers 4, 5 and 6 are fresh; k = 4.
  is_fresh = tf.constant([False, False, False, False, True, True, True])
  scores = tf.constant([[5.0, 4.0, 3.0, 2.0], [5.0, 4.0, 3.0, 2.0], [5.0, 4.0, 3.0, 2.0]])
  numbers = tf.constant([[1, 2, 3, 4], [1, 2, 3, 4], [1, 4, 5, 2]])
  # The best fresh items of each query, as the fresh index returns them (-inf, 0: none left).
  fresh_scores = tf.constant([[2.0, 1.0, 0.5], [2.0, 1.0, -np.inf], [4.0, 3.0, 0.1]])
  fresh_numbers = tf.constant([[4, 5, 6], [4, 5, 0], [4, 5, 6]])
  top_scores, top = export.with_fresh_quota(scores, numbers, fresh_scores, fresh_numbers,
                                            is_fresh, slots=3)
  # Row 1: 4 stays, 5 and 6 replace 2 and 3, the lowest others. Row 2: only 5 is left to add:
  # it replaces 3. Row 3: two fresh items already; 6 replaces 2, the lowest other.
  np.testing.assert_array_equal(top.numpy(), [[1, 4, 5, 6], [1, 2, 4, 5], [1, 4, 5, 6]])
  np.testing.assert_allclose(top_scores.numpy(), [[5, 2, 1, 0.5], [5, 4, 2, 1], [5, 4, 3, 0.1]])
  # A quota the top-k already meets leaves it as it is.
  _, same = export.with_fresh_quota(scores[2:], numbers[2:], fresh_scores[2:], fresh_numbers[2:],
                                    is_fresh, slots=2)
  np.testing.assert_array_equal(same.numpy(), numbers[2:].numpy())
