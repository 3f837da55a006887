"""A whole MySQL database's Debezium topics, with its schema change topic: the data set of
``python -m devtools.demo --database-sync``, of the database-sync tests and of the many-table
benchmark.

``make_database`` writes what a Debezium MySQL connector with ``topic.prefix=<prefix>`` would
have written for a ``shop`` database: one topic per table (``<prefix>.shop.<table>``), the
schema change topic (``<prefix>``), the transaction topic (``<prefix>.transaction``) and a
signal topic (``<prefix>.signals``).  Its tables:

* ``customers`` (a primary key): inserts, updates, deletes; mid-stream ``ADD COLUMN email``,
  ``score`` widened from ``INT`` to ``BIGINT`` (a value past ``INT`` follows), ``name``
  renamed to ``full_name``;
* ``order_items`` (a composite primary key), ``audit_log`` (no primary key), with
  ``DECIMAL``, ``DATETIME`` and ``JSON`` columns;
* ``order_00`` .. ``order_03``: a sharded family with overlapping ids (merged into one table by
  ``--merge_tables``); ``ADD COLUMN note`` on one shard only;
* ``t_000`` ...: plain keyed tables, as many as asked (``extra_tables``);
* ``tmp_scratch``: left out by ``--exclude_tables``.

Every record carries its binlog position, in the order the source wrote it, and is written as
Kafka Connect's ``JsonConverter`` writes it by default (``schemas.enable=true``: the schema beside
the payload), with Debezium's encodings: a ``DECIMAL`` as base64 of its unscaled bytes, a
``DATETIME`` as epoch milliseconds, a ``TIMESTAMP`` as ISO text with a zone (``Z``, or an offset
as a source in another zone writes it).  ``expected`` is the reference: each target table's rows
after replaying the same statements and rows in that order, keyed as the job keys them, with
datetimes as UTC text.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import random
from typing import Any, Dict, List, Optional, Tuple

import orjson

__all__ = ['Database', 'make_database', 'job_flags', 'produce', 'rows_as_text', 'DB']

DB = 'shop'
SHARDS = 4


def _column(name: str, type_name: str, length: Optional[int] = None,
            scale: Optional[int] = None) -> Dict[str, Any]:
  return {'name': name, 'jdbcType': 12, 'typeName': type_name, 'typeExpression': type_name,
          'length': length, 'scale': scale, 'optional': True, 'autoIncremented': False,
          'generated': False, 'comment': None, 'defaultValueExpression': None}


# A column's MySQL type -> Kafka Connect's type and Debezium's semantic name for it.
_CONNECT_TYPES = {
    'INT': ('int32', None), 'BIGINT': ('int64', None), 'VARCHAR': ('string', None),
    'DECIMAL': ('bytes', 'org.apache.kafka.connect.data.Decimal'),
    'DATETIME': ('int64', 'io.debezium.time.Timestamp'),
    'TIMESTAMP': ('string', 'io.debezium.time.ZonedTimestamp'),
    'JSON': ('string', 'io.debezium.data.Json'),
}
_EPOCH = datetime.datetime(1970, 1, 1)


def _field_schema(column: Dict[str, Any], optional: bool = True) -> Dict[str, Any]:
  kind, name = _CONNECT_TYPES[column['typeName']]
  field: Dict[str, Any] = {'type': kind, 'optional': optional, 'field': column['name']}
  if name is not None:
    field.update(name=name, version=1)
  if column['typeName'] == 'DECIMAL':
    field['parameters'] = {'scale': str(column['scale']),
                           'connect.decimal.precision': str(column['length'])}
  return field


def _wire(column: Dict[str, Any], value: Any, odd: bool) -> Any:
  """A reference value as Debezium's JSON carries it."""
  if value is None:
    return None
  kind = column['typeName']
  if kind == 'DECIMAL':
    unscaled = int(decimal.Decimal(value).scaleb(column['scale']))
    raw = unscaled.to_bytes(unscaled.bit_length() // 8 + 1, 'big', signed=True)
    return base64.b64encode(raw).decode('ascii')
  if kind == 'DATETIME':
    return (datetime.datetime.fromisoformat(value) - _EPOCH) // datetime.timedelta(milliseconds=1)
  if kind == 'TIMESTAMP':  # UTC in the reference; in the record, with a zone
    utc = datetime.datetime.fromisoformat(value)
    if not odd:
      return utc.isoformat() + 'Z'
    zone = datetime.timezone(datetime.timedelta(hours=2))
    return utc.replace(tzinfo=datetime.timezone.utc).astimezone(zone).isoformat()
  return value


@dataclasses.dataclass
class _Table:
  name: str
  columns: List[Dict[str, Any]]
  key: Tuple[str, ...]
  target: str
  merged: bool = False
  rows: Dict[Any, Dict[str, Any]] = dataclasses.field(default_factory=dict)  # the reference
  log: List[Dict[str, Any]] = dataclasses.field(default_factory=list)        # no-key tables


@dataclasses.dataclass
class Database:
  """What ``make_database`` made.

  Attributes:
    prefix: the connector's topic prefix (the schema change topic's name).
    topics: topic -> ``[(key, value)]`` in the order to produce them (one partition each).
    ddl: the schema change topic's values, in order.
    expected: target table -> the reference rows (a list of dicts, any order).
    keys: target table -> its key columns, as the job creates it.
    excluded: the source tables ``--exclude_tables`` leaves out.
  """
  prefix: str
  topics: Dict[str, List[Tuple[Optional[bytes], bytes]]]
  ddl: List[bytes]
  expected: Dict[str, List[Dict[str, Any]]]
  keys: Dict[str, Tuple[str, ...]]
  excluded: Tuple[str, ...] = ('shop.tmp_scratch',)

  @property
  def rows(self) -> int:
    return sum(len(v) for t, v in self.topics.items() if t.count('.') == 2)


def job_flags(prefix: str) -> List[str]:
  """The flags of a whole-database job over ``make_database``'s topics."""
  return [f'--topic_pattern={prefix}\\..*', '--cdc_format=debezium',
          f'--ddl_topic={prefix}', '--schema_evolution=evolve', '--table_template=ods.{db}__{table}',
          f'--merge_tables={DB}\\.order_\\d+=ods.{{db}}__orders', f'--exclude_tables={DB}\\.tmp_.*']


class _Source:
  """Writes the source's events in binlog order and replays them into the reference."""

  def __init__(self, prefix: str):
    self.prefix = prefix
    self.pos = 1000
    self.ddl: List[bytes] = []
    self.topics: Dict[str, List[Tuple[Optional[bytes], bytes]]] = {}
    self.tables: Dict[str, _Table] = {}
    self.transactions = 0

  def _source(self, table: Optional[str]) -> Dict[str, Any]:
    self.pos += 10
    return {'connector': 'mysql', 'name': self.prefix, 'db': DB, 'table': table,
            'file': 'mysql-bin.000001', 'pos': self.pos, 'row': 0, 'ts_ms': 1_700_000_000_000}

  def _schema_change(self, table: _Table, kind: str, ddl: str) -> None:
    columns = [dict(c, position=i + 1, optional=c['name'] not in table.key)
               for i, c in enumerate(table.columns)]
    self.ddl.append(orjson.dumps({
        'source': self._source(None), 'ts_ms': 1, 'databaseName': DB, 'schemaName': None,
        'ddl': ddl, 'tableChanges': [{
            'type': kind, 'id': f'"{DB}"."{table.name}"',
            'table': {'defaultCharsetName': 'utf8mb4', 'primaryKeyColumnNames': list(table.key),
                      'comment': None, 'columns': columns}}]}))

  def create(self, name: str, columns, key, target: str, merged: bool = False) -> _Table:
    table = self.tables[name] = _Table(name, list(columns), tuple(key), target, merged)
    self._schema_change(table, 'CREATE', f'CREATE TABLE {name} (...)')
    self.topics[f'{self.prefix}.{DB}.{name}'] = []
    return table

  def add_column(self, table: _Table, column: Dict[str, Any]) -> None:
    table.columns.append(column)
    for row in list(table.rows.values()) + table.log:
      row[column['name']] = None
    self._schema_change(table, 'ALTER', f'ALTER TABLE {table.name} ADD COLUMN {column["name"]} '
                        f'{column["typeName"]}')

  def modify_column(self, table: _Table, name: str, column: Dict[str, Any]) -> None:
    table.columns = [column if c['name'] == name else c for c in table.columns]
    self._schema_change(table, 'ALTER', f'ALTER TABLE {table.name} MODIFY {name} '
                        f'{column["typeName"]}')

  def rename_column(self, table: _Table, old: str, new: str) -> None:
    table.columns = [dict(c, name=new) if c['name'] == old else c for c in table.columns]
    for row in list(table.rows.values()) + table.log:
      row[new] = row.pop(old)
    self._schema_change(table, 'ALTER',
                        f'ALTER TABLE {table.name} RENAME COLUMN {old} TO {new}')

  def _image(self, table: _Table, row: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if row is None:
      return None
    odd = len(self.topics[f'{self.prefix}.{DB}.{table.name}']) % 2 == 1
    types = {c['name']: c for c in table.columns}
    return {name: _wire(types[name], value, odd) if name in types else value
            for name, value in row.items()}

  def _envelope_schema(self, table: _Table) -> Dict[str, Any]:
    name = f'{self.prefix}.{DB}.{table.name}'
    row = {'type': 'struct', 'optional': True, 'name': f'{name}.Value',
           'fields': [_field_schema(c, c['name'] not in table.key) for c in table.columns]}
    source = {'type': 'struct', 'optional': False, 'name': 'io.debezium.connector.mysql.Source',
              'field': 'source', 'fields': [
                  {'type': 'string', 'optional': False, 'field': 'connector'},
                  {'type': 'string', 'optional': True, 'field': 'db'},
                  {'type': 'string', 'optional': True, 'field': 'table'},
                  {'type': 'string', 'optional': False, 'field': 'file'},
                  {'type': 'int64', 'optional': False, 'field': 'pos'}]}
    return {'type': 'struct', 'optional': False, 'name': f'{name}.Envelope', 'version': 1,
            'fields': [dict(row, field='before'), dict(row, field='after'), source,
                       {'type': 'string', 'optional': False, 'field': 'op'},
                       {'type': 'int64', 'optional': True, 'field': 'ts_ms'}]}

  def change(self, table: _Table, op: str, row: Dict[str, Any]) -> None:
    """One row event (``c``, ``u``, ``d``) in the table's current columns."""
    key = tuple(row[k] for k in table.key)
    before = table.rows.get(key) if table.key else None
    payload = {'op': op, 'before': self._image(table, dict(before) if op in ('u', 'd') and before
                                               else ({k: row[k] for k in table.key}
                                                     if op == 'd' else None)),
               'after': None if op == 'd' else self._image(table, dict(row)), 'ts_ms': 1,
               'source': self._source(table.name)}
    value = {'schema': self._envelope_schema(table), 'payload': payload}
    record_key = None
    if table.key:
      key_columns = [c for c in table.columns if c['name'] in table.key]
      record_key = orjson.dumps({
          'schema': {'type': 'struct', 'optional': False,
                     'name': f'{self.prefix}.{DB}.{table.name}.Key',
                     'fields': [_field_schema(c, False) for c in key_columns]},
          'payload': {k: row[k] for k in table.key}})
    self.topics[f'{self.prefix}.{DB}.{table.name}'].append((record_key, orjson.dumps(value)))
    if not table.key:
      table.log.append(dict(row))
    elif op == 'd':
      table.rows.pop(key, None)
    else:
      table.rows[key] = dict(row)

  def expected(self) -> Tuple[Dict[str, List[Dict[str, Any]]], Dict[str, Tuple[str, ...]]]:
    expected: Dict[str, List[Dict[str, Any]]] = {}
    keys: Dict[str, Tuple[str, ...]] = {}
    for table in self.tables.values():
      if table.target is None:
        continue
      rows = list(table.rows.values()) + table.log
      if table.merged:
        rows = [dict(row, _source_db=DB, _source_table=table.name) for row in rows]
        keys[table.target] = table.key + ('_source_db', '_source_table')
      else:
        keys[table.target] = table.key or (table.columns[0]['name'],)
      expected.setdefault(table.target, []).extend(rows)
    return expected, keys


def make_database(prefix: str, scale: int = 50, extra_tables: int = 0,
                  seed: int = 11) -> Database:
  """A database's topics (see the module docstring); ``scale`` rows per table or so."""
  rng = random.Random(seed)
  source = _Source(prefix)
  ods = f'ods.{DB}__'
  customers = source.create('customers', [_column('id', 'INT'), _column('name', 'VARCHAR', 40),
                                          _column('score', 'INT')], ['id'], ods + 'customers')
  items = source.create('order_items', [
      _column('order_id', 'BIGINT'), _column('line', 'INT'), _column('price', 'DECIMAL', 10, 2),
      _column('placed_at', 'DATETIME'), _column('attrs', 'JSON')], ['order_id', 'line'],
      ods + 'order_items')
  audit = source.create('audit_log', [_column('event', 'VARCHAR', 30), _column('at', 'DATETIME'),
                                      _column('seen_at', 'TIMESTAMP')], [], ods + 'audit_log')
  shards = [source.create(f'order_{n:02d}', [_column('id', 'INT'), _column('total', 'INT')],
                          ['id'], ods + 'orders', merged=True) for n in range(SHARDS)]
  scratch = source.create('tmp_scratch', [_column('id', 'INT')], ['id'], None)
  extras = [source.create(f't_{n:03d}', [_column('id', 'INT'), _column('v', 'VARCHAR', 20)],
                          ['id'], f'{ods}t_{n:03d}') for n in range(extra_tables)]

  def customer_rows(start: int, count: int, name_field: str) -> None:
    for i in range(start, start + count):
      row = {'id': i, name_field: f'c{i}', 'score': i}
      if 'email' in (c['name'] for c in customers.columns):
        row['email'] = f'c{i}@shop.example'
      source.change(customers, 'c', row)

  customer_rows(0, scale, 'name')
  for i in range(scale):
    for line in range(2):
      source.change(items, 'c', {'order_id': 10_000 + i, 'line': line,
                                 'price': f'{rng.randint(1, 99999) / 100:.2f}',
                                 'placed_at': f'2026-0{1 + i % 9}-1{i % 10} 1{i % 10}:2{line}:00',
                                 'attrs': orjson.dumps({'gift': i % 3 == 0}).decode()})
    source.change(audit, 'c', {'event': f'login {i}', 'at': f'2026-01-01 00:00:{i % 60:02d}',
                               'seen_at': f'2026-01-02 {i % 24:02d}:{i % 60:02d}:00'})
    for shard in shards:
      source.change(shard, 'c', {'id': i, 'total': i * 10 + shards.index(shard)})
    source.change(scratch, 'c', {'id': i})
  for table in extras:
    for i in range(scale):
      source.change(table, 'c', {'id': i, 'v': f'{table.name}-{i}'})
  source.add_column(customers, _column('email', 'VARCHAR', 60))
  customer_rows(scale, scale // 2, 'name')
  for i in range(0, scale, 5):
    row = dict(customers.rows[(i,)], score=i + 1)
    source.change(customers, 'u', row)
  source.modify_column(customers, 'score', _column('score', 'BIGINT'))
  source.change(customers, 'u', dict(customers.rows[(1,)], score=5_000_000_000))
  source.add_column(shards[1], _column('note', 'VARCHAR', 20))
  for i in range(scale, scale + scale // 4):
    for shard in shards:
      row = {'id': i, 'total': i}
      if shard is shards[1]:
        row['note'] = f'n{i}'
      source.change(shard, 'c', row)
  source.rename_column(customers, 'name', 'full_name')
  customer_rows(scale + scale // 2, scale // 2, 'full_name')
  for i in range(0, scale, 7):
    source.change(customers, 'd', customers.rows[(i,)])
    source.change(shards[2], 'd', shards[2].rows[(i,)])
  expected, keys = source.expected()
  transactions = [
      orjson.dumps({'status': 'BEGIN', 'id': '1:1', 'ts_ms': 1, 'event_count': None,
                    'data_collections': None}),
      orjson.dumps({'status': 'END', 'id': '1:1', 'ts_ms': 2, 'event_count': 1,
                    'data_collections': [{'data_collection': f'{DB}.customers',
                                          'event_count': 1}]})]
  topics = dict(source.topics)
  topics[f'{prefix}.transaction'] = [(None, value) for value in transactions]
  topics[f'{prefix}.signals'] = [(b'"sig-1"', orjson.dumps(
      {'type': 'execute-snapshot', 'data': {'data-collections': [f'{DB}.customers']}}))]
  return Database(prefix, topics, source.ddl, expected, keys)


def _text(value: Any) -> Optional[str]:
  """A value as text; a DECIMAL at its scale (the local server keeps decimals as numbers)."""
  import decimal  # pylint: disable=import-outside-toplevel
  if isinstance(value, decimal.Decimal):
    return str(value.quantize(decimal.Decimal('0.01')))
  return None if value is None else str(value)


def produce(kafka, db: Database) -> None:
  """Writes ``db``'s topics as Debezium would: the schema change topic and keyless tables'
  topics on one partition, keyed tables' records by key."""
  kafka.produce(db.prefix, db.ddl, partition=0)
  for topic, records in db.topics.items():
    keyed = all(key is not None for key, _ in records)
    kafka.produce(topic, [value for _, value in records],
                  keys=[key for key, _ in records] if keyed else None,
                  partition=None if keyed else 0)


def rows_as_text(server, db: Database, target: str) -> Tuple[List[tuple], List[tuple]]:
  """``(in the table, expected)``: ``target``'s rows over the reference's columns, as sorted
  text tuples."""
  rows = db.expected[target]
  columns = sorted(rows[0])
  got = sorted((tuple(_text(v) for v in row) for row in server.query(
      f'SELECT {", ".join(columns)} FROM {target}')), key=str)
  want = sorted((tuple(_text(row.get(c)) for c in columns) for row in rows), key=str)
  return got, want


def run_demo(kafka, server, work_dir: str, password: str, scale: int = 200,
             extra_tables: int = 20) -> bool:
  """``python -m devtools.demo --database-sync``: the database's topics into an empty ``ods``
  database with one job; prints each table against the reference; True if all match."""
  from pipelines.kafka_to_doris import run_pipeline  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel
  prefix = 'dbserver1'
  db = make_database(prefix, scale=scale, extra_tables=extra_tables)
  server.sql('CREATE DATABASE IF NOT EXISTS ods')
  produce(kafka, db)
  flags = job_flags(prefix)
  print(f'demo: produced a {DB} database\'s Debezium topics: {len(db.topics)} topics, '
        f'{db.rows} rows, {len(db.ddl)} schema changes on the topic {prefix} (tables created, a '
        'column added on one shard, INT -> BIGINT, a rename); running one job:')
  print('  ' + ' '.join(flags))
  dead = os.path.join(work_dir, 'dead_letters_database')
  summary = run_pipeline([f'--bootstrap_servers={kafka.bootstrap_servers}', '--stop_at_end',
                          '--group_id=kafka-doris-database-demo', f'--fe_nodes={server.fe_url}',
                          '--user=root', f'--password={password}', f'--dead_letter_path={dead}',
                          '--progress_interval_secs=0', *flags])
  header = f'{"table":<24}{"key":<34}{"rows":>7}{"expected":>10}  columns'
  print()
  print(header)
  print('-' * (len(header) + 30))
  ok = True
  for target in sorted(db.expected):
    got, want = rows_as_text(server, db, target)
    same = got == want
    ok &= same
    names = [name for name, *_ in server.query(f'DESC {target}')]
    key = ','.join(server.catalog.databases['ods'][target.split('.')[1]].key_columns)
    print(f'{target:<24}{key:<34}{len(got):>7}{len(want):>10}  {",".join(names)}'
          + ('' if same else '   MISMATCH'))
  print()
  print(summary.lines()[0])
  print(f'tables in ods: {len(server.catalog.databases["ods"])} (expected {len(db.expected)}; '
        f'{", ".join(db.excluded)} left out by --exclude_tables)')
  return ok and len(server.catalog.databases['ods']) == len(db.expected)
