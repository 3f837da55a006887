"""StarRocks merge commit (``enable_merge_commit: true``), the StarRocks flavour.

https://docs.starrocks.io/docs/sql-reference/sql-statements/loading_unloading/STREAM_LOAD/
("Merge Commit parameters"); the response keys are those StarRocks's BE test
``stream_load_test.cpp`` ``merge_commit_response`` expects; labels ``merge_commit_<hex>-<hex>``
come from FE ``MergeCommitJob``. Tests synchronise on ``wait_group_commit_pending`` and
``flush_group_commits`` (the merge window is 60 s, so it never closes by itself here).
"""

import threading

import requests

from tests.stream_load_emulator.helpers import AUTH, stream_load
import pytest

pytestmark = pytest.mark.transform

SCHEMA = '''
CREATE DATABASE IF NOT EXISTS sr;
CREATE TABLE sr.events (
  id INT NOT NULL,
  name VARCHAR(32) NULL
) ENGINE=OLAP
DUPLICATE KEY(id)
DISTRIBUTED BY HASH(id) BUCKETS 1;
'''
MC = {'column_separator': ',', 'enable_merge_commit': 'true',
      'merge_commit_interval_ms': '60000', 'merge_commit_parallel': '2'}
KEYS = ['TxnId', 'Label', 'Status', 'Message', 'RequestId', 'LoadBytes', 'LoadTimeMs',
        'ReadDataTimeMs', 'PendingTimeMs', 'WaitPlanTimeMs', 'WriteDataTimeMs',
        'WaitFinishTimeMs', 'LeftMergeTimeMs']


def _server(make):
  return make(schema_sql=SCHEMA, flavor='starrocks')


def _count(srv):
  return srv.query('SELECT count(*) FROM sr.events')[0][0]


def _rows(first, n=2):
  """CSV rows; "each row ends with a line separator" as merge commit requires."""
  return b''.join(b'%d,n%d\n' % (first + k, first + k) for k in range(n))


def test_async_merge_commit(make_stream_load_server):
  srv = _server(make_stream_load_server)
  results = [stream_load(srv, 'sr', 'events', _rows(10 * i),
                         dict(MC, merge_commit_async='true', label='req%d' % i))
             for i in range(3)]
  for i, res in enumerate(results):
    assert list(res) == KEYS
    assert res['Status'] == 'Success' and res['Message'] == 'OK'
    assert res['RequestId'] == 'req%d' % i  # the caller's label is only a request id
  label = results[0]['Label']
  assert label.startswith('merge_commit_') and '-' in label
  assert {r['Label'] for r in results} == {label}
  assert len({r['TxnId'] for r in results}) == 1
  assert _count(srv) == 0  # async: not visible until the window closes
  assert srv.flush_group_commits() == 1
  assert _count(srv) == 6
  [commit] = srv.group_commits
  assert (commit['kind'], commit['loads'], commit['status']) == ('merge_commit', 3, 'VISIBLE')
  assert commit['requests'] == ['req0', 'req1', 'req2']
  assert srv.table_version('sr', 'events') == 1
  state = requests.get(srv.fe_url + '/api/sr/get_load_state', params={'label': label},
                       auth=AUTH).json()
  assert state['State'] == 'VISIBLE'


def test_sync_merge_commit_waits_for_the_window(make_stream_load_server):
  srv = _server(make_stream_load_server)
  results = {}

  def load(i):
    results[i] = stream_load(srv, 'sr', 'events', _rows(10 * i), MC)
  threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
  for t in threads:
    t.start()
  assert srv.wait_group_commit_pending(3)
  assert results == {} and _count(srv) == 0
  r = requests.post(srv.fe_url + '/_emulator/group_commits/flush')  # the window closes
  assert r.json()['flushed'] == 1
  for t in threads:
    t.join(30)
  assert {r['Status'] for r in results.values()} == {'Success'}
  assert len({r['TxnId'] for r in results.values()}) == 1
  assert all(r['RequestId'] for r in results.values())  # generated when no label is given
  assert _count(srv) == 6


def test_short_window_commits_by_itself(make_stream_load_server):
  srv = _server(make_stream_load_server)
  res = stream_load(srv, 'sr', 'events', _rows(1), dict(MC, merge_commit_interval_ms='50'))
  assert res['Status'] == 'Success' and _count(srv) == 2


def test_only_homogeneous_requests_merge(make_stream_load_server):
  srv = _server(make_stream_load_server)
  a = stream_load(srv, 'sr', 'events', _rows(1), dict(MC, merge_commit_async='true'))
  b = stream_load(srv, 'sr', 'events', _rows(5), dict(MC, merge_commit_async='true',
                                                      columns='id, name'))
  assert a['Label'] != b['Label']  # different load parameters: another transaction
  assert srv.flush_group_commits() == 2
  assert _count(srv) == 4


def test_merge_commit_header_validation(make_stream_load_server):
  srv = _server(make_stream_load_server)
  res = stream_load(srv, 'sr', 'events', _rows(1), dict(MC, enable_merge_commit='abc'))
  assert res['Status'] == 'Fail'
  assert res['Message'] == ('Invalid parameter enable_merge_commit. The value must be bool '
                            'type, but is abc')
  no_interval = dict(MC)
  del no_interval['merge_commit_interval_ms']
  res = stream_load(srv, 'sr', 'events', _rows(1), no_interval)
  assert res['Message'] == 'Batch write interval must be set positive, but is null'
  res = stream_load(srv, 'sr', 'events', _rows(1), dict(MC, merge_commit_parallel='0'))
  assert res['Message'] == 'Batch write parallel must be set positive, but is 0'
  off = stream_load(srv, 'sr', 'events', _rows(1), dict(MC, enable_merge_commit='false',
                                                        label='plain'))
  assert off['Label'] == 'plain' and 'RequestId' not in off and off['NumberLoadedRows'] == 2


def test_one_bad_request_fails_the_whole_merged_transaction(make_stream_load_server):
  srv = _server(make_stream_load_server)
  results = {}
  bodies = {'good': _rows(1), 'bad': b'not a number,x\n'}

  def load(name):
    results[name] = stream_load(srv, 'sr', 'events', bodies[name], dict(MC, strict_mode='true'))
  threads = [threading.Thread(target=load, args=(n,)) for n in bodies]
  for t in threads:
    t.start()
  assert srv.wait_group_commit_pending(2)
  srv.flush_group_commits()
  for t in threads:
    t.join(30)
  assert {r['Status'] for r in results.values()} == {'Fail'}
  assert {r['Message'] for r in results.values()} == {'too many filtered rows'}
  assert _count(srv) == 0
  assert srv.group_commits[0]['status'] == 'ABORTED'
