"""StarRocks flavour: response shape, ``__op`` deletes, the transaction interface."""

import requests

from tests.stream_load_emulator.helpers import AUTH, ndjson, stream_load
import pytest

pytestmark = pytest.mark.transform

SCHEMA = '''
CREATE DATABASE IF NOT EXISTS sr;
CREATE TABLE sr.users (
  id INT NOT NULL,
  name VARCHAR(65533) NULL,
  score INT NOT NULL DEFAULT "0"
) ENGINE=OLAP
PRIMARY KEY(id)
DISTRIBUTED BY HASH(id) BUCKETS 10;
'''
JL = {'format': 'json', 'read_json_by_line': 'true'}


def _server(make):
  return make(schema_sql=SCHEMA, flavor='starrocks')


def test_starrocks_response_keys(make_stream_load_server):
  srv = _server(make_stream_load_server)
  res = stream_load(srv, 'sr', 'users', ndjson([{'id': 1, 'name': 'a', 'score': 2}]),
                    dict(JL, label='s1'))
  assert list(res) == ['TxnId', 'Label', 'Status', 'Message', 'NumberTotalRows',
                       'NumberLoadedRows', 'NumberFilteredRows', 'NumberUnselectedRows',
                       'LoadBytes', 'LoadTimeMs', 'BeginTxnTimeMs', 'StreamLoadPlanTimeMs',
                       'ReadDataTimeMs', 'WriteDataTimeMs', 'CommitAndPublishTimeMs']
  again = stream_load(srv, 'sr', 'users', ndjson([{'id': 1}]), dict(JL, label='s1'))
  assert again['Status'] == 'Label Already Exists'
  assert again['ExistingJobStatus'] == 'FINISHED'
  assert again['Message'] == 'Label [s1] has already been used.'


def test_op_column_upserts_and_deletes(make_stream_load_server):
  srv = _server(make_stream_load_server)
  stream_load(srv, 'sr', 'users', ndjson([{'id': 1, 'score': 1}, {'id': 2, 'score': 2}]), JL)
  stream_load(srv, 'sr', 'users', ndjson([{'id': 1, '__op': 1}, {'id': 2, 'score': 5,
                                                                 '__op': 0}]), JL)
  assert srv.query('SELECT id, score FROM sr.users') == [(2, 5)]
  stream_load(srv, 'sr', 'users', ndjson([{'id': 2}]), dict(JL, columns="id, __op='delete'"))
  assert srv.query('SELECT count(*) FROM sr.users') == [(0,)]


def _txn(srv, op, label, **headers):
  hdrs = {'label': label, 'db': 'sr', 'table': 'users', 'Expect': '100-continue'}
  hdrs.update(headers)
  return requests.post('%s/api/transaction/%s' % (srv.fe_url, op), headers=hdrs,
                       auth=AUTH).json()


def _txn_load(srv, label, body):
  hdrs = dict(JL, label=label, db='sr', table='users', Expect='100-continue')
  first = requests.put(srv.fe_url + '/api/transaction/load', data=body, headers=hdrs,
                       auth=AUTH, allow_redirects=False)
  assert first.status_code == 307
  return requests.put(first.headers['Location'], data=body, headers=hdrs, auth=AUTH).json()


def test_transaction_interface_commit(make_stream_load_server):
  srv = _server(make_stream_load_server)
  begin = _txn(srv, 'begin', 't1')
  assert list(begin) == ['Status', 'Message', 'Label', 'TxnId', 'BeginTxnTimeMs']
  assert begin['Status'] == 'OK'
  load = _txn_load(srv, 't1', ndjson([{'id': 1}, {'id': 2}]))
  assert load['Status'] == 'OK' and load['NumberLoadedRows'] == 2 and load['Seq'] == 0
  assert _txn_load(srv, 't1', ndjson([{'id': 3}]))['Seq'] == 1
  assert srv.query('SELECT count(*) FROM sr.users') == [(0,)]
  prepared = _txn(srv, 'prepare', 't1')
  assert prepared['Status'] == 'OK' and prepared['NumberLoadedRows'] == 3
  commit = _txn(srv, 'commit', 't1')
  assert commit['Status'] == 'OK'
  assert srv.query('SELECT count(*) FROM sr.users') == [(3,)]
  assert _txn(srv, 'commit', 't1')['Message'] == 'Transaction already commited'
  dup = _txn(srv, 'begin', 't1')
  assert dup['Status'] == 'LABEL_ALREADY_EXISTS'


def test_transaction_interface_rollback(make_stream_load_server):
  srv = _server(make_stream_load_server)
  _txn(srv, 'begin', 't2')
  _txn_load(srv, 't2', ndjson([{'id': 1}]))
  assert _txn(srv, 'rollback', 't2')['Status'] == 'OK'
  assert srv.query('SELECT count(*) FROM sr.users') == [(0,)]
  assert _txn(srv, 'commit', 't2')['Message'] == 'Transcation Not Exist'
  assert _txn_load(srv, 'nope', ndjson([{'id': 1}]))['Message'] == 'TXN_NOT_EXISTS'
