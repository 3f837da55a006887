"""``SchemaEvolution`` against a scripted FE: reports, added columns, created tables, failures."""

import dataclasses
import logging

import orjson
import pytest

from tests.fakes import FakeClock

from transforms.schema import (FeUnavailableError, SchemaEvolution, SchemaEvolutionConfig,
                               SqlRejectedError, TableDdlOptions)
from transforms.schema.evolution import LISTING_FRESH_SECS, REJECTED_RETRY_SECS
from transforms.stream_load import StreamLoadConfig
from transforms.types import OP_DELETE, OP_UPSERT, Row

pytestmark = pytest.mark.unit

LOAD = StreamLoadConfig(fe_nodes=('http://127.0.0.1:1',), user='root', password='',
                        backoff_initial_secs=0.1, backoff_max_secs=1.0)
EXISTS = 'errCode = 2, detailMessage = Can not add column which already exists in base table: {}'
BUSY = ("errCode = 2, detailMessage = Table[users]'s state(SCHEMA_CHANGE) is not NORMAL. "
        'Do not allow doing ALTER ops')
DENIED = ('errCode = 2, detailMessage = Access denied; you need (at least one of) the (ALTER) '
          'privilege(s) on TABLE users for this operation')


class FakeFe:
  """Tables as ``(name, type)`` lists; scripted answers for ``execute``; every call recorded."""

  def __init__(self, tables):
    self.tables = {t: list(cols) for t, cols in tables.items()}
    self.statements = []
    self.schema_reads = 0
    self.script = []  # exceptions (or callables) for the next execute calls
    self.down = False
    self.closed = False
    self.lists = 0
    self.can_list = True  # False: information_schema refused (the tables are read one by one)

  def table_columns(self, table):
    self.schema_reads += 1
    if self.down:
      raise FeUnavailableError('no FE answered')
    cols = self.tables.get(table)
    return list(cols) if cols is not None else None

  def database_columns(self, db):
    self.lists += 1
    if self.down:
      raise FeUnavailableError('no FE answered')
    if not self.can_list:
      raise SqlRejectedError('errCode = 2, detailMessage = Access denied')
    return {t: list(cols) for t, cols in self.tables.items() if t.split('.')[0] == db}

  def execute(self, db, stmt):
    self.statements.append(stmt)
    if self.script:
      step = self.script.pop(0)
      if isinstance(step, Exception):
        raise step
      step()
    if self.down:
      raise FeUnavailableError('no FE answered')
    if stmt.startswith('ALTER TABLE'):
      table = stmt.split()[2].replace('`', '')
      body = stmt.split('ADD COLUMN ', 1)[1].strip('()')
      for part in body.split(', '):
        name, type_name = part.split()[:2]
        self.tables[table].append((name.strip('`'), type_name))
    elif stmt.startswith('CREATE TABLE'):
      table = stmt.split()[5].replace('`', '')
      lines = [l.strip().rstrip(',') for l in stmt.splitlines()[1:] if l.startswith('  ')]
      self.tables.setdefault(table, [(l.split()[0].strip('`'), l.split()[1]) for l in lines])
    return {}

  def close(self):
    self.closed = True


Clock = FakeClock


def _row(table, fields, offset=0, op=OP_UPSERT):
  return Row(table, fields, op, 't', 0, offset, len(orjson.dumps(fields)), orjson.dumps(fields))


def _evolution(fe, mode='add_columns', clock=None, counts=None, **config):
  clock = clock or Clock()
  counts = counts if counts is not None else {}

  def counter(name, table, n):
    counts[(name, table)] = counts.get((name, table), 0) + n
  return SchemaEvolution(SchemaEvolutionConfig(load=LOAD, mode=mode, **config), client=fe,
                         clock=clock, sleep=clock.sleep, counter=counter)


USERS = [('id', 'BIGINT'), ('name', 'VARCHAR(64)')]


