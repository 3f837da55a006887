"""The SQL API's DDL: ALTER TABLE ... ADD / DROP / MODIFY / RENAME COLUMN, TRUNCATE and DROP
TABLE, CREATE TABLE, DESC, information_schema, and their replay after a restart."""

import decimal

import pytest
import requests

from tests.stream_load_emulator.helpers import ndjson, stream_load

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


# --- DROP / RENAME / MODIFY COLUMN, TRUNCATE, DROP TABLE --------------------------------------

def _error(answer):
  """The Doris message of a refused statement (fails when it was not refused)."""
  assert answer['code'] == 1, answer
  prefix = 'errCode = 2, detailMessage = '
  assert answer['data'].startswith(prefix), answer
  return answer['data'][len(prefix):]


def _ok(answer):
  assert answer['code'] == 0, answer
  return answer['data']


def _desc(server, table):
  db, tbl = table.split('.')
  return {row[0]: tuple(row[1:]) for row in _ok(_sql(server, 'DESC %s' % tbl, db))['data']}


def _commit_2pc(server, txn_id):
  headers = {'txn_id': str(txn_id), 'txn_operation': 'commit'}
  first = requests.put(server.fe_url + '/api/demo/_stream_load_2pc', headers=headers, auth=AUTH,
                       allow_redirects=False, timeout=10)
  answer = requests.put(first.headers['Location'], headers=headers, auth=AUTH, timeout=10)
  return answer.json()


EVENTS = ['{"event_id": 1, "user_id": 7, "event_type": "view", "amount": "1.50", '
          '"ts": "2024-01-02 03:04:05", "payload": "p1"}',
          '{"event_id": 2, "user_id": 8, "amount": "2.25", "payload": "p2"}']


def test_drop_column_keeps_the_other_values_and_later_loads_work(stream_load_server):
  srv = stream_load_server
  assert _load(srv, 'demo.events', EVENTS, 'e1')['Status'] == 'Success'
  _ok(_sql(srv, 'ALTER TABLE demo.events DROP COLUMN payload, DROP COLUMN `AMOUNT`'))
  assert list(_desc(srv, 'demo.events')) == ['event_id', 'user_id', 'event_type', 'ts']
  assert srv.query('SELECT * FROM demo.events ORDER BY event_id') == [
      (1, 7, 'view', '2024-01-02 03:04:05'), (2, 8, 'unknown', None)]
  answer = _load(srv, 'demo.events', ['{"event_id": 3, "user_id": 9, "payload": "gone"}'], 'e2')
  assert (answer['Status'], answer['NumberLoadedRows']) == ('Success', 1)
  assert srv.query('SELECT event_id, user_id FROM demo.events WHERE event_id = 3') == [(3, 9)]
  assert [p['name'] for p in _schema(srv, 'demo.events')['data']['properties']] == [
      'event_id', 'user_id', 'event_type', 'ts']
  # Added again later, the column starts empty.
  _ok(_sql(srv, 'ALTER TABLE demo.events ADD COLUMN payload STRING NULL'))
  assert srv.query('SELECT count(*) FROM demo.events WHERE payload IS NOT NULL') == [(0,)]


def test_drop_column_answers_doris_refusals(stream_load_server):
  srv = stream_load_server
  assert _error(_sql(srv, 'ALTER TABLE users DROP COLUMN id')) == (
      'Can not drop key column in Unique data model table')
  assert _error(_sql(srv, 'ALTER TABLE users DROP COLUMN nope')) == 'Column does not exists: nope'
  assert _error(_sql(srv, 'ALTER TABLE orders DROP COLUMN seq')) == (
      'Can not drop sequence mapping column[seq] in Unique data model table[orders]')
  assert _error(_sql(srv, 'ALTER TABLE events DROP COLUMN event_id')) == (
      'No key column left. index[events]')
  assert _error(_sql(srv, 'ALTER TABLE page_views DROP COLUMN day')) == (
      'Can not drop key column when table has value column with REPLACE aggregation method')
  assert _error(_sql(srv, 'ALTER TABLE users DROP COLUMN email FROM r1')) == (
      'Index[r1] does not exist in table[users]')
  # A refused statement changes nothing, not even its valid clauses.
  assert _error(_sql(srv, 'ALTER TABLE users DROP COLUMN email, DROP COLUMN nope')) == (
      'Column does not exists: nope')
  assert list(_desc(srv, 'demo.users')) == ['id', 'name', 'email', 'age', 'updated_at']


