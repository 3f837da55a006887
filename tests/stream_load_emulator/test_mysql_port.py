"""The FE's MySQL port (a real client, pymysql) and ``GET /api/backends``."""

import decimal
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import pymysql
import pytest
import requests

from stream_load_emulator import mysql_port
from tests.fixtures.stream_load import DEMO_SCHEMA, PASSWORD, USER
from tests.stream_load_emulator.helpers import AUTH, ndjson, stream_load

pytestmark = pytest.mark.transform

JL = {'format': 'json', 'read_json_by_line': 'true'}
ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
TIME = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$')


def _connect(server, user=USER, password=PASSWORD, database='demo', **kwargs):
  return pymysql.connect(host='127.0.0.1', port=server.query_port, user=user, password=password,
                         database=database, connect_timeout=10, read_timeout=30, **kwargs)


def _run(conn, sql):
  """``(column names, rows)`` of one statement."""
  with conn.cursor() as cur:
    cur.execute(sql)
    names = [d[0] for d in cur.description] if cur.description else []
    return names, [tuple(r) for r in cur.fetchall()]


def _error(conn, sql):
  """``(MySQL error code, message)`` of a statement that must fail."""
  with pytest.raises(pymysql.MySQLError) as failure:
    _run(conn, sql)
  return failure.value.args[0], failure.value.args[1]


def _transactions(conn, sql):
  names, rows = _run(conn, sql)
  assert tuple(names) == mysql_port.TRANSACTION_COLUMNS
  return [dict(zip(names, row)) for row in rows]


def _commit_2pc(server, txn_id):
  headers = {'txn_id': str(txn_id), 'txn_operation': 'commit'}
  first = requests.put(server.fe_url + '/api/demo/_stream_load_2pc', headers=headers, auth=AUTH,
                       allow_redirects=False, timeout=10)
  assert first.status_code == 307
  answer = requests.put(first.headers['Location'], headers=headers, auth=AUTH, timeout=10)
  assert answer.json()['status'] == 'Success', answer.text


def _free_port():
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


# --- login and session ------------------------------------------------------------------------

def test_login_with_the_servers_password_and_access_denied_otherwise(make_stream_load_server):
  srv = make_stream_load_server()
  with _connect(srv) as conn:
    assert _run(conn, 'SELECT @@version_comment LIMIT 1')[1] == [
        ('Doris version doris-2.1.x-emulator',)]
    assert conn.get_server_info() == '5.7.99'
  with _connect(srv, user='default_cluster:root', database=None) as conn:
    assert _run(conn, 'SELECT 1')[1] == [(1,)]
  for user, password in (('root', 'wrong'), ('root', ''), ('nobody', PASSWORD)):
    with pytest.raises(pymysql.err.OperationalError) as failure:
      _connect(srv, user=user, password=password)
    assert failure.value.args == (1045, "Access denied for user '%s@127.0.0.1' (using password: "
                                  '%s)' % (user, 'YES' if password else 'NO'))


def test_an_empty_password_logs_in_without_one(make_stream_load_server):
  srv = make_stream_load_server(password='')
  with _connect(srv, password='') as conn:
    assert _run(conn, 'SELECT DATABASE()')[1] == [('demo',)]
  with pytest.raises(pymysql.err.OperationalError) as failure:
    _connect(srv, password='something')
  assert failure.value.args[0] == 1045


def test_what_clients_send_on_connect(make_stream_load_server):
  srv = make_stream_load_server()
  with _connect(srv, database=None, autocommit=True) as conn:
    for stmt in ('SET NAMES utf8mb4', 'SET autocommit = 1', 'SET query_timeout = 60'):
      assert _run(conn, stmt) == ([], [])
    assert _run(conn, 'SELECT DATABASE()')[1] == [(None,)]
    assert dict(_run(conn, "SHOW VARIABLES LIKE 'version%'")[1]) == {
        'version': '5.7.99', 'version_comment': 'Doris version doris-2.1.x-emulator'}
    assert _run(conn, 'SELECT @@query_timeout')[1] == [(60,)]
    assert _error(conn, 'SHOW TABLES') == (1046, 'errCode = 2, detailMessage = No database '
                                           'selected')
    _run(conn, 'USE demo')
    assert _run(conn, 'SELECT DATABASE()')[1] == [('demo',)]
    assert _error(conn, 'USE nosuch') == (1049, "errCode = 2, detailMessage = Unknown database "
                                          "'nosuch'")
    conn.select_db('demo')  # COM_INIT_DB
  starrocks = make_stream_load_server(flavor='starrocks')
  with _connect(starrocks) as conn:
    assert _run(conn, 'SELECT @@version_comment')[1][0][0].startswith('StarRocks version')


