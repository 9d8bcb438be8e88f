"""The page to try the models (serving/page.html), in a real headless Chromium against the local
server serving the exported test models (`exported_models`) as `student` and `teacher`.

Chromium is driven over its DevTools pipe rather than with `--dump-dom`: `--dump-dom` prints the
DOM at the load event, before the page's requests have answered, and `--virtual-time-budget`,
which waits for them, runs the page on virtual time, in which the time spent waiting for the
server counts as nothing, so the page's own measurement (query to titles, `performance.now()`)
would be wrong. The test skips when no Chromium is installed, except in CI (`CI=true`), where it
fails (`.ci/run` installs it).
"""
import html.parser
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from typing import Dict, List, Optional

import pytest

import serving_fixtures
from contract import catalogue
from contract import features
from contract import signatures
from models import layout
from serving import rest

BROWSERS = ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable')
MODELS = {'student': layout.STUDENT_INT8, 'teacher': layout.TEACHER}  # served name: export
K = 10  # items the page shows per model
PAGE_TIMEOUT_S = 60.0


def chromium() -> str:
  """The Chromium binary; skips the test when there is none, fails it in CI."""
  found = next(filter(None, map(shutil.which, BROWSERS)), None)
  if found is None:
    message = f'no Chromium binary on PATH (looked for {", ".join(BROWSERS)})'
    if os.environ.get('CI') == 'true':
      pytest.fail(f'{message}; CI installs it (.ci/run)')
    pytest.skip(message)
  return found


