"""Key models, deletes, merge types, sequence columns, columns/jsonpaths, CSV, 2PC, gzip."""

import decimal
import gzip

import requests

from tests.stream_load_emulator.helpers import AUTH, ndjson, stream_load, wait_for
import pytest

pytestmark = pytest.mark.transform

JL = {'format': 'json', 'read_json_by_line': 'true'}


def test_duplicate_appends(stream_load_server):
  srv = stream_load_server
  rows = ndjson([{'event_id': 1, 'amount': '12.5', 'ts': '2024-01-02T03:04:05'}])
  stream_load(srv, 'demo', 'events', rows, JL)
  stream_load(srv, 'demo', 'events', rows, JL)
  assert srv.query('SELECT event_id, event_type, amount, ts FROM demo.events') == [
      (1, 'unknown', decimal.Decimal('12.50'), '2024-01-02 03:04:05')] * 2


def test_unique_upserts_last_wins(stream_load_server):
  srv = stream_load_server
  stream_load(srv, 'demo', 'users', ndjson([{'id': 1, 'name': 'a'}, {'id': 1, 'name': 'b'}]),
              JL)
  stream_load(srv, 'demo', 'users', ndjson([{'id': 1, 'name': 'c', 'age': 5}]), JL)
  assert srv.query('SELECT id, name, age FROM demo.users') == [(1, 'c', 5)]


def test_sequence_column_keeps_highest(stream_load_server):
  srv = stream_load_server
  stream_load(srv, 'demo', 'orders', ndjson([
      {'order_id': 1, 'user_id': 1, 'status': 'paid', 'seq': 5},
      {'order_id': 1, 'user_id': 1, 'status': 'new', 'seq': 3}]), JL)
  stream_load(srv, 'demo', 'orders', ndjson([
      {'order_id': 1, 'user_id': 1, 'status': 'old', 'seq': 4}]), JL)
  assert srv.query('SELECT status, seq FROM demo.orders') == [('paid', 5)]
  stream_load(srv, 'demo', 'orders', ndjson([
      {'order_id': 1, 'user_id': 1, 'status': 'shipped', 'seq': 6}]), JL)
  assert srv.query('SELECT status, seq FROM demo.orders') == [('shipped', 6)]


def test_sequence_col_header(make_stream_load_server):
  srv = make_stream_load_server(schema_sql=(
      'CREATE TABLE d.t (k INT NOT NULL, v STRING, s INT) UNIQUE KEY(k) '
      'DISTRIBUTED BY HASH(k) BUCKETS 1 PROPERTIES ("function_column.sequence_type" = "int")'))
  hdr = dict(JL, **{'function_column.sequence_col': 's'})
  stream_load(srv, 'd', 't', ndjson([{'k': 1, 'v': 'hi', 's': 9}]), hdr)
  stream_load(srv, 'd', 't', ndjson([{'k': 1, 'v': 'lo', 's': 2}]), hdr)
  assert srv.query('SELECT v FROM d.t') == [('hi',)]


def test_aggregate_sum_replace(stream_load_server):
  srv = stream_load_server
  stream_load(srv, 'demo', 'page_views', ndjson([
      {'page': '/', 'day': '2024-01-01', 'views': 2, 'last_seen': '2024-01-01 10:00:00'},
      {'page': '/', 'day': '2024-01-01', 'views': 3, 'last_seen': '2024-01-01 11:00:00'}]), JL)
  stream_load(srv, 'demo', 'page_views', ndjson([
      {'page': '/', 'day': '2024-01-01', 'last_seen': '2024-01-01 09:00:00'}]), JL)
  assert srv.query('SELECT page, day, views, last_seen FROM demo.page_views') == [
      ('/', '2024-01-01', 5, '2024-01-01 09:00:00')]


def test_delete_sign_in_json_deletes(stream_load_server):
  srv = stream_load_server
  stream_load(srv, 'demo', 'users', ndjson([{'id': 1}, {'id': 2}]), JL)
  res = stream_load(srv, 'demo', 'users', ndjson([{'id': 1, '__DORIS_DELETE_SIGN__': 1},
                                                  {'id': 3, '__DORIS_DELETE_SIGN__': 0}]),
                    dict(JL, hidden_columns='__DORIS_DELETE_SIGN__'))
  assert res['NumberLoadedRows'] == 2
  assert srv.query('SELECT id FROM demo.users ORDER BY id') == [(2,), (3,)]


def test_delete_with_lower_sequence_is_ignored(stream_load_server):
  srv = stream_load_server
  stream_load(srv, 'demo', 'orders', ndjson([{'order_id': 1, 'user_id': 1, 'seq': 5}]), JL)
  stream_load(srv, 'demo', 'orders', ndjson([
      {'order_id': 1, 'user_id': 1, 'seq': 4, '__DORIS_DELETE_SIGN__': 1}]), JL)
  assert srv.query('SELECT count(*) FROM demo.orders') == [(1,)]
  stream_load(srv, 'demo', 'orders', ndjson([
      {'order_id': 1, 'user_id': 1, 'seq': 7, '__DORIS_DELETE_SIGN__': 1}]), JL)
  assert srv.query('SELECT count(*) FROM demo.orders') == [(0,)]


