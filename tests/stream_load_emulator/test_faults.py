"""Fault injection: every kind, from Python and over the admin endpoint."""

import time

import pytest
import requests

from tests.stream_load_emulator.helpers import AUTH, ndjson, stream_load

pytestmark = pytest.mark.transform

JSON_LINES = {'format': 'json', 'read_json_by_line': 'true'}
ROWS = ndjson([{'id': 1, 'name': 'a'}, {'id': 2, 'name': 'b'}])


def _count(srv):
  return srv.query('SELECT count(*) FROM demo.users')[0][0]


@pytest.mark.parametrize('status', [500, 503])
def test_http_5xx_then_recovers(stream_load_server, status):
  srv = stream_load_server
  srv.inject_fault('http_%d' % status)
  url = srv.fe_url + '/api/demo/users/_stream_load'
  first = requests.put(url, data=ROWS, headers={'Expect': '100-continue'}, auth=AUTH,
                       allow_redirects=False)
  r = requests.put(first.headers['Location'], data=ROWS, headers=JSON_LINES, auth=AUTH)
  assert r.status_code == status
  assert srv.loads[-1]['status'] == 'HTTP %d' % status
  assert stream_load(srv, 'demo', 'users', ROWS, JSON_LINES)['Status'] == 'Success'
  assert _count(srv) == 2


def test_fe_targeted_http_500(stream_load_server):
  srv = stream_load_server
  srv.inject_fault('http_500', node='fe0')
  r = requests.put(srv.fe_url + '/api/demo/users/_stream_load', data=ROWS,
                   headers={'Expect': '100-continue'}, auth=AUTH, allow_redirects=False)
  assert r.status_code == 500


def test_reset_mid_body_loads_nothing_and_frees_label(stream_load_server):
  srv = stream_load_server
  srv.inject_fault('reset_mid_body')
  big = ndjson([{'id': i} for i in range(20000)])
  with pytest.raises(requests.exceptions.ConnectionError):
    stream_load(srv, 'demo', 'users', big, dict(JSON_LINES, label='rst'))
  assert _count(srv) == 0
  assert srv.loads[-1]['status'] == 'Reset'
  res = stream_load(srv, 'demo', 'users', big, dict(JSON_LINES, label='rst'))
  assert res['Status'] == 'Success' and _count(srv) == 20000


def test_slow(stream_load_server):
  srv = stream_load_server
  srv.inject_fault('slow', delay_secs=0.5)
  start = time.monotonic()
  assert stream_load(srv, 'demo', 'users', ROWS, JSON_LINES)['Status'] == 'Success'
  assert time.monotonic() - start >= 0.5


def test_publish_timeout_stores_rows(stream_load_server):
  srv = stream_load_server
  srv.inject_fault('publish_timeout', delay_secs=0.2)
  res = stream_load(srv, 'demo', 'users', ROWS, dict(JSON_LINES, label='pt'))
  assert res['Status'] == 'Publish Timeout'
  assert res['Message'] == ('[PUBLISH_TIMEOUT]transaction commit successfully, BUT data will '
                            'be visible later')
  assert res['TxnId'] > 0 and _count(srv) == 2
  again = stream_load(srv, 'demo', 'users', ROWS, dict(JSON_LINES, label='pt'))
  assert again['ExistingJobStatus'] == 'FINISHED'


def test_too_many_versions(stream_load_server):
  srv = stream_load_server
  srv.inject_fault('too_many_versions', table='demo.users')
  res = stream_load(srv, 'demo', 'users', ROWS, dict(JSON_LINES, label='tmv'))
  assert res['Status'] == 'Fail'
  assert res['Message'].startswith('[E-235]failed to init rowset builder. version count: ')
  assert 'Please reduce the frequency of loading data' in res['Message']
  assert _count(srv) == 0
  # The failed label is aborted and may be reused.
  assert stream_load(srv, 'demo', 'users', ROWS, dict(JSON_LINES, label='tmv'))[
      'Status'] == 'Success'


def test_txn_limit(stream_load_server):
  srv = stream_load_server
  srv.inject_fault('txn_limit')
  res = stream_load(srv, 'demo', 'users', ROWS, JSON_LINES)
  assert res['Status'] == 'Fail'
  assert 'current running txns on db' in res['Message']
  assert 'larger than limit' in res['Message']


def test_be_down_refuses_until_cleared(make_stream_load_server):
  srv = make_stream_load_server(num_bes=2)
  srv.inject_fault('be_down', node=1)
  with pytest.raises(requests.exceptions.ConnectionError):
    requests.get(srv.be_urls[1] + '/api/health', timeout=5)
  assert requests.get(srv.be_urls[0] + '/api/health', timeout=5).status_code == 200
  srv.clear_faults()
  assert requests.get(srv.be_urls[1] + '/api/health', timeout=5).status_code == 200


def test_fe_down(make_stream_load_server):
  srv = make_stream_load_server(num_fes=2)
  srv.inject_fault('fe_down', node=0)
  with pytest.raises(requests.exceptions.ConnectionError):
    stream_load(srv, 'demo', 'users', ROWS, JSON_LINES, fe=0)
  assert stream_load(srv, 'demo', 'users', ROWS, JSON_LINES, fe=1)['Status'] == 'Success'


def test_times_none_lasts_until_cleared(stream_load_server):
  srv = stream_load_server
  srv.inject_fault('too_many_versions', times=None)
  for _ in range(3):
    assert stream_load(srv, 'demo', 'users', ROWS, JSON_LINES)['Status'] == 'Fail'
  srv.clear_faults()
  assert stream_load(srv, 'demo', 'users', ROWS, JSON_LINES)['Status'] == 'Success'


def test_admin_endpoint_switches_faults(stream_load_server):
  srv = stream_load_server
  r = requests.post(srv.fe_url + '/_emulator/faults', json={'kind': 'too_many_versions',
                                                            'times': 2})
  assert r.json() == {'ok': True}
  assert requests.get(srv.fe_url + '/_emulator/faults').json()[0]['kind'] == (
      'too_many_versions')
  assert stream_load(srv, 'demo', 'users', ROWS, JSON_LINES)['Status'] == 'Fail'
  requests.delete(srv.fe_url + '/_emulator/faults')
  assert stream_load(srv, 'demo', 'users', ROWS, JSON_LINES)['Status'] == 'Success'
  bad = requests.post(srv.fe_url + '/_emulator/faults', json={'kind': 'nope'})
  assert bad.status_code == 400


def test_unknown_fault_kind_raises(stream_load_server):
  with pytest.raises(ValueError):
    stream_load_server.inject_fault('explode')


def test_admin_endpoint_can_take_its_own_node_down(make_stream_load_server):
  srv = make_stream_load_server(num_fes=2)
  r = requests.post(srv.fe_urls[0] + '/_emulator/faults', json={'kind': 'fe_down', 'node': 0,
                                                                'times': None})
  assert r.json() == {'ok': True}
  with pytest.raises(requests.exceptions.ConnectionError):
    requests.get(srv.fe_urls[0] + '/api/health', timeout=5)
  requests.delete(srv.fe_urls[1] + '/_emulator/faults')
  assert requests.get(srv.fe_urls[0] + '/api/health', timeout=5).status_code == 200
