"""Parsing and routing of Kafka records into rows bound for Doris/StarRocks tables.

``ParseRecords`` turns each ``KafkaChunk`` (consecutive records of one
partition) into ``(table, [Row, ...])`` elements, one per table per chunk with
the rows in Kafka order, plus a dead-letter output for every record that
cannot be loaded (with the reason, never dropped silently) and one
``ChunkRead`` per chunk for offset accounting. Values are JSON (orjson):
plain objects (or arrays of objects), or CDC envelopes (Debezium, Canal,
Maxwell) mapped to upserts and deletes for Doris unique-key tables
(``__DORIS_DELETE_SIGN__``) and StarRocks primary-key tables (``__op``). The
target table comes from a fixed ``--table``, a ``--topic_table_map``, a
``--table_field`` in the value, or the CDC envelope's database and table.

All the work is done by ``RecordParser``, a plain object usable without Beam
(tests, benchmarks, plain-Python loops); the DoFn only emits its results and
updates metrics.

Offset accounting: every ``Row`` and every ``DeadLetter`` produced from a
chunk later acknowledges one unit of that chunk; ``ChunkRead.count`` is their
number. Records that produce nothing (Debezium tombstones, DDL events, empty
arrays) count zero and are logged at debug level and counted in the
``skipped_records`` metric.

Ordering: rows of one partition keep Kafka order inside a chunk. Where a
sequence column is configured for a table and a row lacks it, the row gets
the record's Kafka offset, so Doris keeps the newest version of a key even
when batches of that table are loaded in parallel. That is only correct if
all changes of one key are in one partition, which CDC producers (Debezium,
Canal, Maxwell keyed by primary key) guarantee; rows of one Canal message share
their record's offset.

Numbers: orjson reads JSON numbers as 64-bit integers or doubles. Rows sent
as their original bytes (``Row.raw``) keep every digit; rows that must be
encoded again (CDC rows, array elements, rows given a sequence column) whose
numbers do not fit a double (``DECIMAL(38, 10)``, 20-digit integers) are
parsed again exactly and carry those numbers as strings, which Doris and
StarRocks cast to the column type.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import logging
import re
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import DoOutputsTuple
from apache_beam.pvalue import TaggedOutput
import orjson

from transforms.types import ChunkRead
from transforms.types import DeadLetter
from transforms.types import KafkaChunk
from transforms.types import KafkaRecord
from transforms.types import OP_DELETE
from transforms.types import OP_UPSERT
from transforms.types import Row

__all__ = [
    'CDC_FORMATS',
    'DEFAULT_MAX_RECORD_BYTES',
    'DORIS_DELETE_SIGN',
    'METRICS_NAMESPACE',
    'MAX_DEAD_LETTER_PAYLOAD_BYTES',
    'ParseRecords',
    'ParsedChunk',
    'RecordParser',
    'Routing',
    'STARROCKS_OP',
    'TARGETS',
    'parse_topic_table_map',
]

_LOGGER = logging.getLogger(__name__)

METRICS_NAMESPACE = 'kafka_to_doris'
CDC_FORMATS = ('none', 'debezium', 'canal', 'maxwell', 'auto')
TARGETS = ('doris', 'starrocks')
DEFAULT_MAX_RECORD_BYTES = 10 * 1024 * 1024
MAX_DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024

# Hidden column of Doris unique-key tables with batch delete enabled: 1 deletes the key.
DORIS_DELETE_SIGN = '__DORIS_DELETE_SIGN__'
# Virtual column of StarRocks primary-key tables: 0 = upsert, 1 = delete.
STARROCKS_OP = '__op'

# Dead-letter reason codes; ``DeadLetter.reason`` is ``'<code>: <detail>'`` and
# each code has its own ``dead_letters_<code>`` counter.
_TOO_LARGE = 'too_large'
_EMPTY_VALUE = 'empty_value'
_INVALID_UTF8 = 'invalid_utf8'
_INVALID_JSON = 'invalid_json'
_NOT_OBJECT = 'not_object'
_MISSING_TABLE = 'missing_table'
_UNMAPPED_TOPIC = 'unmapped_topic'
_BAD_TABLE_NAME = 'bad_table_name'
_BAD_ENVELOPE = 'bad_envelope'
_UNENCODABLE = 'unencodable'
_REASON_CODES = (_TOO_LARGE, _EMPTY_VALUE, _INVALID_UTF8, _INVALID_JSON, _NOT_OBJECT,
                 _MISSING_TABLE, _UNMAPPED_TOPIC, _BAD_TABLE_NAME, _BAD_ENVELOPE, _UNENCODABLE)

# Skip reason codes (records producing nothing; counted in ``skipped_<code>``).
_SKIP_TOMBSTONE = 'tombstone'
_SKIP_DDL = 'ddl'
_SKIP_CONTROL = 'control'
_SKIP_EMPTY = 'empty'
_SKIP_CODES = (_SKIP_TOMBSTONE, _SKIP_DDL, _SKIP_CONTROL, _SKIP_EMPTY)

_NAME_RE = re.compile(r'[A-Za-z0-9_]+\Z')
_TABLE_RE = re.compile(r'[A-Za-z0-9_]+\.[A-Za-z0-9_]+\Z')

# Kinds of record values, as detected by ``_detect``.
_PLAIN = 'none'
_DEBEZIUM = 'debezium'
_CANAL = 'canal'
_MAXWELL = 'maxwell'

_DEBEZIUM_DDL_KEYS = ('ddl', 'tableChanges', 'historyRecord', 'databaseName')
_CANAL_DML_TYPES = ('INSERT', 'UPDATE', 'DELETE')
_MAXWELL_UPSERT_TYPES = ('insert', 'update', 'bootstrap-insert')
_MAXWELL_CONTROL_TYPES = ('bootstrap-start', 'bootstrap-complete')


class _Reject(Exception):
  """A record cannot be loaded: becomes a dead letter with ``code: detail``."""

  def __init__(self, code: str, detail: str, table: Optional[str] = None):
    super().__init__(f'{code}: {detail}')
    self.code = code
    self.detail = detail
    self.table = table


class _Skip(Exception):
  """A record that legitimately produces no rows (tombstone, DDL, ...)."""

  def __init__(self, code: str, detail: str):
    super().__init__(detail)
    self.code = code
    self.detail = detail


def _check_name(flag: str, name: Any, what: str = 'table name') -> None:
  if not isinstance(name, str) or not (_TABLE_RE.match(name) or _NAME_RE.match(name)):
    raise ValueError(
        f'{flag}: bad {what} {name!r}: expected "db.tbl" or "tbl" of letters, digits and _')


def parse_topic_table_map(value: str) -> Dict[str, str]:
  """Parses the ``--topic_table_map`` flag.

  Args:
    value: comma-separated ``topic=db.tbl`` pairs, e.g. ``"t1=db.a,t2=db.b"``;
      whitespace around items is ignored; a table may be a bare ``tbl`` when
      ``--default_database`` is set.

  Returns:
    A dict topic -> table, in the order given.

  Raises:
    ValueError: naming ``--topic_table_map`` and the bad value, if an item is
      not ``topic=table``, a topic repeats, a table name is malformed, or the
      map is empty.
  """
  if not isinstance(value, str):
    raise ValueError(f'--topic_table_map: expected a string like "t1=db.a,t2=db.b", '
                     f'got {value!r}')
  result: Dict[str, str] = {}
  for item in value.split(','):
    item = item.strip()
    if not item:
      continue
    topic, sep, table = item.partition('=')
    topic, table = topic.strip(), table.strip()
    if not sep or not topic or not table:
      raise ValueError(f'--topic_table_map: bad item {item!r} in {value!r}: '
                       f'expected "topic=db.tbl"')
    try:
      _check_name('--topic_table_map', table)
    except ValueError as e:
      raise ValueError(f'{e} (item {item!r} in {value!r})') from None
    if topic in result and result[topic] != table:
      raise ValueError(f'--topic_table_map: topic {topic!r} mapped twice '
                       f'({result[topic]!r} and {table!r}) in {value!r}')
    result[topic] = table
  if not result:
    raise ValueError(f'--topic_table_map: no "topic=db.tbl" pairs in {value!r}')
  return result


@dataclasses.dataclass(frozen=True)
class Routing:
  """Where records go: at most one of ``table``, ``topic_table_map``, ``table_field``.

  With none of them, the table comes from the CDC envelope (Debezium
  ``source.db`` + ``source.table``; Canal and Maxwell ``database`` +
  ``table``); plain JSON records need one of them (``ParseRecords`` checks).

  Attributes:
    table: ``"db.tbl"`` for every record (``--table``).
    topic_table_map: topic -> ``"db.tbl"`` (``--topic_table_map``); records of
      other topics are dead-lettered.
    table_field: name of a top-level field of each row holding ``"db.tbl"`` or
      ``"tbl"`` (``--table_field``); for CDC records it is looked up in the
      row image (after-image, or before-image for deletes). The field stays in
      the row.
    default_database: database for bare ``"tbl"`` names (``--default_database``).
  """
  table: Optional[str] = None
  topic_table_map: Optional[Mapping[str, str]] = None
  table_field: Optional[str] = None
  default_database: Optional[str] = None

  def __post_init__(self):
    given = [flag for flag, v in (('--table', self.table),
                                  ('--topic_table_map', self.topic_table_map),
                                  ('--table_field', self.table_field)) if v is not None]
    if len(given) > 1:
      raise ValueError(f'{" and ".join(given)} are exclusive: give only one of '
                       f'--table, --topic_table_map, --table_field')
    if self.default_database is not None and (
        not isinstance(self.default_database, str) or not _NAME_RE.match(self.default_database)):
      raise ValueError(f'--default_database: bad database name {self.default_database!r}: '
                       f'expected letters, digits and _')
    if self.table is not None:
      _check_name('--table', self.table)
      object.__setattr__(self, 'table', self._require_qualified('--table', self.table))
    if self.topic_table_map is not None:
      if isinstance(self.topic_table_map, str):
        mapping = parse_topic_table_map(self.topic_table_map)
      elif isinstance(self.topic_table_map, Mapping):
        mapping = dict(self.topic_table_map)
      else:
        raise ValueError(f'--topic_table_map: expected a dict or "t1=db.a,t2=db.b", '
                         f'got {self.topic_table_map!r}')
      if not mapping:
        raise ValueError('--topic_table_map: empty map')
      for topic, table in mapping.items():
        if not isinstance(topic, str) or not topic:
          raise ValueError(f'--topic_table_map: bad topic {topic!r}')
        _check_name('--topic_table_map', table)
        mapping[topic] = self._require_qualified('--topic_table_map', table)
      object.__setattr__(self, 'topic_table_map', mapping)
    if self.table_field is not None and (
        not isinstance(self.table_field, str) or not self.table_field):
      raise ValueError(f'--table_field: expected a field name, got {self.table_field!r}')

  def __hash__(self):
    mapping = tuple(self.topic_table_map.items()) if self.topic_table_map else None
    return hash((self.table, mapping, self.table_field, self.default_database))

  def _require_qualified(self, flag: str, table: str) -> str:
    if '.' in table:
      return table
    if self.default_database is None:
      raise ValueError(f'{flag}: table {table!r} has no database: write "db.{table}" '
                       f'or set --default_database')
    return f'{self.default_database}.{table}'

  @property
  def from_envelope(self) -> bool:
    """True when no flag is set and tables come from CDC envelopes."""
    return self.table is None and self.topic_table_map is None and self.table_field is None

  def qualify(self, name: Any, database: Any = None) -> Optional[str]:
    """Returns ``"db.tbl"`` for ``name`` (``"db.tbl"`` or ``"tbl"``), or None if invalid.

    Args:
      name: a table name, qualified or not.
      database: the database for a bare name; ``default_database`` if None.
    """
    if not isinstance(name, str):
      return None
    if database is not None and '.' not in name:
      if not isinstance(database, str):
        return None
      name = f'{database}.{name}'
    elif '.' not in name and self.default_database is not None:
      name = f'{self.default_database}.{name}'
    return name if _TABLE_RE.match(name) else None


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
  """
  rows_by_table: Dict[str, List[Row]]
  dead_letters: List[DeadLetter]
  chunk_read: ChunkRead
  records_parsed: int
  deletes: int
  skipped: Dict[str, int]
  dead_letter_codes: Dict[str, int]


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

  Raises:
    ValueError: on a bad configuration, naming the flag and value.
  """

  def __init__(self,
               routing: Routing,
               cdc: str = 'none',
               target: str = 'doris',
               sequence_columns: Optional[Mapping[str, str]] = None,
               max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
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
    self._op_field = DORIS_DELETE_SIGN if target == 'doris' else STARROCKS_OP
    # Validated table names seen in --table_field values or envelopes.
    self._qualified: Dict[Tuple[Any, Any], Optional[str]] = {}

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
    # The chunk is one topic, so fixed and per-topic routes resolve once.
    routing = self.routing
    if routing.table is not None:
      chunk_table: Optional[str] = routing.table
    elif routing.topic_table_map is not None:
      chunk_table = routing.topic_table_map.get(chunk.topic)
    else:
      chunk_table = None
    for record in chunk.records:
      try:
        rows = self._parse_record(record, chunk_table)
      except _Reject as e:
        dead_letters.append(_dead_letter(record, e, chunk_table))
        codes[e.code] = codes.get(e.code, 0) + 1
        count += 1
        continue
      except _Skip as e:
        skipped[e.code] = skipped.get(e.code, 0) + 1
        _LOGGER.debug('Skipped record %s/%d@%d (%s): %s', record.topic, record.partition,
                      record.offset, e.code, e.detail)
        continue
      parsed += 1
      for row in rows:
        bucket = rows_by_table.get(row.table)
        if bucket is None:
          rows_by_table[row.table] = [row]
        else:
          bucket.append(row)
        if row.op == OP_DELETE:
          deletes += 1
      count += len(rows)
    return ParsedChunk(
        rows_by_table=rows_by_table,
        dead_letters=dead_letters,
        chunk_read=ChunkRead(chunk.topic, chunk.partition, chunk.first_offset,
                             chunk.next_offset, count),
        records_parsed=parsed,
        deletes=deletes,
        skipped=skipped,
        dead_letter_codes=codes)

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
    try:
      return self._parse_record(record, table)
    except _Reject as e:
      raise ValueError(str(e)) from None
    except _Skip:
      return []

  def _parse_record(self, record: KafkaRecord, chunk_table: Optional[str]) -> List[Row]:
    value = record.value
    cdc = self.cdc
    if not value:
      if cdc in ('debezium', 'auto'):
        # Debezium follows each delete with a null-value tombstone for log compaction.
        raise _Skip(_SKIP_TOMBSTONE, 'tombstone (null value)')
      raise _Reject(_EMPTY_VALUE, 'null value' if value is None else 'empty value')
    if chunk_table is None and self.routing.topic_table_map is not None:
      raise _Reject(_UNMAPPED_TOPIC, f'topic {record.topic!r} is not in --topic_table_map')
    if len(value) > self.max_record_bytes:
      raise _Reject(_TOO_LARGE, f'record of {len(value)} bytes is larger than '
                    f'max_record_bytes={self.max_record_bytes}')
    try:
      obj = orjson.loads(value)
    except orjson.JSONDecodeError as e:
      raise _json_error(value, e) from None

    rows = self._map(obj, value, record, chunk_table)
    # orjson reads numbers as 64-bit ints or doubles: a DECIMAL(38, 10) or a
    # 20-digit integer loses digits when a row is encoded again (raw rows are
    # sent as they came). Rare, so detect it afterwards and re-parse exactly;
    # the first test is a C-speed scan for a run of 16 digits or dots.
    if rows and rows[-1].raw is None and _LONG_NUMBER in value.translate(_NUMBER_CHARS):
      try:
        if any(_has_inexact_number(row.fields) for row in rows):
          return self._map(_exact_loads(value), value, record, chunk_table)
      except (RecursionError, ValueError) as e:  # nesting deeper than the json module takes.
        _LOGGER.warning('Record %s/%d@%d: long numbers kept as doubles (%s)', record.topic,
                        record.partition, record.offset, e)
    return rows

  def _map(self, obj: Any, value: bytes, record: KafkaRecord,
           chunk_table: Optional[str]) -> List[Row]:
    cdc = self.cdc
    if type(obj) is dict:
      kind = cdc if cdc != 'auto' else _detect(obj)
      if kind == _PLAIN:
        return [self._plain_row(obj, value, record, chunk_table)]
      if kind == _DEBEZIUM:
        return self._debezium(obj, record, chunk_table)
      if kind == _CANAL:
        return self._canal(obj, record, chunk_table)
      return self._maxwell(obj, record, chunk_table)
    if type(obj) is list and cdc in ('none', 'auto'):
      return self._plain_array(obj, record, chunk_table)
    expected = ('a JSON object or an array of objects' if cdc in ('none', 'auto')
                else 'a JSON object')
    raise _Reject(_NOT_OBJECT, f'expected {expected}, got {_json_type(obj)}')

  def _plain_row(self, obj: dict, value: bytes, record: KafkaRecord,
                 chunk_table: Optional[str]) -> Row:
    table = chunk_table if chunk_table is not None else self._table_from_field(obj)
    column = self.sequence_columns.get(table) if self.sequence_columns else None
    if column is not None and column not in obj:
      obj[column] = record.offset
      return Row(table, obj, OP_UPSERT, record.topic, record.partition, record.offset,
                 _encoded_size(obj), None)
    # Valid JSON has newlines only as whitespace; the sink splits NDJSON on them.
    raw = value if b'\n' not in value else None
    return Row(table, obj, OP_UPSERT, record.topic, record.partition, record.offset,
               len(value), raw)

  def _plain_array(self, items: list, record: KafkaRecord,
                   chunk_table: Optional[str]) -> List[Row]:
    if not items:
      raise _Skip(_SKIP_EMPTY, 'empty JSON array')
    for i, item in enumerate(items):
      if type(item) is not dict:
        raise _Reject(_NOT_OBJECT, f'array element {i} is {_json_type(item)}, '
                      f'expected a JSON object')
    rows = []
    for item in items:
      table = chunk_table if chunk_table is not None else self._table_from_field(item)
      rows.append(self._row(table, item, OP_UPSERT, record, cdc=False))
    return rows

  def _row(self, table: str, fields: dict, op: str, record: KafkaRecord, cdc: bool) -> Row:
    if cdc:
      fields[self._op_field] = 1 if op == OP_DELETE else 0
    if self.sequence_columns:
      column = self.sequence_columns.get(table)
      if column is not None and column not in fields:
        fields[column] = record.offset
    return Row(table, fields, op, record.topic, record.partition, record.offset,
               _encoded_size(fields), None)

  # -- routing ---------------------------------------------------------------

  def _table_from_field(self, fields: dict) -> str:
    field = self.routing.table_field
    if field is None:  # cdc='auto' without routing flags met a plain record.
      raise _Reject(_MISSING_TABLE, 'no CDC envelope recognised and no --table, '
                    '--topic_table_map or --table_field for plain records')
    if field not in fields:
      raise _Reject(_MISSING_TABLE, f'no field {field!r} (--table_field) in the record')
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
          and self.routing.default_database is None and _NAME_RE.match(name)):
        raise _Reject(_BAD_TABLE_NAME, f'{where}: table {name!r} has no database '
                      f'and --default_database is not set')
      full = f'{database}.{name}' if database is not None else name
      raise _Reject(_BAD_TABLE_NAME, f'{where}: bad table name {full!r}: expected '
                    f'"db.tbl" of letters, digits and _')
    return table

  def _cdc_table(self, chunk_table: Optional[str], image: dict, database: Any,
                 table: Any, where: str) -> str:
    if chunk_table is not None:
      return chunk_table
    if self.routing.table_field is not None:
      return self._table_from_field(image)
    if table is None:
      raise _Reject(_MISSING_TABLE, f'no table in the {where} and no --table, '
                    f'--topic_table_map or --table_field')
    if not isinstance(table, str) or (database is not None and not isinstance(database, str)):
      raise _Reject(_BAD_ENVELOPE, f'{where}: database/table must be strings, '
                    f'got {database!r}/{table!r}')
    return self._qualify(table, database, where)

  # -- Debezium --------------------------------------------------------------

  def _debezium(self, obj: dict, record: KafkaRecord, chunk_table: Optional[str]) -> List[Row]:
    if 'payload' in obj and 'schema' in obj:  # JsonConverter with schemas.enable=true.
      obj = obj['payload']
      if obj is None:
        raise _Skip(_SKIP_TOMBSTONE, 'Debezium tombstone (null payload)')
      if type(obj) is not dict:
        raise _Reject(_BAD_ENVELOPE, f'Debezium "payload" must be an object, got {_json_type(obj)}')
    op = obj.get('op')
    if op is None:
      if '__deleted' in obj:
        return [self._debezium_flattened(obj, record, chunk_table)]
      if any(k in obj for k in _DEBEZIUM_DDL_KEYS):
        raise _Skip(_SKIP_DDL, 'Debezium schema change event')
      raise _Reject(_BAD_ENVELOPE, 'Debezium envelope without "op"')
    if op in ('c', 'r', 'u'):
      image = obj.get('after')
      if image is None:
        raise _Reject(_BAD_ENVELOPE, f'Debezium op {op!r} without "after" row')
      op_out = OP_UPSERT
    elif op == 'd':
      image = obj.get('before')
      if image is None:
        image = _debezium_key(record.key)
        if image is None:
          raise _Reject(_BAD_ENVELOPE, 'Debezium delete without "before" row or JSON key')
      op_out = OP_DELETE
    elif op in ('t', 'm'):
      # Truncate and logical-decoding messages have no row to load.
      raise _Skip(_SKIP_CONTROL, f'Debezium op {op!r} (truncate/message) has no rows')
    else:
      raise _Reject(_BAD_ENVELOPE, f'unknown Debezium op {op!r}')
    if type(image) is not dict:
      raise _Reject(_BAD_ENVELOPE, f'Debezium row must be an object, got {_json_type(image)}')
    if not image:
      raise _Reject(_BAD_ENVELOPE, f'Debezium op {op!r} with an empty row')
    if chunk_table is None and self.routing.table_field is None:
      source = obj.get('source')
      if type(source) is not dict:
        raise _Reject(_BAD_ENVELOPE, f'Debezium "source" must be an object, '
                      f'got {_json_type(source)}')
      table = self._cdc_table(None, image, source.get('db'), source.get('table'),
                              'Debezium source')
    else:
      table = self._cdc_table(chunk_table, image, None, None, 'Debezium source')
    return [self._row(table, image, op_out, record, cdc=True)]

  def _debezium_flattened(self, obj: dict, record: KafkaRecord,
                          chunk_table: Optional[str]) -> Row:
    """A row flattened by Debezium's ``ExtractNewRecordState`` (``delete.handling.mode=rewrite``).

    ``__deleted`` says whether it is a delete; ``__op`` (``add.fields=op``) is
    dropped as it would collide with StarRocks' ``__op``; ``__db`` and
    ``__table`` (``add.fields=db,table``) name the table when no flag does.
    """
    deleted = obj.pop('__deleted')
    source_op = obj.pop('__op', None)
    if deleted not in (True, False, 'true', 'false'):
      raise _Reject(_BAD_ENVELOPE, f'Debezium "__deleted" must be true or false, got {deleted!r}')
    if not obj:
      raise _Reject(_BAD_ENVELOPE, 'flattened Debezium record without columns')
    op = OP_DELETE if deleted is True or deleted == 'true' or source_op == 'd' else OP_UPSERT
    table = self._cdc_table(chunk_table, obj, obj.get('__db'), obj.get('__table'),
                            'flattened Debezium record')
    return self._row(table, obj, op, record, cdc=True)

  # -- Canal -----------------------------------------------------------------

  def _canal(self, obj: dict, record: KafkaRecord, chunk_table: Optional[str]) -> List[Row]:
    is_ddl = obj.get('isDdl', False)
    if type(is_ddl) is not bool:
      raise _Reject(_BAD_ENVELOPE, f'Canal "isDdl" must be a boolean, got {_json_type(is_ddl)}')
    kind = obj.get('type')
    if is_ddl:
      raise _Skip(_SKIP_DDL, f'Canal DDL {kind!r}')
    if not isinstance(kind, str):
      raise _Reject(_BAD_ENVELOPE, f'Canal "type" must be a string, got {_json_type(kind)}')
    kind = kind.upper()
    if kind not in _CANAL_DML_TYPES:
      raise _Reject(_BAD_ENVELOPE, f'unknown Canal type {kind!r}')
    data = obj.get('data')
    if type(data) is not list:
      raise _Reject(_BAD_ENVELOPE, f'Canal "data" must be an array of rows, got {_json_type(data)}')
    if not data:
      raise _Reject(_BAD_ENVELOPE, f'Canal {kind} without rows in "data"')
    old = obj.get('old')
    if kind == 'UPDATE' and old is not None and (type(old) is not list or len(old) != len(data)):
      raise _Reject(_BAD_ENVELOPE, f'Canal "old" must be an array as long as "data", '
                    f'got {_json_type(old)}')
    pk_names = obj.get('pkNames')
    if pk_names is not None and type(pk_names) is not list:
      raise _Reject(_BAD_ENVELOPE, f'Canal "pkNames" must be an array, got {_json_type(pk_names)}')
    for i, row in enumerate(data):
      if type(row) is not dict or not row:
        raise _Reject(_BAD_ENVELOPE, f'Canal data[{i}] must be a non-empty object, '
                      f'got {_json_type(row)}')
    op = OP_DELETE if kind == 'DELETE' else OP_UPSERT
    database = obj.get('database')
    source_table = obj.get('table')
    rows: List[Row] = []
    for i, image in enumerate(data):
      table = self._cdc_table(chunk_table, image, database, source_table, 'Canal message')
      if kind == 'UPDATE' and old and pk_names:
        before = _key_change_before_image(image, old[i], pk_names)
        if before is not None:
          rows.append(self._row(table, before, OP_DELETE, record, cdc=True))
      rows.append(self._row(table, image, op, record, cdc=True))
    return rows

  # -- Maxwell ---------------------------------------------------------------

  def _maxwell(self, obj: dict, record: KafkaRecord, chunk_table: Optional[str]) -> List[Row]:
    kind = obj.get('type')
    if not isinstance(kind, str):
      raise _Reject(_BAD_ENVELOPE, f'Maxwell "type" must be a string, got {_json_type(kind)}')
    if kind == 'delete':
      op = OP_DELETE
    elif kind in _MAXWELL_UPSERT_TYPES:
      op = OP_UPSERT
    elif kind in _MAXWELL_CONTROL_TYPES:
      raise _Skip(_SKIP_CONTROL, f'Maxwell {kind}')
    elif kind.startswith(('table-', 'database-')) or 'sql' in obj:
      raise _Skip(_SKIP_DDL, f'Maxwell DDL {kind!r}')
    else:
      raise _Reject(_BAD_ENVELOPE, f'unknown Maxwell type {kind!r}')
    image = obj.get('data')
    if type(image) is not dict:
      raise _Reject(_BAD_ENVELOPE, f'Maxwell "data" must be an object, got {_json_type(image)}')
    if not image:
      raise _Reject(_BAD_ENVELOPE, f'Maxwell {kind} with an empty "data" row')
    table = self._cdc_table(chunk_table, image, obj.get('database'), obj.get('table'),
                            'Maxwell message')
    rows: List[Row] = []
    if kind == 'update':
      old = obj.get('old')
      pk_names = obj.get('primary_key_columns')
      if type(old) is dict and type(pk_names) is list:
        before = _key_change_before_image(image, old, pk_names)
        if before is not None:
          rows.append(self._row(table, before, OP_DELETE, record, cdc=True))
    rows.append(self._row(table, image, op, record, cdc=True))
    return rows


_RISKY_TYPES = frozenset((float, dict, list))
# Maps digits and '.' to '0', every other byte to ' ': a double holds 15-17
# significant digits, so only a literal with a run of 16+ of them can lose some.
_NUMBER_CHARS = bytes(0x30 if c in b'0123456789.' else 0x20 for c in range(256))
_LONG_NUMBER = b'0' * 16


def _has_inexact_number(value: Any) -> bool:
  """True if ``value`` (a row) holds a float that may have lost digits of its literal.

  A float whose shortest repr has 16+ characters may come from a literal with
  more significant digits than a double holds (or from an integer beyond 64
  bits, which orjson reads as a double). Literals of 17+ significant digits
  that round to a short double (``10000000000000001.0``) are not detected.
  """
  items = value.values() if type(value) is dict else value
  if _RISKY_TYPES.isdisjoint(map(type, items)):  # the common case, at C speed.
    return False
  for item in items:
    kind = type(item)
    if kind is float:
      if len(repr(item)) > 16:
        return True
    elif (kind is dict or kind is list) and _has_inexact_number(item):
      return True
  return False


def _exact_loads(value: bytes) -> Any:
  """Parses JSON keeping every digit: inexact numbers become strings.

  Doris and StarRocks cast JSON strings to the column type on load, so
  ``"12345678901234.123456"`` lands in a DECIMAL column exactly.
  """
  return _exact_numbers(json.loads(value, parse_float=decimal.Decimal))


def _exact_numbers(value: Any) -> Any:
  kind = type(value)
  if kind is dict:
    return {k: _exact_numbers(v) for k, v in value.items()}
  if kind is list:
    return [_exact_numbers(v) for v in value]
  if kind is decimal.Decimal:
    as_float = float(value)
    return as_float if decimal.Decimal(repr(as_float)) == value else str(value)
  if kind is int and not -2**63 <= value < 2**64:
    return str(value)
  return value


def _detect(obj: dict) -> str:
  """Guesses the envelope of a JSON object (``cdc='auto'``).

  Each test asks for keys every message of that format has, so that plain
  rows with a ``type`` or ``op`` column stay plain; a plain row that happens
  to carry a whole envelope's keys would be misread (give ``cdc`` explicitly
  when the format is known).
  """
  if 'op' in obj:
    if 'after' in obj or 'before' in obj:
      return _DEBEZIUM
  elif 'payload' in obj and 'schema' in obj:
    return _DEBEZIUM
  if 'type' in obj and 'database' in obj:
    if 'table' in obj and ('isDdl' in obj or type(obj.get('data')) is list):
      return _CANAL
    if 'ts' in obj and (('data' in obj and 'table' in obj) or 'sql' in obj):
      return _MAXWELL
  if 'ddl' in obj and 'source' in obj and ('tableChanges' in obj or 'databaseName' in obj):
    return _DEBEZIUM  # a schema change event
  if '__deleted' in obj:
    return _DEBEZIUM  # flattened by ExtractNewRecordState
  return _PLAIN


def _key_change_before_image(after: dict, old: Any, pk_names: list) -> Optional[dict]:
  """The old row to delete when an update changed the primary key, else None.

  Canal and Maxwell ``old`` hold the previous values of the changed columns
  only; if a key column is among them, the row moved to a new key and the old
  key must be deleted or it stays in the table.
  """
  if type(old) is not dict or not any(k in old for k in pk_names if isinstance(k, str)):
    return None
  before = dict(after)
  before.update(old)
  return before


def _encoded_size(fields: dict) -> int:
  """Byte length of the row's JSON encoding."""
  try:
    return len(orjson.dumps(fields))
  except orjson.JSONEncodeError as e:  # orjson writes at most 254 levels of nesting.
    raise _Reject(_UNENCODABLE, f'row cannot be encoded as JSON again: {e}') from None