class DevToolsPipe:
  """A headless Chromium driven over `--remote-debugging-pipe`: DevTools protocol messages are
  JSON terminated by NUL, written to its fd 3 and read from its fd 4 (mapped here to the
  process's stdin and stdout)."""

  def __init__(self, binary: str, profile_dir: str):
    self._log = tempfile.TemporaryFile()
    self._process = subprocess.Popen(
        ['sh', '-c', 'exec "$@" 3<&0 4>&1 </dev/null >/dev/null', 'sh', binary, '--headless',
         '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--remote-debugging-pipe',
         f'--user-data-dir={profile_dir}', 'about:blank'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
    self._buffer = b''
    self._next_id = 0

  def _message(self, deadline: float) -> dict:
    while b'\0' not in self._buffer:
      ready, _, _ = select.select([self._process.stdout], [], [], max(0, deadline - time.time()))
      chunk = self._process.stdout.read1(1 << 16) if ready else b''
      if not chunk:
        raise RuntimeError(f'Chromium closed its DevTools pipe or did not answer:\n{self.log()}')
      self._buffer += chunk
    raw, self._buffer = self._buffer.split(b'\0', 1)
    return json.loads(raw)

  def call(self, method: str, session: Optional[str] = None, timeout_s: float = 30.0,
           **params) -> dict:
    """The result of one DevTools method (events that arrive meanwhile are dropped)."""
    self._next_id += 1
    message = {'id': self._next_id, 'method': method, 'params': params}
    if session:
      message['sessionId'] = session
    self._process.stdin.write(json.dumps(message).encode() + b'\0')
    self._process.stdin.flush()
    deadline = time.time() + timeout_s
    while True:
      reply = self._message(deadline)
      if reply.get('id') == self._next_id:
        if 'error' in reply:
          raise RuntimeError(f'{method}: {reply["error"]}')
        return reply['result']

  def log(self) -> str:
    self._log.seek(0)
    return self._log.read().decode(errors='replace')[-3000:]

  def close(self) -> None:
    try:
      self.call('Browser.close', timeout_s=5)
    except RuntimeError:
      pass  # it may close the pipe before answering
    try:
      self._process.wait(timeout=10)
    except subprocess.TimeoutExpired:
      self._process.kill()
      self._process.wait()
    self._log.close()


def render(binary: str, url: str, until: str, profile_dir: str, timeout_s: float) -> str:
  """The DOM (outerHTML) of `url` once the JavaScript expression `until` is true, on real time."""
  browser = DevToolsPipe(binary, profile_dir)
  try:
    target = browser.call('Target.createTarget', url=url)['targetId']
    session = browser.call('Target.attachToTarget', targetId=target, flatten=True)['sessionId']

    def evaluate(expression: str):
      return browser.call('Runtime.evaluate', session, expression=expression,
                          returnByValue=True)['result'].get('value')

    deadline = time.time() + timeout_s
    while not evaluate(until):
      if time.time() > deadline:
        pytest.fail(f'the page did not finish in {timeout_s:g} s:\n'
                    f'{evaluate("document.documentElement.outerHTML")}')
      time.sleep(0.05)
    return evaluate('document.documentElement.outerHTML')
  finally:
    browser.close()


class Results(html.parser.HTMLParser):
  """From the page's DOM: the state, the timing (ms) and each model column's items as
  (item id, title text), and their reasons as [reason item id, text] ('' for none); the error
  text when there is one."""

  def __init__(self, dom: str):
    super().__init__()
    self.state, self.ms, self.error = None, None, ''
    self.columns: Dict[str, List[List[str]]] = {}
    self.reasons: Dict[str, List[List[str]]] = {}
    self._model, self._item, self._field = None, None, None
    self.feed(dom)

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    classes = (attrs.get('class') or '').split()
    if tag == 'body':
      self.state = attrs.get('data-state')
    elif attrs.get('id') == 'timing' and 'data-ms' in attrs:
      self.ms = float(attrs['data-ms'])
    elif attrs.get('id') == 'error':
      self._field = 'error'
    elif 'column' in classes:
      self._model = attrs['data-model']
      self.columns[self._model] = []
      self.reasons[self._model] = []
    elif 'item' in classes:
      self._item = [attrs['data-item-id'], '']
      self.columns[self._model].append(self._item)
      self.reasons[self._model].append(['', ''])
    elif 'title' in classes and self._item is not None:
      self._field = 'title'
    elif 'reason' in classes and self._item is not None:
      self.reasons[self._model][-1][0] = attrs['data-reason-item-id']
      self._field = 'reason'

  def handle_endtag(self, tag):
    if tag in ('span', 'p', 'div'):
      self._field = None

  def handle_data(self, data):
    if self._field == 'title':
      self._item[1] += data
    elif self._field == 'reason':
      self.reasons[self._model][-1][1] += data
    elif self._field == 'error':
      self.error += data


@pytest.fixture(scope='module')
def page_server(export_dirs, tmp_path_factory):
  """The local server with REST on, serving the exports as `student` and `teacher` version 1."""
  base = tmp_path_factory.mktemp('page_models')
  for name, export in MODELS.items():
    shutil.copytree(export_dirs[export], base / name / '1')
  config = serving_fixtures.write_config(str(base / 'models.config'),
                                         {name: base / name for name in MODELS})
  rest_port = serving_fixtures.free_port()
  with serving_fixtures.running_server('local', config, list(MODELS),
                                       extra_args=[f'--rest_api_port={rest_port}']) as server:
    server.rest = f'http://127.0.0.1:{rest_port}'
    server.base = base
    yield server


def test_the_page_pads_histories_as_the_client_does():
  with open(rest.PAGE_FILE) as page:
    source = page.read()
  assert re.search(r'const HISTORY_LENGTH = (\d+);', source).group(1) == \
      str(signatures.HISTORY_LENGTH)
  # The signatures it asks: with reasons, and without them for models that lack it.
  assert re.search(r"const REASONS_SIGNATURE = '(\w+)';", source).group(1) == \
      signatures.RECOMMEND_WITH_REASONS
  assert re.search(r"const RECOMMEND_SIGNATURE = '(\w+)';", source).group(1) == \
      signatures.RECOMMEND
  assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', source)  # nothing from outside


def test_a_query_in_the_url_shows_ten_titles_per_model(page_server, trained, tmp_path):
  binary = chromium()
  frame = trained['frame']
  user = str(frame[features.USER_ID].iloc[0])
  history = frame[frame[features.USER_ID] == user][features.ITEM_ID].astype(str).tolist()[:3]
  query = urllib.parse.urlencode({'user': user, 'history': ','.join(history)})
  dom = render(binary, f'{page_server.rest}/#{query}',
               "['done', 'error'].includes(document.body.dataset.state)", str(tmp_path),
               PAGE_TIMEOUT_S)
  results = Results(dom)
  assert results.state == 'done', results.error
  assert list(results.columns) == list(MODELS)  # side by side, the student first
  for name in MODELS:
    items = catalogue.read_catalogue(catalogue.catalogue_path(str(page_server.base / name / '1')))
    with page_server.client(name) as client:
      answer = client.recommend(user, history, K, reasons=True)
    expected = answer.item_ids
    shown = results.columns[name]
    assert [item for item, _ in shown] == expected, name
    # "because you watched <title>" where the model names a history item.
    assert [reason for reason, _ in results.reasons[name]] == answer.reason_item_ids, name
    for reason, text in results.reasons[name]:
      assert text == (f'because you watched {catalogue.title(items[reason])}' if reason else '')
    if name == 'student':  # its pooled history gives reasons (test_export)
      assert any(reason for reason, _ in results.reasons[name])
    titles = [title for _, title in shown]
    assert len(titles) == K and all(titles), name
    for item, title in shown:
      assert items[item]['title'], item  # every exported item has a title in the test data
      assert title == catalogue.label({**items[item], 'genres': []}), item  # 'Title (year)'
  assert results.ms > 0
  print(f'\nquery to {K} titles of {len(MODELS)} models: {results.ms:.1f} ms')


def test_without_a_teacher_the_page_shows_the_student_alone(page_server, tmp_path):
  binary = chromium()
  config = serving_fixtures.write_config(str(tmp_path / 'models.config'),
                                         {'student': page_server.base / 'student'})
  rest_port = serving_fixtures.free_port()
  with serving_fixtures.running_server('local', config, ['student'],
                                       extra_args=[f'--rest_api_port={rest_port}']):
    dom = render(binary, f'http://127.0.0.1:{rest_port}/#user=nobody',
                 "['done', 'error'].includes(document.body.dataset.state)", str(tmp_path),
                 PAGE_TIMEOUT_S)
  results = Results(dom)
  assert results.state == 'done', results.error
  assert list(results.columns) == ['student'] and len(results.columns['student']) == K


def test_a_model_without_reasons_is_shown_without_them(tmp_path):
  """A model exported before `recommend_with_reasons`: the page asks `recommend` instead and
  shows its items, with no reasons."""
  binary = chromium()
  base = tmp_path / 'models'
  serving_fixtures.save_tiny_model(str(base / 'student'), 1, with_reasons=False)
  config = serving_fixtures.write_config(str(tmp_path / 'models.config'),
                                         {'student': base / 'student'})
  rest_port = serving_fixtures.free_port()
  history = ['item1', 'item2']
  with serving_fixtures.running_server('local', config, ['student'],
                                       extra_args=[f'--rest_api_port={rest_port}']) as server:
    dom = render(binary, f'http://127.0.0.1:{rest_port}/#user=alice&history={",".join(history)}',
                 "['done', 'error'].includes(document.body.dataset.state)",
                 str(tmp_path / 'profile'), PAGE_TIMEOUT_S)
    with server.client('student') as client:
      expected = client.recommend('alice', history, K).item_ids
  results = Results(dom)
  assert results.state == 'done', results.error
  assert [item for item, _ in results.columns['student']] == expected
  assert results.reasons['student'] == [['', '']] * K