def test_fixed_query_port_goes_down_and_comes_back_with_fe0(make_stream_load_server):
  port = _free_port()
  srv = make_stream_load_server(query_port=port)
  assert srv.query_port == port
  conn = _connect(srv)
  srv.inject_fault('fe_down', node=0)
  with pytest.raises(pymysql.err.OperationalError):
    _run(conn, 'SELECT 1')  # the open connection is dropped
  with pytest.raises(pymysql.err.OperationalError) as refused:
    _connect(srv)
  assert refused.value.args[0] == 2003
  srv.clear_faults()
  with _connect(srv) as again:
    assert _run(again, 'SELECT count(*) FROM users')[1] == [(0,)]


# --- catalog statements -----------------------------------------------------------------------

def test_show_databases_tables_and_desc(make_stream_load_server):
  srv = make_stream_load_server()
  with _connect(srv) as conn:
    assert _run(conn, 'SHOW DATABASES') == (['Database'], [('demo',), ('information_schema',)])
    assert _run(conn, "SHOW DATABASES LIKE 'de%'")[1] == [('demo',)]
    assert _run(conn, 'SHOW TABLES') == (['Tables_in_demo'], [
        ('events',), ('orders',), ('page_views',), ('users',)])
    assert _run(conn, "SHOW FULL TABLES FROM demo LIKE 'o%'") == (
        ['Tables_in_demo', 'Table_type'], [('orders', 'BASE TABLE')])
    names, rows = _run(conn, 'DESC users')
    assert names == ['Field', 'Type', 'Null', 'Key', 'Default', 'Extra']
    assert rows[:2] == [('id', 'bigint', 'No', 'true', None, 'NONE'),
                        ('name', 'varchar(64)', 'Yes', 'false', None, 'NONE')]
    assert _run(conn, 'DESCRIBE demo.users')[1] == rows
    assert _error(conn, 'SHOW TABLES FROM nosuch') == (
        1049, "errCode = 2, detailMessage = Unknown database 'nosuch'")


def test_show_create_table_prints_ddl_that_creates_the_same_table(make_stream_load_server):
  srv = make_stream_load_server()
  with _connect(srv) as conn:
    names, rows = _run(conn, 'SHOW CREATE TABLE page_views')
    assert names == ['Table', 'Create Table'] and rows[0][0] == 'page_views'
    assert rows[0][1].startswith('CREATE TABLE `page_views` (\n  `page` varchar(128) NOT NULL,')
    assert '`views` bigint SUM NULL DEFAULT "0"' in rows[0][1]
    assert 'AGGREGATE KEY(`page`, `day`)' in rows[0][1]
    ddls = {t: _run(conn, 'SHOW CREATE TABLE demo.%s' % t)[1][0][1]
            for t in ('events', 'users', 'orders', 'page_views')}
  copy = make_stream_load_server(schema_sql='CREATE DATABASE demo;')
  with _connect(copy) as conn:
    for ddl in ddls.values():
      assert _run(conn, ddl) == ([], [])
  for name in ddls:
    original, created = srv.catalog.table('demo', name), copy.catalog.table('demo', name)
    assert (created.keys_type, created.key_columns, created.sequence_col,
            created.distribution_columns) == (
                original.keys_type, original.key_columns, original.sequence_col,
                original.distribution_columns)
    assert created.columns == original.columns
  assert 'DISTRIBUTED BY HASH(`page`) BUCKETS AUTO' in ddls['page_views']


