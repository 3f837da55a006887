"""CDC envelopes (Debezium, Canal, Maxwell) mapped to upsert/delete rows."""

import orjson
import pytest

from tests.transforms.records.helpers import canal, chunk, debezium, maxwell, record
from transforms.records import RecordParser, Routing
from transforms.stream_load.config import DORIS_DELETE_SIGN, STARROCKS_OP
from transforms.types import KafkaChunk

pytestmark = pytest.mark.unit

ROW = {'id': 1, 'name': 'a'}
NEW = {'id': 1, 'name': 'b'}


def _parse(values, cdc, routing=None, **kwargs):
  parser = RecordParser(routing or Routing(), cdc=cdc, **kwargs)
  return parser.parse_chunk(chunk(values))


def _rows(result):
  return [row for rows in result.rows_by_table.values() for row in rows]


# -- Debezium ------------------------------------------------------------------


@pytest.mark.parametrize('wrap', [False, True])
@pytest.mark.parametrize('op, before, after, expected_op, image', [
    ('c', None, ROW, 'upsert', ROW),
    ('r', None, ROW, 'upsert', ROW),
    ('u', ROW, NEW, 'upsert', NEW),
    ('d', ROW, None, 'delete', ROW),
])
def test_debezium_ops_map_to_upsert_and_delete(wrap, op, before, after, expected_op, image):
  result = _parse([debezium(op, before, after, wrap=wrap)], 'debezium')
  (row,) = result.rows_by_table['shop.orders']
  assert row.op == expected_op
  assert row.fields == {**image, DORIS_DELETE_SIGN: 1 if expected_op == 'delete' else 0}
  # The row's own JSON encoding is kept and sent as it is.
  assert row.raw == orjson.dumps(row.fields)
  assert row.size == len(row.raw)
  assert result.deletes == (1 if expected_op == 'delete' else 0)
  assert result.chunk_read.count == 1


def test_debezium_for_starrocks_uses_op_column():
  result = _parse([debezium('c', None, ROW), debezium('d', ROW, None)], 'debezium',
                  target='starrocks')
  assert [(r.op, r.fields[STARROCKS_OP]) for r in _rows(result)] == [('upsert', 0), ('delete', 1)]
  assert DORIS_DELETE_SIGN not in _rows(result)[0].fields


def test_debezium_tombstone_counts_zero_and_is_skipped():
  values = [debezium('d', ROW, None), None, debezium('c', None, NEW)]
  result = _parse(values, 'debezium')
  assert [r.op for r in _rows(result)] == ['delete', 'upsert']
  assert result.skipped == {'tombstone': 1}
  assert result.chunk_read.count == 2
  assert result.dead_letters == []


def test_debezium_schema_change_events_are_skipped():
  ddl = {'source': {'db': 'shop', 'table': 'orders'}, 'databaseName': 'shop',
         'ddl': 'ALTER TABLE orders ADD COLUMN x INT', 'tableChanges': []}
  wrapped = {'schema': {}, 'payload': ddl}
  result = _parse([ddl, wrapped], 'debezium')
  assert result.skipped == {'ddl': 2}
  assert result.chunk_read.count == 0


def test_debezium_truncate_is_skipped_not_dead_lettered():
  result = _parse([debezium('t', None, None)], 'debezium')
  assert result.skipped == {'control': 1} and result.chunk_read.count == 0


def test_debezium_delete_without_before_uses_the_json_key():
  key = orjson.dumps({'schema': {}, 'payload': {'id': 1}})
  rec = record(debezium('d', None, None), key=key)
  result = RecordParser(Routing(), cdc='debezium').parse_chunk(KafkaChunk('orders', 0, 0, 1, [rec]))
  (row,) = _rows(result)
  assert row.fields == {'id': 1, DORIS_DELETE_SIGN: 1}


