"""Why an item (`models.reasons`): each history item's term in a score, and the largest one."""
import dataclasses

import numpy as np
import tensorflow as tf

import tiny_models
from contract import features
from models import item_item
from models import quantization
from models import reasons
from models import student
from models import teacher
from models import towers

HISTORY = tiny_models.batch()[features.HISTORY_INDICES]  # [[1, 2, 0, 0], [3, 0, 0, 0], [4..7]]
RANK = 3


def _tables(seed: int = 0, window: int = tiny_models.TRANSFORM.history_length):
  rng = np.random.default_rng(seed)
  def rows():
    table = rng.normal(size=(tiny_models.VOCAB.items, RANK)).astype(np.float32)
    table[features.PADDING_INDEX] = 0.0  # as fitted tables have it
    return table
  return item_item.ItemItemTables(rows(), rows(), l2=1.0, window=window)


def _hybrid_student(tables, mix):
  core = student.build_core(tiny_models.VOCAB,
                            dataclasses.replace(tiny_models.STUDENT_SIZE, item_item=True),
                            tiny_models.TRANSFORM, 3.5, tables)
  core.get_layer('hybrid_mix').mix.assign(mix)
  return core


def _catalogue_rows(core) -> tf.Tensor:
  """[3, catalogue, dim]: every catalogue item's candidate embedding, for each of 3 queries."""
  tower = towers.candidate_tower(core)
  rows = tower(towers.select({name: tf.constant(values)
                              for name, values in tiny_models.CATALOGUE.items()}, tower))
  return tf.tile(rows[None], [len(HISTORY), 1, 1])


def _score_change(core, candidates: tf.Tensor) -> np.ndarray:
  """[3, catalogue]: each score with the batch's histories minus without any history."""
  tower = towers.query_tower(core)
  batch = tiny_models.batch()
  without = dict(batch, **{features.HISTORY_INDICES: tf.zeros_like(HISTORY)})
  change = tower(towers.select(batch, tower)) - tower(towers.select(without, tower))
  return tf.einsum('bd,bkd->bk', change, candidates).numpy()


def _ids(history: tf.Tensor) -> tf.Tensor:
  return tf.constant([[f'watched{index}' if index else '' for index in row]
                      for row in history.numpy()])


def test_the_reason_is_the_history_row_with_the_largest_product_with_the_items_row():
  """Item-to-item alone (mix [0, 1]): item i's term in item j's score is H[i] · C[j], so the
  reason is the history item whose row has the largest dot product with the result's row."""
  tables = _tables()
  history = tables.history.copy()
  history[1:4] = np.eye(RANK) * [1.0, 2.0, 3.0]  # items 1, 2, 3: one axis each
  tables = dataclasses.replace(tables, history=history)
  core = _hybrid_student(tables, [0.0, 1.0])
  candidates = _catalogue_rows(core)
  got = reasons.HistoryReasons(core)(HISTORY, _ids(HISTORY), candidates).numpy().astype(str)
  for row, history_row in enumerate(HISTORY.numpy()):
    items = history_row[history_row > 0]
    products = tables.candidates[tiny_models.CATALOGUE[features.ITEM_INDEX]] @ history[items].T
    expected = np.where(products.max(axis=1) > 0,
                        np.array([f'watched{item}' for item in items])[products.argmax(axis=1)], '')
    np.testing.assert_array_equal(got[row], expected)
  assert set(got[0]) == {'watched1', 'watched2', ''}  # both reasons, and items none raises


def test_terms_sum_to_what_the_history_adds_to_each_score():
  """The towers' pooled history and the item-to-item component, mixed: the terms of a float
  student's history positions add up to the score with the history minus without it."""
  core = _hybrid_student(_tables(window=2), [0.3, 0.7])
  history_reasons = reasons.HistoryReasons(core)
  assert history_reasons.towers is not None  # the pooled history counts too
  candidates = _catalogue_rows(core)
  terms = history_reasons.terms(HISTORY, candidates).numpy()
  np.testing.assert_allclose(terms.sum(axis=2), _score_change(core, candidates), atol=1e-5)
  assert np.all(terms[HISTORY.numpy()[:, None, :].repeat(terms.shape[1], 1) == 0] == 0)


def test_an_int8_students_terms_are_those_of_its_applied_weights():
  """Quantization-aware Dense layers and int8 tables: the terms match the score's change up to
  the int8 rounding of the query layer's input and output."""
  core = _hybrid_student(_tables(), [0.4, 0.6])
  core = quantization.int8_embeddings(
      quantization.quantize_dense_layers(core, student.CUSTOM_OBJECTS), student.CUSTOM_OBJECTS)
  history_reasons = reasons.HistoryReasons(core)
  assert history_reasons.towers is not None
  candidates = _catalogue_rows(core)
  change = _score_change(core, candidates)
  terms = history_reasons.terms(HISTORY, candidates).numpy()
  assert np.abs(terms.sum(axis=2) - change).max() < 0.02 * np.abs(change).max()