def test_none_reports_each_unknown_column_once_per_table_and_loads_the_rows_as_they_are(caplog):
  fe = FakeFe({'shop.users': USERS, 'shop.orders': [('id', 'BIGINT')]})
  counts = {}
  evolution = _evolution(fe, mode='none', counts=counts)
  caplog.set_level(logging.WARNING, logger='transforms.schema')
  for chunk in range(3):
    rows = [_row('shop.users', {'id': i, 'name': 'n', 'city': 'x', 'zip': i}, i)
            for i in range(5)]
    kept, letters = evolution.ensure('shop.users', rows)
    assert kept is rows and letters == []
    kept, letters = evolution.ensure('shop.orders', [_row('shop.orders', {'id': 1, 'city': 'y'})])
    assert len(kept) == 1 and letters == []
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert warnings == [
      'table shop.users: field(s) city, zip not in the table; left out (--schema_evolution=none)',
      'table shop.orders: field(s) city not in the table; left out (--schema_evolution=none)']
  assert counts == {('unknown_columns', 'shop.users'): 2, ('unknown_columns', 'shop.orders'): 1}
  assert fe.statements == []
  # The first sight of the database listed both tables; each miss refreshed its table once.
  assert fe.lists == 1 and fe.schema_reads == 2


def test_slim_rows_of_known_columns_pass_on_their_column_names_without_decoding_again():
  fe = FakeFe({'shop.users': USERS})
  evolution = _evolution(fe, mode='none')
  # Bytes no JSON reader takes: only the column names may be looked at.
  slim = [Row('shop.users', None, OP_UPSERT, 't', 0, i, 9, b'\xffnot json', ('id', 'name'))
          for i in range(3)]
  kept, letters = evolution.ensure('shop.users', slim)
  assert kept is slim and letters == []
  unknown = Row('shop.users', None, OP_UPSERT, 't', 0, 3, 30, orjson.dumps({'id': 3, 'zip': 1}),
                ('id', 'zip'))
  kept, letters = evolution.ensure('shop.users', [unknown])
  assert kept == [unknown] and letters == []
  # Listed with the database; the miss on zip refreshed the table's columns.
  assert fe.statements == [] and fe.lists == 1 and fe.schema_reads == 1


def test_a_database_s_tables_are_learnt_in_one_listing_not_one_read_each():
  tables = {f'shop.t_{n:03d}': USERS for n in range(300)}
  tables['other.users'] = USERS
  fe = FakeFe(tables)
  evolution = _evolution(fe)
  for table in tables:
    rows = [_row(table, {'id': 1, 'name': 'n'})]
    assert evolution.ensure(table, rows) == (rows, [])
  assert fe.lists == 2 and fe.schema_reads == 0 and fe.statements == []


def test_a_table_the_listing_did_not_have_is_read_on_its_own():
  fe = FakeFe({'shop.users': USERS})
  evolution = _evolution(fe)
  evolution.ensure('shop.users', [_row('shop.users', {'id': 1})])
  fe.tables['shop.orders'] = [('id', 'BIGINT')]  # made after the listing
  rows = [_row('shop.orders', {'id': 1})]
  assert evolution.ensure('shop.orders', rows) == (rows, [])
  assert fe.lists == 1 and fe.schema_reads == 1 and fe.statements == []


def test_a_table_first_needed_after_the_listing_went_stale_is_read_on_its_own():
  fe = FakeFe({'shop.users': USERS, 'shop.orders': [('id', 'BIGINT')]})
  clock = Clock()
  evolution = _evolution(fe, clock=clock)
  evolution.ensure('shop.users', [_row('shop.users', {'id': 1})])
  del fe.tables['shop.orders']  # dropped since the listing
  clock.now += LISTING_FRESH_SECS + 1
  rows = [_row('shop.orders', {'id': 1})]
  assert evolution.ensure('shop.orders', rows) == (rows, [])  # not known: the sink tells
  assert fe.lists == 1 and fe.schema_reads == 1


def test_an_fe_that_cannot_list_a_database_has_its_tables_read_one_by_one():
  fe = FakeFe({'shop.users': USERS, 'shop.orders': [('id', 'BIGINT')]})
  fe.can_list = False
  evolution = _evolution(fe)
  for table in ('shop.users', 'shop.orders'):
    rows = [_row(table, {'id': 1, 'city': 'x'})]
    assert evolution.ensure(table, rows) == (rows, [])
  assert fe.lists == 1 and fe.schema_reads >= 2
  assert fe.statements == ['ALTER TABLE `shop`.`users` ADD COLUMN `city` STRING NULL',
                           'ALTER TABLE `shop`.`orders` ADD COLUMN `city` STRING NULL']


def test_a_column_added_by_someone_else_is_learned_on_the_miss_not_reported(caplog):
  fe = FakeFe({'shop.users': USERS})
  evolution = _evolution(fe, mode='none')
  evolution.ensure('shop.users', [_row('shop.users', {'id': 1})])
  fe.tables['shop.users'].append(('city', 'STRING'))
  caplog.set_level(logging.WARNING, logger='transforms.schema')
  evolution.ensure('shop.users', [_row('shop.users', {'id': 1, 'City': 'x'})])
  assert not caplog.records