def test_schema_change_statements_over_mysql_show_in_show_create_table(make_stream_load_server):
  srv = make_stream_load_server()
  res = stream_load(srv, 'demo', 'users', ndjson([
      {'id': 1, 'name': 'ann', 'email': 'a@x', 'age': 30},
      {'id': 2, 'name': 'bob', 'email': 'b@x', 'age': 40}]), dict(JL, label='users_1'))
  assert res['Status'] == 'Success'
  with _connect(srv) as conn:
    assert _run(conn, 'ALTER TABLE users DROP COLUMN email') == ([], [])
    assert _run(conn, 'ALTER TABLE demo.users RENAME COLUMN name full_name') == ([], [])
    assert _run(conn, 'ALTER TABLE users MODIFY COLUMN age BIGINT NULL') == ([], [])
    assert _run(conn, 'ALTER TABLE users MODIFY COLUMN full_name VARCHAR(128) NULL;') == ([], [])
    ddl = _run(conn, 'SHOW CREATE TABLE users')[1][0][1]
    assert ddl.startswith('CREATE TABLE `users` (\n  `id` bigint NOT NULL,\n  `full_name` '
                          'varchar(128) NULL,\n  `age` bigint NULL,\n  `updated_at` datetime '
                          'NULL\n) ENGINE=OLAP\nUNIQUE KEY(`id`)'), ddl
    assert [r[:2] for r in _run(conn, 'DESC users')[1]] == [
        ('id', 'bigint'), ('full_name', 'varchar(128)'), ('age', 'bigint'),
        ('updated_at', 'datetime')]
    assert _run(conn, 'SELECT id, full_name, age FROM users ORDER BY id')[1] == [
        (1, 'ann', 30), (2, 'bob', 40)]
    assert _error(conn, 'ALTER TABLE users MODIFY COLUMN age INT') == (
        1105, 'errCode = 2, detailMessage = Can not change BIGINT to INT')
    assert _error(conn, 'ALTER TABLE users DROP COLUMN id') == (
        1105, 'errCode = 2, detailMessage = Can not drop key column in Unique data model table')
    assert _error(conn, 'ALTER TABLE users RENAME COLUMN nope x') == (
        1105, 'errCode = 2, detailMessage = Column[nope] does not exists')
    assert _run(conn, 'TRUNCATE TABLE users') == ([], [])
    assert _run(conn, 'SELECT count(*) FROM users')[1] == [(0,)]
    assert _run(conn, 'DROP TABLE IF EXISTS demo.users FORCE') == ([], [])
    assert 'users' not in [r[0] for r in _run(conn, 'SHOW TABLES')[1]]
    assert _error(conn, 'DROP TABLE users') == (
        1109, "errCode = 2, detailMessage = Unknown table 'users' in demo")
    assert _error(conn, 'DROP TABLE nosuchdb.users') == (
        1049, "errCode = 2, detailMessage = Unknown database 'nosuchdb'")
  res = stream_load(srv, 'demo', 'users', ndjson([{'id': 3}]), dict(JL, label='users_2'))
  assert res['Status'] == 'Fail' and 'unknown table, tableName=users' in res['Message']


def test_create_and_alter_over_mysql_then_stream_load_then_select(make_stream_load_server):
  srv = make_stream_load_server()
  with _connect(srv, database=None) as conn:
    _run(conn, 'CREATE DATABASE shop')
    _run(conn, 'USE shop')
    _run(conn, 'CREATE TABLE items (id BIGINT NOT NULL, name VARCHAR(32) NULL, '
               'price DECIMAL(10, 2) NULL) UNIQUE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1 '
               'PROPERTIES ("replication_num" = "1")')
    _run(conn, 'ALTER TABLE items ADD COLUMN stock INT NULL DEFAULT "0"')
    assert [r[0] for r in _run(conn, 'DESC items')[1]] == ['id', 'name', 'price', 'stock']
    assert _error(conn, 'ALTER TABLE items ADD COLUMN stock INT NULL') == (
        1105, 'errCode = 2, detailMessage = Can not add column which already exists in base '
        'table: stock')
    res = stream_load(srv, 'shop', 'items', ndjson([
        {'id': 1, 'name': 'pen', 'price': '1.50', 'stock': 7},
        {'id': 2, 'name': 'ink', 'price': '12.25'}]), dict(JL, label='items_1'))
    assert res['Status'] == 'Success' and res['NumberLoadedRows'] == 2
    assert _run(conn, 'SELECT id, name, price, stock FROM items ORDER BY id') == (
        ['id', 'name', 'price', 'stock'],
        [(1, 'pen', decimal.Decimal('1.50'), 7), (2, 'ink', decimal.Decimal('12.25'), 0)])
    assert _run(conn, 'SELECT count(*) FROM shop.items WHERE price > 2')[1] == [(1,)]


