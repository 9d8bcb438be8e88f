"""The client: CLI output, retries on UNAVAILABLE only, clear messages for deadlines and errors.

Failure handling runs against small in-process gRPC servers whose Predict fails on purpose; the
CLI runs against the local model server.
"""
from concurrent import futures
import json
import os
import shutil
import threading
import time

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

import serving_fixtures
from contract import catalogue
from contract import signatures
from serving import client as client_lib


class _FailingPredictions(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Answers Predict with `code` for the first `failures` calls, or sleeps `delay_s`."""

  def __init__(self, code=grpc.StatusCode.UNAVAILABLE, failures=0, delay_s=0.0):
    self.code, self.failures, self.delay_s = code, failures, delay_s
    self.calls = 0
    self.lock = threading.Lock()

  def Predict(self, request, context):  # pylint: disable=invalid-name
    with self.lock:
      self.calls += 1
      calls = self.calls
    if self.delay_s:
      time.sleep(self.delay_s)
    if calls <= self.failures:
      context.abort(self.code, f'failure {calls}')
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, 'served, but no model here')


class _Answers(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Answers every Predict with `code` and `details`."""

  def __init__(self, code, details):
    self.code, self.details = code, details

  def Predict(self, request, context):  # pylint: disable=invalid-name
    context.abort(self.code, self.details)


@pytest.fixture
def fake_server():
  servers = []

  def start(servicer):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port('127.0.0.1:0')
    server.start()
    servers.append(server)
    return f'127.0.0.1:{port}'

  yield start
  for server in servers:
    server.stop(0)


def test_unavailable_is_retried_with_backoff(fake_server):
  servicer = _FailingPredictions(grpc.StatusCode.UNAVAILABLE, failures=2)
  client = client_lib.ServingClient(fake_server(servicer), 'm', retries=3, backoff_s=0.05)
  started = time.time()
  with pytest.raises(client_lib.ServingClientError, match='no model here'):
    client.recommend('u')
  assert servicer.calls == 3
  assert time.time() - started >= 0.05 + 0.1  # backoff 0.05 s, then 0.1 s


def test_other_errors_are_not_retried(fake_server):
  servicer = _FailingPredictions(grpc.StatusCode.NOT_FOUND, failures=5)
  client = client_lib.ServingClient(fake_server(servicer), 'm', retries=3)
  with pytest.raises(client_lib.ServingClientError,
                     match="not found: model 'm' at .* is not served") as error:
    client.recommend('u')
  assert error.value.code == grpc.StatusCode.NOT_FOUND and servicer.calls == 1


def test_a_server_that_never_answers_runs_out_of_retries():
  client = client_lib.ServingClient(f'127.0.0.1:{serving_fixtures.free_port()}', 'm',
                                    retries=2, backoff_s=0.01, deadline_s=2)
  with pytest.raises(client_lib.ServingClientError, match='unavailable after 3 attempts'):
    client.recommend('u')


def test_deadline_exceeded_says_which_deadline(fake_server):
  client = client_lib.ServingClient(fake_server(_FailingPredictions(delay_s=1.0)), 'm',
                                    deadline_s=0.2)
  with pytest.raises(client_lib.ServingClientError, match='within the 0.2 s deadline') as error:
    client.recommend('u')
  assert error.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


# Messages as servers send them: several lines, control characters and bytes of a quoted input.
MESSAGE = 'assertion failed:\n\t [[{{node x}}]] value: \'\x00\x1b[2J\xff\' ' + 'y' * 3000


@pytest.mark.parametrize('code, start', [
    (grpc.StatusCode.INVALID_ARGUMENT, "error: invalid request to model 'm' at "),
    (grpc.StatusCode.NOT_FOUND, "error: not found: model 'm' at "),
    (grpc.StatusCode.FAILED_PRECONDITION, "error: FAILED_PRECONDITION from model 'm' at "),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "error: RESOURCE_EXHAUSTED from model 'm' at "),
    (grpc.StatusCode.INTERNAL, "error: INTERNAL from model 'm' at "),
    (grpc.StatusCode.UNKNOWN, "error: UNKNOWN from model 'm' at "),
])
def test_cli_prints_every_error_code_on_one_line(fake_server, capsys, code, start):
  target = fake_server(_Answers(code, MESSAGE))
  assert client_lib.main(['--target', target, '--model', 'm', 'recommend', 'u']) == 1
  captured = capsys.readouterr()
  assert captured.out == '' and captured.err.startswith(start)
  assert captured.err.count('\n') == 1 and '... (2055 more characters)' in captured.err
  assert all(char.isprintable() for char in captured.err.rstrip('\n'))
  assert "assertion failed: [[{{node x}}]] value: '\\x00\\x1b[2J" in captured.err