def test_add_columns_adds_typed_nullable_columns_in_one_statement_then_never_again():
  fe = FakeFe({'shop.users': USERS})
  counts = {}
  evolution = _evolution(fe, counts=counts)
  rows = [_row('shop.users', {'id': 1, 'age': 3, 'score': 1, 'tags': ['a']}),
          _row('shop.users', {'id': 2, 'age': 4, 'score': 2.5, 'ok': True})]
  kept, letters = evolution.ensure('shop.users', rows)
  assert kept == rows and letters == []
  assert fe.statements == ['ALTER TABLE `shop`.`users` ADD COLUMN (`age` BIGINT NULL, '
                           '`score` DOUBLE NULL, `tags` JSON NULL, `ok` BOOLEAN NULL)']
  evolution.ensure('shop.users', rows)
  assert len(fe.statements) == 1
  assert counts == {('columns_added', 'shop.users'): 4}


def test_types_from_the_records_schema_win_over_the_values():
  fe = FakeFe({'shop.users': USERS})
  evolution = _evolution(fe)
  evolution.ensure('shop.users', [_row('shop.users', {'id': 1, 'born': '2020-01-01'})],
                   column_types={'born': 'DATE'})
  assert fe.statements == ['ALTER TABLE `shop`.`users` ADD COLUMN `born` DATE NULL']


def test_a_column_with_only_nulls_waits_for_a_value():
  fe = FakeFe({'shop.users': USERS})
  evolution = _evolution(fe)
  kept, _ = evolution.ensure('shop.users', [_row('shop.users', {'id': 1, 'city': None})])
  assert len(kept) == 1 and fe.statements == []
  evolution.ensure('shop.users', [_row('shop.users', {'id': 2, 'city': 'x'})])
  assert fe.statements == ['ALTER TABLE `shop`.`users` ADD COLUMN `city` STRING NULL']


def test_already_exists_from_another_worker_counts_as_success_and_the_rest_is_added():
  fe = FakeFe({'shop.users': USERS})

  def other_worker_added_city():
    fe.tables['shop.users'].append(('city', 'STRING'))
    raise SqlRejectedError(EXISTS.format('city'))
  fe.script = [other_worker_added_city]
  evolution = _evolution(fe)
  rows = [_row('shop.users', {'id': 1, 'city': 'x', 'zip': 7})]
  kept, letters = evolution.ensure('shop.users', rows)
  assert kept == rows and letters == []
  assert fe.statements == [
      'ALTER TABLE `shop`.`users` ADD COLUMN (`city` STRING NULL, `zip` BIGINT NULL)',
      'ALTER TABLE `shop`.`users` ADD COLUMN `zip` BIGINT NULL']
  assert [n for n, _ in fe.tables['shop.users']] == ['id', 'name', 'city', 'zip']


def test_a_table_busy_with_another_schema_change_is_retried_with_backoff():
  fe = FakeFe({'shop.users': USERS})
  fe.script = [SqlRejectedError(BUSY), SqlRejectedError(BUSY)]
  clock = Clock()
  evolution = _evolution(fe, clock=clock)
  kept, letters = evolution.ensure('shop.users', [_row('shop.users', {'id': 1, 'city': 'x'})])
  assert len(kept) == 1 and letters == []
  assert len(fe.statements) == 3 and len(clock.sleeps) == 2
  assert 0 < clock.sleeps[0] <= 0.1 and clock.sleeps[1] <= 0.2


def test_a_table_busy_past_the_deadline_fails_the_bundle_instead_of_dead_lettering():
  fe = FakeFe({'shop.users': USERS})
  fe.script = [SqlRejectedError(BUSY)] * 1000
  evolution = _evolution(fe, ddl_timeout_secs=5)
  with pytest.raises(FeUnavailableError, match='still refused'):
    evolution.ensure('shop.users', [_row('shop.users', {'id': 1, 'city': 'x'})])