def test_errors_carry_doris_text(make_stream_load_server):
  srv = make_stream_load_server()
  with _connect(srv) as conn:
    assert _error(conn, 'SELECT * FROM nosuch') == (
        1105, 'errCode = 2, detailMessage = Table [nosuch] does not exist in database [demo].')
    assert _error(conn, 'SHOW CREATE TABLE nosuch') == (
        1109, "errCode = 2, detailMessage = Unknown table 'nosuch' in demo")
    assert _error(conn, 'DESC nosuch') == (1105, "errCode = 2, detailMessage = Unknown table "
                                           "'nosuch'")
    assert _error(conn, 'CREATE TABLE users (id BIGINT) DUPLICATE KEY(id) DISTRIBUTED BY '
                  'HASH(id) BUCKETS 1') == (
        1105, "errCode = 2, detailMessage = Table 'users' already exists")
    code, message = _error(conn, 'INSERT INTO users (id) VALUES (1)')
    assert code == 1235 and 'load rows with Stream Load' in message
    assert _run(conn, 'SELECT count(*) FROM users')[1] == [(0,)]
  answer = requests.post(srv.fe_url + '/api/query/default_cluster/demo', auth=AUTH, timeout=10,
                         json={'stmt': 'SELECT * FROM nosuch'}).json()
  assert answer['data'] == ('errCode = 2, detailMessage = Table [nosuch] does not exist in '
                            'database [demo].')  # the same text on the HTTP SQL API


# --- SHOW TRANSACTION -------------------------------------------------------------------------

def test_show_transaction_of_loaded_labels(make_stream_load_server):
  srv = make_stream_load_server()
  first = stream_load(srv, 'demo', 'users', ndjson([{'id': 1}]), dict(JL, label='mysql_t1'))
  second = stream_load(srv, 'demo', 'users', ndjson([{'id': 2}]),
                       dict(JL, label='mysql_t2', timeout='60'))
  stream_load(srv, 'demo', 'users', ndjson([{'id': 3}]), dict(JL, label='other_1'))
  with _connect(srv) as conn:
    [row] = _transactions(conn, "SHOW TRANSACTION WHERE LABEL = 'mysql_t1'")
    assert {k: row[k] for k in ('TransactionId', 'Label', 'Coordinator', 'TransactionStatus',
                                'LoadJobSourceType', 'PreCommitTime', 'Reason',
                                'ErrorReplicasCount', 'ListenerId', 'TimeoutMs', 'ErrMsg')} == {
        'TransactionId': str(first['TxnId']), 'Label': 'mysql_t1',
        'Coordinator': 'BE: 127.0.0.1', 'TransactionStatus': 'VISIBLE',
        'LoadJobSourceType': 'BACKEND_STREAMING', 'PreCommitTime': None, 'Reason': '',
        'ErrorReplicasCount': '0', 'ListenerId': '-1', 'TimeoutMs': '259200000', 'ErrMsg': ''}
    for column in ('PrepareTime', 'CommitTime', 'PublishTime', 'FinishTime'):
      assert TIME.match(row[column]), (column, row[column])
    like = _transactions(conn, "SHOW TRANSACTION FROM demo WHERE label LIKE 'mysql_t%'")
    assert [(r['Label'], r['TimeoutMs']) for r in like] == [('mysql_t2', '60000'),
                                                             ('mysql_t1', '259200000')]
    by_id = _transactions(conn, 'SHOW TRANSACTION WHERE ID = %d' % second['TxnId'])
    assert [r['Label'] for r in by_id] == ['mysql_t2']
    assert len(_transactions(conn, "SHOW TRANSACTION WHERE STATUS = 'visible'")) == 3
    assert _error(conn, "SHOW TRANSACTION WHERE LABEL = 'nosuch'") == (
        1105, 'errCode = 2, detailMessage = transaction with label nosuch does not exist')
    assert _error(conn, 'SHOW TRANSACTION WHERE ID = 1') == (
        1105, 'errCode = 2, detailMessage = transaction with id 1 does not exist')
    assert _error(conn, 'SHOW TRANSACTION') == (1105, 'errCode = 2, detailMessage = Missing '
                                                'transaction id')
    assert _error(conn, "SHOW TRANSACTION FROM nosuch WHERE LABEL = 'x'") == (
        1049, "errCode = 2, detailMessage = Unknown database 'nosuch'")
  with _connect(srv, database=None) as conn:
    assert _error(conn, "SHOW TRANSACTION WHERE LABEL = 'mysql_t1'")[0] == 1046
    assert len(_transactions(conn, "SHOW TRANSACTION FROM demo WHERE LABEL = 'mysql_t1'")) == 1


