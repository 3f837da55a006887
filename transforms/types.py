"""Element types that travel between the pipeline's transforms.

They are ``NamedTuple``s: cheap to create, cheap to pickle, immutable, and
readable in logs.  Rows travel in chunks (``KafkaChunk``, lists of ``Row``)
because the Python runners spend tens of microseconds per element per
transform; at 50k rows/s that would be the whole budget.
"""

from __future__ import annotations

import pickle
import re
from typing import (Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple,
                    TypeVar)

import orjson
from apache_beam import coders

OP_UPSERT = 'upsert'
OP_DELETE = 'delete'
# The two kinds of cluster, and how each marks a deleted row (rows carry it as a field).
DORIS = 'doris'
STARROCKS = 'starrocks'
TARGETS = (DORIS, STARROCKS)
# Hidden column of Doris unique-key tables with batch delete enabled: 1 deletes the key.
DORIS_DELETE_SIGN = '__DORIS_DELETE_SIGN__'
# Virtual column of StarRocks primary-key tables: 0 = upsert, 1 = delete.
STARROCKS_OP = '__op'
# The Kafka topic of the load journal and drain requests (a topic the loader reads, never loads).
DEFAULT_JOURNAL_TOPIC = 'stream_load_journal'
# A dead letter keeps at most this much of its record's value.
MAX_DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024


class KafkaRecord(NamedTuple):
  """One Kafka message as read from the broker."""
  topic: str
  partition: int
  offset: int
  key: Optional[bytes]
  value: Optional[bytes]
  timestamp_ms: int
  headers: Optional[Tuple[Tuple[str, Optional[bytes]], ...]] = None


class KafkaChunk(NamedTuple):
  """Consecutive records of one partition, as returned by one poll.

  ``next_offset`` is the consumer position after the chunk: every offset in
  ``[first_offset, next_offset)`` that exists in the partition is in
  ``records`` (gaps are transaction markers, aborted records or
  compacted-away offsets).  A chunk without records covers such offsets at
  the end of a partition, so that they are committed past.
  """
  topic: str
  partition: int
  first_offset: int
  next_offset: int
  records: List[KafkaRecord]


class ChunkRead(NamedTuple):
  """Accounting summary of a ``KafkaChunk`` for ``CommitOffsets``."""
  topic: str
  partition: int
  first_offset: int
  next_offset: int
  count: int


class OffsetAck(NamedTuple):
  """Offsets of one partition whose records are finished (loaded or dead-lettered)."""
  topic: str
  partition: int
  offsets: Tuple[int, ...]


class Row(NamedTuple):
  """A row bound for one table.

  ``fields`` maps column name to value; ``size`` is the row's encoded size in
  bytes (an estimate good enough for batch byte limits); ``raw`` is the
  row's NDJSON encoding when it is already known (the Kafka value was a plain
  JSON object used as is), so the sink need not encode it again.

  Once a row is keyed for batching, a row with ``raw`` travels *slim*:
  ``fields`` is None and ``columns`` holds its sorted column names (see
  ``slim``) -- pickling the dict next to the same bytes cost more than half of
  each pickle a row goes through between a portable runner's stages.

  ``part`` is the row's index among the rows of its record (one Kafka record
  can become several rows: a JSON array, a Canal ``data`` list, a key change),
  so ``(offset, part)`` places a row exactly in its partition.

  ``position`` is where a CDC row sits in its source's log (``records.cdc.source_position``),
  kept only when a schema change topic is read (``--ddl_topic``): a row older than a schema
  change already applied is made to fit it.  Slim rows leave it out.
  """
  table: str
  fields: dict
  op: str
  topic: str
  partition: int
  offset: int
  size: int
  raw: Optional[bytes] = None
  columns: Optional[Tuple[str, ...]] = None
  part: int = 0
  position: Optional[tuple] = None


def table_of_key(key) -> str:
  """``db.tbl`` from a batching key: ``(table, shard)`` or a bare table name."""
  return key[0] if isinstance(key, tuple) else key