def test_a_rejected_change_dead_letters_only_the_rows_that_need_it_and_is_retried_later():
  fe = FakeFe({'shop.users': USERS})
  fe.script = [SqlRejectedError(DENIED)]
  clock = Clock()
  counts = {}
  evolution = _evolution(fe, clock=clock, counts=counts)
  rows = [_row('shop.users', {'id': 1, 'city': 'x'}, 10), _row('shop.users', {'id': 2}, 11),
          _row('shop.users', {'id': 3, 'city': None}, 12)]
  kept, letters = evolution.ensure('shop.users', rows)
  assert [r.offset for r in kept] == [11, 12]
  assert [(l.offset, l.table, l.stage) for l in letters] == [(10, 'shop.users', 'parse')]
  assert letters[0].reason.startswith('schema_change_failed: ALTER TABLE `shop`.`users` ADD '
                                      'COLUMN `city` STRING NULL: ')
  assert 'Access denied' in letters[0].reason
  assert orjson.loads(letters[0].payload) == {'id': 1, 'city': 'x'}
  assert counts[('schema_change_failed', 'shop.users')] == 1
  evolution.ensure('shop.users', rows)
  assert len(fe.statements) == 1  # not asked again at once
  clock.now += REJECTED_RETRY_SECS
  kept, letters = evolution.ensure('shop.users', rows)
  assert len(fe.statements) == 2 and len(kept) == 3 and letters == []


def test_an_unreachable_fe_fails_a_strict_mode_but_not_the_reporting_one(caplog):
  fe = FakeFe({'shop.users': USERS})
  fe.down = True
  evolution = _evolution(fe, ddl_timeout_secs=3)
  with pytest.raises(FeUnavailableError):
    evolution.ensure('shop.users', [_row('shop.users', {'id': 1, 'city': 'x'})])
  reporting = _evolution(fe, mode='none')
  rows = [_row('shop.users', {'id': 1, 'city': 'x'})]
  assert reporting.ensure('shop.users', rows) == (rows, [])
  assert 'cannot read its columns' in caplog.text


def test_mapped_tables_are_left_alone():
  fe = FakeFe({'shop.users': USERS})
  evolution = _evolution(fe, mapped_tables=('shop.users',))
  rows = [_row('shop.users', {'id': 1, 'whatever': 1})]
  assert evolution.ensure('shop.users', rows) == (rows, [])
  assert fe.schema_reads == 0 and fe.statements == []


def test_arrow_tables_get_rows_without_fields_that_are_no_column():
  fe = FakeFe({'shop.users': USERS})
  evolution = _evolution(fe, mode='none', load_formats={'shop.users': 'arrow'})
  rows = [_row('shop.users', {'id': 1, 'city': 'x', '__DORIS_DELETE_SIGN__': 0}),
          _row('shop.users', {'id': 2})]
  kept, _ = evolution.ensure('shop.users', rows)
  assert kept[0].fields == {'id': 1, '__DORIS_DELETE_SIGN__': 0} and kept[0].raw is None
  assert kept[1] is rows[1]


def test_a_missing_table_is_left_to_the_sink_without_create_tables():
  fe = FakeFe({})
  evolution = _evolution(fe)
  rows = [_row('shop.new', {'id': 1})]
  assert evolution.ensure('shop.new', rows) == (rows, [])
  assert fe.statements == []


def test_plain_rows_create_a_duplicate_key_table_on_the_first_column_that_can_be_a_key():
  fe = FakeFe({})
  counts = {}
  evolution = _evolution(fe, create_tables=True, counts=counts)
  rows = [_row('shop.events', {'score': 1.5, 'doc': {'a': 1}, 'name': 'x', 'n': None, 'id': 3}),
          _row('shop.events', {'score': 2, 'name': 'y', 'id': 4, 'n': 5})]
  kept, letters = evolution.ensure('shop.events', rows)
  assert kept == rows and letters == []
  assert fe.statements == [
      'CREATE TABLE IF NOT EXISTS `shop`.`events` (\n'
      '  `name` VARCHAR(65533) NULL,\n'
      '  `score` DOUBLE NULL,\n'
      '  `doc` JSON NULL,\n'
      '  `n` BIGINT NULL,\n'
      '  `id` BIGINT NULL\n'
      ') DUPLICATE KEY(`name`)\n'
      'DISTRIBUTED BY HASH(`name`) BUCKETS AUTO\n'
      'PROPERTIES ("light_schema_change" = "true")']
  assert counts == {('tables_created', 'shop.events'): 1}
  evolution.ensure('shop.events', rows)
  assert len(fe.statements) == 1