def test_version_and_label_are_exclusive():
  with pytest.raises(ValueError, match='not both'):
    client_lib.ServingClient(model='m', version=1, version_label='stable')


@pytest.fixture(scope='module')
def server(tmp_path_factory):
  base = tmp_path_factory.mktemp('models')
  serving_fixtures.save_tiny_model(str(base / 'tiny'), 3)
  config = serving_fixtures.write_config(str(base / 'models.config'), {'tiny': base / 'tiny'},
                                         labels={'tiny': {'stable': 3}})
  with serving_fixtures.running_server('local', config, ['tiny']) as running:
    running.model_dir = str(base / 'tiny')
    yield running


def test_cli_recommend(server, capsys):
  assert client_lib.main(['--target', server.target, '--model', 'tiny', '--label', 'stable',
                          'recommend', 'alice', '--history', 'item1', 'item2', '-k', '4']) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == 'tiny version 3: top 4 for user alice'
  assert len(lines) == 5 and lines[1].split()[0] == '1'
  assert not {'item1', 'item2'} & {line.split()[1] for line in lines[1:]}


def test_cli_score_metadata_status(server, capsys):
  common = ['--target', server.target, '--model', 'tiny']
  assert client_lib.main(common + ['score', 'alice', 'item1', 'item2']) == 0
  assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ['item1', 'item2']
  assert client_lib.main(common + ['metadata']) == 0
  out = capsys.readouterr().out
  assert 'recommend\n  in  history: string [None, None]\n  in  user_id: string [None]\n' in out
  assert '  out item_ids: string [None, 10]' in out
  assert client_lib.main(common + ['status']) == 0
  assert capsys.readouterr().out == 'tiny version 3: AVAILABLE\n'


def test_cli_reports_errors_in_one_line(server, capsys):
  assert client_lib.main(['--target', server.target, '--model', 'tiny', '--version', '99',
                          'recommend', 'alice']) == 1
  error = capsys.readouterr().err
  assert error.startswith("error: not found: model 'tiny' version 99") and 'Servable' in error
  assert error.count('\n') == 1


def test_cli_score_needs_one_rating_per_history_item(server, capsys):
  assert client_lib.main(['--target', server.target, '--model', 'tiny', 'score', 'alice',
                          'item1', '--history', 'item2', 'item3', '--history-ratings', '4']) == 1
  error = capsys.readouterr().err
  assert error == 'error: history_ratings needs one rating per history item: got 1 ratings ' \
                  'for 2 items\n'


@pytest.mark.parametrize('arguments, message', [
    (['-k', str(signatures.TOP_K + 1)], 'k must be an integer in [1, 100], got 101'),
    (['-k', '0'], 'k must be an integer in [1, 100], got 0'),
    (['-k', '-5'], 'k must be an integer in [1, 100]'),
    (['-k', str(10 ** 20)], 'k must be an integer in [1, 100]'),
])
def test_cli_refuses_k_out_of_range_in_one_line(server, capsys, arguments, message):
  assert client_lib.main(['--target', server.target, '--model', 'tiny', 'recommend', 'alice']
                         + arguments) == 1
  error = capsys.readouterr().err
  assert error.startswith('error: ') and message in error and error.count('\n') == 1


