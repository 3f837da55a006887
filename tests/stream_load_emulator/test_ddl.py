"""The SQL API's DDL: ALTER TABLE ... ADD COLUMN, CREATE TABLE, DESC, information_schema."""

import pytest
import requests

pytestmark = pytest.mark.transform

AUTH = ('root', 'secret')


def _sql(server, stmt, db='demo'):
  return requests.post(f'{server.fe_url}/api/query/default_cluster/{db}', json={'stmt': stmt},
                       auth=AUTH, timeout=10).json()


def _load(server, table, lines, label):
  db, tbl = table.split('.')
  url = f'{server.fe_url}/api/{db}/{tbl}/_stream_load'
  headers = {'Expect': '100-continue', 'label': label, 'format': 'json',
             'read_json_by_line': 'true'}
  redirect = requests.put(url, headers=headers, auth=AUTH, data=b'', allow_redirects=False,
                          timeout=10)
  location = redirect.headers['Location'].split('@', 1)[1]
  body = '\n'.join(lines).encode()
  return requests.put(f'http://{location}', headers=headers, auth=AUTH, data=body,
                      timeout=10).json()


def _schema(server, table):
  db, tbl = table.split('.')
  return requests.get(f'{server.fe_url}/api/{db}/{tbl}/_schema', auth=AUTH, timeout=10).json()


def test_json_fields_that_are_no_column_are_left_out_and_an_added_column_fills_later_rows(
    stream_load_server):
  first = _load(stream_load_server, 'demo.events',
                ['{"event_id": 1, "city": "x"}', '{"event_id": 2}'], 'l1')
  assert (first['Status'], first['NumberLoadedRows'], first['NumberFilteredRows']) == (
      'Success', 2, 0)
  answer = _sql(stream_load_server, 'ALTER TABLE demo.events ADD COLUMN city STRING NULL')
  assert answer['code'] == 0 and answer['data']['type'] == 'exec_status'
  assert _load(stream_load_server, 'demo.events', ['{"event_id": 3, "city": "y"}'],
               'l2')['Status'] == 'Success'
  assert stream_load_server.query('SELECT event_id, city FROM demo.events ORDER BY event_id'
                                  ) == [(1, None), (2, None), (3, 'y')]
  assert [p['name'] for p in _schema(stream_load_server, 'demo.events')['data']['properties']
          ][-1] == 'city'


def test_adding_an_existing_column_answers_doris_own_error(stream_load_server):
  answer = _sql(stream_load_server, 'ALTER TABLE demo.events ADD COLUMN `PAYLOAD` STRING NULL')
  assert answer == {'msg': 'Error', 'code': 1, 'count': 0, 'data':
                    'errCode = 2, detailMessage = Can not add column which already exists in '
                    'base table: PAYLOAD'}
  answer = _sql(stream_load_server, 'ALTER TABLE demo.nosuch ADD COLUMN a INT NULL')
  assert answer['data'] == "errCode = 2, detailMessage = Unknown table 'nosuch'"


def test_several_columns_defaults_and_positions(stream_load_server):
  _load(stream_load_server, 'demo.events', ['{"event_id": 1}'], 'l1')
  assert _sql(stream_load_server, 'ALTER TABLE events ADD COLUMN (a BIGINT NULL, b JSON NULL '
              'COMMENT "doc"), ADD COLUMN c INT NOT NULL DEFAULT "7" AFTER a')['code'] == 0
  assert stream_load_server.query('SELECT a, b, c FROM demo.events') == [(None, None, 7)]
  answer = _sql(stream_load_server, 'ALTER TABLE events ADD COLUMN d INT NOT NULL')
  assert 'without default value' in answer['data']
  rows = _sql(stream_load_server, "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM "
              "information_schema.columns WHERE TABLE_SCHEMA = 'demo' AND TABLE_NAME = 'events' "
              "ORDER BY ORDINAL_POSITION")['data']['data']
  assert rows[-3:] == [['a', 'bigint', 'YES'], ['b', 'json', 'YES'], ['c', 'int', 'NO']]
  desc = _sql(stream_load_server, 'DESC events')['data']
  assert [m['name'] for m in desc['meta']] == ['Field', 'Type', 'Null', 'Key', 'Default', 'Extra']
  assert desc['data'][-1] == ['c', 'int', 'No', 'false', '7', 'NONE']