def _debezium_key(key: Optional[bytes]) -> Optional[dict]:
  """The key fields of a Debezium record key (JSON, maybe schema-wrapped), or None."""
  if not key:
    return None
  try:
    obj = orjson.loads(key)
  except orjson.JSONDecodeError:
    return None
  if type(obj) is dict and 'payload' in obj and 'schema' in obj:
    obj = obj['payload']
  return obj if type(obj) is dict and obj else None


def _json_error(value: bytes, error: orjson.JSONDecodeError) -> _Reject:
  try:
    value.decode('utf-8')
  except UnicodeDecodeError as e:
    return _Reject(_INVALID_UTF8, f'value is not valid UTF-8: {e}')
  return _Reject(_INVALID_JSON, f'invalid JSON: {error}')


def _json_type(value: Any) -> str:
  if value is None:
    return 'null'
  if isinstance(value, bool):
    return 'a boolean'
  if isinstance(value, (int, float)):
    return 'a number'
  if isinstance(value, str):
    return 'a string'
  if isinstance(value, list):
    return 'an array'
  if isinstance(value, dict):
    return 'an object'
  return type(value).__name__


def _dead_letter(record: KafkaRecord, error: _Reject, table: Optional[str]) -> DeadLetter:
  payload = record.value
  if payload is not None and len(payload) > MAX_DEAD_LETTER_PAYLOAD_BYTES:
    payload = payload[:MAX_DEAD_LETTER_PAYLOAD_BYTES]
  return DeadLetter(stage='parse', reason=str(error), topic=record.topic,
                    partition=record.partition, offset=record.offset,
                    table=error.table if error.table is not None else table,
                    payload=payload)