def test_a_teachers_attention_gives_no_terms_but_its_item_item_component_does():
  size = tiny_models.teacher_size('transformer')
  plain = teacher.build_core(tiny_models.VOCAB, size, tiny_models.TRANSFORM, 3.5)
  assert not reasons.HistoryReasons(plain).available
  candidates = _catalogue_rows(plain)
  assert set(reasons.HistoryReasons(plain)(HISTORY, _ids(HISTORY), candidates).numpy().ravel()
             ) == {b''}

  tables = _tables()
  hybrid = teacher.build_core(tiny_models.VOCAB, dataclasses.replace(size, item_item=True),
                              tiny_models.TRANSFORM, 3.5, tables)
  hybrid.get_layer('hybrid_mix').mix.assign([0.5, 2.0])
  history_reasons = reasons.HistoryReasons(hybrid)
  assert history_reasons.towers is None
  candidates = _catalogue_rows(hybrid)
  item_rows = tables.candidates[tiny_models.CATALOGUE[features.ITEM_INDEX]]
  expected = 2.0 * np.einsum('kr,blr->bkl', item_rows, tables.history[HISTORY.numpy()])
  np.testing.assert_allclose(history_reasons.terms(HISTORY, candidates).numpy(), expected,
                             rtol=1e-5, atol=1e-6)


def test_a_linear_teacher_without_hidden_layers_counts_its_pooled_history():
  size = dataclasses.replace(tiny_models.teacher_size('mean'), hidden_units=0)
  core = teacher.build_core(tiny_models.VOCAB, size, tiny_models.TRANSFORM, 3.5)
  assert reasons.HistoryReasons(core).towers is not None
  with_hidden = teacher.build_core(tiny_models.VOCAB, tiny_models.teacher_size('mean'),
                                   tiny_models.TRANSFORM, 3.5)
  assert reasons.HistoryReasons(with_hidden).towers is None  # a ReLU after the pooling


def test_no_history_or_no_positive_term_gives_no_reason():
  core = _hybrid_student(_tables(), [0.0, 1.0])
  candidates = _catalogue_rows(core)
  empty = tf.zeros_like(HISTORY)
  history_reasons = reasons.HistoryReasons(core)
  assert set(history_reasons(empty, _ids(empty), candidates).numpy().ravel()) == {b''}
  # Row 1's history is one item: its reason where its term is positive, none where negative.
  got = history_reasons(HISTORY, _ids(HISTORY), candidates).numpy().astype(str)[1]
  term = history_reasons.terms(HISTORY, candidates).numpy()[1, :, 0]
  np.testing.assert_array_equal(got, np.where(term > 0, 'watched3', ''))
  assert 0 < np.sum(term > 0) < len(term)


def test_reasons_add_no_variables():
  core = _hybrid_student(_tables(), [0.5, 0.5])
  before = [variable.ref() for variable in core.variables]
  history_reasons = reasons.HistoryReasons(core)
  history_reasons(HISTORY, _ids(HISTORY), _catalogue_rows(core))
  assert [variable.ref() for variable in core.variables] == before


def test_the_query_towers_pass_gives_the_same_queries_and_reasons():
  """`embed_queries` computes the queries as the query tower does and, in the same pass, the
  history rows that the reasons weigh: the reasons from them are those from rows looked up
  again, also for ids of the batch's longest history only (the later positions pad)."""
  core = _hybrid_student(_tables(), [0.4, 0.6])
  core = quantization.int8_embeddings(
      quantization.quantize_dense_layers(core, student.CUSTOM_OBJECTS), student.CUSTOM_OBJECTS)
  history_reasons = reasons.HistoryReasons(core)
  batch = tiny_models.batch()
  queries, rows = history_reasons.embed_queries(batch)
  tower = towers.query_tower(core)
  np.testing.assert_array_equal(queries.numpy(), tower(towers.select(batch, tower)).numpy())
  candidates = _catalogue_rows(core)
  looked_up = history_reasons(HISTORY, _ids(HISTORY), candidates).numpy()
  np.testing.assert_array_equal(history_reasons(HISTORY, _ids(HISTORY), candidates, rows),
                                looked_up)
  # The first two queries' histories are at most 2 items long.
  two = history_reasons(HISTORY[:2], _ids(HISTORY)[:2, :2], candidates[:2],
                        [part[:2] for part in rows])
  np.testing.assert_array_equal(two, looked_up[:2])
  assert set(looked_up.ravel()) - {b''}