def test_merge_type_delete_and_merge(stream_load_server):
  srv = stream_load_server
  stream_load(srv, 'demo', 'users', ndjson([{'id': i, 'age': i} for i in range(1, 6)]), JL)
  stream_load(srv, 'demo', 'users', ndjson([{'id': 1}, {'id': 2}]), dict(JL,
                                                                        merge_type='DELETE'))
  stream_load(srv, 'demo', 'users', ndjson([{'id': 3, 'age': 0}, {'id': 6, 'age': 60}]),
              dict(JL, merge_type='MERGE', delete='age=0'))
  assert srv.query('SELECT id, age FROM demo.users ORDER BY id') == [(4, 4), (5, 5), (6, 60)]


def test_merge_without_delete_condition_fails(stream_load_server):
  res = stream_load(stream_load_server, 'demo', 'users', ndjson([{'id': 1}]),
                    dict(JL, merge_type='MERGE'))
  assert res['Status'] == 'Fail'
  assert res['Message'] == ('[INVALID_ARGUMENT]Excepted DELETE ON clause when merge type is '
                            'MERGE.')


def test_partial_columns_keep_other_values(stream_load_server):
  srv = stream_load_server
  stream_load(srv, 'demo', 'users', ndjson([{'id': 1, 'name': 'a', 'age': 3}]), JL)
  stream_load(srv, 'demo', 'users', ndjson([{'id': 1, 'age': 4}, {'id': 2, 'age': 9}]),
              dict(JL, partial_columns='true', columns='id,age'))
  assert srv.query('SELECT id, name, age FROM demo.users ORDER BY id') == [
      (1, 'a', 4), (2, None, 9)]


def test_columns_jsonpaths_and_expressions(stream_load_server):
  srv = stream_load_server
  body = ndjson([{'u': {'id': 5, 'n': 'x'}, 'a': 20}])
  res = stream_load(srv, 'demo', 'users', body, dict(
      JL, jsonpaths='["$.u.id", "$.u.n", "$.a"]', columns='id, name, a, age=a*2'))
  assert res['Status'] == 'Success', res
  assert srv.query('SELECT id, name, age FROM demo.users') == [(5, 'x', 40)]


def test_where_counts_unselected_rows(stream_load_server):
  srv = stream_load_server
  res = stream_load(srv, 'demo', 'users', ndjson([{'id': 1, 'age': 10}, {'id': 2, 'age': 50}]),
                    dict(JL, where='age > 20'))
  assert (res['NumberTotalRows'], res['NumberLoadedRows'], res['NumberUnselectedRows']) == (
      2, 1, 1)
  assert srv.query('SELECT id FROM demo.users') == [(2,)]


def test_csv_with_separator_and_null(stream_load_server):
  srv = stream_load_server
  body = b'1,alice,\\N,30,2024-01-01 00:00:00\n2,bob,b@x,\\N,\\N\n'
  res = stream_load(srv, 'demo', 'users', body, {'column_separator': ','})
  assert res['Status'] == 'Success' and res['NumberLoadedRows'] == 2
  assert srv.query('SELECT id, name, email, age FROM demo.users ORDER BY id') == [
      (1, 'alice', None, 30), (2, 'bob', 'b@x', None)]


def test_strip_outer_array_json(stream_load_server):
  srv = stream_load_server
  res = stream_load(srv, 'demo', 'users', b'[{"id": 1}, {"id": 2}]',
                    {'format': 'json', 'strip_outer_array': 'true'})
  assert res['NumberLoadedRows'] == 2


def test_gzip_compress_type(stream_load_server):
  srv = stream_load_server
  body = gzip.compress(ndjson([{'id': i} for i in range(100)]))
  res = stream_load(srv, 'demo', 'users', body, dict(JL, compress_type='gz'))
  assert res['Status'] == 'Success' and res['NumberLoadedRows'] == 100
  assert res['LoadBytes'] == len(body)


def test_filtering_max_filter_ratio_and_error_url(stream_load_server):
  srv = stream_load_server
  body = ndjson([{'id': 1, 'name': 'x' * 65}, {'id': 2, 'age': 'abc'}, {'id': 3}])
  fail = stream_load(srv, 'demo', 'users', body, JL)
  assert fail['Status'] == 'Fail'
  assert fail['Message'] == '[DATA_QUALITY_ERROR]too many filtered rows'
  assert (fail['NumberTotalRows'], fail['NumberFilteredRows']) == (3, 1)
  log = requests.get(fail['ErrorURL']).text
  assert 'the length of input is too long than schema' in log
  assert srv.query('SELECT count(*) FROM demo.users') == [(0,)]
  ok = stream_load(srv, 'demo', 'users', body, dict(JL, max_filter_ratio='0.5'))
  assert ok['Status'] == 'Success' and ok['NumberLoadedRows'] == 2 and 'ErrorURL' in ok
  # Non-strict: 'abc' into INT became NULL.
  assert srv.query('SELECT id, age FROM demo.users ORDER BY id') == [(2, None), (3, None)]