class _ParseRecordsFn(beam.DoFn):
  """Emits ``RecordParser.parse_chunk``'s results and updates the metrics."""

  def __init__(self, parser: RecordParser):
    self._parser = parser
    self._records = Metrics.counter(METRICS_NAMESPACE, 'records_parsed')
    self._rows = Metrics.counter(METRICS_NAMESPACE, 'rows_parsed')
    self._dead_letters = Metrics.counter(METRICS_NAMESPACE, 'dead_letters')
    self._deletes = Metrics.counter(METRICS_NAMESPACE, 'cdc_deletes')
    self._skipped = Metrics.counter(METRICS_NAMESPACE, 'skipped_records')
    self._by_code = {code: Metrics.counter(METRICS_NAMESPACE, f'dead_letters_{code}')
                     for code in _REASON_CODES}
    self._by_skip = {code: Metrics.counter(METRICS_NAMESPACE, f'skipped_{code}')
                     for code in _SKIP_CODES}

  def process(self, chunk: KafkaChunk) -> Iterable[Any]:
    result = self._parser.parse_chunk(chunk)
    rows = 0
    for table, table_rows in result.rows_by_table.items():
      rows += len(table_rows)
      yield table, table_rows
    for dead_letter in result.dead_letters:
      yield TaggedOutput(ParseRecords.DEAD_LETTERS, dead_letter)
    yield TaggedOutput(ParseRecords.CHUNK_READS, result.chunk_read)
    if result.records_parsed:
      self._records.inc(result.records_parsed)
    if rows:
      self._rows.inc(rows)
    if result.deletes:
      self._deletes.inc(result.deletes)
    if result.dead_letters:
      self._dead_letters.inc(len(result.dead_letters))
      for code, n in result.dead_letter_codes.items():
        self._by_code[code].inc(n)
      _LOGGER.warning('%d dead letter(s) in %s/%d [%d, %d): first: %s', len(result.dead_letters),
                      chunk.topic, chunk.partition, chunk.first_offset, chunk.next_offset,
                      result.dead_letters[0].reason)
    if result.skipped:
      self._skipped.inc(sum(result.skipped.values()))
      for code, n in result.skipped.items():
        self._by_skip[code].inc(n)