def test_a_cdc_tables_json_record_keys_name_its_source_key_for_the_ddl():
  """The first keyed record of each table names its key (schema-wrapped or not); the rows of
  a table whose records carry no key (or no JSON object as key) have none."""
  records = [
      record(debezium('c', None, {'id': 1, 'v': 'a'}, table='orders'), 0,
             key=orjson.dumps({'schema': {}, 'payload': {'id': 1}})),
      record(debezium('c', None, {'id': 2, 'v': 'b'}, table='orders'), 1,
             key=orjson.dumps({'other': 2})),  # not the first: the first key counts
      record(debezium('c', None, {'a': 1, 'b': 2}, table='pairs'), 2,
             key=orjson.dumps({'a': 1, 'b': 2})),
      record(debezium('c', None, {'x': 1}, table='plain'), 3),
      record(debezium('c', None, {'y': 1}, table='listed'), 4, key=b'[1, 2]'),
  ]
  result = RecordParser(Routing(), cdc='debezium').parse_chunk(KafkaChunk('t', 0, 0, 5, records))
  assert result.key_columns == {'shop.orders': ('id',), 'shop.pairs': ('a', 'b')}


def test_plain_json_records_name_no_key_from_their_record_keys():
  rec = record({'id': 1}, key=orjson.dumps({'id': 1}))
  result = RecordParser(Routing(table='db.t')).parse_chunk(KafkaChunk('t', 0, 0, 1, [rec]))
  assert result.key_columns == {}


@pytest.mark.parametrize('value, detail', [
    (debezium('d', None, None), 'Debezium delete without "before" row or a decodable key'),
    (debezium('c', None, None), "Debezium op 'c' without \"after\" row"),
    (debezium('c', None, {}), "Debezium op 'c' with an empty row"),
    (debezium('c', None, [1]), 'Debezium row must be an object, got an array'),
    (debezium('x', None, ROW), "unknown Debezium op 'x'"),
    ({'before': None, 'after': ROW}, 'Debezium envelope without "op"'),
    ({**debezium('c', None, ROW), 'source': 'mysql'}, 'Debezium "source" must be an object'),
    ({'schema': {}, 'payload': 'x'}, 'Debezium "payload" must be an object'),
    (b'[1]', 'expected a JSON object, got an array'),
])
def test_debezium_bad_envelopes_are_dead_letters(value, detail):
  result = _parse([value], 'debezium')
  (dead,) = result.dead_letters
  assert detail in dead.reason, dead.reason
  assert dead.reason.split(':')[0] in ('bad_envelope', 'not_object')
  assert result.chunk_read.count == 1


def test_debezium_without_source_table_is_missing_table():
  value = debezium('c', None, ROW)
  del value['source']['table']
  (dead,) = _parse([value], 'debezium').dead_letters
  assert dead.reason.startswith('missing_table: no table in the Debezium source')


def test_debezium_bad_source_names_are_dead_letters():
  (dead,) = _parse([debezium('c', None, ROW, db='my-db')], 'debezium').dead_letters
  assert dead.reason == ("bad_table_name: Debezium source: bad table name 'my-db.orders': "
                         'expected "db.tbl" of letters, digits and _')


def test_cdc_routing_flags_override_the_envelope_table():
  result = _parse([debezium('c', None, ROW)], 'debezium', Routing(table='dw.t'))
  assert list(result.rows_by_table) == ['dw.t']
  result = _parse([debezium('c', None, {**ROW, 'tbl': 'dw.x'})], 'debezium',
                  Routing(table_field='tbl'))
  assert list(result.rows_by_table) == ['dw.x']


# -- Canal ---------------------------------------------------------------------


def test_canal_insert_with_several_rows_gives_several_rows_with_one_offset():
  result = _parse([canal('INSERT', [{'id': 1}, {'id': 2}])], 'canal')
  rows = result.rows_by_table['shop.orders']
  assert [(r.fields, r.op, r.offset) for r in rows] == [
      ({'id': 1, DORIS_DELETE_SIGN: 0}, 'upsert', 0),
      ({'id': 2, DORIS_DELETE_SIGN: 0}, 'upsert', 0)]
  assert result.chunk_read.count == 2


def test_canal_update_uses_the_after_image():
  result = _parse([canal('UPDATE', [NEW], old=[{'name': 'a'}])], 'canal')
  (row,) = _rows(result)
  assert row.fields == {**NEW, DORIS_DELETE_SIGN: 0}


