"""``RecordParser``: Kafka records -> rows bound for tables, dead letters, chunk accounting.

Pure Python, no Beam (tests, benchmarks and plain loops use it directly).
Values are JSON (orjson) or, with a registry ``ValueFormat`` (``formats``),
Avro / Protobuf / JSON Schema in the Confluent wire format, decoded to the
same dicts: plain objects (or arrays of objects), or CDC envelopes
(``cdc``).  A plain JSON object is kept as its original bytes (``Row.raw``),
so the sink does not encode it again; decoded values have ``raw=None`` and
the size of their JSON encoding.  The target table comes from ``Routing`` or
the envelope.

Offset accounting: every ``Row`` and every ``DeadLetter`` produced from a
chunk later acknowledges one unit of that chunk; ``ChunkRead.count`` is their
number.  Records that produce nothing count zero.

Ordering: rows of one partition keep Kafka order inside a chunk.  Where a
sequence column is configured for a table and a row lacks it, the row gets
the record's Kafka offset, so Doris keeps the newest version of a key even
when batches of that table load in parallel -- correct when all changes of
one key are in one partition, as CDC producers (keyed by primary key) do.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import orjson

from transforms.records import cdc, connect_json
from transforms.records.formats import RegistryDecoder, ValueFormat
from transforms.records.numbers import LONG_NUMBER, NUMBER_CHARS, exact_loads, has_inexact_number
from transforms.records.reasons import (BAD_TABLE_NAME, EMPTY_VALUE, MISSING_TABLE, NOT_OBJECT,
                                        SKIP_EMPTY, SKIP_EXCLUDED, SKIP_TOMBSTONE, TOO_LARGE,
                                        UNENCODABLE,
                                        UNMAPPED_TOPIC, BAD_ENVELOPE, Reject, Skip, json_error,
                                        json_type)
from transforms.records.routing import NAME_RE, SOURCE_COLUMNS, Routing, TableCollisionError
from transforms.types import (DORIS_DELETE_SIGN, MAX_DEAD_LETTER_PAYLOAD_BYTES, OP_DELETE,
                              OP_UPSERT, STARROCKS_OP, TARGETS, ChunkRead, DeadLetter, KafkaChunk,
                              KafkaRecord, Row, RowBatch, encode_fields)

__all__ = ['RecordParser', 'ParsedChunk', 'CDC_FORMATS', 'DEFAULT_MAX_RECORD_BYTES']

_LOGGER = logging.getLogger('transforms.records')

CDC_FORMATS = ('none', 'debezium', 'canal', 'maxwell', 'auto')
DEFAULT_MAX_RECORD_BYTES = 10 * 1024 * 1024


class ParsedChunk(NamedTuple):
  """What ``RecordParser.parse_chunk`` makes of one ``KafkaChunk``.

  Attributes:
    rows_by_table: table -> rows in Kafka order (dict in first-seen order).
    dead_letters: one per rejected record, in Kafka order.
    chunk_read: the chunk's offsets and its count of rows + dead letters.
    records_parsed: records that produced at least one row.
    deletes: rows with ``op == 'delete'``.
    skipped: skip code -> number of records that produced nothing.
    dead_letter_codes: reason code -> number of dead letters.
    column_types: table -> column -> Doris type, from the records' schemas
      (empty for schemaless JSON: types are inferred from values).
    key_columns: table -> the source's primary key columns, where known: from
      the key schema (registry formats), else the fields of the first JSON
      record key of a CDC table (Debezium keys its records by primary key).
  """
  rows_by_table: Dict[str, List[Row]]
  dead_letters: List[DeadLetter]
  chunk_read: ChunkRead
  records_parsed: int
  deletes: int
  skipped: Dict[str, int]
  dead_letter_codes: Dict[str, int]
  column_types: Mapping[str, Mapping[str, str]] = {}
  key_columns: Mapping[str, Tuple[str, ...]] = {}


class RecordParser:
  """Parses Kafka records into rows; pure Python, no Beam.

  Args:
    routing: where rows go.
    cdc: ``'none'`` (plain JSON objects, or arrays of objects), ``'debezium'``,
      ``'canal'``, ``'maxwell'``, or ``'auto'`` (detect the envelope per record;
      values that are no known envelope are plain rows).
    target: ``'doris'`` (CDC rows get ``__DORIS_DELETE_SIGN__`` 0/1) or
      ``'starrocks'`` (CDC rows get ``__op`` 0/1).
    sequence_columns: table (``"db.tbl"``, or bare with ``default_database``)
      -> sequence column; rows lacking it get their Kafka offset.
    max_record_bytes: larger values are dead-lettered unparsed.
    value_format: how values are encoded (default: JSON); a registry format
      decodes with a ``RegistryDecoder`` made by ``open`` (or at the first
      record) and closed by ``close``.
    keep_retrying: a long-running job: wait out an unavailable registry
      instead of failing.
    keep_positions: Debezium rows carry their source position (``Row.position``; for a
      schema change topic's changes, ``--ddl_topic``).

  Raises:
    ValueError: on a bad configuration, naming the flag and value.
  """

  def __init__(self,
               routing: Routing,
               cdc: str = 'none',
               target: str = 'doris',
               sequence_columns: Optional[Mapping[str, str]] = None,
               max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
               value_format: Optional[ValueFormat] = None,
               keep_retrying: bool = False,
               keep_positions: bool = False):
    if not isinstance(routing, Routing):
      raise ValueError(f'routing: expected a Routing, got {routing!r}')
    if cdc not in CDC_FORMATS:
      raise ValueError(f'--cdc_format: expected one of {"|".join(CDC_FORMATS)}, got {cdc!r}')
    if target not in TARGETS:
      raise ValueError(f'--target: expected one of {"|".join(TARGETS)}, got {target!r}')
    if cdc == 'none' and routing.from_envelope:
      raise ValueError('plain JSON records (--cdc_format none) need one of --table, '
                       '--topic_table_map, --table_field')
    if (isinstance(max_record_bytes, bool) or not isinstance(max_record_bytes, int)
        or max_record_bytes <= 0):
      raise ValueError(f'--max_record_bytes: expected a positive integer, '
                       f'got {max_record_bytes!r}')
    seq: Dict[str, str] = {}
    for table, column in (sequence_columns or {}).items():
      qualified = routing.qualify(table)
      if qualified is None:
        raise ValueError(f'sequence column: bad table name {table!r}: expected "db.tbl"')
      if not isinstance(column, str) or not column:
        raise ValueError(f'sequence column of {table!r}: expected a column name, got {column!r}')
      seq[qualified] = column
    self.routing = routing
    self.cdc = cdc
    self.target = target
    self.sequence_columns = seq
    self.max_record_bytes = max_record_bytes
    if value_format is None:
      value_format = ValueFormat()
    if not isinstance(value_format, ValueFormat):
      raise ValueError(f'value_format: expected a ValueFormat, got {value_format!r}')
    self.value_format = value_format
    self.keep_retrying = bool(keep_retrying)
    self.keep_positions = bool(keep_positions)
    # The last record's Kafka Connect JSON schema and its row image's field (set by the CDC
    # envelope's parser): its column types go to the table's hints.
    self.connect_schema: Optional[Tuple[Any, Optional[str]]] = None
    self.row_position: Optional[tuple] = None  # the source position of the next row
    self._registry = value_format.uses_registry
    self._envelope = cdc in ('debezium', 'auto')
    self._decoder: Optional[RegistryDecoder] = None
    self._plan = None  # the writer schema plan of the record parsed last
    self._op_field = DORIS_DELETE_SIGN if target == 'doris' else STARROCKS_OP
    # Validated table names seen in --table_field values or envelopes.
    self._qualified: Dict[Tuple[Any, Any], Optional[str]] = {}
    # Envelope sources -> (target, merged); target -> its one unmerged source; merged targets.
    self._named: Dict[Tuple[Any, ...], Tuple[Optional[str], bool]] = {}
    self._sources: Dict[str, str] = {}
    self._merged_targets = set()
    self._row_source: Optional[Tuple[str, str]] = None  # the merged source of the next row
    self._topic = ''

  # -- the decoder's life ----------------------------------------------------

  def open(self) -> Optional[RegistryDecoder]:
    """Makes the registry decoder (registry formats; a no-op for json). Idempotent."""
    if self._registry and self._decoder is None:
      self._decoder = self.value_format.decoder(keep_retrying=self.keep_retrying)
    return self._decoder

  def close(self) -> None:
    """Closes the registry decoder, if any (``open`` or the next record makes a new one)."""
    decoder, self._decoder = self._decoder, None
    if decoder is not None:
      decoder.close()

  def __getstate__(self):
    state = dict(self.__dict__)
    state['_decoder'] = None  # a client per worker: never pickled
    state['_plan'] = None
    return state

  # -- chunks ----------------------------------------------------------------

  def parse_chunk(self, chunk: KafkaChunk) -> ParsedChunk:
    """Parses all records of ``chunk``.

    Returns:
      A ``ParsedChunk``; ``chunk_read.count`` = rows + dead letters.
    """
    rows_by_table: Dict[str, List[Row]] = {}
    dead_letters: List[DeadLetter] = []
    skipped: Dict[str, int] = {}
    codes: Dict[str, int] = {}
    parsed = deletes = count = 0
    column_types: Dict[str, Dict[str, str]] = {}
    key_columns: Dict[str, Tuple[str, ...]] = {}
    plans: Dict[str, Any] = {}  # table -> the plan whose column types it has
    registry = self._registry
    json_keys = self.cdc != 'none' and not registry
    first_keys: Dict[str, bytes] = {}  # CDC table -> its first JSON record key
    # The chunk is one topic, so fixed and per-topic routes resolve once.
    routing = self.routing
    if routing.table is not None:
      chunk_table: Optional[str] = routing.table
    elif routing.topic_table_map is not None:
      chunk_table = routing.topic_table_map.get(chunk.topic)
    else:
      chunk_table = None
    self._topic = chunk.topic
    for record in chunk.records:
      try:
        rows = self._parse_record(record, chunk_table)
      except Reject as e:
        dead_letters.append(_dead_letter(record, e, chunk_table))
        codes[e.code] = codes.get(e.code, 0) + 1
        count += 1
        continue
      except Skip as e:
        skipped[e.code] = skipped.get(e.code, 0) + 1
        _LOGGER.debug('Skipped record %s/%d@%d (%s): %s', record.topic, record.partition,
                      record.offset, e.code, e.detail)
        continue
      parsed += 1
      if registry and rows:
        self._note_schema(rows, record, plans, column_types, key_columns)
      elif self.connect_schema is not None and rows:
        _note_connect_schema(rows, self.connect_schema, column_types)
      elif json_keys and record.key and rows and rows[0].table not in first_keys:
        first_keys[rows[0].table] = record.key
      for row in rows:
        bucket = rows_by_table.get(row.table)
        if bucket is None:
          rows_by_table[row.table] = RowBatch((row,))
        else:
          bucket.append(row)
        if row.op == OP_DELETE:
          deletes += 1
      count += len(rows)
    for table, key in first_keys.items():
      keys = _json_key_fields(key)
      if keys:
        key_columns[table] = keys
    for table in self._merged_targets.intersection(key_columns):
      key_columns[table] = tuple(key_columns[table]) + tuple(
          column for column in SOURCE_COLUMNS if column not in key_columns[table])
    return ParsedChunk(
        rows_by_table=rows_by_table,
        dead_letters=dead_letters,
        chunk_read=ChunkRead(chunk.topic, chunk.partition, chunk.first_offset,
                             chunk.next_offset, count),
        records_parsed=parsed,
        deletes=deletes,
        skipped=skipped,
        dead_letter_codes=codes,
        column_types=column_types,
        key_columns=key_columns)

  def _note_schema(self, rows: List[Row], record: KafkaRecord, plans: Dict[str, Any],
                   column_types: Dict[str, Dict[str, str]],
                   key_columns: Dict[str, Tuple[str, ...]]) -> None:
    """Adds the column types (and key columns) of the record's schema to its tables'."""
    plan = self._plan
    for row in rows:
      table = row.table
      if plans.get(table) is plan:
        continue
      first = table not in plans
      plans[table] = plan
      types = plan.column_types(self._envelope)
      if types:
        column_types.setdefault(table, {}).update(types)
      if first and self._envelope and record.key:
        keys = self._decoder.key_fields(record.key, record.topic)
        if keys:
          key_columns[table] = keys

  # -- records ---------------------------------------------------------------

  def parse_record(self, record: KafkaRecord) -> List[Row]:
    """Parses one record (for tests and plain loops).

    Raises:
      ValueError: the record would be dead-lettered (message = the reason).
    """
    routing = self.routing
    if routing.table is not None:
      table = routing.table
    elif routing.topic_table_map is not None:
      table = routing.topic_table_map.get(record.topic)
    else:
      table = None
    self._topic = record.topic
    try:
      return self._parse_record(record, table)
    except Reject as e:
      raise ValueError(str(e)) from None
    except Skip:
      return []

  def _parse_record(self, record: KafkaRecord, chunk_table: Optional[str]) -> List[Row]:
    self._row_source = None
    self.row_position = None
    self.connect_schema = None
    rows = self._record_rows(record, chunk_table)
    if len(rows) > 1:
      # (offset, part) places each row of a multi-row record exactly.
      rows = [row._replace(part=part) for part, row in enumerate(rows)]
    return rows

  def _record_rows(self, record: KafkaRecord, chunk_table: Optional[str]) -> List[Row]:
    value = record.value
    if not value:
      if self.cdc in ('debezium', 'auto'):
        # Debezium follows each delete with a null-value tombstone for log compaction.
        raise Skip(SKIP_TOMBSTONE, 'tombstone (null value)')
      raise Reject(EMPTY_VALUE, 'null value' if value is None else 'empty value')
    if chunk_table is None and self.routing.topic_table_map is not None:
      raise Reject(UNMAPPED_TOPIC, f'topic {record.topic!r} is not in --topic_table_map')
    if len(value) > self.max_record_bytes:
      raise Reject(TOO_LARGE, f'record of {len(value)} bytes is larger than '
                    f'max_record_bytes={self.max_record_bytes}')
    if self._registry:
      decoder = self._decoder if self._decoder is not None else self.open()
      obj, self._plan = decoder.decode(value, record.topic, record.headers)
      return self._map(obj, value, record, chunk_table)
    try:
      obj = orjson.loads(value)
    except orjson.JSONDecodeError as e:
      raise json_error(value, e) from None

    rows = self._map(obj, value, record, chunk_table)
    # orjson reads numbers as 64-bit ints or doubles: a DECIMAL(38, 10) or a
    # 20-digit integer loses digits when a row is encoded again (raw rows are
    # sent as they came). Rare, so detect it afterwards and re-parse exactly;
    # the first test is a C-speed scan for a run of 16 digits or dots.
    if rows and rows[-1].raw is not value and LONG_NUMBER in value.translate(NUMBER_CHARS):
      try:
        if any(has_inexact_number(row.fields) for row in rows):
          return self._map(exact_loads(value), value, record, chunk_table)
      except (RecursionError, ValueError) as e:  # nesting deeper than the json module takes.
        _LOGGER.warning('Record %s/%d@%d: long numbers kept as doubles (%s)', record.topic,
                        record.partition, record.offset, e)
    return rows

  def _map(self, obj: Any, value: bytes, record: KafkaRecord,
           chunk_table: Optional[str]) -> List[Row]:
    fmt = self.cdc
    if type(obj) is dict:
      kind = fmt if fmt != 'auto' else cdc.detect_envelope(obj)
      if kind == cdc.PLAIN:
        return [self._plain_row(obj, value, record, chunk_table)]
      if kind == cdc.DEBEZIUM:
        return cdc.debezium(self, obj, record, chunk_table)
      if kind == cdc.CANAL:
        return cdc.canal(self, obj, record, chunk_table)
      return cdc.maxwell(self, obj, record, chunk_table)
    if type(obj) is list and fmt in ('none', 'auto'):
      return self._plain_array(obj, record, chunk_table)
    expected = ('a JSON object or an array of objects' if fmt in ('none', 'auto')
                else 'a JSON object')
    raise Reject(NOT_OBJECT, f'expected {expected}, got {json_type(obj)}')

  def _plain_row(self, obj: dict, value: bytes, record: KafkaRecord,
                 chunk_table: Optional[str]) -> Row:
    table = chunk_table if chunk_table is not None else self._table_from_field(obj)
    if self._registry:  # decoded, not JSON bytes: the sink encodes the row
      return self.make_row(table, obj, OP_UPSERT, record, cdc=False)
    column = self.sequence_columns.get(table) if self.sequence_columns else None
    if column is not None and column not in obj:
      obj[column] = record.offset
      encoded = _encode(obj)
      return Row(table, obj, OP_UPSERT, record.topic, record.partition, record.offset,
                 len(encoded), encoded)
    # Valid JSON has newlines only as whitespace; the sink splits NDJSON on them.
    raw = value if b'\n' not in value else None
    return Row(table, obj, OP_UPSERT, record.topic, record.partition, record.offset,
               len(value), raw)

  def _plain_array(self, items: list, record: KafkaRecord,
                   chunk_table: Optional[str]) -> List[Row]:
    if not items:
      raise Skip(SKIP_EMPTY, 'empty JSON array')
    for i, item in enumerate(items):
      if type(item) is not dict:
        raise Reject(NOT_OBJECT, f'array element {i} is {json_type(item)}, '
                      f'expected a JSON object')
    rows = []
    for item in items:
      table = chunk_table if chunk_table is not None else self._table_from_field(item)
      rows.append(self.make_row(table, item, OP_UPSERT, record, cdc=False))
    return rows

  def make_row(self, table: str, fields: dict, op: str, record: KafkaRecord, cdc: bool) -> Row:
    source = self._row_source
    if source is not None:
      fields[SOURCE_COLUMNS[0]], fields[SOURCE_COLUMNS[1]] = source
    if cdc:
      fields[self._op_field] = 1 if op == OP_DELETE else 0
    if self.sequence_columns:
      column = self.sequence_columns.get(table)
      if column is not None and column not in fields:
        fields[column] = record.offset
    # The encoding that measures the row is kept: the sink sends it as it is.
    encoded = _encode(fields)
    return Row(table, fields, op, record.topic, record.partition, record.offset,
               len(encoded), encoded, position=self.row_position)

  def key_image(self, record: KafkaRecord) -> Optional[dict]:
    """The record key's fields (a Debezium delete without ``before``), or None."""
    if self._registry:
      decoder = self._decoder if self._decoder is not None else self.open()
      return decoder.decode_key(record.key, record.topic)
    return cdc.json_key(record.key)

  # -- routing ---------------------------------------------------------------

  def _table_from_field(self, fields: dict) -> str:
    field = self.routing.table_field
    if field is None:  # cdc='auto' without routing flags met a plain record.
      raise Reject(MISSING_TABLE, 'no CDC envelope recognised and no --table, '
                    '--topic_table_map or --table_field for plain records')
    if field not in fields:
      raise Reject(MISSING_TABLE, f'no field {field!r} (--table_field) in the record')
    return self._qualify(fields[field], None, f'field {field!r}')

  def _qualify(self, name: Any, database: Any, where: str) -> str:
    key = (name, database)
    try:
      table = self._qualified[key]
    except (KeyError, TypeError):  # TypeError: unhashable (list, dict) value.
      table = self.routing.qualify(name, database)
      if len(self._qualified) < 10000:
        try:
          self._qualified[key] = table
        except TypeError:
          pass
    if table is None:
      if (isinstance(name, str) and '.' not in name and database is None
          and self.routing.default_database is None and NAME_RE.match(name)):
        raise Reject(BAD_TABLE_NAME, f'{where}: table {name!r} has no database '
                      f'and --default_database is not set')
      full = f'{database}.{name}' if database is not None else name
      raise Reject(BAD_TABLE_NAME, f'{where}: bad table name {full!r}: expected '
                    f'"db.tbl" of letters, digits and _')
    return table

  def envelope_table(self, chunk_table: Optional[str], image: dict, database: Any,
                     table: Any, where: str, schema: Any = None) -> str:
    self._row_source = None
    self.row_position = None
    if chunk_table is not None:
      return chunk_table
    if self.routing.table_field is not None:
      return self._table_from_field(image)
    if table is None:
      raise Reject(MISSING_TABLE, f'no table in the {where} and no --table, '
                    f'--topic_table_map or --table_field')
    if not isinstance(table, str) or (database is not None and not isinstance(database, str)):
      raise Reject(BAD_ENVELOPE, f'{where}: database/table must be strings, '
                    f'got {database!r}/{table!r}')
    if not isinstance(schema, str):
      schema = None
    key = (database, schema, table, self._topic)
    named = self._named.get(key)
    if named is None:
      named = self._name_source(database, schema, table, where)
      if len(self._named) < 100_000:
        self._named[key] = named
    target, merged = named
    if target is None:
      raise Skip(SKIP_EXCLUDED, f'source table {database}.{table} is not selected '
                 '(--include_tables / --exclude_tables)')
    if merged:
      self._row_source = (database or '', f'{schema}.{table}' if schema else table)
    return target

  def _name_source(self, database: Optional[str], schema: Optional[str], table: str,
                   where: str) -> Tuple[Optional[str], bool]:
    """The target of a source table and whether it is a merged family's; checks that no
    two sources reach one target unmerged (they would overwrite each other's keys)."""
    naming = self.routing.naming
    if naming is None:
      target, merged = self._qualify(table, database, where), False
    else:
      named = naming.target(database, table, topic=self._topic, schema=schema)
      if named is None:
        return None, False
      target = self._qualify(named[0], None, f'{where} (--table_template / --merge_tables)')
      merged = named[1]
    if merged:
      self._merged_targets.add(target)
    else:
      source = '.'.join(part for part in (database, schema, table) if part)
      first = self._sources.setdefault(target, source)
      if first != source:
        raise TableCollisionError(
            f'source tables {first} and {source} both reach {target}: their keys would '
            'overwrite each other; merge them with --merge_tables (their source joins the '
            'key) or name them apart with --table_template')
    return target, merged



def _encode(fields: dict) -> bytes:
  """The row's JSON encoding (one line: orjson writes no newline)."""
  try:
    return encode_fields(fields)
  except orjson.JSONEncodeError as e:  # orjson writes at most 254 levels of nesting.
    raise Reject(UNENCODABLE, f'row cannot be encoded as JSON again: {e}') from None



def _dead_letter(record: KafkaRecord, error: Reject, table: Optional[str]) -> DeadLetter:
  payload = record.value
  if payload is not None and len(payload) > MAX_DEAD_LETTER_PAYLOAD_BYTES:
    payload = payload[:MAX_DEAD_LETTER_PAYLOAD_BYTES]
  return DeadLetter(stage='parse', reason=str(error), topic=record.topic,
                    partition=record.partition, offset=record.offset,
                    table=error.table if error.table is not None else table,
                    payload=payload)


def _note_connect_schema(rows: List[Row], connect_schema: Tuple[Any, Optional[str]],
                         column_types: Dict[str, Dict[str, str]]) -> None:
  """Adds the column types a Connect JSON schema gives to the record's table's, once per chunk
  and table unless a row has a column they lack (the source added one mid-chunk)."""
  table = rows[0].table
  known = column_types.get(table)
  fields = rows[0].fields
  if known is not None and (fields is None or all(name in known for name in fields)):
    return
  types = connect_json.column_types(*connect_schema)
  if types:
    column_types.setdefault(table, {}).update(types)


def _json_key_fields(key: bytes) -> Optional[Tuple[str, ...]]:
  """The field names of a JSON record key (Debezium's, maybe schema-wrapped), or None."""
  value = cdc.json_key(key)
  if value is not None and all(type(name) is str for name in value):
    return tuple(value)
  return None