def test_strict_mode_filters_bad_values(stream_load_server):
  srv = stream_load_server
  res = stream_load(srv, 'demo', 'users', ndjson([{'id': 1, 'age': 'abc'}, {'id': 2}]),
                    dict(JL, strict_mode='true', max_filter_ratio='1'))
  assert (res['NumberLoadedRows'], res['NumberFilteredRows']) == (1, 1)


def test_two_phase_commit(stream_load_server):
  srv = stream_load_server
  res = stream_load(srv, 'demo', 'users', ndjson([{'id': 1}]),
                    dict(JL, label='tpc', two_phase_commit='true'))
  assert res['TwoPhaseCommit'] == 'true' and res['Status'] == 'Success'
  assert srv.query('SELECT count(*) FROM demo.users') == [(0,)]
  again = stream_load(srv, 'demo', 'users', ndjson([{'id': 1}]), dict(JL, label='tpc'))
  assert again['ExistingJobStatus'] == 'PRECOMMITTED'
  url = srv.fe_url + '/api/demo/_stream_load_2pc'
  first = requests.put(url, headers={'txn_id': str(res['TxnId']), 'txn_operation': 'commit'},
                       auth=AUTH, allow_redirects=False)
  assert first.status_code == 307
  r = requests.put(first.headers['Location'], headers={'txn_id': str(res['TxnId']),
                                                       'txn_operation': 'commit'}, auth=AUTH)
  assert r.json() == {'status': 'Success',
                      'msg': 'transaction [%d] commit successfully.' % res['TxnId']}
  assert srv.query('SELECT count(*) FROM demo.users') == [(1,)]
  r = requests.put(first.headers['Location'], headers={'txn_id': str(res['TxnId']),
                                                       'txn_operation': 'abort'}, auth=AUTH)
  assert r.json()['status'] == 'ANALYSIS_ERROR'


def test_two_phase_abort_by_label(stream_load_server):
  srv = stream_load_server
  stream_load(srv, 'demo', 'users', ndjson([{'id': 1}]),
              dict(JL, label='tpa', two_phase_commit='true'))
  r = requests.put(srv.be_urls[0] + '/api/demo/_stream_load_2pc',
                   headers={'label': 'tpa', 'txn_operation': 'abort'}, auth=AUTH)
  assert r.json() == {'status': 'Success', 'msg': 'label [tpa] abort successfully.'}
  assert srv.query('SELECT count(*) FROM demo.users') == [(0,)]
  r = requests.get(srv.fe_url + '/api/demo/get_load_state?label=tpa', auth=AUTH)
  assert r.json()['data'] == 'ABORTED'


def test_label_running_while_in_flight(make_stream_load_server):
  import threading  # pylint: disable=import-outside-toplevel
  srv = make_stream_load_server()
  srv.inject_fault('slow', delay_secs=0)  # warm path, consumed
  stream_load(srv, 'demo', 'users', ndjson([{'id': 0}]), JL)
  # A body sent slowly keeps the first load in flight.
  release = threading.Event()

  def slow_body():
    yield b'{"id": 1}\n'
    release.wait(10)
    yield b'{"id": 2}\n'

  loc = requests.put(srv.fe_url + '/api/demo/users/_stream_load', data=b'',
                     headers={'Expect': '100-continue'}, auth=AUTH,
                     allow_redirects=False).headers['Location']
  result = {}
  t = threading.Thread(target=lambda: result.update(r=requests.put(
      loc, data=slow_body(), headers=dict(JL, label='inflight'), auth=AUTH)))
  t.start()
  wait_for(lambda: srv.txns.state('demo', 'inflight') != 'UNKNOWN', what='the load to begin')
  dup = stream_load(srv, 'demo', 'users', ndjson([{'id': 9}]), dict(JL, label='inflight'))
  release.set()
  t.join()
  assert dup['Status'] == 'Label Already Exists' and dup['ExistingJobStatus'] == 'RUNNING'
  assert result['r'].json()['Status'] == 'Success'


def test_abort_of_in_flight_load_wins(make_stream_load_server):
  import threading  # pylint: disable=import-outside-toplevel
  srv = make_stream_load_server()
  release = threading.Event()

  def slow_body():
    yield b'{"id": 1}\n'
    release.wait(10)
    yield b'{"id": 2}\n'

  result = {}
  t = threading.Thread(target=lambda: result.update(r=requests.put(
      srv.be_urls[0] + '/api/demo/users/_stream_load', data=slow_body(),
      headers=dict(JL, label='doomed'), auth=AUTH)))
  t.start()
  wait_for(lambda: srv.txns.state('demo', 'doomed') == 'PREPARE', what='the load to begin')
  r = requests.put(srv.be_urls[0] + '/api/demo/_stream_load_2pc',
                   headers={'label': 'doomed', 'txn_operation': 'abort'}, auth=AUTH)
  assert r.json()['status'] == 'Success'
  release.set()
  t.join()
  res = result['r'].json()
  assert res['Status'] == 'Fail' and 'is already aborted' in res['Message']
  assert srv.query('SELECT count(*) FROM demo.users') == [(0,)]