def test_cli_refuses_arguments_that_are_not_utf8_in_one_line(server, capsys):
  user = b'\xff\xfeuser'.decode('utf-8', 'surrogateescape')  # how Python passes such argv
  common = ['--target', server.target, '--model', 'tiny']
  assert client_lib.main(common + ['recommend', user]) == 1
  assert capsys.readouterr().err == "error: '\\udcff\\udcfeuser' is not UTF-8 text\n"
  assert client_lib.main(common + ['score', 'alice', user]) == 1
  assert capsys.readouterr().err == "error: '\\udcff\\udcfeuser' is not UTF-8 text\n"


TITLES = {item['item_id']: item for item in serving_fixtures.TINY_CATALOGUE}


HISTORY = ['item1', 'item2']


def _recommend(server, *arguments):
  return client_lib.main(['--target', server.target, '--model', 'tiny', 'recommend', 'alice',
                          '--history', *HISTORY, '-k', '10', *arguments])


def _reasons(server) -> dict:
  """{item id: the history item that led to it, or ''} of the tiny model's top 10 for `alice`
  and HISTORY, in process."""
  model = tf.saved_model.load(os.path.join(server.model_dir, '3'))
  answer = model.signatures['recommend_with_reasons'](user_id=tf.constant(['alice']),
                                                      history=tf.constant([HISTORY]))
  return dict(zip(answer['item_ids'].numpy().astype(str)[0],
                  answer['reason_item_ids'].numpy().astype(str)[0]))


def test_labels_show_title_year_and_genres_where_known():
  assert catalogue.label(TITLES['item3']) == 'Tiny Film 3 (1993)  Comedy, Drama'
  assert catalogue.label(TITLES['item9']) == ''  # nothing known
  assert catalogue.label(None) == ''
  movielens = catalogue.record('1', 'Toy Story (1995)', "Animation|Children's|unknown", 1995)
  assert catalogue.label(movielens) == "Toy Story (1995)  Animation, Children's"
  # MovieLens: the title's year, not the (re-)release date's.
  assert catalogue.label(catalogue.record('181', 'Return of the Jedi (1983)', '', 1997)) == \
      'Return of the Jedi (1983)'
  assert catalogue.label(catalogue.record('9', '  ', 'Drama', 1997)) == '(1997)  Drama'


def test_titles_come_from_the_answering_versions_catalogue_file(tmp_path):
  for version, title in ((3, 'Old'), (5, 'New')):
    catalogue.write_catalogue(str(tmp_path / str(version)), [catalogue.record('a', title)])
  (tmp_path / '7').mkdir()  # a version without a catalogue file
  assert client_lib.load_items(model_dir=str(tmp_path), version=3)['a']['title'] == 'Old'
  assert client_lib.load_items(model_dir=str(tmp_path), version=5)['a']['title'] == 'New'
  with pytest.raises(FileNotFoundError, match='7 has no catalogue.json'):
    client_lib.load_items(model_dir=str(tmp_path))  # the newest, 7, has none
  shutil.rmtree(tmp_path / '7')
  assert client_lib.load_items(model_dir=str(tmp_path), version=4)['a']['title'] == 'New'
  assert client_lib.load_items() == {}


def test_titles_come_from_an_items_csv(tmp_path):
  path = tmp_path / 'items.csv'
  path.write_text('item_id,title,genres,year,extra\n'
                  '1,Toy Story (1995),Animation|Comedy,1995,x\n'
                  '2,,,,\n', encoding='utf-8')
  assert client_lib.load_items(items_csv=str(path)) == {
      '1': {'item_id': '1', 'title': 'Toy Story (1995)', 'year': 1995,
            'genres': ['Animation', 'Comedy']},
      '2': {'item_id': '2', 'title': None, 'year': None, 'genres': []}}
  (tmp_path / 'ratings.csv').write_text('user_id,rating\n1,5\n')
  with pytest.raises(ValueError, match="no 'item_id' column"):
    client_lib.load_items(items_csv=str(tmp_path / 'ratings.csv'))