def test_dropping_a_key_of_an_aggregate_table_merges_the_rows(stream_load_server):
  srv = stream_load_server
  _ok(_sql(srv, 'CREATE TABLE demo.agg (k1 VARCHAR(8) NOT NULL, k2 INT NOT NULL, v BIGINT SUM '
                'NULL, m INT MAX NULL) AGGREGATE KEY(k1, k2) DISTRIBUTED BY HASH(k1) BUCKETS 1'))
  lines = ['{"k1": "a", "k2": 1, "v": 10, "m": 3}', '{"k1": "a", "k2": 2, "v": 5, "m": 7}',
           '{"k1": "b", "k2": 1, "v": 1, "m": 1}']
  assert _load(srv, 'demo.agg', lines, 'a1')['Status'] == 'Success'
  assert _error(_sql(srv, 'ALTER TABLE agg DROP COLUMN k1')) == (
      'Distribution column[k1] cannot be dropped. index[agg]')
  _ok(_sql(srv, 'ALTER TABLE agg DROP COLUMN k2'))
  assert srv.query('SELECT * FROM demo.agg ORDER BY k1') == [('a', 15, 7), ('b', 1, 1)]
  assert _load(srv, 'demo.agg', ['{"k1": "a", "v": 1, "m": 9}'], 'a2')['Status'] == 'Success'
  assert srv.query('SELECT * FROM demo.agg ORDER BY k1') == [('a', 16, 9), ('b', 1, 1)]


def test_rename_column_moves_the_values_to_the_new_name(stream_load_server):
  srv = stream_load_server
  assert _load(srv, 'demo.users', ['{"id": 1, "name": "ann", "age": 30}'], 'u1')['Status'] == (
      'Success')
  _ok(_sql(srv, 'ALTER TABLE demo.users RENAME COLUMN name full_name'))
  assert list(_desc(srv, 'demo.users')) == ['id', 'full_name', 'email', 'age', 'updated_at']
  assert srv.query('SELECT id, full_name, age FROM demo.users') == [(1, 'ann', 30)]
  assert _load(srv, 'demo.users', ['{"id": 2, "full_name": "bob", "name": "ignored"}'],
               'u2')['Status'] == 'Success'
  assert srv.query('SELECT id, full_name FROM demo.users ORDER BY id') == [(1, 'ann'), (2, 'bob')]
  assert _error(_sql(srv, 'ALTER TABLE users RENAME COLUMN full_name FULL_NAME')) == (
      'Same column name')
  assert _error(_sql(srv, 'ALTER TABLE users RENAME COLUMN full_name Email')) == (
      'Column name[Email] is already used')
  assert _error(_sql(srv, 'ALTER TABLE users RENAME COLUMN name x')) == (
      'Column[name] does not exists')
  # Key and sequence columns can be renamed too; the sequence rule follows the new name.
  _ok(_sql(srv, 'ALTER TABLE orders RENAME COLUMN order_id oid'))
  _ok(_sql(srv, 'ALTER TABLE orders RENAME COLUMN seq version'))
  assert _schema(srv, 'demo.orders')['data']['keysType'] == 'UNIQUE_KEYS'
  for line, label in (('{"oid": 1, "user_id": 1, "status": "new", "version": 5}', 'o1'),
                      ('{"oid": 1, "user_id": 1, "status": "stale", "version": 4}', 'o2')):
    assert _load(srv, 'demo.orders', [line], label)['Status'] == 'Success'
  assert srv.query('SELECT oid, status, version FROM demo.orders') == [(1, 'new', 5)]


