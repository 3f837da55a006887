"""Doris group commit (https://doris.apache.org/docs/data-operate/import/group-commit-manual).

Header rules follow Doris 2.1+ BE ``stream_load.cpp`` (``_handle_group_commit`` /
``_can_group_commit``). Tests synchronise on ``wait_group_commit_pending`` and on the size
limit (``group_commit_data_bytes``), which commits inside the load that reaches it, never on
sleeps; the long interval (60 s) only matters if something is broken.
"""

import threading

import requests

from tests.stream_load_emulator.helpers import AUTH, ndjson, stream_load
import pytest

pytestmark = pytest.mark.transform

JL = {'format': 'json', 'read_json_by_line': 'true'}
LONG_MS = 60000


def body(i):
  """Equal-sized NDJSON bodies of 3 rows (so N bodies make an exact byte count)."""
  return ndjson([{'event_id': 100000 + 1000 * i + k, 'event_type': 'type%03d' % i}
                 for k in range(3)])


def _count(srv):
  return srv.query('SELECT count(*) FROM demo.events')[0][0]


def _state(srv, label):
  return requests.get(srv.fe_url + '/api/demo/get_load_state', params={'label': label},
                      auth=AUTH).json()['data']


def test_async_loads_merge_into_one_transaction(make_stream_load_server):
  size = len(body(1))
  assert {len(body(i)) for i in range(10)} == {size}
  srv = make_stream_load_server(group_commit_interval_ms=LONG_MS,
                                group_commit_data_bytes=5 * size)
  results = [stream_load(srv, 'demo', 'events', body(i), dict(JL, group_commit='async_mode'))
             for i in range(1, 5)]
  for res in results:
    assert res['Status'] == 'Success' and res['GroupCommit'] is True, res
    assert res['NumberLoadedRows'] == 3
    assert 'TwoPhaseCommit' not in res and 'BeginTxnTimeMs' not in res
    assert 'CommitAndPublishTimeMs' not in res
  # One internal load: the same label (group_commit_<hex>_<hex>) and TxnId for every caller.
  label = results[0]['Label']
  assert label.startswith('group_commit_') and len(label) == len('group_commit_') + 33
  assert {r['Label'] for r in results} == {label}
  assert {r['TxnId'] for r in results} == {results[0]['TxnId']}
  # async_mode: written, not yet visible; the internal transaction is still open.
  assert _count(srv) == 0
  assert _state(srv, label) == 'PREPARE'
  assert srv.group_commits == []
  # The fifth body reaches group_commit_data_bytes: the merged transaction commits.
  last = stream_load(srv, 'demo', 'events', body(5), dict(JL, group_commit='async_mode'))
  assert last['Label'] == label
  assert _count(srv) == 15
  assert _state(srv, label) == 'VISIBLE'
  [commit] = srv.group_commits
  assert (commit['kind'], commit['label'], commit['loads'], commit['rows'], commit['status']) == (
      'group_commit', label, 5, 15, 'VISIBLE')
  assert srv.table_version('demo', 'events') == 1  # 5 loads, one version
  assert [load['group_commit'] for load in srv.loads] == ['async_mode'] * 5
  # The next load opens a new internal transaction.
  nxt = stream_load(srv, 'demo', 'events', body(6), dict(JL, group_commit='async_mode'))
  assert nxt['Label'] != label


def test_sync_loads_return_after_the_merged_commit(make_stream_load_server):
  size = len(body(1))
  srv = make_stream_load_server(group_commit_interval_ms=LONG_MS,
                                group_commit_data_bytes=4 * size)
  results = {}

  def load(i):
    results[i] = stream_load(srv, 'demo', 'events', body(i), dict(JL, group_commit='sync_mode'))
  threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
  for t in threads:
    t.start()
  assert srv.wait_group_commit_pending(3)
  assert results == {} and _count(srv) == 0  # all three wait for the commit
  results[3] = stream_load(srv, 'demo', 'events', body(3), dict(JL, group_commit='sync_mode'))
  for t in threads:
    t.join(30)
  assert len(results) == 4
  assert {r['Status'] for r in results.values()} == {'Success'}
  assert len({(r['Label'], r['TxnId']) for r in results.values()}) == 1
  assert _count(srv) == 12  # visible when the sync callers return
  assert len(srv.group_commits) == 1 and srv.group_commits[0]['loads'] == 4
  assert srv.table_version('demo', 'events') == 1


def test_interval_commits_a_sync_load(make_stream_load_server):
  srv = make_stream_load_server(group_commit_interval_ms=50)
  res = stream_load(srv, 'demo', 'events', body(1), dict(JL, group_commit='sync_mode'))
  assert res['Status'] == 'Success' and res['GroupCommit'] is True
  assert _count(srv) == 3  # sync_mode: visible on return
  assert srv.group_commits[0]['loads'] == 1