def test_canal_update_of_the_primary_key_deletes_the_old_key_first():
  result = _parse([canal('UPDATE', [{'id': 2, 'name': 'a'}], old=[{'id': 1}])], 'canal')
  assert [(r.op, r.fields['id']) for r in _rows(result)] == [('delete', 1), ('upsert', 2)]
  assert result.chunk_read.count == 2


def test_canal_delete_carries_the_deleted_rows():
  result = _parse([canal('DELETE', [ROW])], 'canal', target='starrocks')
  (row,) = _rows(result)
  assert (row.op, row.fields) == ('delete', {**ROW, STARROCKS_OP: 1})
  assert result.deletes == 1


def test_canal_ddl_is_skipped():
  result = _parse([canal('ALTER', None, is_ddl=True)], 'canal')
  assert result.skipped == {'ddl': 1} and result.chunk_read.count == 0


@pytest.mark.parametrize('value, detail', [
    (canal('INSERT', None), 'Canal "data" must be an array of rows, got null'),
    (canal('INSERT', []), 'Canal INSERT without rows in "data"'),
    (canal('INSERT', [1]), 'Canal data[0] must be a non-empty object, got a number'),
    (canal('UPSERT', [ROW]), "unknown Canal type 'UPSERT'"),
    ({**canal('INSERT', [ROW]), 'isDdl': 'false'}, 'Canal "isDdl" must be a boolean'),
    ({**canal('INSERT', [ROW]), 'type': 1}, 'Canal "type" must be a string'),
    (canal('UPDATE', [ROW], old=[{}, {}]), 'Canal "old" must be an array as long as "data"'),
    ({**canal('INSERT', [ROW]), 'table': 3}, 'database/table must be strings'),
])
def test_canal_bad_envelopes_are_dead_letters(value, detail):
  (dead,) = _parse([value], 'canal').dead_letters
  assert dead.reason.startswith('bad_envelope: ') and detail in dead.reason, dead.reason


# -- Maxwell -------------------------------------------------------------------


@pytest.mark.parametrize('kind, expected_op', [
    ('insert', 'upsert'), ('update', 'upsert'), ('bootstrap-insert', 'upsert'),
    ('delete', 'delete')])
def test_maxwell_types_map_to_upsert_and_delete(kind, expected_op):
  result = _parse([maxwell(kind, dict(ROW))], 'maxwell')
  (row,) = result.rows_by_table['shop.orders']
  assert row.op == expected_op
  assert row.fields == {**ROW, DORIS_DELETE_SIGN: int(expected_op == 'delete')}


def test_maxwell_update_of_a_key_column_deletes_the_old_key():
  value = maxwell('update', {'id': 2, 'name': 'a'}, old={'id': 1}, primary_key_columns=['id'])
  assert [(r.op, r.fields['id']) for r in _rows(_parse([value], 'maxwell'))] == [
      ('delete', 1), ('upsert', 2)]


def test_maxwell_ddl_and_bootstrap_markers_are_skipped():
  values = [{'type': 'table-alter', 'database': 'shop', 'table': 'orders',
             'sql': 'alter table orders add x int', 'old': {}, 'def': {}},
            maxwell('bootstrap-start', {}), maxwell('bootstrap-complete', {})]
  result = _parse(values, 'maxwell')
  assert result.skipped == {'ddl': 1, 'control': 2}
  assert result.chunk_read.count == 0


@pytest.mark.parametrize('value, detail', [
    (maxwell('insert', None), 'Maxwell "data" must be an object, got null'),
    (maxwell('insert', {}), 'Maxwell insert with an empty "data" row'),
    (maxwell('replace', ROW), "unknown Maxwell type 'replace'"),
    ({**maxwell('insert', ROW), 'type': None}, 'Maxwell "type" must be a string'),
])
def test_maxwell_bad_envelopes_are_dead_letters(value, detail):
  (dead,) = _parse([value], 'maxwell').dead_letters
  assert dead.reason.startswith('bad_envelope: ') and detail in dead.reason, dead.reason


def test_maxwell_null_value_is_a_dead_letter():
  (dead,) = _parse([None], 'maxwell').dead_letters
  assert dead.reason == 'empty_value: null value'