def test_quoted_names_and_the_starrocks_rename_form(make_stream_load_server):
  doris = make_stream_load_server()
  _ok(_sql(doris, 'ALTER TABLE `demo`.`users` RENAME COLUMN `name` `user name`'))
  _ok(_sql(doris, 'ALTER TABLE `demo`.`users` MODIFY COLUMN `user name` VARCHAR(80) NULL '
                  "COMMENT 'from the source'"))
  _ok(_sql(doris, 'ALTER TABLE `demo`.`users` DROP COLUMN `email`'))
  assert list(_desc(doris, 'demo.users')) == ['id', 'user name', 'age', 'updated_at']
  assert _error(_sql(doris, 'ALTER TABLE users RENAME COLUMN age TO years')) == (
      'RENAME COLUMN takes the old and the new name: RENAME COLUMN old new')
  starrocks = make_stream_load_server(flavor='starrocks')
  _ok(_sql(starrocks, 'ALTER TABLE users RENAME COLUMN age TO years'))
  assert 'years' in _desc(starrocks, 'demo.users')


def test_a_load_precommitted_before_a_rename_or_drop_commits_into_the_new_schema(
    stream_load_server):
  srv = stream_load_server
  answer = _load(srv, 'demo.users', ['{"id": 1, "name": "ann", "email": "a@x", "age": 3}'], 'p1')
  assert answer['Status'] == 'Success'
  headers = {'Expect': '100-continue', 'label': 'tpc', 'format': 'json',
             'read_json_by_line': 'true', 'two_phase_commit': 'true'}
  first = requests.put(f'{srv.fe_url}/api/demo/users/_stream_load', headers=headers, auth=AUTH,
                       data=b'', allow_redirects=False, timeout=10)
  answer = requests.put(first.headers['Location'], headers=headers, auth=AUTH, timeout=10,
                        data=b'{"id": 2, "name": "bob", "email": "b@x", "age": 4}\n').json()
  assert answer['Status'] == 'Success'
  _ok(_sql(srv, 'ALTER TABLE users RENAME COLUMN name full_name'))
  _ok(_sql(srv, 'ALTER TABLE users DROP COLUMN email'))
  assert _commit_2pc(srv, answer['TxnId'])['status'] == 'Success'
  assert srv.query('SELECT id, full_name, age FROM demo.users ORDER BY id') == [
      (1, 'ann', 3), (2, 'bob', 4)]


def test_open_group_commits_commit_into_the_new_schema_or_go_with_a_dropped_table(
    make_stream_load_server):
  srv = make_stream_load_server(group_commit_interval_ms=3_600_000)
  async_json = {'format': 'json', 'read_json_by_line': 'true', 'group_commit': 'async_mode'}
  for table, row in (('events', {'event_id': 1}), ('users', {'id': 1, 'name': 'ann'})):
    assert stream_load(srv, 'demo', table, ndjson([row]), async_json)['Status'] == 'Success'
  _ok(_sql(srv, 'DROP TABLE events'))
  _ok(_sql(srv, 'ALTER TABLE users RENAME COLUMN name full_name'))
  assert srv.flush_group_commits() == 2
  assert srv.query('SELECT id, full_name FROM demo.users') == [(1, 'ann')]
  assert _error(_sql(srv, 'SELECT * FROM events')) == (
      'Table [events] does not exist in database [demo].')