def test_show_transaction_follows_two_phase_commit_and_aborts(make_stream_load_server):
  srv = make_stream_load_server()
  res = stream_load(srv, 'demo', 'users', ndjson([{'id': 1}]),
                    dict(JL, label='tpc_mysql', two_phase_commit='true'))
  assert res['Status'] == 'Success'
  with _connect(srv) as conn:
    [row] = _transactions(conn, "SHOW TRANSACTION WHERE LABEL = 'tpc_mysql'")
    assert row['TransactionStatus'] == 'PRECOMMITTED' and TIME.match(row['PreCommitTime'])
    assert (row['CommitTime'], row['PublishTime'], row['FinishTime']) == (None, None, None)
    _commit_2pc(srv, res['TxnId'])
    [row] = _transactions(conn, 'SHOW TRANSACTION WHERE ID = %d' % res['TxnId'])
    assert row['TransactionStatus'] == 'VISIBLE' and TIME.match(row['PreCommitTime'])
    assert all(TIME.match(row[c]) for c in ('CommitTime', 'PublishTime', 'FinishTime'))
    assert _run(conn, 'SELECT id FROM users')[1] == [(1,)]
    bad = stream_load(srv, 'demo', 'users', b'{"id": "x"}\n',
                      dict(JL, label='bad_mysql', strict_mode='true'))
    assert bad['Status'] == 'Fail'
    [row] = _transactions(conn, "SHOW TRANSACTION WHERE LABEL = 'bad_mysql'")
    assert row['TransactionStatus'] == 'ABORTED' and 'too many filtered rows' in row['Reason']
    assert row['CommitTime'] is None and TIME.match(row['FinishTime'])


# --- /api/backends ----------------------------------------------------------------------------

def test_api_backends_lists_the_bes_and_leaves_out_a_down_one(make_stream_load_server):
  srv = make_stream_load_server(num_bes=2)
  ports = [int(url.rsplit(':', 1)[1]) for url in srv.be_urls]
  url = srv.fe_url + '/api/backends'
  both = [{'ip': '127.0.0.1', 'http_port': ports[0], 'is_alive': True},
          {'ip': '127.0.0.1', 'http_port': ports[1], 'is_alive': True}]
  assert requests.get(url, auth=AUTH, timeout=10).json() == {
      'msg': 'success', 'code': 0, 'data': {'backends': both}, 'count': 0}
  assert requests.get(url + '?is_alive=true', auth=AUTH, timeout=10).json()['data'] == {
      'backends': both}
  srv.inject_fault('be_down', node=1)
  assert requests.get(url + '?is_alive=true', auth=AUTH, timeout=10).json()['data'] == {
      'backends': both[:1]}
  assert requests.get(url, auth=AUTH, timeout=10).json()['data']['backends'][1] == {
      'ip': '127.0.0.1', 'http_port': ports[1], 'is_alive': False}
  denied = requests.get(url, auth=('root', 'wrong'), timeout=10).json()
  assert (denied['msg'], denied['code']) == ('Unauthorized', 401)


# --- command line -----------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which('mysql') is None,
                    reason='no mysql/mariadb command-line client installed '
                    '(apt-get install default-mysql-client)')
def test_the_mysql_command_line_client(make_stream_load_server):
  srv = make_stream_load_server()
  done = subprocess.run(['mysql', '-h', '127.0.0.1', '-P', str(srv.query_port), '-u', USER,
                         '-p' + PASSWORD, '-e', 'SHOW DATABASES'],
                        capture_output=True, text=True, timeout=30, check=False)
  assert done.returncode == 0, done.stderr
  assert done.stdout.split() == ['Database', 'demo', 'information_schema']
  denied = subprocess.run(['mysql', '-h', '127.0.0.1', '-P', str(srv.query_port), '-u', USER,
                           '-pwrong', '-e', 'SELECT 1'],
                          capture_output=True, text=True, timeout=30, check=False)
  assert denied.returncode == 1 and 'ERROR 1045 (28000)' in denied.stderr


def test_cli_names_the_mysql_port(tmp_path):
  port = _free_port()
  proc = subprocess.Popen(
      [sys.executable, '-m', 'stream_load_emulator', '--data-dir', str(tmp_path / 'd'),
       '--schema', DEMO_SCHEMA, '--user', USER, '--password', PASSWORD, '--query-port',
       str(port), '--log-level', 'WARNING'],
      cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    lines = []
    for line in proc.stdout:
      if line.strip() == 'READY':
        break
      lines.append(line.strip())
    assert 'MYSQL 127.0.0.1:%d' % port in lines
    assert 'mysql -h 127.0.0.1 -P %d -u root -p' % port in lines
    conn = pymysql.connect(host='127.0.0.1', port=port, user=USER, password=PASSWORD,
                           database='demo', connect_timeout=10)
    with conn:
      assert _run(conn, 'SHOW TABLES')[1][0] == ('events',)
  finally:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