def column_names(row: Row) -> Tuple[str, ...]:
  """The row's sorted column names (slim rows carry them)."""
  return row.columns if row.fields is None else tuple(sorted(row.fields))


def encode_fields(fields: dict, **options) -> bytes:
  """A row's JSON (``orjson.dumps(fields, **options)``) in bytes of its own size.

  orjson's result keeps the buffer it was written into: 8 KB for a 1 KB row (orjson 3.13),
  three times the size of a 20 KB one.  Rows wait in batches by the thousand holding their
  encoding, so it is copied once (~0.15 us a row): a batch's memory is what its rows measure.
  """
  return bytes(memoryview(orjson.dumps(fields, **options)))


def fields_of(row: Row) -> dict:
  """The row's column -> value map (decoded again from ``raw`` for a slim row)."""
  return row.fields if row.fields is not None else orjson.loads(row.raw)


def slim(row: Row) -> Row:
  """The row without its ``fields`` when ``raw`` holds the same data."""
  if row.raw is None or row.fields is None:
    return row
  return Row(row.table, None, row.op, row.topic, row.partition, row.offset, row.size, row.raw,
             tuple(sorted(row.fields)), row.part)


class DeadLetter(NamedTuple):
  """A record or row that could not be loaded, and why."""
  stage: str            # 'parse' | 'load' | 'rejected'
  reason: str
  topic: Optional[str]
  partition: Optional[int]
  offset: Optional[int]
  table: Optional[str]
  payload: Optional[bytes]


class LoadResult(NamedTuple):
  """The outcome of one Stream Load of one batch."""
  table: str
  label: str
  status: str
  rows: int
  loaded_rows: int
  filtered_rows: int
  bytes: int
  load_ms: float
  attempts: int
  txn_id: Optional[int]
  message: str
  source_offsets: Dict[Tuple[str, int], Tuple[int, ...]]


def offsets_of(rows: Sequence[Row]) -> Dict[Tuple[str, int], Tuple[int, ...]]:
  """Groups the source offsets of ``rows`` by (topic, partition)."""
  grouped: Dict[Tuple[str, int], list] = {}
  for row in rows:
    if row.topic is None:
      continue
    grouped.setdefault((row.topic, row.partition), []).append(row.offset)
  return {tp: tuple(offsets) for tp, offsets in grouped.items()}


def acks_of_load_result(result: LoadResult):
  """The ``OffsetAck``s of a loaded batch: one unit per row, per partition."""
  for (topic, partition), offsets in result.source_offsets.items():
    yield OffsetAck(topic, partition, offsets)


class TableHints(NamedTuple):
  """What the records' schemas say of a table, beyond its rows' values (for its DDL)."""
  column_types: Optional[Dict[str, str]] = None   # column -> Doris type, from the schema
  key_columns: Optional[Tuple[str, ...]] = None   # the source's primary key


class RowBatch(list):
  """A list of ``Row``s: a chunk or a batch; it travels between stages as one pickle.

  Beam's default coder for a list of tuples encodes element by element and
  falls back to one ``pickle.dumps`` call per ``Row``; a chunk of 1,000 rows
  pickled in one call is several times cheaper.  Annotate outputs with
  ``Tuple[key, RowBatch]`` to get ``RowBatchCoder``.

  A batch cut by ``BatchPerTable`` carries ``seq``, its number among the
  batches of its key in this worker, in the order they were cut: the sink
  loads an ordered key's batches in that order, whichever thread hands them
  on first.  A table's rows of one chunk carry ``hints`` (``TableHints``) where the records'
  schemas or keys said more than the values (for the table's DDL).
  """
  seq: Optional[int] = None
  hints: Optional['TableHints'] = None
  barrier: bool = False

  @classmethod
  def table_barrier(cls) -> 'RowBatch':
    """An empty batch that asks the steps after it to load every row of its table they hold
    before it goes on (a schema change is about to run; see ``transforms.schema.ddl_apply``):
    the batcher cuts the table's open batches, the sink waits for its loads."""
    batch = cls()
    batch.barrier = True
    return batch

  @classmethod
  def numbered(cls, rows: Sequence['Row'], seq: int) -> 'RowBatch':
    batch = cls(rows)
    batch.seq = seq
    return batch