def test_modify_column_widens_and_converts_the_stored_values(stream_load_server):
  srv = stream_load_server
  _ok(_sql(srv, 'CREATE TABLE demo.m (k BIGINT NOT NULL, i TINYINT NULL, f FLOAT NULL, '
                'd DATE NULL, s VARCHAR(4) NULL, n INT NULL, dec DECIMAL(6, 2) NULL, '
                't VARCHAR(8) NOT NULL DEFAULT "x") DUPLICATE KEY(k) '
                'DISTRIBUTED BY HASH(k) BUCKETS 1'))
  assert _load(srv, 'demo.m', ['{"k": 1, "i": 100, "f": 0.5, "d": "2024-01-02", "s": "abcd", '
                               '"n": 42, "dec": "1234.50", "t": "y"}',
                               '{"k": 2}'], 'm1')['Status'] == 'Success'
  for stmt in ('MODIFY COLUMN i SMALLINT', 'MODIFY COLUMN i INT', 'MODIFY COLUMN i BIGINT NULL',
               'MODIFY COLUMN i LARGEINT', 'MODIFY COLUMN f DOUBLE', 'MODIFY COLUMN d DATETIME',
               'MODIFY COLUMN s VARCHAR(16), MODIFY COLUMN n VARCHAR(20) COMMENT "now text"',
               'MODIFY COLUMN dec DECIMAL(10, 2)',
               'MODIFY COLUMN t VARCHAR(32) NOT NULL DEFAULT "x"'):
    _ok(_sql(srv, 'ALTER TABLE m ' + stmt))
  _ok(_sql(srv, 'ALTER TABLE m MODIFY COLUMN s STRING'))
  desc = _desc(srv, 'demo.m')
  assert {name: row[0] for name, row in desc.items()} == {
      'k': 'bigint', 'i': 'largeint', 'f': 'double', 'd': 'datetime', 's': 'text',
      'n': 'varchar(20)', 'dec': 'decimal(10, 2)', 't': 'varchar(32)'}
  assert desc['t'][1:4] == ('No', 'false', 'x')
  assert srv.query('SELECT k, i, f, d, s, n, dec, t FROM demo.m ORDER BY k') == [
      (1, 100, 0.5, '2024-01-02 00:00:00', 'abcd', '42', decimal.Decimal('1234.50'), 'y'),
      (2, None, None, None, None, None, None, 'x')]
  big = str(2 ** 100)
  assert _load(srv, 'demo.m', ['{"k": 3, "i": %s, "s": "%s", "dec": "12345678.99"}'
                               % (big, 'z' * 40)], 'm2')['Status'] == 'Success'
  assert srv.query('SELECT i, s, dec FROM demo.m WHERE k = 3') == [
      (big, 'z' * 40, decimal.Decimal('12345678.99'))]


def test_modify_column_answers_doris_refusals_and_keeps_the_rows(stream_load_server):
  srv = stream_load_server
  assert _load(srv, 'demo.users', ['{"id": 1, "name": "abc", "age": 7}'], 'u1')['Status'] == (
      'Success')
  _ok(_sql(srv, 'ALTER TABLE users MODIFY COLUMN age BIGINT'))
  refusals = {
      'MODIFY COLUMN age INT': 'Can not change BIGINT to INT',
      'MODIFY COLUMN age DATE': 'Can not change BIGINT to DATEV2',
      'MODIFY COLUMN updated_at INT': 'Can not change DATETIMEV2 to INT',
      'MODIFY COLUMN name VARCHAR(8)': 'Cannot shorten string length',
      'MODIFY COLUMN name CHAR(80)': 'Can not change VARCHAR to CHAR',
      'MODIFY COLUMN age VARCHAR(5)': (
          'Can not change from wider type bigint to narrower type varchar(5)'),
      'MODIFY COLUMN age BIGINT NOT NULL': 'Can not change from nullable to non-nullable',
      'MODIFY COLUMN age BIGINT DEFAULT "0"': 'Can not change default value',
      'MODIFY COLUMN age BIGINT SUM': ('Can not assign aggregation method on column in Unique '
                                       'data model table: age'),
      'MODIFY COLUMN age BIGINT KEY': 'Invalid column order. value should be after key. '
                                      'index[users]',
      'MODIFY COLUMN nope INT': 'Column[nope] does not exists',
      'MODIFY COLUMN id LARGEINT KEY NOT NULL': (
          'Can not modify distribution column[id]. index[users]'),
      'MODIFY COLUMN id BIGINT KEY NOT NULL': 'Nothing is changed. please check your alter stmt.',
      'MODIFY COLUMN age BIGINT': 'Nothing is changed. please check your alter stmt.',
  }
  for clause, message in refusals.items():
    assert _error(_sql(srv, 'ALTER TABLE users ' + clause)) == message, clause
  assert _error(_sql(srv, 'ALTER TABLE orders MODIFY COLUMN seq LARGEINT')) == (
      'Can not alter sequence column[seq]')
  assert _error(_sql(srv, 'ALTER TABLE page_views MODIFY COLUMN views LARGEINT')) == (
      'Can not change aggregation type')
  _ok(_sql(srv, 'ALTER TABLE page_views MODIFY COLUMN views LARGEINT SUM DEFAULT "0"'))
  # A stored value the new type cannot hold: refused (Doris cancels the job), rows unchanged.
  _ok(_sql(srv, 'ALTER TABLE users MODIFY COLUMN age VARCHAR(30)'))
  assert _load(srv, 'demo.users', ['{"id": 2, "age": "old"}'], 'u2')['Status'] == 'Success'
  message = _error(_sql(srv, 'ALTER TABLE users MODIFY COLUMN age BIGINT'))
  assert message.startswith('Can not modify column age: the stored value old does not fit '
                            'bigint'), message
  assert srv.query('SELECT id, age FROM demo.users ORDER BY id') == [(1, '7'), (2, 'old')]
  assert _desc(srv, 'demo.users')['age'][0] == 'varchar(30)'


