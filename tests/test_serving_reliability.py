"""Reliability under load: 16 concurrent clients for 30 s while a new version is pushed.

Every request must succeed, and once a client sees the new version it never sees the old one
again (the swap is atomic); by the end every client is on the new version.
"""
import threading
import time

import pytest

import serving_fixtures

MODEL = 'live'
CLIENTS = 16
DURATION_S = 30.0
PUSH_AT_S = 10.0


@pytest.mark.parametrize('kind', serving_fixtures.server_kinds())
def test_no_request_fails_while_a_new_version_rolls_out(kind, tmp_path):
  serving_fixtures.save_tiny_model(str(tmp_path / MODEL), 1)
  config = serving_fixtures.write_config(str(tmp_path / 'models.config'),
                                         {MODEL: tmp_path / MODEL})
  with serving_fixtures.running_server(kind, config, [MODEL], poll_wait_seconds=0.5) as server:
    stop = threading.Event()
    seen = [[] for _ in range(CLIENTS)]  # per client: the version of every answer, in order
    failures = []

    def run_client(index: int) -> None:
      with server.client(MODEL, deadline_s=10.0, retries=0) as client:
        while not stop.is_set():
          try:
            result = client.recommend(serving_fixtures.USERS[index % 3], ['item1'], k=5)
            assert len(result.item_ids) == 5
            seen[index].append(result.version)
          except Exception as error:  # pylint: disable=broad-except
            failures.append(repr(error))

    threads = [threading.Thread(target=run_client, args=(index,)) for index in range(CLIENTS)]
    started = time.time()
    for thread in threads:
      thread.start()
    time.sleep(PUSH_AT_S)
    serving_fixtures.save_tiny_model(str(tmp_path / MODEL), 2)
    time.sleep(max(0.0, DURATION_S - (time.time() - started)))
    stop.set()
    for thread in threads:
      thread.join()
    server.check_alive()

  assert not failures, failures[:5]
  total = sum(len(versions) for versions in seen)
  assert all(versions for versions in seen), 'a client got no answer at all'
  for versions in seen:
    assert versions[0] == 1 and versions[-1] == 2, (versions[0], versions[-1])
    switch = versions.index(2)
    assert set(versions[switch:]) == {2}, 'an old-version answer after the new version'
  print(f'{total} requests in {DURATION_S:.0f} s, none failed')