def test_table_properties_override_server_defaults(make_stream_load_server):
  size = len(body(1))
  ddl = '''
      CREATE DATABASE demo;
      CREATE TABLE demo.events (event_id BIGINT NOT NULL, event_type VARCHAR(32) NULL)
      DUPLICATE KEY(event_id) DISTRIBUTED BY HASH(event_id) BUCKETS 1
      PROPERTIES ("group_commit_interval_ms" = "50", "group_commit_data_bytes" = "%d");
  ''' % (2 * size)
  srv = make_stream_load_server(schema_sql=ddl, group_commit_interval_ms=LONG_MS)
  # The table's 50 ms interval, not the server's 60 s, commits this one.
  res = stream_load(srv, 'demo', 'events', body(1), dict(JL, group_commit='sync_mode'))
  assert res['Status'] == 'Success' and _count(srv) == 3
  # The table's size limit: two async bodies commit at once.
  stream_load(srv, 'demo', 'events', body(2), dict(JL, group_commit='async_mode'))
  stream_load(srv, 'demo', 'events', body(3), dict(JL, group_commit='async_mode'))
  assert _count(srv) == 9


def test_flush_over_http_and_wal_replay_on_restart(make_stream_load_server, tmp_path):
  data_dir = str(tmp_path / 'gc')
  srv = make_stream_load_server(group_commit_interval_ms=LONG_MS, data_dir=data_dir)
  stream_load(srv, 'demo', 'events', body(1), dict(JL, group_commit='async_mode'))
  assert _count(srv) == 0
  r = requests.post(srv.fe_url + '/_emulator/group_commits/flush')
  assert r.json() == {'ok': True, 'flushed': 1}
  assert _count(srv) == 3
  assert requests.get(srv.fe_url + '/_emulator/group_commits').json()[0]['loads'] == 1
  # Rows of an async load are in Doris's WAL: a restart replays (here: commits) them.
  stream_load(srv, 'demo', 'events', body(2), dict(JL, group_commit='async_mode'))
  srv.stop()
  again = make_stream_load_server(data_dir=data_dir)
  assert _count(again) == 6


def test_group_commit_header_rules(stream_load_server):
  srv = stream_load_server
  bad = stream_load(srv, 'demo', 'events', body(1), dict(JL, group_commit='true'))
  assert bad['Message'] == ('[INVALID_ARGUMENT]group_commit can only be [async_mode, '
                            'sync_mode, off_mode]')
  with_label = stream_load(srv, 'demo', 'events', body(1),
                           dict(JL, group_commit='sync_mode', label='mine'))
  assert with_label['Message'] == ('[INVALID_ARGUMENT]label and group_commit can\'t be set at '
                                   'the same time')
  # off_mode: an ordinary load, label allowed.
  off = stream_load(srv, 'demo', 'events', body(1), dict(JL, group_commit='OFF_MODE',
                                                         label='off1'))
  assert off['Status'] == 'Success' and off['Label'] == 'off1' and 'GroupCommit' not in off
  # Two-phase commit and partial columns fall back to an ordinary load (no error).
  tpc = stream_load(srv, 'demo', 'events', body(2), dict(
      JL, group_commit='async_mode', label='tpc1', two_phase_commit='true'))
  assert tpc['Status'] == 'Success' and tpc['TwoPhaseCommit'] == 'true'
  assert tpc['Label'] == 'tpc1' and 'GroupCommit' not in tpc
  partial = stream_load(srv, 'demo', 'users', ndjson([{'id': 1, 'name': 'a'}]), dict(
      JL, group_commit='sync_mode', label='pc1', partial_columns='true'))
  assert partial['Status'] == 'Success' and 'GroupCommit' not in partial
  # An empty body is never group committed.
  empty = stream_load(srv, 'demo', 'events', b'', dict(JL, group_commit='async_mode'))
  assert 'GroupCommit' not in empty
  assert srv.group_commits == []


def test_chunked_body_drops_the_label(make_stream_load_server):
  srv = make_stream_load_server(group_commit_interval_ms=50)

  def gen():
    yield body(1)
  r = requests.put(srv.be_urls[0] + '/api/demo/events/_stream_load', data=gen(), auth=AUTH,
                   headers=dict(JL, label='ignored', group_commit='sync_mode'))
  res = r.json()
  assert res['Status'] == 'Success' and res['Label'].startswith('group_commit_'), res


def test_bad_rows_fail_only_their_own_load(make_stream_load_server):
  srv = make_stream_load_server(group_commit_interval_ms=LONG_MS)
  ok = stream_load(srv, 'demo', 'events', body(1), dict(JL, group_commit='async_mode'))
  bad = stream_load(srv, 'demo', 'events', b'{"event_id": "x"}\n{"event_id": null}\n',
                    dict(JL, group_commit='async_mode', strict_mode='true'))
  assert ok['Status'] == 'Success'
  assert bad['Status'] == 'Fail'
  assert bad['Message'] == '[DATA_QUALITY_ERROR]too many filtered rows'
  assert srv.flush_group_commits() == 1
  assert _count(srv) == 3 and srv.group_commits[0]['loads'] == 1


def test_cli_flags_reach_the_server():
  from stream_load_emulator.__main__ import build_parser  # pylint: disable=import-outside-toplevel
  args = build_parser().parse_args(['--group-commit-interval-ms', '200',
                                    '--group-commit-data-bytes', '4096'])
  assert (args.group_commit_interval_ms, args.group_commit_data_bytes) == (200, 4096)
  defaults = build_parser().parse_args([])
  assert (defaults.group_commit_interval_ms, defaults.group_commit_data_bytes) == (
      10000, 64 * 1024 * 1024)
