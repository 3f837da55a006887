"""Label retention, concurrency, round-robin BEs, chunked bodies, header validation."""

import threading

import requests

from tests.stream_load_emulator.helpers import AUTH, ndjson, stream_load
import pytest

pytestmark = pytest.mark.transform

JL = {'format': 'json', 'read_json_by_line': 'true'}


def test_label_forgotten_after_retention_window(make_stream_load_server):
  now = [1_000_000.0]
  srv = make_stream_load_server(label_keep_max_secs=300, clock=lambda: now[0])
  assert stream_load(srv, 'demo', 'users', ndjson([{'id': 1}]), dict(JL, label='old'))[
      'Status'] == 'Success'
  now[0] += 299
  assert stream_load(srv, 'demo', 'users', ndjson([{'id': 1}]), dict(JL, label='old'))[
      'Status'] == 'Label Already Exists'
  now[0] += 2
  assert stream_load(srv, 'demo', 'users', ndjson([{'id': 1}]), dict(JL, label='old'))[
      'Status'] == 'Success'


def test_concurrent_loads(make_stream_load_server):
  srv = make_stream_load_server(num_bes=3)
  results = []

  def worker(n):
    with requests.Session() as s:
      for j in range(5):
        rows = ndjson([{'event_id': n * 1000 + j * 100 + k} for k in range(100)])
        results.append(stream_load(srv, 'demo', 'events', rows,
                                   dict(JL, label='c_%d_%d' % (n, j)), session=s)['Status'])
  threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert results == ['Success'] * 30
  assert srv.query('SELECT count(*), count(DISTINCT event_id) FROM demo.events') == [
      (3000, 3000)]
  assert sorted({load['be'] for load in srv.loads}) == [0, 1, 2]


def test_chunked_body_on_be(stream_load_server):
  srv = stream_load_server

  def gen():
    for i in range(50):
      yield ndjson([{'id': i}])
  r = requests.put(srv.be_urls[0] + '/api/demo/users/_stream_load', data=gen(),
                   headers=dict(JL, label='chunked'), auth=AUTH)
  assert r.json()['NumberLoadedRows'] == 50


def test_header_validation(stream_load_server):
  srv = stream_load_server
  body = ndjson([{'id': 1}])
  assert stream_load(srv, 'demo', 'users', body, {'format': 'parquetx'})['Message'] == (
      '[INTERNAL_ERROR]unknown data format, format=parquetx')
  assert stream_load(srv, 'demo', 'users', body, dict(JL, merge_type='UPSERT'))['Message'] == (
      '[INVALID_ARGUMENT]Invalid merge type UPSERT')
  assert stream_load(srv, 'demo', 'users', body, dict(JL, strict_mode='yes'))['Message'] == (
      '[INVALID_ARGUMENT]Invalid strict mode format. Must be bool type')
  assert stream_load(srv, 'demo', 'users', body, dict(JL, merge_type='APPEND', delete='id=1'))[
      'Message'] == (
      '[INVALID_ARGUMENT]Not support DELETE ON clause when merge type is not MERGE.')
  assert stream_load(srv, 'demo', 'users', body, JL)['Status'] == 'Success'


def test_group_commit_without_label(stream_load_server):
  res = stream_load(stream_load_server, 'demo', 'users', ndjson([{'id': 1}]),
                    dict(JL, group_commit='async_mode'))
  assert res['Status'] == 'Success' and res['GroupCommit'] is True
  assert 'TwoPhaseCommit' not in res and 'BeginTxnTimeMs' not in res


def test_csv_enclose_and_columns_order(stream_load_server):
  srv = stream_load_server
  body = b'"x, y",7\n"z",8\n'
  res = stream_load(srv, 'demo', 'users', body, {'column_separator': ',', 'enclose': '"',
                                                 'columns': 'name,id'})
  assert res['NumberLoadedRows'] == 2, res
  assert srv.query('SELECT id, name FROM demo.users ORDER BY id') == [(7, 'x, y'), (8, 'z')]


def test_csv_wrong_column_count_is_filtered(stream_load_server):
  res = stream_load(stream_load_server, 'demo', 'users', b'1,a\n2,b,c,d,e,f\n',
                    {'column_separator': ',', 'columns': 'id,name', 'max_filter_ratio': '0.5'})
  assert (res['NumberLoadedRows'], res['NumberFilteredRows']) == (1, 1)
  log = requests.get(res['ErrorURL']).text
  assert 'actual column number in csv file is  more than  schema column number' in log