class ParseRecords(beam.PTransform[beam.PCollection[KafkaChunk], DoOutputsTuple]):
  """Parses ``KafkaChunk``s into per-table row lists, dead letters and chunk reads.

  Output (a ``DoOutputsTuple``):

  * ``rows`` (main): ``(table, [Row, ...])``, one per table per input chunk,
    rows in Kafka order.
  * ``dead_letters``: ``DeadLetter(stage='parse', reason='<code>: <detail>',
    ...)`` with the record's topic/partition/offset and its raw value
    (truncated to 64 KiB). Codes: ``too_large``, ``empty_value``,
    ``invalid_utf8``, ``invalid_json``, ``not_object``, ``missing_table``,
    ``unmapped_topic``, ``bad_table_name``, ``bad_envelope``, ``unencodable``
    (a row nested deeper than orjson writes, when it must be encoded again).
  * ``chunk_reads``: one ``ChunkRead`` per input chunk; ``count`` = rows +
    dead letters made from it (each acknowledges one unit later).

  Example::

    parsed = chunks | ParseRecords(Routing(table='db.events'))
    parsed.rows | BatchPerTable(...)
    parsed.dead_letters | WriteDeadLetters(...)
    parsed.chunk_reads | CommitOffsets(...)

  Args:
    routing: a ``Routing`` (``--table`` | ``--topic_table_map`` |
      ``--table_field``; none for CDC envelopes naming their table).
    cdc: ``'none'`` | ``'debezium'`` | ``'canal'`` | ``'maxwell'`` | ``'auto'``.
    target: ``'doris'`` | ``'starrocks'``: the delete marker CDC rows carry
      (``__DORIS_DELETE_SIGN__`` or ``__op``, 0 = upsert, 1 = delete).
    sequence_columns: table -> sequence column filled with the Kafka offset
      where a row lacks it (keys must stay in one partition).
    max_record_bytes: larger records are dead-lettered.

  Raises:
    ValueError: on a bad configuration, naming the flag and value.
  """
  ROWS = 'rows'
  DEAD_LETTERS = 'dead_letters'
  CHUNK_READS = 'chunk_reads'

  def __init__(self,
               routing: Routing,
               cdc: str = 'none',
               target: str = 'doris',
               sequence_columns: Optional[Mapping[str, str]] = None,
               max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
    super().__init__()
    self._parser = RecordParser(routing, cdc=cdc, target=target,
                                sequence_columns=sequence_columns,
                                max_record_bytes=max_record_bytes)

  def expand(self, chunks: beam.PCollection[KafkaChunk]) -> DoOutputsTuple:
    return chunks | 'ParseChunks' >> beam.ParDo(_ParseRecordsFn(self._parser)).with_outputs(
        self.DEAD_LETTERS, self.CHUNK_READS, main=self.ROWS)

  def display_data(self):
    parser = self._parser
    routing = parser.routing
    data = {
        'cdc': parser.cdc,
        'target': parser.target,
        'max_record_bytes': parser.max_record_bytes,
    }
    if routing.table is not None:
      data['table'] = routing.table
    if routing.topic_table_map is not None:
      data['topic_table_map'] = ','.join(f'{t}={n}' for t, n in routing.topic_table_map.items())
    if routing.table_field is not None:
      data['table_field'] = routing.table_field
    if parser.sequence_columns:
      data['sequence_columns'] = ','.join(f'{t}={c}' for t, c in parser.sequence_columns.items())
    return data
