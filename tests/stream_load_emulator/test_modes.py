"""Count-only mode, cost model, TLS and the command line."""

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from stream_load_emulator import CostModel
from tests.stream_load_emulator.helpers import AUTH, ndjson, stream_load
from tests.fixtures.stream_load import DEMO_SCHEMA

pytestmark = pytest.mark.transform

JL = {'format': 'json', 'read_json_by_line': 'true'}
ROOT = os.path.join(os.path.dirname(__file__), '..', '..')


def test_count_only_counts_and_stores_nothing(make_stream_load_server):
  srv = make_stream_load_server(count_only=True)
  body = ndjson([{'event_id': i} for i in range(1000)])
  res = stream_load(srv, 'demo', 'events', body, dict(JL, label='c1'))
  assert res['Status'] == 'Success' and res['NumberLoadedRows'] == 1000
  assert srv.query('SELECT count(*) FROM demo.events') == [(0,)]
  assert stream_load(srv, 'demo', 'events', body, dict(JL, label='c1'))['Status'] == (
      'Label Already Exists')
  no_newline = stream_load(srv, 'demo', 'events', b'{"a":1}\n{"a":2}', JL)
  assert no_newline['NumberLoadedRows'] == 2
  array = stream_load(srv, 'demo', 'events', b'[{"a":1},{"a":2},{"a":3}]',
                      {'format': 'json', 'strip_outer_array': 'true'})
  assert array['NumberLoadedRows'] == 3


def test_count_only_counts_a_large_body_exactly(make_stream_load_server):
  # Throughput is measured by bench/emulator_bench.py, never asserted here.
  srv = make_stream_load_server(count_only=True)
  row = b'{"event_id": 123456, "user_id": 42, "event_type": "click", "payload": "%s"}\n' % (
      b'x' * 60)
  body = row * (64 * 1024 * 1024 // len(row))
  session = requests.Session()
  loc = session.put(srv.fe_url + '/api/demo/events/_stream_load',
                    headers={'Expect': '100-continue'}, auth=AUTH,
                    allow_redirects=False).headers['Location']
  res = session.put(loc, data=body, headers=JL, auth=AUTH).json()
  assert res['Status'] == 'Success'
  assert res['NumberLoadedRows'] == len(body) // len(row)
  assert srv.query('SELECT count(*) FROM demo.events') == [(0,)]  # counted, not stored


def test_cost_model_latency_and_per_be_slots(make_stream_load_server):
  import threading  # pylint: disable=import-outside-toplevel
  srv = make_stream_load_server(cost_model=CostModel(
      fixed_overhead_ms=200, mb_per_sec=1000, max_concurrent_loads_per_be=1))
  start = time.monotonic()
  stream_load(srv, 'demo', 'users', ndjson([{'id': 1}]), JL)
  assert time.monotonic() - start >= 0.2  # a lower bound only: sleeps never end early
  start = time.monotonic()
  threads = [threading.Thread(target=stream_load, args=(
      srv, 'demo', 'users', ndjson([{'id': i}]), JL)) for i in range(3)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert time.monotonic() - start >= 0.6  # one slot: the three loads queue


def test_cost_model_validates():
  with pytest.raises(ValueError):
    CostModel(mb_per_sec=0)
  assert CostModel(fixed_overhead_ms=100, mb_per_sec=1).load_secs(2**20) == pytest.approx(1.1)


def test_tls(make_stream_load_server, tmp_path):
  trustme = pytest.importorskip('trustme')
  ca = trustme.CA()
  cert = ca.issue_cert('127.0.0.1')
  cert_path, key_path, ca_path = (tmp_path / 'c.pem', tmp_path / 'k.pem', tmp_path / 'ca.pem')
  cert.cert_chain_pems[0].write_to_path(str(cert_path))
  cert.private_key_pem.write_to_path(str(key_path))
  ca.cert_pem.write_to_path(str(ca_path))
  srv = make_stream_load_server(tls_cert=str(cert_path), tls_key=str(key_path))
  assert srv.fe_url.startswith('https://')
  session = requests.Session()
  session.verify = str(ca_path)
  session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides session.verify
  res = stream_load(srv, 'demo', 'users', ndjson([{'id': 1}]), JL, session=session)
  assert res['Status'] == 'Success'
  r = session.put(srv.fe_url + '/api/demo/users/_stream_load', data=b'{}',
                  headers={'Expect': '100-continue'}, auth=AUTH, allow_redirects=False)
  assert r.headers['Location'].startswith('https://root:secret@')


def test_cli_serves_until_sigterm(tmp_path):
  proc = subprocess.Popen(
      [sys.executable, '-m', 'stream_load_emulator', '--data-dir', str(tmp_path / 'd'),
       '--schema', DEMO_SCHEMA, '--user', 'root', '--password', 'secret', '--num-bes', '2',
       '--log-level', 'WARNING'],
      cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    urls = {}
    for line in proc.stdout:
      if line.strip() == 'READY':
        break
      kind, _, value = line.strip().partition(' ')
      urls.setdefault(kind, []).append(value)
    assert len(urls['BE']) == 2

    class _Srv:
      fe_urls = urls['FE']
    res = stream_load(_Srv, 'demo', 'users', ndjson([{'id': 1}]), JL)
    assert res['Status'] == 'Success'
    r = requests.post(urls['FE'][0] + '/api/query/default_cluster/demo',
                      json={'stmt': 'select count(*) from users'}, auth=AUTH)
    assert r.json()['data']['data'] == [[1]]
    requests.post(urls['FE'][0] + '/_emulator/faults', json={'kind': 'http_503'})
    assert requests.get(urls['FE'][0] + '/_emulator/faults').json()[0]['kind'] == 'http_503'
  finally:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
