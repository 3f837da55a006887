"""Small HTTP helpers for the emulator tests: a Stream Load the way a careful client does it."""

import requests

AUTH = ('root', 'secret')


def stream_load(server, db, table, body, headers=None, auth=AUTH, fe=0, session=None):
  """PUT to the FE, follow the 307 by hand re-sending auth; returns the BE response JSON."""
  http = session or requests
  hdrs = {'Expect': '100-continue'}
  hdrs.update(headers or {})
  url = '%s/api/%s/%s/_stream_load' % (server.fe_urls[fe], db, table)
  first = http.put(url, data=body, headers=hdrs, auth=auth, allow_redirects=False, timeout=30)
  if first.status_code != 307:
    return first.json()
  second = http.put(first.headers['Location'], data=body, headers=hdrs, auth=auth, timeout=30)
  assert second.status_code == 200, second.text
  return second.json()


def ndjson(rows):
  import orjson  # pylint: disable=import-outside-toplevel
  return b''.join(orjson.dumps(r) + b'\n' for r in rows)


def wait_for(condition, timeout=10.0, what='the condition'):
  """Returns once ``condition()`` holds (checked every 10 ms); fails the test after ``timeout``."""
  import threading  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel
  tick = threading.Event()
  deadline = time.monotonic() + timeout
  while not condition():
    if time.monotonic() >= deadline:
      raise AssertionError(f'{what} did not happen within {timeout:.0f} s')
    tick.wait(0.01)