def test_truncate_and_drop_table(stream_load_server):
  srv = stream_load_server
  assert _load(srv, 'demo.events', EVENTS, 'e1')['Status'] == 'Success'
  _ok(_sql(srv, 'TRUNCATE TABLE demo.events'))
  assert srv.query('SELECT count(*) FROM demo.events') == [(0,)]
  assert _load(srv, 'demo.events', EVENTS[:1], 'e2')['NumberLoadedRows'] == 1
  assert _error(_sql(srv, 'TRUNCATE TABLE nosuch')) == "Unknown table 'nosuch'"
  _ok(_sql(srv, 'DROP TABLE demo.events FORCE'))
  assert _error(_sql(srv, 'SELECT * FROM events')) == (
      'Table [events] does not exist in database [demo].')
  assert _error(_sql(srv, 'DESC events')) == "Unknown table 'events'"
  answer = _load(srv, 'demo.events', EVENTS[:1], 'e3')
  assert (answer['Status'], answer['Message']) == (
      'Fail', '[ANALYSIS_ERROR]TStatus: errCode = 7, detailMessage = unknown table, '
      'tableName=events')
  assert _error(_sql(srv, 'DROP TABLE events')) == "Unknown table 'events' in demo"
  _ok(_sql(srv, 'DROP TABLE IF EXISTS events'))
  _ok(_sql(srv, 'CREATE TABLE demo.events (event_id BIGINT NOT NULL, note STRING NULL) '
                'DUPLICATE KEY(event_id) DISTRIBUTED BY HASH(event_id) BUCKETS 1'))
  assert _load(srv, 'demo.events', ['{"event_id": 5, "note": "n"}'], 'e4')['Status'] == (
      'Success')
  assert srv.query('SELECT * FROM demo.events') == [(5, 'n')]