def test_a_busy_table_answers_the_schema_change_state_error(stream_load_server):
  stream_load_server.inject_fault('schema_change_busy', times=1, table='demo.events')
  answer = _sql(stream_load_server, 'ALTER TABLE demo.events ADD COLUMN a INT NULL')
  assert answer['data'] == ("errCode = 2, detailMessage = Table[events]'s state(SCHEMA_CHANGE) "
                            'is not NORMAL. Do not allow doing ALTER ops')
  assert _sql(stream_load_server, 'ALTER TABLE demo.events ADD COLUMN a INT NULL')['code'] == 0


def test_create_table_in_doris_syntax_and_its_rules(stream_load_server):
  ddl = ('CREATE TABLE IF NOT EXISTS `demo`.`people` (\n  `id` VARCHAR(65533) NOT NULL,\n'
         '  `age` BIGINT NULL\n) UNIQUE KEY(`id`)\nDISTRIBUTED BY HASH(`id`) BUCKETS AUTO\n'
         'PROPERTIES ("light_schema_change" = "true", "replication_num" = "1")')
  assert _sql(stream_load_server, ddl)['code'] == 0
  assert _sql(stream_load_server, ddl)['code'] == 0  # IF NOT EXISTS: idempotent
  assert _sql(stream_load_server, ddl.replace(' IF NOT EXISTS', ''))['data'] == (
      "errCode = 2, detailMessage = Table 'people' already exists")
  assert _schema(stream_load_server, 'demo.people')['data']['keysType'] == 'UNIQUE_KEYS'
  for lines, label in ((['{"id": "a", "age": 1}', '{"id": "a", "age": 2}'], 'p1'),
                       (['{"id": "a", "__DORIS_DELETE_SIGN__": 1}', '{"id": "b"}'], 'p2')):
    assert _load(stream_load_server, 'demo.people', lines, label)['Status'] == 'Success'
  assert stream_load_server.query('SELECT id, age FROM demo.people') == [('b', None)]
  assert 'String Type should not be used in key column[s]' in _sql(
      stream_load_server, 'CREATE TABLE demo.x (s STRING) DUPLICATE KEY(s) DISTRIBUTED BY '
      'RANDOM BUCKETS 1')['data']
  assert 'Key columns should be a ordered prefix' in _sql(
      stream_load_server, 'CREATE TABLE demo.y (a INT, b INT) DUPLICATE KEY(b) DISTRIBUTED BY '
      'RANDOM BUCKETS 1')['data']


def test_created_tables_and_added_columns_survive_a_restart(make_stream_load_server, tmp_path):
  data_dir = str(tmp_path / 'data')
  server = make_stream_load_server(data_dir=data_dir)
  assert _sql(server, 'CREATE TABLE demo.t (k BIGINT NULL, v STRING NULL) DUPLICATE KEY(k) '
              'DISTRIBUTED BY HASH(k) BUCKETS 1')['code'] == 0
  assert _sql(server, 'ALTER TABLE demo.t ADD COLUMN w DOUBLE NULL')['code'] == 0
  assert _load(server, 'demo.t', ['{"k": 1, "v": "a", "w": 0.5}'], 'l1')['Status'] == 'Success'
  server.stop()
  again = make_stream_load_server(data_dir=data_dir)
  assert [p['name'] for p in _schema(again, 'demo.t')['data']['properties']] == ['k', 'v', 'w']
  assert again.query('SELECT k, v, w FROM demo.t') == [(1, 'a', 0.5)]