def test_cli_recommend_shows_titles_from_the_model_dir(server, capsys):
  assert _recommend(server, '--model-dir', server.model_dir) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == 'tiny version 3: top 10 for user alice'
  for line in lines[1:]:
    rank, item, score = line.split()[:3]
    expected = catalogue.label(TITLES[item])
    assert line == f'{int(rank):4d}  {item:>10}  {score}  {expected}'.rstrip()
  assert any('Tiny Film' in line for line in lines[1:])
  assert 'because you watched' not in '\n'.join(lines)  # reasons only when asked for


def test_cli_recommend_with_reasons_names_the_history_item_by_title(server, capsys):
  assert _recommend(server, '--model-dir', server.model_dir) == 0
  plain = capsys.readouterr().out.splitlines()
  assert _recommend(server, '--model-dir', server.model_dir, '--reasons') == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == plain[0]
  reasons = _reasons(server)
  for line, plain_line in zip(lines[1:], plain[1:]):
    item = line.split()[1]
    # The same items and scores as without reasons, then the reason where there is one.
    expected = plain_line
    if reasons[item]:
      expected = f'{plain_line}  because you watched {catalogue.title(TITLES[reasons[item]])}'
    assert line == expected
  # Both history items lead to some items here, and not every item has a reason.
  assert set(reasons.values()) == {'item1', 'item2', ''}
  assert 'because you watched Tiny Film 1 (1991)' in '\n'.join(lines)


def test_cli_recommend_shows_titles_from_an_items_csv(server, capsys, tmp_path):
  path = tmp_path / 'items.csv'
  path.write_text('item_id,title\n' + ''.join(f'{item},Film {item}\n'
                                              for item in serving_fixtures.ITEMS))
  assert _recommend(server, '--items', str(path)) == 0
  lines = capsys.readouterr().out.splitlines()[1:]
  assert len(lines) == 10 and all(line.endswith(f'Film {line.split()[1]}') for line in lines)
  assert _recommend(server, '--items', str(path), '--reasons') == 0
  lines = capsys.readouterr().out.splitlines()[1:]
  assert len(lines) == 10 and all(f'  Film {line.split()[1]}' in line for line in lines)
  reasons = _reasons(server)
  for line in lines:
    reason = reasons[line.split()[1]]
    assert line.endswith(f'because you watched Film {reason}' if reason
                         else f'Film {line.split()[1]}')


def test_cli_recommend_json(server, capsys):
  assert _recommend(server) == 0
  plain = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
  assert _recommend(server, '--model-dir', server.model_dir, '--json') == 0
  answer = json.loads(capsys.readouterr().out)
  assert {key: answer[key] for key in ('model', 'version', 'user_id')} == {
      'model': 'tiny', 'version': 3, 'user_id': 'alice'}
  assert [(str(item['rank']), item['item_id'], f"{item['score']:.4f}")
          for item in answer['items']] == [tuple(line) for line in plain]
  for item in answer['items']:
    known = TITLES[item['item_id']]
    assert {key: item[key] for key in ('title', 'year', 'genres')} == {
        key: known[key] for key in ('title', 'year', 'genres')}
    assert 'reason_item_id' not in item and 'reason_title' not in item  # not asked for
  # Without a catalogue: the same answer, nothing known of the items.
  assert _recommend(server, '--json') == 0
  bare = json.loads(capsys.readouterr().out)['items']
  assert [item['item_id'] for item in bare] == [item['item_id'] for item in answer['items']]
  assert all(item['title'] is None and item['genres'] == [] for item in bare)