# -- auto ------------------------------------------------------------------------


def test_auto_detects_each_format_per_record():
  values = [
      debezium('c', None, {'id': 1}),
      debezium('d', {'id': 2}, None, wrap=True),
      None,
      canal('DELETE', [{'id': 3}]),
      maxwell('insert', {'id': 4}),
      {'id': 5, 'tbl': 'shop.orders'},
      [{'id': 6}],
  ]
  result = _parse(values, 'auto', Routing(table='shop.orders'))
  rows = result.rows_by_table['shop.orders']
  assert [(r.fields['id'], r.op) for r in rows] == [
      (1, 'upsert'), (2, 'delete'), (3, 'delete'), (4, 'upsert'), (5, 'upsert'), (6, 'upsert')]
  assert DORIS_DELETE_SIGN not in rows[4].fields  # plain rows get no delete sign.
  assert rows[4].raw is not None
  assert result.skipped == {'tombstone': 1}
  assert result.chunk_read.count == 6


def test_cdc_sequence_column_gets_the_offset():
  parser = RecordParser(Routing(), cdc='debezium', sequence_columns={'shop.orders': 'seq'})
  result = parser.parse_chunk(chunk([debezium('c', None, {'id': 1}),
                                     debezium('u', None, {'id': 1, 'seq': 99}),
                                     debezium('d', {'id': 1}, None)], first_offset=500))
  assert [r.fields['seq'] for r in _rows(result)] == [500, 99, 502]


@pytest.mark.parametrize('value', [
    {'id': 1, 'type': 'click', 'data': [1, 2]},
    {'id': 1, 'op': 'buy', 'source': 'web'},
    {'id': 1, 'type': 'x', 'database': 'a', 'table': 'b'},
    {'id': 1, 'schema': 'public'},
])
def test_auto_keeps_plain_rows_with_envelope_like_columns_plain(value):
  result = _parse([value], 'auto', Routing(table='db.t'))
  (row,) = result.rows_by_table['db.t']
  assert row.fields == value and row.raw is not None


def test_auto_skips_debezium_schema_change_events():
  ddl = {'source': {'db': 'shop'}, 'databaseName': 'shop', 'ddl': 'CREATE TABLE x (a INT)',
         'tableChanges': []}
  assert _parse([ddl], 'auto').skipped == {'ddl': 1}


def test_auto_without_routing_dead_letters_plain_records():
  (dead,) = _parse([{'id': 1}], 'auto').dead_letters
  assert dead.reason.startswith('missing_table: no CDC envelope recognised')


def test_maxwell_database_ddl_is_skipped_in_auto_mode():
  ddl = {'type': 'database-create', 'database': 'x', 'sql': 'CREATE DATABASE x', 'ts': 1}
  assert _parse([ddl], 'auto').skipped == {'ddl': 1}


@pytest.mark.parametrize('cdc', ['debezium', 'auto'])
def test_debezium_flattened_records_use_deleted_flag(cdc):
  values = [{'id': 1, 'name': 'a', '__deleted': 'false', '__op': 'c', '__table': 'orders',
             '__db': 'shop'},
            {'id': 1, 'name': 'a', '__deleted': 'true', '__op': 'd', '__table': 'orders',
             '__db': 'shop'},
            {'id': 2, '__deleted': False, '__table': 'orders'}]
  result = _parse(values, cdc, Routing(), target='starrocks')
  assert [(r.table, r.op, r.fields['id'], r.fields[STARROCKS_OP]) for r in _rows(result)] == [
      ('shop.orders', 'upsert', 1, 0), ('shop.orders', 'delete', 1, 1)]
  assert '__deleted' not in _rows(result)[0].fields
  (dead,) = result.dead_letters  # no database for the third and no --default_database
  assert dead.reason.startswith('bad_table_name:') and dead.offset == 2


def test_debezium_flattened_bad_deleted_flag_is_a_dead_letter():
  (dead,) = _parse([{'id': 1, '__deleted': 'maybe'}], 'debezium', Routing(table='db.t')
                   ).dead_letters
  assert dead.reason == "bad_envelope: Debezium \"__deleted\" must be true or false, got 'maybe'"