def test_busy_and_denied_faults_hit_every_alter_form(stream_load_server):
  srv = stream_load_server
  busy = ("Table[users]'s state(SCHEMA_CHANGE) is not NORMAL. Do not allow doing ALTER ops")
  for stmt in ('ALTER TABLE users DROP COLUMN email',
               'ALTER TABLE users MODIFY COLUMN age BIGINT',
               'ALTER TABLE users RENAME COLUMN name full_name'):
    before = _desc(srv, 'demo.users')
    srv.inject_fault('schema_change_busy', times=1, table='demo.users')
    assert _error(_sql(srv, stmt)) == busy
    srv.inject_fault('ddl_denied', times=1, table='demo.users')
    assert _error(_sql(srv, stmt)) == ('Access denied; you need (at least one of) the (ALTER) '
                                       'privilege(s) on TABLE users for this operation')
    assert _desc(srv, 'demo.users') == before
    _ok(_sql(srv, stmt))
  assert _desc(srv, 'demo.users') == {
      'id': ('bigint', 'No', 'true', None, 'NONE'),
      'full_name': ('varchar(64)', 'Yes', 'false', None, 'NONE'),
      'age': ('bigint', 'Yes', 'false', None, 'NONE'),
      'updated_at': ('datetime', 'Yes', 'false', None, 'NONE')}


def test_schema_changes_truncates_and_drops_survive_a_restart(make_stream_load_server,
                                                              tmp_path):
  data_dir = str(tmp_path / 'data')
  srv = make_stream_load_server(data_dir=data_dir)
  assert _load(srv, 'demo.events', EVENTS, 'e1')['Status'] == 'Success'
  assert _load(srv, 'demo.users', ['{"id": 1, "name": "ann", "email": "a@x", "age": 3}'],
               'u1')['Status'] == 'Success'
  assert _load(srv, 'demo.orders', ['{"order_id": 1, "user_id": 1, "seq": 1}'], 'o1')[
      'Status'] == 'Success'
  statements = [
      'ALTER TABLE events DROP COLUMN payload',
      'ALTER TABLE events MODIFY COLUMN user_id LARGEINT',
      'ALTER TABLE users RENAME COLUMN name full_name',
      'ALTER TABLE users DROP COLUMN email',
      'ALTER TABLE users ADD COLUMN email VARCHAR(256) NULL',  # same name, new column
      'ALTER TABLE users MODIFY COLUMN age VARCHAR(20)',
      'TRUNCATE TABLE orders',
      'DROP TABLE page_views',
      'CREATE TABLE demo.tmp (k INT NOT NULL) DUPLICATE KEY(k) DISTRIBUTED BY HASH(k) BUCKETS 1',
      'DROP TABLE tmp']
  for stmt in statements:
    _ok(_sql(srv, stmt))
  assert _load(srv, 'demo.users', ['{"id": 2, "full_name": "bob", "email": "b@x", "age": 4}'],
               'u2')['Status'] == 'Success'
  assert _load(srv, 'demo.orders', ['{"order_id": 2, "user_id": 1, "seq": 1}'], 'o2')[
      'Status'] == 'Success'
  before = {t: _desc(srv, 'demo.' + t) for t in ('events', 'users', 'orders')}
  srv.stop()
  again = make_stream_load_server(data_dir=data_dir)
  assert {t: _desc(again, 'demo.' + t) for t in ('events', 'users', 'orders')} == before
  assert before['events']['user_id'][0] == 'largeint'
  assert again.query('SELECT * FROM demo.events ORDER BY event_id') == [
      (1, 7, 'view', decimal.Decimal('1.50'), '2024-01-02 03:04:05'),
      (2, 8, 'unknown', decimal.Decimal('2.25'), None)]
  assert again.query('SELECT * FROM demo.users ORDER BY id') == [
      (1, 'ann', '3', None, None), (2, 'bob', '4', None, 'b@x')]
  assert again.query('SELECT order_id FROM demo.orders') == [(2,)]
  assert _error(_sql(again, 'DESC page_views')) == "Unknown table 'page_views'"
  assert _error(_sql(again, 'SELECT * FROM tmp')) == (
      'Table [tmp] does not exist in database [demo].')
  assert _load(again, 'demo.page_views', ['{"page": "p", "day": "2024-01-01"}'], 'p1')[
      'Status'] == 'Fail'
  # The restarted server goes on from there: its own DDL and loads work as before.
  _ok(_sql(again, 'ALTER TABLE users RENAME COLUMN full_name name'))
  assert again.query('SELECT name FROM demo.users ORDER BY id') == [('ann',), ('bob',)]