def test_keyed_cdc_rows_create_a_unique_key_table_on_the_source_key():
  fe = FakeFe({})
  evolution = _evolution(fe, create_tables=True, sequence_columns={'shop.users': 'seq'},
                         tables={'shop.users': TableDdlOptions(properties={
                             'replication_num': '1'})})
  rows = [_row('shop.users', {'name': 'a', 'id': 1, 'seq': 5, '__DORIS_DELETE_SIGN__': 0}, 5)]
  kept, letters = evolution.ensure('shop.users', rows, key_columns=('id',))
  assert letters == [] and kept == rows
  assert fe.statements == [
      'CREATE TABLE IF NOT EXISTS `shop`.`users` (\n'
      '  `id` BIGINT NOT NULL,\n'
      '  `name` STRING NULL,\n'
      '  `seq` BIGINT NULL\n'
      ') UNIQUE KEY(`id`)\n'
      'DISTRIBUTED BY HASH(`id`) BUCKETS AUTO\n'
      'PROPERTIES ("light_schema_change" = "true", "enable_unique_key_merge_on_write" = "true", '
      '"function_column.sequence_col" = "seq", "replication_num" = "1")']


def test_keyed_cdc_rows_create_a_starrocks_primary_key_table():
  fe = FakeFe({})
  starrocks = dataclasses.replace(LOAD, target='starrocks')
  evolution = SchemaEvolution(SchemaEvolutionConfig(load=starrocks, create_tables=True,
                                                    sequence_columns={'shop.users': 'seq'}),
                              client=fe)
  rows = [_row('shop.users', {'name': 'a', 'id': 'k1', 'seq': 5, '__op': 0}, 5)]
  kept, letters = evolution.ensure('shop.users', rows, key_columns=('id',))
  assert letters == [] and kept == rows
  # No Doris-only properties (light schema change, merge-on-write, sequence column).
  assert fe.statements == [
      'CREATE TABLE IF NOT EXISTS `shop`.`users` (\n'
      '  `id` VARCHAR(128) NOT NULL,\n'
      '  `name` STRING NULL,\n'
      '  `seq` BIGINT NULL\n'
      ') PRIMARY KEY(`id`)\n'
      'DISTRIBUTED BY HASH(`id`)']


def test_configured_key_columns_win_and_cdc_without_a_key_is_dead_lettered():
  fe = FakeFe({})
  evolution = _evolution(fe, create_tables=True, tables={
      'shop.a': TableDdlOptions(key_columns=('k1', 'k2'), distributed_by=('k1',), buckets=4)})
  rows = [_row('shop.a', {'v': 1, 'k2': 'x', 'k1': 2, '__DORIS_DELETE_SIGN__': 1}, op=OP_DELETE)]
  evolution.ensure('shop.a', rows)
  assert (') UNIQUE KEY(`k1`, `k2`)\nDISTRIBUTED BY HASH(`k1`) BUCKETS 4' in fe.statements[0])
  rows = [_row('shop.b', {'v': 1, '__DORIS_DELETE_SIGN__': 0}, 7)]
  kept, letters = evolution.ensure('shop.b', rows, key_columns=('not a column name',))
  assert kept == [] and [l.offset for l in letters] == [7]
  assert letters[0].reason.startswith('schema_change_failed: cannot create shop.b: CDC rows need '
                                      'a key')
  assert len(fe.statements) == 1


def test_a_create_the_fe_rejects_dead_letters_the_rows():
  fe = FakeFe({})
  fe.script = [SqlRejectedError('errCode = 2, detailMessage = Invalid column name \'bad col\'')]
  evolution = _evolution(fe, create_tables=True)
  rows = [_row('shop.c', {'id': 1}, 3), _row('shop.c', {'id': 2}, 4)]
  kept, letters = evolution.ensure('shop.c', rows)
  assert kept == [] and [l.offset for l in letters] == [3, 4]
  assert "Invalid column name 'bad col'" in letters[0].reason


def test_a_create_into_a_database_that_does_not_exist_stops_the_job_instead():
  """Not the rows' fault: dead-lettering them would commit their offsets and lose them."""
  from transforms.errors import fault_of
  from transforms.schema.evolution import MissingDatabaseError
  fe = FakeFe({})
  fe.script = [SqlRejectedError('errCode = 2, detailMessage = Unknown database \'shop\'')]
  evolution = _evolution(fe, create_tables=True)
  with pytest.raises(MissingDatabaseError, match='database shop does not exist') as raised:
    evolution.ensure('shop.c', [_row('shop.c', {'id': 1}, 3)])
  assert fault_of(raised.value) == 'cluster'


def test_close_closes_the_client():
  fe = FakeFe({})
  _evolution(fe).close()
  assert fe.closed
