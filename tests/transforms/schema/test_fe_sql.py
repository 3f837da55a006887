"""``FeSqlClient`` and ``SchemaEvolution`` against the local server: columns, DDL, races."""

import threading

import pytest

from transforms.schema import (FeAuthError, FeSqlClient, FeUnavailableError, SchemaEvolution,
                               SchemaEvolutionConfig, SqlRejectedError)
from transforms.schema.fe_sql import DATABASE_COLUMNS_LIMIT, columns_by_table
from transforms.schema.mysql_sql import MysqlFeClient
from transforms.stream_load import StreamLoadConfig
from transforms.types import OP_UPSERT, Row

pytestmark = pytest.mark.transform


def _config(server, password='secret', **kwargs):
  return StreamLoadConfig(fe_nodes=tuple(server.fe_urls), user='root', password=password,
                          **kwargs)


def _row(fields, offset=0):
  return Row('demo.users', fields, OP_UPSERT, 't', 0, offset, 10)


def test_columns_of_a_table_and_of_a_missing_one(stream_load_server):
  client = FeSqlClient(_config(stream_load_server))
  try:
    assert client.table_columns('demo.users')[0] == ('id', 'BIGINT')
    assert client.table_columns('demo.nosuch') is None
    with pytest.raises(SqlRejectedError, match='Can not add column which already exists'):
      client.execute('demo', 'ALTER TABLE demo.users ADD COLUMN id BIGINT NULL')
  finally:
    client.close()


def test_refused_credentials_and_an_unreachable_fe_are_told_apart(stream_load_server):
  with pytest.raises(FeAuthError):
    FeSqlClient(_config(stream_load_server, password='wrong')).table_columns('demo.users')
  down = StreamLoadConfig(fe_nodes=('http://127.0.0.1:1',), user='root', password='',
                          connect_timeout_secs=1)
  with pytest.raises(FeUnavailableError, match='no FE answered'):
    FeSqlClient(down).execute('demo', 'SELECT 1')


def test_the_columns_come_from_the_sql_api_when_the_fe_has_no_schema_endpoint(
    stream_load_server):
  stream_load_server.inject_fault('http_500', times=1, node='fe0')
  client = FeSqlClient(_config(stream_load_server))
  assert [name for name, _ in client.table_columns('demo.users')][:2] == ['id', 'name']


class _StaleFe(FeSqlClient):
  """A worker whose schema reads came before another worker's ALTER."""

  def __init__(self, config, stale):
    super().__init__(config)
    self.stale = stale
    self.statements = []

  def table_columns(self, table):
    if self.stale:
      self.stale -= 1
      return [('id', 'BIGINT'), ('name', 'VARCHAR')]
    return super().table_columns(table)

  def database_columns(self, db):
    if self.stale:
      self.stale -= 1
      return {'demo.users': [('id', 'BIGINT'), ('name', 'VARCHAR')]}
    return super().database_columns(db)

  def execute(self, db, stmt):
    self.statements.append(stmt)
    return super().execute(db, stmt)


def test_a_worker_that_adds_a_column_another_added_first_takes_it_as_done(stream_load_server):
  config = SchemaEvolutionConfig(load=_config(stream_load_server), mode='add_columns')
  first = SchemaEvolution(config)
  rows = [_row({'id': 1, 'city': 'x'})]
  assert first.ensure('demo.users', rows) == (rows, [])
  late = _StaleFe(_config(stream_load_server), stale=2)
  second = SchemaEvolution(config, client=late)
  assert second.ensure('demo.users', rows) == (rows, [])
  assert late.statements == ['ALTER TABLE `demo`.`users` ADD COLUMN `city` STRING NULL']
  names = [n for n, _ in FeSqlClient(_config(stream_load_server)).table_columns('demo.users')]
  assert names.count('city') == 1


def test_two_workers_adding_the_same_column_at_once_both_succeed(stream_load_server):
  config = SchemaEvolutionConfig(load=_config(stream_load_server), mode='add_columns')
  barrier = threading.Barrier(2)
  results, errors = [], []

  def worker(i):
    evolution = SchemaEvolution(config)
    evolution.ensure('demo.users', [_row({'id': i})])  # schema cached before the race
    barrier.wait()
    try:
      results.append(evolution.ensure('demo.users', [_row({'id': i, 'zip': i}, i)]))
    except Exception as error:  # pylint: disable=broad-except
      errors.append(error)
    evolution.close()

  threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join(timeout=60)
  assert errors == []
  assert sorted(len(kept) for kept, letters in results if not letters) == [1, 1]
  names = [n for n, _ in FeSqlClient(_config(stream_load_server)).table_columns('demo.users')]
  assert names.count('zip') == 1


@pytest.mark.parametrize('protocol', ['http', 'mysql'])
def test_a_database_s_columns_come_in_one_listing_as_each_table_s_do(stream_load_server,
                                                                      protocol):
  config = _config(stream_load_server)
  client = (FeSqlClient(config) if protocol == 'http'
            else MysqlFeClient(config, stream_load_server.query_port))
  try:
    listed = client.database_columns('demo')
    assert 'demo.users' in listed and len(listed) > 1
    for table, columns in listed.items():
      assert [n for n, _ in columns] == [n for n, _ in client.table_columns(table)]
    assert client.database_columns('nosuch') == {}
  finally:
    client.close()


def test_a_listing_cut_at_its_limit_leaves_out_the_table_it_cut():
  rows = [('a', f'c{i}', 'bigint') for i in range(DATABASE_COLUMNS_LIMIT - 2)]
  rows += [('b', 'id', 'int'), ('b', 'name', 'varchar(8)')]
  assert list(columns_by_table('db', rows)) == ['db.a']
  assert columns_by_table('db', rows[:-1]) == {
      'db.a': [(f'c{i}', 'BIGINT') for i in range(DATABASE_COLUMNS_LIMIT - 2)],
      'db.b': [('id', 'INT')]}