def test_cli_recommend_json_with_reasons(server, capsys):
  assert _recommend(server, '--json') == 0
  plain = json.loads(capsys.readouterr().out)['items']
  assert _recommend(server, '--model-dir', server.model_dir, '--json', '--reasons') == 0
  answer = json.loads(capsys.readouterr().out)['items']
  reasons = _reasons(server)
  for item, plain_item in zip(answer, plain):
    assert (item['item_id'], item['score']) == (plain_item['item_id'], plain_item['score'])
    reason = reasons[item['item_id']] or None
    assert item['reason_item_id'] == reason
    assert item['reason_title'] == (catalogue.title(TITLES[reason]) if reason else None)
  assert {item['reason_title'] for item in answer} >= {'Tiny Film 1 (1991)'}
  # Without a catalogue: the same reasons, by id only.
  assert _recommend(server, '--json', '--reasons') == 0
  bare = json.loads(capsys.readouterr().out)['items']
  assert [item['reason_item_id'] for item in bare] == [item['reason_item_id'] for item in answer]
  assert all(item['reason_title'] is None for item in bare)


def test_answers_without_reasons_show_none():
  """An answer of `recommend` (or of another server) carries item ids and scores only: the
  client shows no reasons."""
  response = predict_pb2.PredictResponse()
  response.outputs[signatures.ITEM_IDS].CopyFrom(tf.make_tensor_proto([[b'a', b'b']]))
  response.outputs[signatures.SCORES].CopyFrom(tf.make_tensor_proto([[2.0, 1.0]]))
  result, = client_lib.ServingClient.parse_recommendations(response, k=1)
  assert (result.item_ids, result.reason_item_ids) == (['a'], None)
  assert 'reason_item_id' not in client_lib.describe(result, TITLES)[0]
  response.outputs[signatures.REASON_ITEM_IDS].CopyFrom(tf.make_tensor_proto([[b'', b'b']]))
  result, = client_lib.ServingClient.parse_recommendations(response)
  assert result.reason_item_ids == ['', 'b']
  assert [row['reason_item_id'] for row in client_lib.describe(result, TITLES)] == [None, 'b']
  assert client_lib.reason_text('', TITLES) == ''
  assert client_lib.reason_text('item3', TITLES) == 'because you watched Tiny Film 3 (1993)'
  assert client_lib.reason_text('item9', TITLES) == 'because you watched item9'  # no title


def test_reasons_from_a_model_without_the_signature_say_so(capsys, tmp_path):
  """A model exported before `recommend_with_reasons`: asking for reasons fails in one line
  that says to ask without them; the plain request still works."""
  serving_fixtures.save_tiny_model(str(tmp_path / 'old'), 1, with_reasons=False)
  config = serving_fixtures.write_config(str(tmp_path / 'models.config'),
                                         {'old': tmp_path / 'old'})
  with serving_fixtures.running_server('local', config, ['old']) as old_server:
    with client_lib.ServingClient(old_server.target, 'old') as client:
      assert len(client.recommend('alice', HISTORY, k=3).item_ids) == 3
      with pytest.raises(client_lib.ServingClientError, match='ask without reasons') as error:
        client.recommend('alice', HISTORY, k=3, reasons=True)
      assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert client_lib.main(['--target', old_server.target, '--model', 'old', 'recommend',
                            'alice', '--reasons']) == 1
    error = capsys.readouterr().err
    assert error.startswith('error: ') and error.count('\n') == 1
    assert f'no {signatures.RECOMMEND_WITH_REASONS} signature' in error


def test_cli_recommend_without_a_catalogue_file_says_what_to_give(server, capsys, tmp_path):
  shutil.copytree(os.path.join(server.model_dir, '3'), tmp_path / '3')
  os.remove(catalogue.catalogue_path(str(tmp_path / '3')))
  assert _recommend(server, '--model-dir', str(tmp_path)) == 1
  error = capsys.readouterr().err
  assert error.startswith('error: ') and 'has no catalogue.json' in error
  assert 'give --items instead' in error and error.count('\n') == 1
  assert _recommend(server, '--items', str(tmp_path / 'absent.csv')) == 1
  assert 'absent.csv' in capsys.readouterr().err