class RowBatchCoder(coders.Coder):
  """Encodes a whole list of rows with one pickle call.

  Its ``estimate_size`` is cheap: the SDK samples output sizes (the first
  elements of every bundle) for its counters, and the default would pickle a
  whole batch just to measure it.
  """

  def estimate_size(self, value):
    sample = value[:8]
    if not sample:
      return 8
    return int(sum(row.size for row in sample) / len(sample) * len(value)) + 8

  def encode(self, value):
    return pickle.dumps((list(value), getattr(value, 'seq', None), getattr(value, 'hints', None),
                         getattr(value, 'barrier', False)), protocol=pickle.HIGHEST_PROTOCOL)

  def decode(self, encoded):
    rows, seq, hints, barrier = pickle.loads(encoded)
    batch = RowBatch(rows)
    batch.seq, batch.hints, batch.barrier = seq, hints, barrier
    return batch

  def is_deterministic(self):
    return False

  def to_type_hint(self):
    return RowBatch


coders.registry.register_coder(RowBatch, RowBatchCoder)


_V = TypeVar('_V')


class TableMap(Mapping[str, _V]):
  """Per-table values by table name: exact ``db.tbl`` names first, then regular expressions
  (matched against the whole name, in order), then a default for every other table.

  Iterating it gives the exact names only (the tables named in the configuration); a lookup
  of any table answers by the rules.  Lookups are cached.

  Args:
    exact: ``db.tbl`` -> value.
    patterns: ``(regular expression, value)`` pairs, first match wins.
    default: the value of a table nothing else names (None: such a table has none).
  """

  def __init__(self, exact: Optional[Mapping[str, _V]] = None,
               patterns: Sequence[Tuple[str, _V]] = (), default: Optional[_V] = None):
    self._exact = dict(exact or {})
    self._patterns = tuple((re.compile(regex), value) for regex, value in patterns)
    self._default = default
    self._cache: Dict[str, Any] = {}

  @classmethod
  def of(cls, values: Optional[Mapping[str, _V]]) -> 'TableMap[_V]':
    """``values`` as a ``TableMap`` (itself if it is one)."""
    return values if isinstance(values, TableMap) else cls(values)

  @property
  def has_rules(self) -> bool:
    """Whether tables not named exactly may have a value too."""
    return bool(self._patterns) or self._default is not None

  def __getitem__(self, table: str) -> _V:
    value = self._exact.get(table)
    if value is not None:
      return value
    cached = self._cache.get(table, self)
    if cached is self:
      cached = next((value for regex, value in self._patterns if regex.fullmatch(table)),
                    self._default)
      if len(self._cache) < 100_000:
        self._cache[table] = cached
    if cached is None:
      raise KeyError(table)
    return cached

  def __iter__(self) -> Iterator[str]:
    return iter(self._exact)

  def __len__(self) -> int:
    return len(self._exact)

  def __bool__(self) -> bool:
    return bool(self._exact) or self.has_rules

  def __getstate__(self):
    return {'exact': self._exact, 'patterns': [(r.pattern, v) for r, v in self._patterns],
            'default': self._default}

  def __setstate__(self, state):
    self.__init__(state['exact'], state['patterns'], state['default'])

  def __eq__(self, other):
    if isinstance(other, TableMap):
      return self.__getstate__() == other.__getstate__()
    return not self.has_rules and isinstance(other, Mapping) and self._exact == dict(other)

  def __hash__(self):
    return hash(tuple(sorted(self._exact)))

  def __repr__(self):
    return (f'TableMap({self._exact!r}, patterns={[r.pattern for r, _ in self._patterns]!r}, '
            f'default={self._default!r})')
